"""A per-stream RTP jitter buffer: packets in, one contiguous int16 timeline out.

Everything is a pure state machine driven by the caller's clock (``now_s`` arguments, in
seconds of any monotonic clock); no sockets, no wall clock.

**Order and time.**  Packets are ordered by their *extended* sequence number (the 16-bit
number unwrapped across 65535 -> 0 against the highest one received) and placed on the
stream's timeline by their *extended* timestamp (the 32-bit timestamp unwrapped likewise), so
packets of any duration (10, 20, 30, 40 ms) and gaps without sequence gaps (comfort noise,
DTX) keep their true length.  The output is a sequence of :class:`Chunk` s, each starting
where the previous ended (``start_sample`` counts samples since the stream started), so
downstream sees a continuous clock: every sample of the timeline is emitted exactly once.

**Playout.**  Arrival-based: the first packet of an epoch (the stream's start, a new SSRC, a
restart) arrives at ``anchor_t``; a packet whose first sample sits ``d`` samples after that
packet's is due at ``anchor_t + depth + d / rate``.  :meth:`JitterBuffer.pop_ready` releases,
in sequence order, every packet at the head of the buffer whose time has come.  More than
``max_packets`` buffered forces the head out early (counted ``overflows``).

**Gaps.**  When the head packet is released, the span between the end of what was played and
the packet's position is filled:

* sequence numbers missing (loss): the missing packets are counted ``lost`` and the span is
  *concealed*: the last ``conceal_fade_ms`` (20 ms) played are repeated once with a linear
  fade from full level to zero, then zeros (``concealed_ms``);
* no sequence number missing (comfort noise, DTX): zeros (``silence_ms``).

A packet whose position is before the end of what was played (overlapping timestamps), or
more than ``max_gap_s`` after it, is placed right at the end instead (``timestamp_jumps``):
the timeline never runs backwards and never fills minutes of silence on a sender's whim.

**Drops.**  A packet whose sequence number is already buffered or played is a ``duplicate``;
one whose slot was concealed before it arrived is ``late`` (both dropped).  A packet that
arrives after a later one was received but in time is ``reordered`` (kept).  A payload type
not in the codec map, or at another clock rate than the stream's, is ``unsupported``; a
payload that does not decode is ``malformed`` (as are datagrams the listener could not
parse, reported through :meth:`JitterBuffer.note_malformed`).

**New SSRC, restarts.**  A new SSRC mid-call (``ssrc_changes``), or a sequence number more
than ``max_jump_packets`` away from the expected one (``restarts``, e.g. a sender that
restarted; as in RFC 3550 appendix A.1 the jump is believed only when the next packet
follows it in sequence, else the jumping packet is dropped, counted in ``strays``), plays out what
is buffered, then starts a new epoch: fresh sequence and timestamp
state, the call's timeline continued.  If by the playout clock the new packet belongs later
than the end of what was played (the old sender fell silent a while), the span is filled with
zeros (``silence_ms``), so the stream time stays close to the arrival time and the call's two
directions stay aligned.  Packets still arriving from the SSRC just replaced are ``late``.

**End.**  :meth:`JitterBuffer.idle` says when no packet arrived for ``timeout_s``; the
listener then calls :meth:`JitterBuffer.drain` and closes the stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from appliance.audio.rtp.codecs import Codec, codec_map, decode
from appliance.audio.rtp.packet import MalformedPacket, RtpPacket

_LOST_MEMORY = 4096
"""How many lost sequence numbers are remembered to tell a late packet from a duplicate."""


@dataclass(frozen=True, slots=True)
class JitterConfig:
    depth_ms: float = 60.0
    """Playout delay after the epoch's first arrival: how much reordering and jitter is absorbed."""
    max_packets: int = 50
    """Buffered packets beyond this force the head out."""
    max_jump_packets: int = 1000
    """A sequence number further than this from the expected one is a restart, not a loss."""
    max_gap_s: float = 60.0
    """The longest span a gap is filled over; a timestamp further ahead is a jump."""
    conceal_fade_ms: float = 20.0
    """How much of the last audio a loss repeats, faded to zero."""

    def __post_init__(self) -> None:
        if not (0 <= self.depth_ms <= 10_000 and self.max_packets >= 1
                and self.max_jump_packets >= 1 and 0 < self.max_gap_s <= 3600
                and 0 <= self.conceal_fade_ms <= 1000):
            raise ValueError(f"jitter buffer settings out of range: {self}")


@dataclass(frozen=True, slots=True, eq=False)
class Chunk:
    """Contiguous int16 samples of the stream from ``start_sample`` (since the stream began)."""

    start_sample: int
    samples: np.ndarray
    sample_rate_hz: int

    @property
    def t_s(self) -> float:
        """Stream time of the first sample, in seconds since the stream started."""
        return self.start_sample / self.sample_rate_hz

    @property
    def end_sample(self) -> int:
        return self.start_sample + len(self.samples)


@dataclass(slots=True)
class _Entry:
    ext_seq: int
    ext_ts: int
    samples: np.ndarray


@dataclass(slots=True)
class _Stats:
    received: int = 0
    played: int = 0
    lost: int = 0
    concealed_samples: int = 0
    silence_samples: int = 0
    duplicates: int = 0
    late: int = 0
    reordered: int = 0
    ssrc_changes: int = 0
    restarts: int = 0
    timestamp_jumps: int = 0
    overflows: int = 0
    strays: int = 0
    malformed: int = 0
    unsupported: int = 0


def unwrap(value: int, reference: int, bits: int) -> int:
    """The extended value nearest ``reference`` whose low ``bits`` bits are ``value``."""
    half = 1 << (bits - 1)
    delta = ((value - reference + half) & ((1 << bits) - 1)) - half
    return reference + delta


@dataclass(slots=True)
class _Epoch:
    ssrc: int
    next_seq: int
    highest_seq: int
    ts_ref: int
    ts0: int
    sample0: int
    anchor_t: float
    anchor_sample: int
    lost: dict[int, None] = field(default_factory=dict)


class JitterBuffer:
    """One RTP stream (one call direction) at ``sample_rate_hz``; see the module docstring."""

    def __init__(self, sample_rate_hz: int, codecs: Mapping[int, Codec] | None = None,
                 config: JitterConfig | None = None) -> None:
        self.rate = sample_rate_hz
        self.config = config or JitterConfig()
        self._codecs = codec_map(codecs)
        self._depth_s = self.config.depth_ms / 1000.0
        self._max_gap = int(self.config.max_gap_s * sample_rate_hz)
        self._fade_n = int(self.config.conceal_fade_ms * sample_rate_hz / 1000)
        self._epoch: _Epoch | None = None
        self._prev_ssrc: int | None = None
        self._buf: dict[int, _Entry] = {}
        self._next_sample = 0
        self._out: list[np.ndarray] = []
        self._out_start = 0
        self._tail = np.zeros(0, dtype=np.int16)
        self._last_arrival_s: float | None = None
        self._candidate: tuple[RtpPacket, np.ndarray, float] | None = None
        self._s = _Stats()

    # -- input ---------------------------------------------------------------------------

    def push(self, packet: RtpPacket, now_s: float) -> None:
        """Take one parsed packet that arrived at ``now_s``."""
        self._last_arrival_s = now_s
        codec = self._codecs.get(packet.payload_type)
        if codec is None or (codec.name != "CN" and codec.sample_rate_hz != self.rate):
            self._s.unsupported += 1
            return
        try:
            samples = decode(codec, packet.payload)
        except MalformedPacket:
            self._s.malformed += 1
            return
        self._s.received += 1
        self._accept(packet, samples, now_s)

    def _accept(self, packet: RtpPacket, samples: np.ndarray, now_s: float) -> None:
        ep = self._epoch
        if ep is None:
            ep = self._start_epoch(packet, now_s)
        elif packet.ssrc != ep.ssrc:
            if packet.ssrc == self._prev_ssrc:
                self._s.late += 1
                return
            self._drop_candidate()
            self._s.ssrc_changes += 1
            self._prev_ssrc = ep.ssrc
            ep = self._restart(packet, now_s)
        elif abs(unwrap(packet.sequence, ep.highest_seq, 16) - ep.next_seq) \
                > self.config.max_jump_packets:
            held = self._candidate
            if held is None or (packet.sequence - held[0].sequence) & 0xFFFF != 1:
                self._drop_candidate()
                self._candidate = (packet, samples, now_s)  # on probation (RFC 3550, A.1)
                return
            self._candidate = None
            self._s.restarts += 1
            ep = self._restart(held[0], held[2])
            self._insert(ep, held[0], held[1])
        else:
            self._drop_candidate()
        self._insert(ep, packet, samples)

    def _insert(self, ep: _Epoch, packet: RtpPacket, samples: np.ndarray) -> None:
        ext_seq = unwrap(packet.sequence, ep.highest_seq, 16)
        if ext_seq < ep.next_seq:
            if ext_seq in ep.lost:  # its slot was concealed: late (a second copy: duplicate)
                del ep.lost[ext_seq]
                self._s.late += 1
            else:
                self._s.duplicates += 1
            return
        if ext_seq in self._buf:
            self._s.duplicates += 1
            return
        ext_ts = unwrap(packet.timestamp, ep.ts_ref, 32)
        if ext_seq < ep.highest_seq:
            self._s.reordered += 1
        else:
            ep.highest_seq = ext_seq
            ep.ts_ref = ext_ts
        self._buf[ext_seq] = _Entry(ext_seq, ext_ts, samples)
        while len(self._buf) > self.config.max_packets:
            self._s.overflows += 1
            self._release_head()

    def _drop_candidate(self) -> None:
        if self._candidate is not None:
            self._candidate = None
            self._s.strays += 1

    def note_malformed(self) -> None:
        """Count a datagram of this stream the listener could not parse."""
        self._s.malformed += 1

    # -- output --------------------------------------------------------------------------

    def pop_ready(self, now_s: float) -> Chunk | None:
        """The audio whose playout time has come by ``now_s`` (``None`` if none), contiguous
        with what was returned before."""
        while self._buf:
            head = self._buf[min(self._buf)]
            if now_s < self._due_s(head):
                break
            self._release_head()
        return self._take()

    def drain(self) -> Chunk | None:
        """Everything still buffered, now (the stream ends; a packet still on probation is
        a stray)."""
        self._drop_candidate()
        while self._buf:
            self._release_head()
        return self._take()

    def idle(self, now_s: float, timeout_s: float) -> bool:
        """Whether no packet arrived for ``timeout_s`` (true before the first one)."""
        return self._last_arrival_s is None or now_s - self._last_arrival_s >= timeout_s

    @property
    def played_samples(self) -> int:
        """The stream time reached: samples released so far (or waiting in the next chunk)."""
        return self._next_sample

    @property
    def stats(self) -> dict[str, float]:
        """Counters: received, played, lost, concealed_ms, silence_ms, duplicates, late,
        reordered, ssrc_changes, restarts, strays, timestamp_jumps, overflows, malformed,
        unsupported."""
        s = self._s
        out: dict[str, float] = {name: getattr(s, name) for name in s.__slots__
                                 if not name.endswith("_samples")}
        out["concealed_ms"] = s.concealed_samples * 1000.0 / self.rate
        out["silence_ms"] = s.silence_samples * 1000.0 / self.rate
        return out

    # -- inside --------------------------------------------------------------------------

    def _start_epoch(self, packet: RtpPacket, now_s: float) -> _Epoch:
        self._epoch = _Epoch(ssrc=packet.ssrc, next_seq=packet.sequence,
                             highest_seq=packet.sequence, ts_ref=packet.timestamp,
                             ts0=packet.timestamp, sample0=self._next_sample, anchor_t=now_s,
                             anchor_sample=self._next_sample)
        return self._epoch

    def _restart(self, packet: RtpPacket, now_s: float) -> _Epoch:
        """Play out the old epoch, fill up to where the playout clock says the new packet
        belongs, start the new epoch."""
        old = self._epoch
        assert old is not None
        while self._buf:
            self._release_head()
        expected = old.anchor_sample + int((now_s - old.anchor_t) * self.rate)
        fill = min(expected - self._next_sample, self._max_gap)
        if fill > 0:
            self._s.silence_samples += fill
            self._emit(np.zeros(fill, dtype=np.int16))
        return self._start_epoch(packet, now_s)

    def _pos(self, entry: _Entry) -> int:
        """Where ``entry`` starts on the timeline: by its timestamp, or right at the end of
        what was played if the timestamp goes backwards or too far ahead."""
        ep = self._epoch
        assert ep is not None
        pos = ep.sample0 + entry.ext_ts - ep.ts0
        gap = pos - self._next_sample
        return pos if 0 <= gap <= self._max_gap else self._next_sample

    def _due_s(self, entry: _Entry) -> float:
        ep = self._epoch
        assert ep is not None
        return ep.anchor_t + self._depth_s + (self._pos(entry) - ep.anchor_sample) / self.rate

    def _release_head(self) -> None:
        ep = self._epoch
        assert ep is not None
        entry = self._buf.pop(min(self._buf))
        pos = self._pos(entry)
        if pos != ep.sample0 + entry.ext_ts - ep.ts0:  # a jump: re-base the timestamps
            self._s.timestamp_jumps += 1
            ep.ts0, ep.sample0 = entry.ext_ts, pos
        missing = entry.ext_seq - ep.next_seq
        if missing > 0:
            self._s.lost += missing
            for seq in range(max(ep.next_seq, entry.ext_seq - _LOST_MEMORY), entry.ext_seq):
                ep.lost[seq] = None
            while len(ep.lost) > _LOST_MEMORY:
                del ep.lost[next(iter(ep.lost))]
        gap = pos - self._next_sample
        if gap > 0:
            if missing > 0:
                self._s.concealed_samples += gap
                self._emit(self._conceal(gap))
            else:
                self._s.silence_samples += gap
                self._emit(np.zeros(gap, dtype=np.int16))
        self._emit(entry.samples)
        self._s.played += 1
        ep.next_seq = entry.ext_seq + 1

    def _conceal(self, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.int16)
        k = min(n, len(self._tail))
        if k:
            ramp = 1.0 - np.arange(len(self._tail)) / len(self._tail)
            out[:k] = (self._tail * ramp)[:k].astype(np.int16)
        return out

    def _emit(self, samples: np.ndarray) -> None:
        if not len(samples):
            return
        if not self._out:
            self._out_start = self._next_sample
        self._out.append(samples)
        self._next_sample += len(samples)
        if self._fade_n:
            self._tail = np.concatenate([self._tail, samples[-self._fade_n:]])[-self._fade_n:]

    def _take(self) -> Chunk | None:
        if not self._out:
            return None
        samples = np.concatenate(self._out)
        self._out.clear()
        return Chunk(self._out_start, samples, self.rate)
