"""Conversation state from voice activity: talk spurts per party and the echo gate.

Pure state machines over seconds and probabilities; no audio.  The engine feeds them one
32 ms frame at a time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Spurt:
    """A talk spurt: one party speaking from ``start_s`` to ``end_s`` (seconds)."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class EchoGate:
    """Double-talk test for one party: is this frame the other party's echo?

    Each channel carries a faint copy of the other party (sidetone, line echo), delayed by
    up to ~100 ms.  Two tests, after the Geigel detector and echo-canceller coherence checks:

    * level: a frame more than ``hard_margin_db`` below the other party's loudest recent
      frame is echo, whatever it contains;
    * coherence: a frame more than ``margin_db`` below it is echo if its waveform matches a
      delayed copy of the other channel (normalised cross-correlation ≥ ``min_coherence``
      over lags 0..``max_delay_s``).  A quiet party really talking over a loud one does not
      match, so their speech is kept.
    """

    def __init__(
        self,
        margin_db: float,
        window_frames: int,
        *,
        hard_margin_db: float = 30.0,
        min_coherence: float = 0.45,
        max_delay_samples: int = 1600,
        frame_samples: int = 512,
    ) -> None:
        self.margin_db = margin_db
        self.hard_margin_db = max(hard_margin_db, margin_db)
        self.min_coherence = min_coherence
        self._other_levels: deque[float] = deque(maxlen=max(1, window_frames + 1))
        self._lags = max_delay_samples
        self._n = frame_samples
        # the other channel's recent frames, joined only when the coherence test needs them
        # (rarely): the last ``_other_len`` samples, zeros before the first frame
        self._other_len = max_delay_samples + frame_samples
        self._recent: deque[np.ndarray] = deque()
        self._recent_n = 0
        self._nfft = 1 << int(np.ceil(np.log2(max_delay_samples + 2 * frame_samples)))
        self.last_coherence = 0.0

    def is_echo(
        self,
        own_level_dbfs: float,
        other_level_dbfs: float,
        own: np.ndarray | None = None,
        other: np.ndarray | None = None,
    ) -> bool:
        """Judge one frame; ``own``/``other`` are the two frames' samples (same length).
        ``other`` is kept (not copied) for later frames' tests: do not modify it."""
        self._other_levels.append(other_level_dbfs)
        if other is not None:
            n = len(other)
            self._other_len = max(self._other_len, n)
            self._recent.append(other)
            self._recent_n += n
            while self._recent_n - len(self._recent[0]) >= self._other_len:
                self._recent_n -= len(self._recent.popleft())
        gap = max(self._other_levels) - own_level_dbfs
        if gap <= self.margin_db:
            return False
        if gap > self.hard_margin_db or own is None or other is None:
            return True
        self.last_coherence = self._coherence(own.astype(np.float64))
        return self.last_coherence >= self.min_coherence

    def _other(self) -> np.ndarray:
        """The other channel's last ``_other_len`` samples (float64)."""
        parts = [np.asarray(r, dtype=np.float64) for r in self._recent]
        if self._recent_n < self._other_len:
            parts.insert(0, np.zeros(self._other_len - self._recent_n))
        return np.concatenate(parts)[-self._other_len :]

    def _coherence(self, a: np.ndarray) -> float:
        """Peak normalised cross-correlation of ``a`` with the other channel's recent past."""
        n, lags, b = len(a), self._lags, self._other()
        if len(b) < n + lags:
            return 0.0
        fa = np.fft.rfft(a, self._nfft)
        fb = np.fft.rfft(b, self._nfft)
        c = np.fft.irfft(fb * np.conj(fa), self._nfft)[: lags + 1]
        e = np.concatenate([[0.0], np.cumsum(b * b)])
        eb = e[n : n + lags + 1] - e[: lags + 1]
        ea = float(np.dot(a, a))
        if ea <= 0.0:
            return 0.0
        return float(np.max(c / np.sqrt(ea * eb + 1e-9)))


class SpeechTracker:
    """Hysteresis + hangover over per-frame speech probabilities → talk spurts and turns.

    A spurt starts on a frame with ``prob >= on`` and continues while frames reach ``off``;
    it ends once ``hangover_s`` has passed without such a frame, and is then dated to the
    end of its last active frame.  ``active`` says whether the current frame itself is
    speech (used for overlap and speech-time measures, which must not include hangover).

    A *turn* is a run of spurts whose pauses (from one spurt's last active frame to the
    next spurt's start) are at most ``turn_gap_s``: real speakers pause 0.25-0.4 s inside a
    sentence.  ``turn_start_s`` is the start of the turn the current spurt belongs to.
    """

    def __init__(self, on: float, off: float, hangover_s: float,
                 turn_gap_s: float = 0.0) -> None:
        self.on = on
        self.off = off
        self.hangover_s = hangover_s
        self.turn_gap_s = max(turn_gap_s, hangover_s)
        self.speaking = False
        self.active = False
        self.spurt_start_s: float | None = None
        self.turn_start_s: float | None = None
        self._last_active_end_s = 0.0

    def turn_open(self, t_s: float) -> bool:
        """The party's turn is still open at ``t_s``: speaking, or a pause that may still
        turn out to be inside the turn."""
        return self.turn_start_s is not None and (
            self.speaking or t_s - self._last_active_end_s <= self.turn_gap_s)

    @property
    def last_active_end_s(self) -> float:
        """End of the party's latest active speech frame (s)."""
        return self._last_active_end_s

    def update(self, t0_s: float, t1_s: float, prob: float, blocked: bool) -> Spurt | None:
        """Advance by the frame [t0_s, t1_s); returns the spurt that ended, if any."""
        ended: Spurt | None = None
        threshold = self.off if self.speaking else self.on
        self.active = (not blocked) and prob >= threshold
        if self.active:
            if not self.speaking:
                self.speaking = True
                self.spurt_start_s = t0_s
                if (self.turn_start_s is None
                        or t0_s - self._last_active_end_s > self.turn_gap_s + 1e-9):
                    self.turn_start_s = t0_s
            self._last_active_end_s = t1_s
        elif self.speaking and t1_s - self._last_active_end_s >= self.hangover_s:
            assert self.spurt_start_s is not None
            ended = Spurt(self.spurt_start_s, self._last_active_end_s)
            self.speaking = False
            self.spurt_start_s = None
        return ended

    def close(self) -> Spurt | None:
        """End of stream: the open spurt, if any."""
        if not self.speaking or self.spurt_start_s is None:
            return None
        spurt = Spurt(self.spurt_start_s, self._last_active_end_s)
        self.speaking = False
        self.spurt_start_s = None
        return spurt


@dataclass(frozen=True, slots=True)
class PartyFrame:
    """What the engine knows about one party during one frame."""

    prob: float
    """Silero speech probability (0..1)."""
    level_dbfs: float
    """RMS level of the frame (dBFS)."""
    echo: bool
    """The frame is explained by the other party's echo."""
    active: bool
    """The frame itself is speech (no hangover)."""
    speaking: bool
    """Inside a talk spurt (with hangover)."""
    spurt_start_s: float | None
    """Start of the current talk spurt (s), if speaking."""
    f0_hz: float
    """Median pitch of the voiced hops of the frame (Hz), NaN if none."""
    digital_silence: bool
    """Every hop of the frame was digital silence (a muted microphone)."""
    noise_floor_dbfs: float
    """Running noise floor (dBFS)."""
    music: bool
    """The music detector hears music on this channel."""
    nuclei_s: tuple[float, ...]
    """Syllable nuclei confirmed during this frame (their times, s)."""
    turn_start_s: float | None = None
    """Start of the party's current turn (s): spurts separated by pauses up to
    ``[vad] turn_gap_s`` are one turn; None before the party first speaks."""
    in_turn: bool = False
    """Speaking, or in a pause short enough to still be inside the turn."""
    band_level_db: float = -120.0
    """Level of the 300-2500 Hz band over the frame (dBFS): the same on wideband and
    telephone-band audio, so the tone rule compares like with like."""


@dataclass(frozen=True, slots=True)
class HoldView:
    """The hold state as the cue rules see it."""

    on_hold: bool
    start_s: float | None
    hold_type: str | None
    """"music", "muted", "unmuted" or None while undecided."""


@dataclass(frozen=True, slots=True)
class FrameContext:
    """Everything the cue rules read for one frame."""

    t0_s: float
    t_s: float
    """End of the frame: how much audio the engine has seen (s)."""
    agent: PartyFrame
    customer: PartyFrame
    hold: HoldView

    @property
    def dt_s(self) -> float:
        return self.t_s - self.t0_s

    def party(self, name: str) -> PartyFrame:
        return self.agent if name == "agent" else self.customer
