"""Conversation state from voice activity: talk spurts per party and the echo gate.

Pure state machines over seconds and probabilities; no audio.  The engine feeds them one
32 ms frame at a time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Spurt:
    """A talk spurt: one party speaking from ``start_s`` to ``end_s`` (seconds)."""

    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class EchoGate:
    """Geigel-style double-talk test for one party.

    Each channel carries a faint copy of the other party (sidetone, line echo), delayed by
    tens of milliseconds.  A frame of party A whose level is more than ``margin_db`` below
    the loudest recent frame of party B is taken for that echo, not for A's own speech.
    """

    def __init__(self, margin_db: float, window_frames: int) -> None:
        self.margin_db = margin_db
        self._other: deque[float] = deque(maxlen=max(1, window_frames + 1))

    def is_echo(self, own_level_dbfs: float, other_level_dbfs: float) -> bool:
        self._other.append(other_level_dbfs)
        return own_level_dbfs < max(self._other) - self.margin_db


class SpeechTracker:
    """Hysteresis + hangover over per-frame speech probabilities → talk spurts.

    A spurt starts on a frame with ``prob >= on`` and continues while frames reach ``off``;
    it ends once ``hangover_s`` has passed without such a frame, and is then dated to the
    end of its last active frame.  ``active`` says whether the current frame itself is
    speech (used for overlap and speech-time measures, which must not include hangover).
    """

    def __init__(self, on: float, off: float, hangover_s: float) -> None:
        self.on = on
        self.off = off
        self.hangover_s = hangover_s
        self.speaking = False
        self.active = False
        self.spurt_start_s: float | None = None
        self._last_active_end_s = 0.0

    def update(self, t0_s: float, t1_s: float, prob: float, blocked: bool) -> Spurt | None:
        """Advance by the frame [t0_s, t1_s); returns the spurt that ended, if any."""
        ended: Spurt | None = None
        threshold = self.off if self.speaking else self.on
        self.active = (not blocked) and prob >= threshold
        if self.active:
            if not self.speaking:
                self.speaking = True
                self.spurt_start_s = t0_s
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
