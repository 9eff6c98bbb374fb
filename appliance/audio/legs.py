"""Two legs of a call, one block stream: what every PBX listener does before the call path.

A PBX sends each direction of a call on its own (two AudioSocket connections, two RTP
streams, or the two channels of one WebSocket stream), at 8 or 16 kHz.  The call path wants
:class:`~appliance.stream.blocks.PartyBlock` s: both parties at the pipeline rate, the same
length, on one timeline.  :class:`LegAligner` resamples each leg (soxr, chunk-size
invariant) and cuts blocks while both legs have audio.

The legs never arrive perfectly in step, and one may stall (packet loss, a slow socket, a
leg that hung up).  Waiting for it would hold every cue of the call back, so a leg that
falls more than ``max_skew_s`` behind the other is **filled with silence** up to the other
leg's end, and counted (``filled_s``).  If its audio for that span arrives after all (the
backlog of a stall, which would put it ahead of the other leg), that much is dropped
(``late_s``, counted), so the two legs stay on the timeline the customer and the agent
lived and the cues stay close to real time; a leg that merely runs behind (it joined
late) keeps all of its audio.  A leg that ended is silence from then on.

Nothing here reads a clock.  A leg is behind when the other has more than ``max_skew_s``
of audio it has not matched; it has *stalled* when, besides, the oldest of that unmatched
audio arrived more than ``max_skew_s`` ago by the caller's ``now_s`` (monotonic seconds
given with each push).  So a burst — a listener that delivers half a second of one leg and
then of the other in one turn, after its event loop was held up — is not a stall: the other
leg's audio of that span comes in the same turn and keeps all of it.  Without ``now_s``
(tests, files) skew is measured in audio alone.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from appliance.audio.resample import StreamResampler, to_int16
from appliance.events import PARTIES, Party
from appliance.stream.blocks import PIPELINE_RATE_HZ, PartyBlock

BLOCK_SAMPLES = 512
"""Samples per block at the pipeline rate (32 ms: the engine's frame)."""


BACKLOG_SAMPLES = PIPELINE_RATE_HZ // 10
"""A filled leg whose new audio puts it more than this (0.1 s) ahead of the other is
delivering its backlog; less is the ordinary give and take of two live legs."""


MAX_CHUNKS = 4096
"""Arrival stamps kept per leg (a leg this far ahead of the other is filled long before)."""


class _Leg:
    __slots__ = ("arrivals", "debt", "ended", "filled", "late", "pcm", "resampler", "total")

    def __init__(self, rate_hz: int) -> None:
        self.resampler = StreamResampler(rate_hz, PIPELINE_RATE_HZ)
        self.pcm = np.zeros(0, np.int16)
        self.debt = 0  # samples already filled with silence, to drop from what comes
        self.ended = False
        self.filled = 0
        self.late = 0
        self.total = 0  # samples this leg has had on the timeline (audio and fills)
        self.arrivals: deque[tuple[int, float]] = deque(maxlen=MAX_CHUNKS)
        """(``total`` after a chunk, when it arrived): how old the unmatched audio is."""


class LegAligner:
    def __init__(self, rate_hz: int, *, max_skew_s: float = 0.3,
                 block_samples: int = BLOCK_SAMPLES) -> None:
        if rate_hz not in (8000, 16000):
            raise ValueError(f"a PBX leg is 8 or 16 kHz, not {rate_hz} Hz")
        self.rate_hz = rate_hz
        self.block = block_samples
        self.max_skew = round(max_skew_s * PIPELINE_RATE_HZ)
        self.max_skew_s = max_skew_s
        self._legs: dict[Party, _Leg] = {p: _Leg(rate_hz) for p in PARTIES}
        self._t = 0  # samples emitted per party

    def push(self, party: Party, samples: np.ndarray,
             now_s: float | None = None) -> list[PartyBlock]:
        """A leg's audio (int16 at the leg's rate, any length), arrived at ``now_s``; the
        blocks now complete."""
        leg = self._legs[party]
        if leg.ended or not len(samples):
            return []
        y = to_int16(leg.resampler.process(samples.astype(np.float32) / 32768.0))
        if leg.debt:
            # audio for a span already filled with silence: the backlog of a stall, which
            # would put this leg ahead of the other; dropped (counted).  A leg that simply
            # runs a little behind (it joined late, it is delivered live) never gets ahead
            # and loses nothing.
            other = self._legs["customer" if party == "agent" else "agent"]
            ahead = len(leg.pcm) + len(y) - len(other.pcm)
            pay = min(leg.debt, ahead, len(y)) if ahead > BACKLOG_SAMPLES else 0
            leg.debt -= pay
            leg.late += pay
            y = y[pay:]
        leg.pcm = np.concatenate([leg.pcm, y]) if len(leg.pcm) else y
        leg.total += len(y)
        if now_s is not None and len(y):
            leg.arrivals.append((leg.total, now_s))
        return self._cut(now_s)

    def end_leg(self, party: Party) -> list[PartyBlock]:
        """The leg hung up: from now on it is silence, and the other leg sets the pace."""
        leg = self._legs[party]
        if not leg.ended:
            tail = to_int16(leg.resampler.process(np.zeros(0, np.float32), last=True))
            pay = min(leg.debt, len(tail))
            leg.late += pay
            leg.pcm = np.concatenate([leg.pcm, tail[pay:]])
            leg.total += len(tail) - pay
            leg.debt = 0
            leg.ended = True
        return self._cut()

    def flush(self) -> list[PartyBlock]:
        """The end of the call: what is left, the shorter leg padded with silence, the last
        block padded to a whole block."""
        out: list[PartyBlock] = []
        for p in PARTIES:
            out += self.end_leg(p)
        n = max(len(leg.pcm) for leg in self._legs.values())
        if n == 0:
            return out
        n = -(-n // self.block) * self.block
        for leg in self._legs.values():
            leg.total += n - len(leg.pcm)
            leg.pcm = np.concatenate([leg.pcm, np.zeros(n - len(leg.pcm), np.int16)])
        return out + self._cut()

    def stats(self) -> dict[str, dict[str, float]]:
        """Per party: seconds filled with silence (the leg lagged or ended) and seconds of
        its audio dropped because they arrived after their span had been filled."""
        return {p: {"filled_s": round(leg.filled / PIPELINE_RATE_HZ, 3),
                    "late_s": round(leg.late / PIPELINE_RATE_HZ, 3)}
                for p, leg in self._legs.items()}

    @property
    def t_s(self) -> float:
        """Audio time of the next block."""
        return self._t / PIPELINE_RATE_HZ

    def _stalled(self, lag: _Leg, lead: _Leg, gap: int, now_s: float | None) -> bool:
        """The lag leg is gone, or behind by more than the skew for longer than it."""
        if lag.ended:
            return True
        if gap <= self.max_skew:
            return False
        while lead.arrivals and lead.arrivals[0][0] <= lag.total:
            lead.arrivals.popleft()  # matched by the lag leg already
        if now_s is None or not lead.arrivals:
            return True
        return now_s - lead.arrivals[0][1] > self.max_skew_s

    def _cut(self, now_s: float | None = None) -> list[PartyBlock]:
        a, c = self._legs["agent"], self._legs["customer"]
        for lag, lead in ((a, c), (c, a)):
            gap = len(lead.pcm) - len(lag.pcm)
            if gap > 0 and self._stalled(lag, lead, gap, now_s):  # stalled or gone: silence
                lag.pcm = np.concatenate([lag.pcm, np.zeros(gap, np.int16)])
                lag.total += gap
                lag.filled += gap
                if not lag.ended:
                    lag.debt += gap
        n = min(len(a.pcm), len(c.pcm)) // self.block * self.block
        out = []
        for i in range(0, n, self.block):
            out.append(PartyBlock(self._t / PIPELINE_RATE_HZ, a.pcm[i:i + self.block],
                                  c.pcm[i:i + self.block]))
            self._t += self.block
        if n:
            a.pcm, c.pcm = a.pcm[n:], c.pcm[n:]
        return out
