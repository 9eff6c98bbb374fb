"""Which audio the recognizer gets: speech only, with a pre-roll and a post-roll.

Feeding Vosk only around speech saves most of its CPU on a call (half of a call is the other
party talking or silence).  :class:`SpeechGate` is a pure state machine over 32 ms frames and
the party's speech state; :class:`TimeMap` turns the recognizer's time (seconds of audio fed
to it, cumulative — Vosk keeps counting across utterances) back into call time.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class GateOutput:
    """Audio to feed (possibly several frames, after an onset) and whether a segment ended."""

    t_s: float
    """Call time of the first sample of ``pcm`` (s)."""
    pcm: np.ndarray
    """int16 samples to feed, possibly empty."""
    end_of_segment: bool


class SpeechGate:
    """Opens on speech (flushing ``preroll_s`` of earlier audio) and closes ``postroll_s``
    after the speech ends.  The segment ends (the recognizer finalises it, which costs a
    lattice pass) only after ``segment_gap_s`` of quiet, so the pauses inside a sentence do
    not each pay for a finalisation: shorter gaps are simply cut out of what is fed."""

    def __init__(
        self, frame_s: float, preroll_s: float, postroll_s: float, segment_gap_s: float = 0.0
    ) -> None:
        self.frame_s = frame_s
        self._pre: deque[tuple[float, np.ndarray]] = deque(
            maxlen=max(0, round(preroll_s / frame_s)) or None
        )
        self._pre_n = round(preroll_s / frame_s)
        self._post_n = round(postroll_s / frame_s)
        self._gap_n = max(self._post_n, round(segment_gap_s / frame_s))
        self._open = False
        self._in_segment = False
        self._quiet_frames = 0
        self.fed_s = 0.0
        self.total_s = 0.0

    @property
    def is_open(self) -> bool:
        return self._open

    def push(self, t0_s: float, frame: np.ndarray, speaking: bool) -> GateOutput:
        self.total_s += self.frame_s
        if speaking:
            self._quiet_frames = 0
            self._in_segment = True
            if not self._open:
                self._open = True
                parts = [*self._pre, (t0_s, frame)]
                self._pre.clear()
                pcm = np.concatenate([p for _, p in parts])
                self.fed_s += len(parts) * self.frame_s
                return GateOutput(parts[0][0], pcm, False)
        elif self._in_segment:
            self._quiet_frames += 1
            if self._open and self._quiet_frames > self._post_n:
                self._open = False
            if not self._open:
                self._remember(t0_s, frame)
                if self._quiet_frames > self._gap_n:
                    self._in_segment = False
                    return GateOutput(t0_s, frame[:0], True)
                return GateOutput(t0_s, frame[:0], False)
        if self._open:
            self.fed_s += self.frame_s
            return GateOutput(t0_s, frame, False)
        self._remember(t0_s, frame)
        return GateOutput(t0_s, frame[:0], False)

    def _remember(self, t0_s: float, frame: np.ndarray) -> None:
        if self._pre_n > 0:
            self._pre.append((t0_s, frame.copy()))


class TimeMap:
    """Maps recognizer time (seconds fed, cumulative) to call time, segment by segment."""

    def __init__(self) -> None:
        self._fed: list[float] = []
        self._call: list[float] = []
        self.fed_s = 0.0

    def add(self, call_t_s: float, n_samples: int, rate_hz: int = 16000) -> None:
        """Record that ``n_samples`` starting at call time ``call_t_s`` were fed next."""
        if n_samples <= 0:
            return
        if self._fed and abs((self.fed_s - self._fed[-1]) - (call_t_s - self._call[-1])) < 1e-6:
            self.fed_s += n_samples / rate_hz  # contiguous with the current segment
            return
        self._fed.append(self.fed_s)
        self._call.append(call_t_s)
        self.fed_s += n_samples / rate_hz

    def to_call(self, fed_t_s: float) -> float:
        if not self._fed:
            return fed_t_s
        i = max(0, bisect.bisect_right(self._fed, fed_t_s) - 1)
        return self._call[i] + (fed_t_s - self._fed[i])
