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

Nothing here reads a clock: skew is measured in audio, so the aligner behaves the same
however fast it is fed.
"""

from __future__ import annotations

import numpy as np

from appliance.audio.resample import StreamResampler, to_int16
from appliance.events import PARTIES, Party
from appliance.stream.blocks import PIPELINE_RATE_HZ, PartyBlock

BLOCK_SAMPLES = 512
"""Samples per block at the pipeline rate (32 ms: the engine's frame)."""


BACKLOG_SAMPLES = PIPELINE_RATE_HZ // 10
"""A filled leg whose new audio puts it more than this (0.1 s) ahead of the other is
delivering its backlog; less is the ordinary give and take of two live legs."""


class _Leg:
    __slots__ = ("debt", "ended", "filled", "late", "pcm", "resampler")

    def __init__(self, rate_hz: int) -> None:
        self.resampler = StreamResampler(rate_hz, PIPELINE_RATE_HZ)
        self.pcm = np.zeros(0, np.int16)
        self.debt = 0  # samples already filled with silence, to drop from what comes
        self.ended = False
        self.filled = 0
        self.late = 0


class LegAligner:
    def __init__(self, rate_hz: int, *, max_skew_s: float = 0.3,
                 block_samples: int = BLOCK_SAMPLES) -> None:
        if rate_hz not in (8000, 16000):
            raise ValueError(f"a PBX leg is 8 or 16 kHz, not {rate_hz} Hz")
        self.rate_hz = rate_hz
        self.block = block_samples
        self.max_skew = round(max_skew_s * PIPELINE_RATE_HZ)
        self._legs: dict[Party, _Leg] = {p: _Leg(rate_hz) for p in PARTIES}
        self._t = 0  # samples emitted per party

    def push(self, party: Party, samples: np.ndarray) -> list[PartyBlock]:
        """A leg's audio (int16 at the leg's rate, any length); the blocks now complete."""
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
        return self._cut()

    def end_leg(self, party: Party) -> list[PartyBlock]:
        """The leg hung up: from now on it is silence, and the other leg sets the pace."""
        leg = self._legs[party]
        if not leg.ended:
            tail = to_int16(leg.resampler.process(np.zeros(0, np.float32), last=True))
            pay = min(leg.debt, len(tail))
            leg.late += pay
            leg.pcm = np.concatenate([leg.pcm, tail[pay:]])
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

    def _cut(self) -> list[PartyBlock]:
        a, c = self._legs["agent"], self._legs["customer"]
        for lag, lead in ((a, c), (c, a)):
            gap = len(lead.pcm) - len(lag.pcm)
            if gap > 0 and (lag.ended or gap > self.max_skew):  # stalled or gone: silence
                lag.pcm = np.concatenate([lag.pcm, np.zeros(gap, np.int16)])
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
