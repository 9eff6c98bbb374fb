"""The Asterisk AudioSocket listener: TCP connections in, the tap's calls out.

One AudioSocket connection carries one direction of one channel (the framing is in
:mod:`.audiosocket`), so a call arrives as two connections, the agent's voice and the
customer's, each announcing its UUID first.  Per connection:

1. **Accept.**  A peer outside ``[tap.audiosocket] allow`` (loopback only when it is empty,
   :mod:`appliance.audio.peers`) or beyond ``max_connections`` open connections is closed at
   once (``refused``).
2. **UUID.**  The first message must be the UUID (audio or DTMF before it is a framing
   fault); a connection that sends none within ``pair_wait_s`` is closed (``no_uuid``).  The
   UUID names the call and the leg (:class:`~appliance.audio.pbx.legs.LegPairer`: registered
   through :meth:`AudioSocketListener.expect`, else the last-hex-digit convention); a UUID
   that names nothing, or a leg already connected, closes the connection (``unknown_leg``).
3. **Pairing.**  The call opens when **both legs are connected** (``tap.open(call_id,
   rate_hz=8000, source="audiosocket")``).  The first leg's audio waits for its partner
   (held, at most ``pair_wait_s`` of it); when the partner comes, that audio goes to the tap
   together with as much silence on the partner's leg (the partner was not there yet), so
   the two legs start on one timeline.  **A leg whose partner does not come within
   ``pair_wait_s`` is refused**: its connection is closed (``unpaired``) and no call is
   opened.  Every cue the box gives is per party, and one direction alone does not give
   the other party's timing (the same reason mono and mixed WebSocket streams are refused).
4. **Audio** (8 kHz, 16-bit) goes to ``tap.audio`` for the connection's leg; DTMF is
   ignored (``dtmf``); an error message (0xff) is logged (``errors``); unknown message types
   are skipped (``unknown``).
5. **End.**  A connection that closes (or breaks the framing: ``malformed``, that
   connection only, logged with the reason) is ``tap.leg_ended``; the call ends when both
   legs have ended.  A hang-up message (0x00) is the client saying this leg's party hung
   up: ``tap.hung_up`` then ``tap.leg_ended`` (Asterisk itself never sends one: it closes
   the socket when the channel hangs up).  A connection whose call was ended elsewhere
   (the control API, the tap's idle timeout) is closed.

No clock is read but ``clock`` (monotonic seconds, injectable); :meth:`tick` (run every
``tick_s`` by :meth:`start`, or by the caller) expires what waited too long.  Reading only
copies into bounded structures: one read is at most ``READ_BYTES``, one message at most the
decoder's bound, the held audio at most ``pair_wait_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from appliance.audio.pbx.audiosocket import (
    SAMPLE_RATE_HZ,
    Audio,
    AudioSocketDecoder,
    Dtmf,
    Error,
    Hangup,
    Message,
    Unknown,
    Uuid,
)
from appliance.audio.pbx.errors import PbxProtocolError
from appliance.audio.pbx.legs import Leg, LegOf, LegPairer, Paired
from appliance.audio.peers import PeerFilter
from appliance.audio.tap import TapCalls
from appliance.config.tap import TapAudioSocketConfig
from appliance.errors import TAP_BIND_FAILED, ApplianceError
from appliance.events import Party

log = logging.getLogger(__name__)

READ_BYTES = 65536
"""One read from a connection at most (Asterisk sends 323 bytes every 20 ms)."""
STEP_SAMPLES = SAMPLE_RATE_HZ // 10
"""Held audio goes to the tap in steps of 0.1 s, alternating with the partner's silence,
so the two legs never drift apart by more than the aligner's skew bound."""
COUNTERS = ("connections", "refused", "malformed", "bytes", "dtmf", "errors", "unknown",
            "unknown_leg", "no_uuid", "unpaired", "hangups", "calls", "calls_refused",
            "dropped_s")


@dataclass(eq=False)
class _Conn:
    writer: asyncio.StreamWriter
    peer: str
    since_s: float
    decoder: AudioSocketDecoder = field(default_factory=AudioSocketDecoder)
    uuid: str | None = None
    leg: LegOf | None = None
    call_id: str | None = None
    """Set once both legs are connected and the call is open."""
    held: list[np.ndarray] = field(default_factory=list)
    held_samples: int = 0
    closing: str | None = None
    leg_over: bool = False
    """The tap was told this leg ended."""

    @property
    def party(self) -> Party:
        assert self.leg is not None
        return "agent" if self.leg.leg is Leg.AGENT else "customer"


class AudioSocketListener:
    """The box's AudioSocket server (see the module docstring)."""

    def __init__(self, tap: TapCalls, cfg: TapAudioSocketConfig, *, pair_wait_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic,
                 tick_s: float | None = 0.5) -> None:
        self.tap = tap
        self.cfg = cfg
        self.peers = PeerFilter(cfg.allow)
        self.pair_wait_s = pair_wait_s
        self.max_connections = cfg.max_connections
        self.clock = clock
        self.tick_s = tick_s
        self.pairer = LegPairer(convention=cfg.convention, max_wait_s=pair_wait_s,
                                max_pending=cfg.max_connections)
        self._conns: set[_Conn] = set()
        self._by_uuid: dict[str, _Conn] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._n: dict[str, float] = dict.fromkeys(COUNTERS, 0)
        self.port: int | None = None
        """The bound port, after :meth:`start` (``[tap.audiosocket] port`` 0: any free)."""

    # -- control API ---------------------------------------------------------------------
    def expect(self, call_id: str, *, agent_uuid: str, customer_uuid: str) -> None:
        """Name the two UUIDs of ``call_id`` before their connections come; both are
        needed (:class:`PbxProtocolError` ``pbx.protocol`` for a missing UUID, one that is
        not a UUID, or one UUID for both legs)."""
        self.pairer.expect(call_id, agent_uuid=agent_uuid, customer_uuid=customer_uuid)

    def forget(self, call_id: str) -> None:
        """Drop what :meth:`expect` said of ``call_id`` (connections already open go on)."""
        self.pairer.forget(call_id)

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Listen on ``[tap.audiosocket] host``/``port`` (``tap.bind_failed`` if taken)."""
        try:
            self._server = await asyncio.start_server(self._serve, self.cfg.host,
                                                      self.cfg.port, limit=READ_BYTES)
        except OSError as exc:
            raise ApplianceError(TAP_BIND_FAILED, f"AudioSocket: cannot listen on "
                                 f"{self.cfg.host}:{self.cfg.port}: {exc.strerror or exc}") \
                from exc
        self.port = self._server.sockets[0].getsockname()[1]
        if self.tick_s:
            self._ticker = asyncio.create_task(self._tick_forever(self.tick_s))
        log.info("AudioSocket listening on %s:%d", self.cfg.host, self.port)

    @property
    def running(self) -> bool:
        """Listening (between :meth:`start` and :meth:`stop`)."""
        return self._server is not None and self._server.is_serving()

    async def stop(self) -> None:
        """Stop listening and close every connection (their legs end, so do their calls)."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            self._close(conn, "stopping")
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _tick_forever(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                self.tick(self.clock())
            except Exception:  # a bug here must not stop the expiry of later legs
                log.exception("AudioSocket tick failed")

    def tick(self, now_s: float) -> None:
        """Close what waited too long: a leg without its partner after ``pair_wait_s``
        (``unpaired``), a connection without a UUID after as long (``no_uuid``), and
        connections whose call has ended elsewhere."""
        for uuid in self.pairer.expire(now_s):
            conn = self._by_uuid.get(uuid)
            if conn is not None:
                self._n["unpaired"] += 1
                log.warning("AudioSocket %s (%s): no partner leg within %.0f s; closed",
                            uuid, conn.peer, self.pair_wait_s)
                self._close(conn, "unpaired")
        for conn in list(self._conns):
            if conn.closing is not None:
                continue
            if conn.uuid is None and now_s - conn.since_s > self.pair_wait_s:
                self._n["no_uuid"] += 1
                log.warning("AudioSocket from %s: no UUID within %.0f s; closed", conn.peer,
                            self.pair_wait_s)
                self._close(conn, "no_uuid")
            elif conn.call_id is not None and not self.tap.is_open(conn.call_id):
                self._close(conn, "call_ended")

    def stats(self) -> dict[str, float]:
        """Counters for the metrics: connections (accepted), refused (peer not allowed or
        too many connections), malformed, bytes, dtmf, errors (0xff messages), unknown
        (message types), unknown_leg (UUID of no call, or a leg twice), no_uuid, unpaired,
        hangups, calls (opened), calls_refused (by the tap), dropped_s (audio of no open
        call); open (connections now) and waiting (calls with one leg)."""
        out = dict(self._n)
        out["dropped_s"] = round(out["dropped_s"], 3)
        out["open"] = len(self._conns)
        out["waiting"] = self.pairer.waiting
        return out

    # -- one connection ------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = str(peername[0]) if isinstance(peername, tuple) and peername else "?"
        if not self.peers.allows(peer) or len(self._conns) >= self.max_connections:
            self._n["refused"] += 1
            why = "not in [tap.audiosocket] allow" if not self.peers.allows(peer) else \
                f"{self.max_connections} connections open already"
            log.warning("AudioSocket from %s refused: %s", peer, why)
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = _Conn(writer, peer, self.clock())
        self._conns.add(conn)
        self._n["connections"] += 1
        try:
            while conn.closing is None:
                try:
                    data = await reader.read(READ_BYTES)
                except (ConnectionError, OSError):
                    data = b""
                if not data:
                    conn.closing = conn.closing or "closed"
                    break
                self._feed(conn, data)
        finally:
            self._finish(conn)
            self._tasks.discard(task)

    def _feed(self, conn: _Conn, data: bytes) -> None:
        self._n["bytes"] += len(data)
        now = self.clock()
        try:
            messages = conn.decoder.feed(data)
        except PbxProtocolError as exc:
            self._n["malformed"] += 1
            log.warning("AudioSocket %s (%s): %s; connection closed",
                        conn.uuid or "before its UUID", conn.peer, exc.reason)
            self._close(conn, "malformed")
            return
        for m in messages:
            self._message(conn, m, now)
            if conn.closing is not None:
                return

    def _message(self, conn: _Conn, m: Message, now: float) -> None:
        if isinstance(m, Audio):
            self._audio(conn, m.samples, now)
        elif isinstance(m, Uuid):
            self._arrive(conn, m.uuid, now)
        elif isinstance(m, Dtmf):
            self._n["dtmf"] += 1
        elif isinstance(m, Hangup):
            self._n["hangups"] += 1
            if conn.call_id is not None:
                self.tap.hung_up(conn.call_id, conn.party)
                self._leg_over(conn)
            self._close(conn, "hangup")
        elif isinstance(m, Error):
            self._n["errors"] += 1
            log.warning("AudioSocket %s (%s): the PBX reports error %s", conn.uuid or "-",
                        conn.peer, "?" if m.code is None else f"0x{m.code:02x}")
        elif isinstance(m, Unknown):
            self._n["unknown"] += 1

    def _arrive(self, conn: _Conn, uuid: str, now: float) -> None:
        try:
            leg, paired = self.pairer.arrive(uuid, now)
        except PbxProtocolError as exc:
            self._n["unknown_leg"] += 1
            log.warning("AudioSocket %s (%s) refused: %s", uuid, conn.peer, exc.reason)
            self._close(conn, exc.reason)
            return
        conn.uuid, conn.leg = uuid, leg
        self._by_uuid[uuid] = conn
        if paired is not None:
            self._open(paired, now)

    def _open(self, paired: Paired, now: float) -> None:
        agent = self._by_uuid[paired.agent_uuid]
        customer = self._by_uuid[paired.customer_uuid]
        try:
            self.tap.open(paired.call_id, rate_hz=SAMPLE_RATE_HZ, now_s=now,
                          source="audiosocket")
        except ApplianceError as exc:
            self._n["calls_refused"] += 1
            log.warning("AudioSocket call %s refused: %s", paired.call_id, exc)
            for conn in (agent, customer):
                self._close(conn, exc.code)
            return
        self._n["calls"] += 1
        for conn in (agent, customer):
            conn.call_id = paired.call_id
        first, late = (agent, customer) if agent.held_samples else (customer, agent)
        held = np.concatenate(first.held) if first.held else np.zeros(0, np.int16)
        first.held, first.held_samples = [], 0
        for i in range(0, len(held), STEP_SAMPLES):  # the late leg: silence until it came
            step = held[i:i + STEP_SAMPLES]
            self.tap.audio(paired.call_id, late.party, np.zeros(len(step), np.int16), now)
            self.tap.audio(paired.call_id, first.party, step, now)

    def _audio(self, conn: _Conn, samples: np.ndarray, now: float) -> None:
        if conn.call_id is None:  # waiting for the partner leg: hold it, bounded
            if conn.held_samples + len(samples) > self.pair_wait_s * SAMPLE_RATE_HZ:
                self._n["dropped_s"] += len(samples) / SAMPLE_RATE_HZ
                return
            conn.held.append(samples)
            conn.held_samples += len(samples)
            return
        if not self.tap.audio(conn.call_id, conn.party, samples, now):
            self._n["dropped_s"] += len(samples) / SAMPLE_RATE_HZ
            self._close(conn, "call_ended")

    # -- closing -------------------------------------------------------------------------
    def _close(self, conn: _Conn, reason: str) -> None:
        """Close the connection; :meth:`_finish` runs when its reader sees the end."""
        if conn.closing is None:
            conn.closing = reason
        conn.writer.close()

    def _leg_over(self, conn: _Conn) -> None:
        if conn.call_id is not None and not conn.leg_over:
            conn.leg_over = True
            self.tap.leg_ended(conn.call_id, conn.party)

    def _finish(self, conn: _Conn) -> None:
        self._conns.discard(conn)
        if conn.uuid is not None and self._by_uuid.get(conn.uuid) is conn:
            del self._by_uuid[conn.uuid]
            self.pairer.leave(conn.uuid)
        if conn.held_samples:
            self._n["dropped_s"] += conn.held_samples / SAMPLE_RATE_HZ
            conn.held, conn.held_samples = [], 0
        self._leg_over(conn)
        if conn.call_id is not None and not any(c.call_id == conn.call_id
                                                for c in self._conns):
            self.pairer.forget(conn.call_id)  # the call's registration is spent
        conn.writer.close()
        log.info("AudioSocket %s (%s) closed: %s", conn.uuid or "-", conn.peer, conn.closing)
