"""Doctor check 4: can the dashboard be served where the config says?

The port is tried with a real ``bind`` (as the server does, ``SO_REUSEADDR``).  When it is
taken, ``GET /healthz`` on it tells a running appliance (fine: it serves the dashboard)
from another program (not fine).
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import socket
from typing import Any

from appliance.config import DashboardConfig
from appliance.dashboard.http import is_loopback
from appliance.doctor.check import Check, fail, ok, warn

NAME = "dashboard"
PROBE_TIMEOUT_S = 2.0
_WILDCARD = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}


def _url_host(host: str) -> str:
    h = _WILDCARD.get(host, host).strip("[]")
    return f"[{h}]" if ":" in h else h


def try_bind(host: str, port: int) -> OSError | None:
    """Bind (and release) every address ``host`` resolves to; the first error, or None."""
    try:
        infos = socket.getaddrinfo(host.strip("[]") or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return exc
    for family, kind, proto, _, addr in infos:
        try:
            with socket.socket(family, kind, proto) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                    with contextlib.suppress(OSError):
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind(addr)
        except OSError as exc:
            return exc
    return None


def probe_healthz(host: str, port: int, token: str = "",
                  timeout_s: float = PROBE_TIMEOUT_S) -> tuple[int, dict[str, Any] | None, str]:
    """``GET /healthz``: (status, the JSON object or None, WWW-Authenticate); (0, None, "")
    when nothing answers over HTTP."""
    conn = http.client.HTTPConnection(_WILDCARD.get(host, host).strip("[]"), port,
                                      timeout=timeout_s)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        conn.request("GET", "/healthz", headers=headers)
        resp = conn.getresponse()
        body = resp.read(65536)
        auth = resp.getheader("WWW-Authenticate", "") or ""
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            data = None
        return resp.status, data if isinstance(data, dict) else None, auth
    except (OSError, http.client.HTTPException):
        return 0, None, ""
    finally:
        conn.close()


def _running(health: dict[str, Any]) -> str:
    parts = []
    if "audio_flowing" in health:
        parts.append("audio flowing" if health["audio_flowing"] else "NO audio flowing")
    if "model_loaded" in health:
        parts.append("speech model loaded" if health["model_loaded"] else "no speech model")
    return f" ({', '.join(parts)})" if parts else ""


def check_dashboard(cfg: DashboardConfig, timeout_s: float = PROBE_TIMEOUT_S) -> Check:
    """Enabled?, the address bindable (or held by a running appliance), the URL."""
    if not cfg.enabled:
        return ok(NAME, "off ([dashboard] enabled = false)")
    url = f"http://{_url_host(cfg.host)}:{cfg.port}/"
    loopback = is_loopback(cfg.host)
    if not loopback and not cfg.token:
        return fail(NAME, f"{cfg.host} is beyond loopback without a token",
                    "set [dashboard] token (or the dashboard-token credential), or bind "
                    "[dashboard] host = \"127.0.0.1\"")
    reach = "this machine only" if loopback else "the network, token required (set)"
    err = try_bind(cfg.host, cfg.port)
    if err is None:
        return ok(NAME, f"{url} can be served (port {cfg.port} is free; {reach})")
    if isinstance(err, socket.gaierror):
        return fail(NAME, f"[dashboard] host {cfg.host!r} does not resolve ({err})",
                    "set [dashboard] host to 127.0.0.1 or an address of this machine")
    if err.errno == errno.EADDRINUSE:
        status, health, auth = probe_healthz(cfg.host, cfg.port, cfg.token, timeout_s)
        if status == 200 and health is not None:
            return ok(NAME, f"{url} served by a running appliance{_running(health)}")
        if status == 401 and 'realm="dashboard"' in auth:
            return warn(NAME, f"{url} is served by a running appliance that refuses the "
                        "configured token", "the service runs with another token: restart "
                        "it after changing the token (systemctl restart appliance)")
        return fail(NAME, f"port {cfg.port} on {cfg.host} is in use by another process",
                    "port in use by another process; change [dashboard] port or stop it "
                    f"(`ss -ltnp 'sport = :{cfg.port}'` shows which)")
    if err.errno == errno.EADDRNOTAVAIL:
        return fail(NAME, f"{cfg.host} is not an address of this machine ({err.strerror})",
                    "set [dashboard] host to 127.0.0.1 or one of `ip -br addr`")
    if err.errno == errno.EACCES:
        return fail(NAME, f"port {cfg.port} needs privileges ({err.strerror})",
                    "choose a [dashboard] port above 1023 (default 8765)")
    return fail(NAME, f"cannot bind {cfg.host}:{cfg.port} ({err.strerror or err})",
                "check [dashboard] host and [dashboard] port")
