"""Speaking rate (rule 1): articulation rate over a rolling window of the agent's speech.

The acoustic measure is syllable nuclei per second of speech (pauses excluded).  When the
recognizer is running, ``on_words`` adds words per minute over the same kind of window and
the cue carries both.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from appliance.config import RateConfig
from appliance.cue_payloads import RateState, SpeakingRate
from appliance.engine.conversation import FrameContext
from appliance.events import PARTIES, Cue, Party, WordEvent


class _Window:
    """Rolling window of (speech seconds, syllables) over the last ``span_s`` of speech."""

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self._items: deque[tuple[float, int]] = deque()
        self.speech_s = 0.0
        self.syllables = 0

    def add(self, speech_s: float, syllables: int) -> None:
        self._items.append((speech_s, syllables))
        self.speech_s += speech_s
        self.syllables += syllables
        while self._items and self.speech_s - self._items[0][0] >= self.span_s:
            s, n = self._items.popleft()
            self.speech_s -= s
            self.syllables -= n

    @property
    def rate(self) -> float:
        return self.syllables / self.speech_s if self.speech_s > 0 else 0.0


class RateRule:
    def __init__(self, cfg: RateConfig) -> None:
        self.cfg = cfg
        self._win = _Window(cfg.window_speech_s)
        self._speech_s: dict[Party, float] = {"agent": 0.0, "customer": 0.0}
        self._syll: dict[Party, int] = {"agent": 0, "customer": 0}
        self._words: dict[Party, int] = {"agent": 0, "customer": 0}
        self._word_speech_s: deque[tuple[float, float]] = deque()  # (end_s, duration) agent
        self._state: RateState = "ok"
        self._last_cue_s = -1e9
        self._next_eval_s = 0.0
        self._window_min: float | None = None
        self._window_max: float | None = None

    def on_frame(self, ctx: FrameContext) -> list[Cue]:
        for p in PARTIES:
            pf = ctx.party(p)
            if ctx.hold.on_hold and p == "agent":
                continue
            n = len(pf.nuclei_s) if pf.speaking else 0
            self._syll[p] += n
            if pf.active:
                self._speech_s[p] += ctx.dt_s
            if p == "agent" and (pf.active or n):
                self._win.add(ctx.dt_s if pf.active else 0.0, n)
        if ctx.t_s < self._next_eval_s:
            return []
        self._next_eval_s = ctx.t_s + 1.0
        if self._win.speech_s < self.cfg.min_speech_s:
            return []
        rate = self._win.rate
        self._window_min = rate if self._window_min is None else min(self._window_min, rate)
        self._window_max = rate if self._window_max is None else max(self._window_max, rate)
        return self._judge(ctx.t_s, rate)

    def _judge(self, t_s: float, rate: float) -> list[Cue]:
        lo, hi, hy = self.cfg.min_syllables_per_s, self.cfg.max_syllables_per_s, self.cfg.hysteresis
        state = self._state
        if rate > hi:
            state = "fast"
        elif rate < lo:
            state = "slow"
        elif lo + hy <= rate <= hi - hy:
            state = "ok"
        if state == self._state:
            return []
        if state != "ok" and t_s - self._last_cue_s < self.cfg.cooldown_s:
            return []
        self._state = state
        wpm = self._wpm(t_s)
        data = SpeakingRate(syllables_per_s=round(rate, 2),
                            window_speech_s=round(self._win.speech_s, 1),
                            band_syllables_per_s=(lo, hi), state=state,
                            wpm=None if wpm is None else round(wpm))
        if state == "ok":
            return [Cue(t_s, "agent", "info", "Pace is good again", data)]
        self._last_cue_s = t_s
        msg = "Speaking fast: slow down a little" if state == "fast" else "Speaking slowly"
        return [Cue(t_s, "agent", "warn", msg, data)]

    def live(self, t_s: float) -> dict[str, Any] | None:
        """The rate gauge: None until enough agent speech is in the window."""
        if self._win.speech_s < self.cfg.min_speech_s:
            return None
        wpm = self._wpm(t_s)
        return {"syllables_per_s": round(self._win.rate, 2),
                "wpm": None if wpm is None else round(wpm),
                "band": [self.cfg.min_syllables_per_s, self.cfg.max_syllables_per_s],
                "state": self._state}

    def on_words(self, t_s: float, words: list[WordEvent]) -> list[Cue]:
        for w in words:
            self._words[w.party] += 1
            if w.party == "agent":
                self._word_speech_s.append((w.end_s, max(0.05, w.end_s - w.start_s)))
        self._forget_words(t_s)
        return []

    def _forget_words(self, t_s: float) -> None:
        """Drop words no later rate can count (engine time only moves forward), so the
        deque stays as small as the window, however long the call."""
        cutoff = t_s - 2 * self.cfg.window_speech_s
        while self._word_speech_s and self._word_speech_s[0][0] < cutoff:
            self._word_speech_s.popleft()

    def _wpm(self, t_s: float) -> float | None:
        self._forget_words(t_s)
        recent = [d for end, d in self._word_speech_s if end >= t_s - 2 * self.cfg.window_speech_s]
        if len(recent) < 10 or self._win.speech_s <= 0:
            return None
        return 60.0 * len(recent) / max(self._win.speech_s, sum(recent))

    def close(self, t_s: float) -> list[Cue]:
        return []

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p in PARTIES:
            sp = self._speech_s[p]
            out[p] = {
                "speech_s": round(sp, 1),
                "syllables": self._syll[p],
                "syllables_per_s": round(self._syll[p] / sp, 2) if sp >= 1.0 else None,
                "words": self._words[p],
                "wpm": round(60.0 * self._words[p] / sp) if sp >= 5.0 and self._words[p] else None,
            }
        if self._window_min is not None and self._window_max is not None:
            out["agent"]["window_min"] = round(self._window_min, 2)
            out["agent"]["window_max"] = round(self._window_max, 2)
        return {"rate": out}
