"""The box's MQTT client: the outbox, drained in order to the site's broker.

paho-mqtt runs the connection in its own thread (``loop_start``): TLS, credentials, the last
will (a retained ``offline`` status), a retained ``online`` status on each connect, and the
reconnects with a doubling backoff.  A sender thread of ours drains the
:class:`~appliance.sinks.fleet.outbox.Outbox` oldest first, at most ``max_inflight`` QoS 1
messages unacknowledged, and deletes a row only when its PUBACK comes back.  Messages sent
and not yet acknowledged when the connection drops are resent by paho after the reconnect
(in their order); those still in the outbox when the box stops or dies are resent after the
next start.  The console deduplicates by each message's ``id``: at least once, counted once.

Nothing here ever stops the box: a broker that refuses the credentials (``fleet.auth``), a
certificate that does not verify (``fleet.tls``), a broker that cannot be reached
(``fleet.unreachable``), a publish its ACL refuses (``fleet.denied``, MQTT 5 only) are each
logged once when the state changes, shown in :meth:`Publisher.health`, and retried.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from appliance.config.fleet import FleetConfig, check_files, parse_broker, read_password
from appliance.errors import (
    FLEET_AUTH,
    FLEET_DENIED,
    FLEET_REFUSED,
    FLEET_STOPPED,
    FLEET_TLS,
    FLEET_UNREACHABLE,
    ApplianceError,
)
from appliance.sinks.fleet.messages import (
    MAX_PAYLOAD_BYTES,
    assert_no_text,
    encode,
    status_payload,
    status_topic,
)
from appliance.sinks.fleet.outbox import Outbox, outbox_path

log = logging.getLogger(__name__)

_AUTH_REASONS = (134, 135)  # Bad user name or password, Not authorized (v3 codes 4, 5 map here)
_SENDER_POLL_S = 0.5


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class _Client(mqtt.Client):
    """paho's client, remembering why the last connection attempt failed (paho's loop
    swallows the exception; the box must say whether it was TLS or the network)."""

    last_exc: BaseException | None = None

    def reconnect(self) -> MQTTErrorCode:
        try:
            rc = super().reconnect()
        except OSError as exc:
            self.last_exc = exc
            raise
        self.last_exc = None
        return rc


def connect_error_code(exc: BaseException | None) -> str:
    """``fleet.tls`` for a TLS failure (certificate, handshake), else ``fleet.unreachable``."""
    return FLEET_TLS if isinstance(exc, ssl.SSLError) else FLEET_UNREACHABLE


def make_client(cfg: FleetConfig, password: str | None, client_id: str) -> _Client:
    """A paho client for ``[fleet]``: protocol, TLS (the configured CA, else the system's;
    the broker's host name verified), credentials.  Not connected."""
    c = _Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                protocol=(MQTTProtocolVersion.MQTTv5 if cfg.protocol == "5"
                          else MQTTProtocolVersion.MQTTv311),
                clean_session=None if cfg.protocol == "5" else True)
    if parse_broker(cfg.broker).tls:
        c.tls_set(ca_certs=cfg.ca_file or None, certfile=cfg.client_cert or None,
                  keyfile=cfg.client_key or None)
    if cfg.username:
        c.username_pw_set(cfg.username, password)
    return c


class Publisher:
    """The outbox's sender.  ``outbox`` None: the outbox could not be opened
    (``outbox_error`` says why); the box then publishes nothing and says so in health."""

    def __init__(self, cfg: FleetConfig, outbox: Outbox | None, *, password: str | None = None,
                 version: str = "", outbox_error: str | None = None,
                 client_id: str | None = None) -> None:
        self.cfg = cfg
        self.outbox = outbox
        self.box, self.site = cfg.box_id, cfg.site
        self.prefix = cfg.prefix()
        self.version = version
        self.address = parse_broker(cfg.broker)
        self.client_id = client_id or f"coach-{cfg.site}-{cfg.box_id}"
        self._password = password
        self.connected = False
        self.since = _now()
        """When :attr:`connected` last changed (wall clock, UTC ISO 8601)."""
        self.last_error: str | None = outbox_error
        """Stable code of the latest trouble (``fleet.auth``...); None once connected and
        publishing again (a refused publish stays until one is accepted)."""
        self.published = 0
        self.acked = 0
        self.denied = 0
        self.dropped = 0
        """Messages never written to the outbox (it is unavailable, or a payload refused)."""
        self.errors: Counter[str] = Counter()
        """Trouble by stable code, each occurrence (connection attempts, refused publishes)."""
        self._logged: str | None = "unset"
        self._outbox_error = outbox_error
        self._acks: queue.SimpleQueue[tuple[int, bool]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._sender: threading.Thread | None = None
        self._client: _Client | None = None
        self._inflight: dict[int, int] = {}
        self._guard = threading.Lock()
        self.started = False
        self.stopped = False

    @classmethod
    def from_config(cls, cfg: FleetConfig, state_dir: Path, env: Mapping[str, str], *,
                    version: str = "") -> Publisher:
        """Open the outbox in ``state_dir`` and read the credentials; failures are kept as
        the publisher's error code (logged), never raised: the box keeps coaching."""
        outbox, error = None, None
        try:
            outbox = Outbox.open(outbox_path(state_dir), max_messages=cfg.outbox_max_messages,
                                 max_bytes=cfg.outbox_max_bytes)
        except ApplianceError as exc:
            log.error("fleet: %s; nothing is published until it is fixed", exc)
            error = exc.code
        password = None
        try:
            password = read_password(cfg, env)
            check_files(cfg)
        except ApplianceError as exc:
            log.error("fleet: %s", exc)
            error = error or exc.code
        return cls(cfg, outbox, password=password, version=version, outbox_error=error)

    # -- life -----------------------------------------------------------------------------
    def start(self) -> None:
        """Connect (in paho's thread, retried with backoff) and start the sender."""
        if self.started:
            return
        self.started = True
        c = make_client(self.cfg, self._password, self.client_id)
        c.will_set(status_topic(self.prefix), self._status("offline"), qos=1, retain=True)
        c.reconnect_delay_set(self.cfg.reconnect_min_s, self.cfg.reconnect_max_s)  # type: ignore[arg-type]
        c.max_inflight_messages_set(self.cfg.max_inflight)
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        self._client = c
        c.connect_async(self.address.host, self.address.port, keepalive=self.cfg.keepalive_s)
        c.loop_start()
        self._sender = threading.Thread(target=self._send_loop, name="fleet-sender",
                                        daemon=True)
        self._sender.start()
        log.info("fleet: publishing to %s as %s under %s", self.cfg.broker, self.box,
                 self.prefix)

    def stop(self, flush_s: float | None = None) -> None:
        """Publish ``offline`` (retained), wait up to ``flush_s`` (default the config's
        ``stop_flush_s``) for the outbox to drain, disconnect.  What is left stays in the
        outbox for the next start."""
        if not self.started or self.stopped:
            return
        self.stopped = True
        c = self._client
        assert c is not None
        deadline = time.monotonic() + (self.cfg.stop_flush_s if flush_s is None else flush_s)
        if self.connected:
            info = c.publish(status_topic(self.prefix), self._status("offline"), qos=1,
                             retain=True)
            while time.monotonic() < deadline and self.connected and (
                    self._waiting() or not info.is_published()):
                time.sleep(0.02)
        self._stop.set()
        self._wake.set()
        if self._sender is not None:
            self._sender.join(timeout=5.0)
        c.disconnect()
        c.loop_stop()
        if self.outbox is not None:
            self.outbox.close()
        log.info("fleet: stopped (%d messages left in the outbox)", self.pending)

    def _waiting(self) -> bool:
        return self.outbox is not None and self.outbox.pending > 0

    # -- writing --------------------------------------------------------------------------
    def enqueue(self, topic: str, payload: Mapping[str, Any]) -> bool:
        """Check (no free text), encode and append a message to the outbox; the sender
        publishes it when the broker is there.  False when it was dropped (counted)."""
        try:
            assert_no_text(payload)
            raw = encode(payload)
            if len(raw) > MAX_PAYLOAD_BYTES:
                raise ValueError(f"a payload of {len(raw)} bytes")
        except (ValueError, TypeError) as exc:
            self.dropped += 1
            log.error("fleet: a message was refused before sending (%s); it is dropped",
                      type(exc).__name__)
            return False
        if self.outbox is None:
            self.dropped += 1
            return False
        try:
            self.outbox.append(topic, raw)
        except ApplianceError as exc:
            self.dropped += 1
            self._trouble(exc.code, f"fleet: {exc}")
            return False
        self._wake.set()
        return True

    def _status(self, state: str) -> bytes:
        return encode(status_payload(self.box, self.site, state,  # type: ignore[arg-type]
                                     _now(), version=self.version))

    # -- paho's callbacks (its thread) ----------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any,
                    _p: Any) -> None:
        if reason.is_failure:
            code = FLEET_AUTH if reason.value in _AUTH_REASONS else FLEET_REFUSED
            self._trouble(code, f"fleet: the broker {self.cfg.broker} refused the connection: "
                          f"{reason} (check [fleet] username and its password, or the client "
                          "certificate)")
            return
        client.publish(status_topic(self.prefix), self._status("online"), qos=1, retain=True)
        with self._guard:
            self.connected = True
            self.since = _now()
            if self._outbox_error is None:
                self.last_error = None
        if self._logged is not None:
            log.warning("fleet: connected to %s (%d messages waiting)", self.cfg.broker,
                        self.pending)
            self._logged = None
        self._wake.set()

    def _on_connect_fail(self, client: mqtt.Client, _u: Any) -> None:
        exc = getattr(client, "last_exc", None)
        code = connect_error_code(exc)
        why = type(exc).__name__ if exc is None else (str(exc) or type(exc).__name__)
        self._trouble(code, f"fleet: cannot connect to {self.cfg.broker}: {why[:200]} "
                      f"(retrying up to every {self.cfg.reconnect_max_s:g} s)")

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any,
                       _p: Any) -> None:
        with self._guard:
            was = self.connected
            self.connected = False
            if was:
                self.since = _now()
        if was and not self.stopped:
            self._trouble(FLEET_UNREACHABLE, f"fleet: lost the broker {self.cfg.broker} "
                          f"({reason}); unsent messages wait in the outbox")

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        self._acks.put((mid, bool(getattr(reason, "is_failure", False))))
        self._wake.set()

    def _trouble(self, code: str, message: str) -> None:
        """Record a problem; log it when the state changes (not at every retry)."""
        self.errors[code] += 1
        self.last_error = code
        if self._logged != code:
            self._logged = code
            log.error("%s [%s]", message, code)

    # -- the sender thread ----------------------------------------------------------------
    def _send_loop(self) -> None:
        last_seq = 0
        while not self._stop.is_set():
            self._wake.wait(_SENDER_POLL_S)
            self._wake.clear()
            try:
                self._take_acks()
                if self.connected and self.outbox is not None:
                    last_seq = self._send_some(last_seq)
            except ApplianceError as exc:
                self._trouble(exc.code, f"fleet: {exc}")
                self._stop.wait(1.0)
            except Exception:  # a bug must not end the sender silently: logged, retried
                log.exception("fleet: the sender failed; retrying")
                self._stop.wait(1.0)

    def _take_acks(self) -> None:
        while True:
            try:
                mid, failed = self._acks.get_nowait()
            except queue.Empty:
                return
            seq = self._inflight.pop(mid, None)
            if seq is None:  # a status message
                continue
            if failed:  # refused by the ACL: resending would be refused again
                self.denied += 1
                self._trouble(FLEET_DENIED, f"fleet: the broker refused a publish under "
                              f"{self.prefix} (its ACL: is [fleet] box_id this box's user?)")
            else:
                self.acked += 1
                if self.last_error == FLEET_DENIED:
                    self.last_error = None
                    self._logged = None
            assert self.outbox is not None
            self.outbox.delete(seq)

    def _send_some(self, last_seq: int) -> int:
        room = self.cfg.max_inflight - len(self._inflight)
        if room <= 0:
            return last_seq
        assert self.outbox is not None and self._client is not None
        for row in self.outbox.peek(after=last_seq, limit=room):
            info = self._client.publish(row.topic, row.payload, qos=1)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                log.debug("fleet: publish returned %s; retried later", info.rc)
                break
            self._inflight[info.mid] = row.seq
            self.published += 1
            last_seq = row.seq
        return last_seq

    # -- figures --------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return self.outbox.pending if self.outbox is not None else 0

    @property
    def evicted(self) -> int:
        return self.outbox.evicted if self.outbox is not None else 0

    def threads_alive(self) -> bool:
        """paho's network thread and the sender run (True before start and after stop)."""
        if not self.started or self.stopped:
            return True
        net = getattr(self._client, "_thread", None)
        return bool(net is not None and net.is_alive() and self._sender is not None
                    and self._sender.is_alive())

    def health(self) -> dict[str, Any]:
        """The ``fleet`` section of ``/healthz``.  ``ok`` is False only when something inside
        the box has stopped (a publisher thread died, the outbox is unusable); a broker that
        is away or refuses is ``state`` ``failing`` with its ``last_error``, and coaching
        goes on."""
        alive = self.threads_alive()
        error: str | None
        if not alive:
            state, error = "stopped", FLEET_STOPPED
        elif self.outbox is None:
            state, error = "stopped", self.last_error
        elif self.connected and self.last_error is None:
            state, error = "connected", None
        elif not self.started:
            state, error = "starting", self.last_error
        else:
            state, error = ("connected" if self.connected else "failing"), self.last_error
        return {"state": state, "ok": alive and self.outbox is not None,
                "connected": self.connected, "since": self.since, "last_error": error,
                "broker": self.cfg.broker, "prefix": self.prefix,
                "pending": self.pending, "evicted": self.evicted,
                "published": self.published, "acked": self.acked, "denied": self.denied,
                "dropped": self.dropped, "errors": dict(self.errors)}


