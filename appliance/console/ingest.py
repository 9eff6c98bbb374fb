"""The console's subscriber: every box's messages from the site's MQTT broker into the
central store, each exactly once.

* paho-mqtt (MQTT 5), QoS 1, a **persistent session**: ``clean_start`` false and a session
  expiry, so the broker keeps the subscription and queues what the boxes publish while the
  console restarts.
* ``on_message`` (paho's network thread) only copies the message into a bounded queue.
  Messages are **acknowledged by hand** (``manual_ack``), after the writer committed them:
  a console that dies between receiving and storing gets them again from the broker.  The
  console asks the broker for at most ``queue_size`` unacknowledged messages (MQTT 5
  receive maximum), so a slow store makes the broker wait (backpressure), nothing is
  dropped; a full queue is counted (``queue_waits``).
* A writer thread applies the queue to the store in batched transactions.  The message id
  is the idempotency key: a message the broker delivers again (after a reconnect) or a box
  resends from its outbox is counted as a duplicate and stored once.  A message the
  contract refuses (:func:`~appliance.sinks.fleet.messages.decode`) is counted as bad,
  acknowledged and dropped, never fatal.
* Refused credentials become one clear error (``console.broker_auth``) in the log and in
  ``/healthz``; paho keeps trying with a backoff up to ``reconnect_max_s``.
"""

from __future__ import annotations

import collections
import logging
import queue
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from appliance.config.console import ConsoleConfig
from appliance.console.store import ApplyResult, CentralStore, Incoming
from appliance.errors import (
    CONSOLE_BROKER_AUTH,
    CONSOLE_BROKER_DENIED,
    CONSOLE_BROKER_UNREACHABLE,
    ApplianceError,
)
from appliance.events import iso_utc
from appliance.sinks.fleet.messages import BadMessage, decode

log = logging.getLogger(__name__)

_AUTH_CODES = frozenset({134, 135, 140})
"""CONNACK reason codes that mean the credentials: bad user name or password, not
authorised, bad authentication method."""
MAX_RECEIVE = 65535
LATENCY_KEPT = 100_000
"""Box-to-store latencies kept for :meth:`Ingest.latencies_s` (the benchmark reads them)."""
STORE_RETRY_MAX_S = 30.0


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    """Where and how the console connects (secrets resolved)."""

    host: str
    port: int
    tls: bool
    username: str = ""
    password: str = ""
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    client_id: str = "appliance-console"
    session_expiry_s: int = 604800
    keepalive_s: int = 30
    topic: str = "coach/+/+/#"
    reconnect_max_s: float = 60.0

    @classmethod
    def from_config(cls, c: ConsoleConfig, password: str = "") -> BrokerSettings:
        url = urlsplit(c.broker)
        tls = url.scheme == "mqtts"
        return cls(host=url.hostname or "127.0.0.1", port=url.port or (8883 if tls else 1883),
                   tls=tls, username=c.username, password=password, ca_file=c.ca_file,
                   cert_file=c.cert_file, key_file=c.key_file, client_id=c.client_id,
                   session_expiry_s=c.session_expiry_s, keepalive_s=c.keepalive_s,
                   topic=c.topic, reconnect_max_s=c.reconnect_max_s)


@dataclass(frozen=True, slots=True)
class _Received:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int
    received_s: float
    """time.monotonic() at arrival."""


class Ingest:
    """Subscriber and writer.  ``start()``, then ``stop()``; figures in :meth:`stats`."""

    def __init__(self, broker: BrokerSettings, store: CentralStore, *, queue_size: int = 10000,
                 batch_size: int = 500) -> None:
        self.broker = broker
        self.store = store
        self.batch_size = batch_size
        self._queue: queue.Queue[_Received] = queue.Queue(maxsize=queue_size)
        self._receive_max = min(queue_size, MAX_RECEIVE)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._generation = 0
        self._writer: threading.Thread | None = None
        self._client: mqtt.Client | None = None
        self.connected = False
        """Connected *and* subscribed (the broker confirmed the subscription): from then on
        nothing a box publishes is missed, even on a new session."""
        self.error: ApplianceError | None = None
        """The last connection failure (cleared on a successful connect)."""
        self.connects = 0
        self.received = 0
        self.stored = 0
        self.duplicates = 0
        self.bad = 0
        self.queue_waits = 0
        self.store_errors = 0
        self.store_ok = True
        self.last_lag_s = 0.0
        """Receive-to-commit seconds of the oldest message of the last batch."""
        self._latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_KEPT)
        self.batches = 0

    # -- life -------------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._writer = threading.Thread(target=self._write_loop, name="console-writer",
                                        daemon=True)
        self._writer.start()
        self._client = self._make_client()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.broker.session_expiry_s
        props.ReceiveMaximum = self._receive_max
        self._client.connect_async(self.broker.host, self.broker.port,
                                   keepalive=self.broker.keepalive_s, clean_start=False,
                                   properties=props)
        self._client.loop_start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Disconnect (the broker keeps the session), store what is queued, stop."""
        self._stop.set()
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        if self._writer is not None:
            self._writer.join(timeout_s)
        self.connected = False

    @property
    def writer_alive(self) -> bool:
        return self._writer is not None and self._writer.is_alive()

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def latencies_s(self) -> list[float]:
        """Box clock (``at``) to the commit, in seconds, of the last messages stored."""
        with self._lock:
            return list(self._latencies)

    def stats(self) -> dict[str, Any]:
        return {"connected": self.connected, "connects": self.connects,
                "received": self.received, "stored": self.stored,
                "duplicates": self.duplicates, "bad": self.bad, "queue_depth": self.queue_depth,
                "queue_waits": self.queue_waits, "store_errors": self.store_errors,
                "store_ok": self.store_ok, "lag_s": round(self.last_lag_s, 3),
                "writer_alive": self.writer_alive,
                "error": None if self.error is None else {"code": self.error.code,
                                                          "message": self.error.message}}

    # -- the MQTT client (paho's network thread) -------------------------------------------
    def _make_client(self) -> mqtt.Client:
        b = self.broker
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=b.client_id,
                        protocol=mqtt.MQTTv5, manual_ack=True)
        if b.username:
            c.username_pw_set(b.username, b.password or None)
        if b.tls:
            c.tls_set(ca_certs=b.ca_file or None, certfile=b.cert_file or None,
                      keyfile=b.key_file or None, cert_reqs=ssl.CERT_REQUIRED,
                      tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.reconnect_delay_set(1, max(1, int(b.reconnect_max_s)))
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_connect_fail = self._on_connect_fail
        return c

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            code = int(reason.value)
            if code in _AUTH_CODES:
                err = ApplianceError(CONSOLE_BROKER_AUTH, f"the broker {self.broker.host}:"
                                     f"{self.broker.port} refused the console's credentials "
                                     f"({reason}): check [console] username and the password "
                                     "or certificate; retrying")
            else:
                err = ApplianceError(CONSOLE_BROKER_UNREACHABLE, f"the broker refused the "
                                     f"connection ({reason}); retrying")
            self._failed(err)
            return
        with self._lock:
            self._generation += 1
        self.connects += 1
        log.info("connected to the broker %s:%d (session %s)", self.broker.host,
                 self.broker.port, "resumed" if flags.session_present else "new")
        # only once the broker confirms the subscription is the console really listening: a
        # new session misses what boxes publish before that (a resumed one had it queued)
        client.subscribe(self.broker.topic, qos=1)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int,
                      reason_codes: list[Any], properties: Any) -> None:
        refused = [rc for rc in reason_codes if rc.is_failure]
        if refused:
            self._failed(ApplianceError(CONSOLE_BROKER_DENIED, f"the broker refused the "
                                        f"subscription to {self.broker.topic!r} ({refused[0]}):"
                                        " its ACL must let the console's user read it; then "
                                        "restart the console"))
            return
        self.connected = True
        self.error = None

    def _failed(self, err: ApplianceError) -> None:
        first = self.error is None or self.error.code != err.code
        self.error = err
        self.connected = False
        (log.error if first else log.debug)("%s [%s]", err.message, err.code)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._failed(ApplianceError(CONSOLE_BROKER_UNREACHABLE, f"cannot reach the broker "
                                    f"{self.broker.host}:{self.broker.port}; retrying"))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        was = self.connected
        self.connected = False
        if was and not self._stop.is_set():
            log.warning("lost the broker (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        item = _Received(msg.topic, bytes(msg.payload), msg.mid, msg.qos, self._generation,
                         time.monotonic())
        self.received += 1
        try:
            self._queue.put_nowait(item)
            return
        except queue.Full:
            self.queue_waits += 1
        while not self._stop.is_set():  # the broker waits with us: nothing is dropped
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _ack(self, items: list[_Received]) -> None:
        client = self._client
        if client is None:
            return
        with self._lock:
            generation = self._generation
        for it in items:
            # a message of an earlier connection is not acknowledged on this one (its mid
            # means another message now): the broker sends it again, and it is a duplicate
            if it.qos > 0 and it.generation == generation:
                client.ack(it.mid, it.qos)

    # -- the writer thread ------------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            batch = [first]
            while len(batch) < self.batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write(batch)
            except Exception:  # a bug must not stop the writer: counted, logged
                log.exception("the console's writer failed on a batch")
                self.store_errors += 1

    def _write(self, batch: list[_Received]) -> None:
        good: list[Incoming] = []
        now = iso_utc(datetime.now(UTC))
        for it in batch:
            try:
                t, p = decode(it.topic, it.payload)
            except BadMessage as exc:
                self.bad += 1
                log.debug("bad message on %.120s: %s", it.topic, exc)
                continue
            good.append(Incoming(t, p, now))
        delay = 0.5
        while True:
            try:
                result = self.store.apply(good) if good else None
                break
            except Exception as exc:
                self.store_errors += 1
                if self.store.ping():  # the store is fine: one message is the trouble
                    result = self._one_by_one(good)
                    break
                if self.store_ok:
                    log.error("the console's store failed (%s); retrying", exc)
                self.store_ok = False
                if self._stop.wait(delay):
                    return  # not acknowledged: the broker delivers them again
                delay = min(delay * 2, STORE_RETRY_MAX_S)
        self.store_ok = True
        if result is not None:
            self.stored += result.stored
            self.duplicates += result.duplicates
        self.batches += 1
        done_s, done_wall = time.monotonic(), time.time()
        self.last_lag_s = done_s - min(it.received_s for it in batch)
        with self._lock:
            for m in good:
                at = _epoch(m.payload.get("at"))
                if at is not None:
                    self._latencies.append(done_wall - at)
        self._ack(batch)

    def _one_by_one(self, good: list[Incoming]) -> ApplyResult:
        stored = dup = 0
        for m in good:
            try:
                r = self.store.apply([m])
                stored += r.stored
                dup += r.duplicates
            except Exception as exc:
                self.bad += 1
                log.warning("a message could not be stored (%s: %s); dropped",
                            type(exc).__name__, exc)
        return ApplyResult(stored, dup)


def _epoch(iso: Any) -> float | None:
    if not isinstance(iso, str):
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
