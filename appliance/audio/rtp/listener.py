"""The RTP listener: UDP datagrams on the configured ports in, the tap's calls out.

**Receiving** (the datagram callback only parses and copies into the stream's bounded
jitter buffer; no analysis there).  A datagram is dropped and counted, never a crash, when
its peer is not allowed (``not_allowed``; loopback only when ``[tap.rtp] allow`` is empty,
:mod:`appliance.audio.peers`), it is not RTP (``malformed``), it is RTCP (``rtcp``,
ignored), or no route names its ``(port, ssrc)`` (``unknown``; routes:
:mod:`.routes`, static ``[[tap.rtp.streams]]`` or :meth:`RtpListener.expect` from the
control API).  A stream's first packet must be audio of a known payload type (PCMU 0, PCMA
8, the ``[tap.rtp] codecs`` L16 types; else ``unsupported``).

**Streams and calls.**  A stream is kept per route key (the port and the SSRC, or the port
alone for a route of any SSRC: an SSRC change then continues the same stream).  The first
packet of either leg opens the call (``tap.open(call_id, source="rtp")``, at that stream's
rate; a leg at the other rate is resampled to it, :mod:`.stream`); the other leg joins it
when its first packet comes.  A call of a route that ended and whose stream starts again
is a new call: ``<call_id>-2``, ``-3``, ...  A stream that cannot join (the tap refused the
call: ``calls_refused``; its leg of the call ended already, or another stream carries
it) drops its packets (``refused``) until it stops, until that call ends, or, for a refused
call, for ``stream_timeout_s`` before the next packet tries again.

**The tick** (every ``tick_s``, 20 ms, from :meth:`start`, or the caller's
:meth:`RtpListener.tick` with its own clock): each stream's audio whose playout time has
come goes to ``tap.audio``; a stream that went quiet while the call's other leg goes on
plays silence meanwhile (:class:`~appliance.audio.rtp.stream.RtpStream`); a stream that
sent nothing for ``stream_timeout_s`` is drained and its leg ends (``tap.leg_ended``); when
no stream of the call is left, the legs that never came end too, and the call ends with
its summary.

No clock is read but ``clock`` (monotonic seconds, injectable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from appliance.audio.peers import PeerFilter
from appliance.audio.rtp.codecs import Codec, codec_map
from appliance.audio.rtp.jitter import JitterConfig
from appliance.audio.rtp.packet import MalformedPacket, RtcpPacket, parse
from appliance.audio.rtp.routes import Key, Route, RtpRoutes
from appliance.audio.rtp.stream import RtpStream
from appliance.audio.tap import TapCalls
from appliance.config.tap import TapRtpConfig, parse_codecs, parse_ports
from appliance.errors import TAP_BIND_FAILED, ApplianceError
from appliance.events import PARTIES, Party

log = logging.getLogger(__name__)

PACKET_S = 0.02
"""The packet duration assumed to turn ``max_depth_s`` into packets (Asterisk's ptime)."""
MAX_NOTED = 256
"""Distinct unknown streams and refused peers logged (then only counted)."""
COUNTERS = ("packets", "bytes", "malformed", "rtcp", "unknown", "not_allowed", "unsupported",
            "refused", "calls", "calls_refused", "streams_total", "dropped_s", "socket_errors",
            "internal_errors")
STREAM_COUNTERS = ("lost", "concealed_ms", "silence_ms", "duplicates", "late", "reordered",
                   "ssrc_changes", "restarts", "strays", "timestamp_jumps", "overflows",
                   "quiet_ms", "trimmed_ms", "malformed", "unsupported")
"""The streams' own counters (:class:`RtpStream`), summed over live and ended streams;
``malformed`` and ``unsupported`` add to the listener's counts of the same name."""


@dataclass(eq=False)
class _Stream:
    key: Key
    route: Route
    call_id: str | None
    rtp: RtpStream | None
    """None: the stream was refused (``reason``) and its packets are dropped."""
    since_s: float
    reason: str = ""
    last_s: float = 0.0
    """A refused stream's last packet."""

    @property
    def party(self) -> Party:
        return self.route.party


@dataclass(eq=False)
class _Call:
    base: str
    rate: int
    streams: dict[str, _Stream] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)


class _Port(asyncio.DatagramProtocol):
    def __init__(self, listener: RtpListener) -> None:
        self.listener = listener
        self.port = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            self.listener.datagram(self.port, data, addr)
        except Exception:  # a bug must not take the port down: counted, logged
            self.listener._n["internal_errors"] += 1
            log.exception("RTP datagram on port %d failed", self.port)

    def error_received(self, exc: Exception) -> None:
        self.listener._n["socket_errors"] += 1
        log.debug("RTP port %d: %s", self.port, exc)


class RtpListener:
    """The box's RTP receiver (see the module docstring)."""

    def __init__(self, tap: TapCalls, cfg: TapRtpConfig, *, ports: list[int] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 tick_s: float | None = 0.02) -> None:
        self.tap = tap
        self.cfg = cfg
        self.peers = PeerFilter(cfg.allow)
        self.clock = clock
        self.tick_s = tick_s
        self.ports: list[int] = list(ports) if ports is not None else parse_ports(cfg.ports)
        """The ports listened on (``ports=`` may ask for 0, any free port: after
        :meth:`start` these are the bound ones, in order)."""
        self.routes = RtpRoutes(cfg.streams)
        self.codecs: dict[int, Codec] = codec_map(
            {pt: Codec(name, rate) for pt, (name, rate) in parse_codecs(cfg.codecs).items()})
        self.jitter = JitterConfig(depth_ms=cfg.jitter_s * 1000.0,
                                   max_packets=max(1, round(cfg.max_depth_s / PACKET_S)))
        self._streams: dict[Key, _Stream] = {}
        self._calls: dict[str, _Call] = {}
        self._gen: dict[str, int] = {}
        self._ports: list[_Port] = []
        self._ticker: asyncio.Task[None] | None = None
        self._n: dict[str, float] = dict.fromkeys(COUNTERS, 0)
        self._closed: dict[str, float] = dict.fromkeys(STREAM_COUNTERS, 0.0)
        self._noted: set[object] = set()

    # -- control API ---------------------------------------------------------------------
    def expect(self, call_id: str, party: str, *, port: int, ssrc: int | None = None) -> None:
        """Announce that ``party`` of ``call_id`` arrives on ``port`` (from ``ssrc``, or any
        SSRC).  ValueError for a port not listened on (or a bad id, party, SSRC).  A stream
        already on that key for another route ends (its leg closes) so the next packet
        takes the new route."""
        if port not in self.ports:
            raise ValueError(f"port {port} is not one of [tap.rtp] ports")
        key = self.routes.expect(call_id, party, port=port, ssrc=ssrc)
        stream = self._streams.get(key)
        if stream is not None and stream.route != self.routes.route(key):
            self._end_stream(stream, self.clock())

    def forget(self, call_id: str) -> None:
        """Drop the announcements of ``call_id``; its streams end (their audio so far goes
        to the tap, their legs close), so their ports are free for the next call."""
        now = self.clock()
        for key in self.routes.forget(call_id):
            stream = self._streams.get(key)
            if stream is not None and stream.route.call_id == call_id:
                self._end_stream(stream, now)
        if call_id not in {c.base for c in self._calls.values()} and \
                not self.routes.names(call_id):
            self._gen.pop(call_id, None)

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Bind every port (``tap.bind_failed`` if one is taken: none stays bound)."""
        loop = asyncio.get_running_loop()
        for port in self.ports:
            try:
                _, proto = await loop.create_datagram_endpoint(
                    lambda: _Port(self), local_addr=(self.cfg.host, port))
            except OSError as exc:
                self._unbind()
                raise ApplianceError(TAP_BIND_FAILED, f"RTP: cannot listen on "
                                     f"{self.cfg.host}:{port}: {exc.strerror or exc}") from exc
            self._ports.append(proto)
        self.ports = [p.port for p in self._ports]
        if self.tick_s:
            self._ticker = asyncio.create_task(self._tick_forever(self.tick_s))
        log.info("RTP listening on %s, %d ports (%d-%d)", self.cfg.host, len(self.ports),
                 min(self.ports, default=0), max(self.ports, default=0))

    @property
    def running(self) -> bool:
        """Receiving (between :meth:`start` and :meth:`stop`; with its ticker, if it has
        one, alive)."""
        return bool(self._ports) and (self._ticker is None or not self._ticker.done())

    async def stop(self) -> None:
        """Stop receiving; every stream ends (its leg closes, so do the calls)."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        self._unbind()
        now = self.clock()
        for stream in list(self._streams.values()):
            self._end_stream(stream, now)

    def _unbind(self) -> None:
        for p in self._ports:
            if p.transport is not None:
                p.transport.close()
        self._ports = []

    async def _tick_forever(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                self.tick(self.clock())
            except Exception:  # a bug here must not stop every call's audio
                self._n["internal_errors"] += 1
                log.exception("RTP tick failed")

    # -- receiving -----------------------------------------------------------------------
    def datagram(self, port: int, data: bytes, addr: Any) -> None:
        """One datagram that arrived on ``port`` from ``addr``: parsed, pushed (or
        counted and dropped)."""
        self._n["packets"] += 1
        self._n["bytes"] += len(data)
        host = addr[0] if isinstance(addr, tuple) and addr else "?"
        if not self.peers.allows(host):
            self._n["not_allowed"] += 1
            self._note(("peer", host), "RTP from %s refused: not in [tap.rtp] allow", host)
            return
        try:
            packet = parse(data)
        except MalformedPacket:
            self._n["malformed"] += 1
            return
        if isinstance(packet, RtcpPacket):
            self._n["rtcp"] += 1
            return
        now = self.clock()
        found = self.routes.find(port, packet.ssrc)
        if found is None:
            self._n["unknown"] += 1
            self._note(("stream", port, packet.ssrc), "RTP on port %d, SSRC %08x: no call "
                       "announced or configured for it; dropped", port, packet.ssrc)
            return
        key, route = found
        stream = self._streams.get(key)
        if stream is None:
            codec = self.codecs.get(packet.payload_type)
            if codec is None or codec.name == "CN":
                self._n["unsupported"] += 1
                return
            stream = self._new_stream(key, route, codec.sample_rate_hz, now)
        if stream.rtp is None:
            self._n["refused"] += 1
            stream.last_s = now
            return
        stream.rtp.push(packet, now)

    def _new_stream(self, key: Key, route: Route, rate: int, now: float) -> _Stream:
        self._n["streams_total"] += 1
        call_id, reason = self._join(route, rate, now)
        if call_id is None or reason:
            stream = _Stream(key, route, call_id, None, now, reason, now)
        else:
            call = self._calls[call_id]
            rtp = RtpStream(rate, call.rate, self.codecs, self.jitter, now)
            stream = _Stream(key, route, call_id, rtp, now)
            call.streams[route.party] = stream
        self._streams[key] = stream
        return stream

    def _join(self, route: Route, rate: int, now: float) -> tuple[str | None, str]:
        """The call a new stream of ``route`` belongs to, or why it cannot join one."""
        base = route.call_id
        gen = self._gen.get(base, 0)
        current = _generation(base, gen) if gen else None
        call = self._calls.get(current) if current else None
        if current is not None and call is not None and self.tap.is_open(current):
            if route.party in call.ended or route.party in call.streams:
                log.warning("RTP call %s: a new %s stream while its leg %s; dropped until "
                            "the call ends", current, route.party,
                            "ended" if route.party in call.ended else "has a stream")
                return current, "leg_closed"
            return current, ""
        call_id = _generation(base, gen + 1)
        try:
            self.tap.open(call_id, rate_hz=rate, now_s=now, agent_id=route.agent_id,
                          source="rtp")
        except ApplianceError as exc:
            self._n["calls_refused"] += 1
            log.warning("RTP call %s refused: %s", call_id, exc)
            return None, exc.code
        self._gen[base] = gen + 1
        self._calls[call_id] = _Call(base, rate)
        self._n["calls"] += 1
        return call_id, ""

    # -- the tick ------------------------------------------------------------------------
    def tick(self, now_s: float) -> None:
        """Audio due by ``now_s`` to the tap; quiet streams filled; stopped streams ended."""
        timeout = self.cfg.stream_timeout_s
        for stream in list(self._streams.values()):
            if stream.rtp is None:  # refused: forgotten when it stops, when the call it
                # could not join ends, or (the tap refused the call) to try again
                if now_s - stream.last_s >= timeout or (
                        stream.call_id is None and now_s - stream.since_s >= timeout) or (
                        stream.call_id is not None and stream.call_id not in self._calls):
                    del self._streams[stream.key]
                continue
            call = self._calls.get(stream.call_id or "")
            fill = call is not None and any(
                o is not stream and o.rtp is not None and not o.rtp.quiet(now_s)
                for o in call.streams.values())  # silence only to keep in step with a leg
            self._deliver(stream, stream.rtp.pull(now_s, fill=fill), now_s)
            if stream.rtp.idle(now_s, timeout):
                log.info("RTP call %s: the %s stream stopped %.1f s ago; its leg ends",
                         stream.call_id, stream.party, timeout)
                self._end_stream(stream, now_s)

    def _deliver(self, stream: _Stream, samples: np.ndarray | None, now_s: float) -> None:
        if samples is None or stream.call_id is None:
            return
        if not self.tap.audio(stream.call_id, stream.party, samples, now_s):
            call = self._calls.get(stream.call_id)
            self._n["dropped_s"] += len(samples) / (call.rate if call else 8000)

    def _end_stream(self, stream: _Stream, now_s: float) -> None:
        """Drain the stream, end its leg; with no stream of its call left, end the call."""
        if self._streams.get(stream.key) is stream:
            del self._streams[stream.key]
        if stream.rtp is None or stream.call_id is None:
            return
        self._deliver(stream, stream.rtp.finish(), now_s)
        for k in STREAM_COUNTERS:
            self._closed[k] += stream.rtp.stats.get(k, 0.0)
        stream.rtp = None
        call = self._calls.get(stream.call_id)
        if call is None:
            return
        party = stream.party
        call.streams.pop(party, None)
        call.ended.add(party)
        self.tap.leg_ended(stream.call_id, party)
        if call.streams:
            return
        for p in PARTIES:  # the legs that never sent end with the last stream
            if p not in call.ended:
                call.ended.add(p)
                self.tap.leg_ended(stream.call_id, p)
        del self._calls[stream.call_id]
        if not self.routes.names(call.base):
            self._gen.pop(call.base, None)

    # -- figures -------------------------------------------------------------------------
    def stats(self) -> dict[str, float]:
        """Counters for the metrics: packets, bytes, malformed (datagrams and payloads),
        rtcp, unknown (no route), not_allowed, unsupported (payload types), refused
        (packets of refused streams), calls (opened), calls_refused, streams_total,
        dropped_s (audio of calls ended elsewhere), socket_errors, internal_errors; the
        streams' lost, concealed_ms, silence_ms, duplicates, late, reordered, ssrc_changes,
        restarts, strays, timestamp_jumps, overflows, quiet_ms, trimmed_ms (live and ended
        streams); streams (open now), calls_open, announced (routes)."""
        out = dict(self._n)
        totals = dict(self._closed)
        for s in self._streams.values():
            if s.rtp is not None:
                st = s.rtp.stats
                for k in STREAM_COUNTERS:
                    totals[k] += st.get(k, 0.0)
        for k, v in totals.items():
            out[k] = out.get(k, 0) + (round(v, 1) if k.endswith("_ms") else int(v))
        out["dropped_s"] = round(out["dropped_s"], 3)
        out["streams"] = sum(s.rtp is not None for s in self._streams.values())
        out["calls_open"] = len(self._calls)
        out["announced"] = self.routes.announced
        return out

    def _note(self, key: object, msg: str, *args: object) -> None:
        if key not in self._noted and len(self._noted) < MAX_NOTED:
            self._noted.add(key)
            log.warning(msg, *args)


def _generation(base: str, n: int) -> str:
    return base if n == 1 else f"{base}-{n}"
