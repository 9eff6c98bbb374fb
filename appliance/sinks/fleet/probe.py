"""``appliance doctor``'s look at the broker: one TLS + MQTT CONNECT with the box's own
settings and credentials, and the broker's answer (then DISCONNECT; nothing published)."""

from __future__ import annotations

import threading
import time
from typing import Any

from appliance.config.fleet import FleetConfig, parse_broker
from appliance.errors import FLEET_AUTH, FLEET_REFUSED
from appliance.sinks.fleet.publisher import connect_error_code, make_client

_AUTH_REASONS = (134, 135)


def probe_broker(cfg: FleetConfig, password: str | None,
                 timeout_s: float = 10.0) -> tuple[str | None, str]:
    """``(None, answer)`` when the broker accepted the connection, else ``(code, why)``
    with ``fleet.tls``, ``fleet.unreachable``, ``fleet.auth`` or ``fleet.refused``."""
    addr = parse_broker(cfg.broker)
    c = make_client(cfg, password, f"coach-{cfg.site}-{cfg.box_id}-doctor")
    answer: dict[str, Any] = {}
    done = threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        answer["reason"] = reason
        done.set()

    c.on_connect = on_connect
    try:
        c.connect(addr.host, addr.port, keepalive=max(5, int(timeout_s)))
    except OSError as exc:
        return connect_error_code(exc), str(exc) or type(exc).__name__
    deadline = time.monotonic() + timeout_s
    try:
        while not done.is_set() and time.monotonic() < deadline:
            c.loop(0.1)
    finally:
        c.disconnect()  # DISCONNECT when connected; the socket is closed either way
        sock = c.socket()
        if sock is not None:
            sock.close()
    if not done.is_set():
        return FLEET_REFUSED, f"no answer to CONNECT within {timeout_s:g} s"
    reason = answer["reason"]
    if reason.is_failure:
        return (FLEET_AUTH if reason.value in _AUTH_REASONS else FLEET_REFUSED), str(reason)
    return None, f"connected ({'MQTT 5' if cfg.protocol == '5' else 'MQTT 3.1.1'}, " \
        f"{'TLS' if addr.tls else 'plain, loopback'})"
