"""Tone (rule 4): raised voice / monotone for the agent, agitation for the customer.

Each speaker is compared with their *own* running baseline: the upper quartile of level (the
loud part of speech, which the soft frames between words do not move) and the median of
pitch over their recent voiced speech (``baseline_span_s``).  Frames enter the baseline only after
a delay (``_DELAY_S``) so an episode does not dilute its own reference.  The level is that of
the 300-2500 Hz band, so a telephone line's band limits change nothing by themselves.

Raised = over the last ``window_s`` seconds of speech, the level is ``raised_level_db``
above the baseline, or ``_PITCH_CREDIT_DB`` less when the pitch rose too — by at least
``raised_pitch_st`` *and* by the speaker's own pitch spread (robust standard deviation of
the baseline): an expressive speaker's ordinary melody is not a rise.  Real raised voices
rise in level first; many (most men) rise in pitch by well under 1.5 semitones, so pitch
only ever helps.  The state must hold on two evaluations in a row (0.25 s apart).  From
``_EARLY_BASELINE_S`` of speech the rule already works, with a level margin that shrinks to
nothing at ``min_baseline_s``.  Monotone = pitch spread (robust standard deviation, in
semitones) below ``monotone_st`` over ``monotone_window_s`` seconds of the agent's speech.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from appliance.config import ToneConfig
from appliance.cue_payloads import Tone
from appliance.engine.conversation import FrameContext
from appliance.events import PARTIES, Cue, Party

_DELAY_S = 3.0
_FRAME_GUESS_S = 0.032
_EVAL_S = 0.25
_PERSIST_EVALS = 2
_PITCH_CREDIT_DB = 1.0
_EARLY_BASELINE_S = 2.0
_EARLY_MARGIN_DB = 3.0
#: A median pitch "rise" beyond this is an octave error of the pitch tracker (telephone
#: band, missing fundamental), not a voice: it earns no credit.
_MAX_PITCH_RISE_ST = 7.0
#: Levels are compared at their upper quartile: the loud part of speech, which the soft
#: frames between words (as many as the voice activity happens to keep) do not move.
_LEVEL_PCT = 75.0


def semitones(f0_hz: float) -> float:
    """Pitch in semitones relative to 100 Hz."""
    return 12.0 * math.log2(f0_hz / 100.0)


class _Speaker:
    def __init__(self, cfg: ToneConfig) -> None:
        n_base = int(cfg.baseline_span_s / _FRAME_GUESS_S)
        self.baseline: deque[tuple[float, float]] = deque(maxlen=n_base)
        self.delay: deque[tuple[float, float, float]] = deque()  # (t, level, st)
        self.recent: deque[tuple[float, float, float]] = deque()  # (t, level, st)
        n_mono = int(cfg.monotone_window_s / _FRAME_GUESS_S)
        self.mono: deque[float] = deque(maxlen=n_mono)
        self.raised_armed = True
        self.raised_run = 0
        self.mono_armed = True
        self.last_cue_s = -1e9
        self.raised_count = 0
        self.monotone_count = 0
        self.last_state: tuple[str, float] | None = None


class ToneRule:
    def __init__(self, cfg: ToneConfig) -> None:
        self.cfg = cfg
        self._sp: dict[Party, _Speaker] = {p: _Speaker(cfg) for p in PARTIES}
        self._next_eval_s = 0.0
        self._next_mono_s = 0.0

    def on_frame(self, ctx: FrameContext) -> list[Cue]:
        t = ctx.t_s
        for p in PARTIES:
            pf = ctx.party(p)
            sp = self._sp[p]
            if pf.active and not math.isnan(pf.f0_hz) and not (p == "agent" and ctx.hold.on_hold):
                st = semitones(pf.f0_hz)
                sp.recent.append((t, pf.band_level_db, st))
                sp.delay.append((t, pf.band_level_db, st))
                if p == "agent":
                    sp.mono.append(st)
            while sp.delay and sp.delay[0][0] <= t - _DELAY_S:
                _, lv, st0 = sp.delay.popleft()
                sp.baseline.append((lv, st0))
            while sp.recent and sp.recent[0][0] <= t - 1.5 * self.cfg.window_s:
                sp.recent.popleft()
        cues: list[Cue] = []
        if t >= self._next_eval_s:
            self._next_eval_s = t + _EVAL_S
            for p in PARTIES:
                cue = self._raised(p, t)
                if cue:
                    cues.append(cue)
        if t >= self._next_mono_s:
            self._next_mono_s = t + 1.0
            cue = self._monotone(t)
            if cue:
                cues.append(cue)
        return cues

    def _raised(self, p: Party, t: float) -> Cue | None:
        sp = self._sp[p]
        base_s = len(sp.baseline) * _FRAME_GUESS_S
        if base_s < _EARLY_BASELINE_S or len(sp.recent) * _FRAME_GUESS_S < 0.4 * self.cfg.window_s:
            sp.raised_armed = True
            sp.raised_run = 0
            return None
        base = np.asarray(sp.baseline)
        cur = np.asarray([(lv, st) for _, lv, st in sp.recent])
        d_level = float(np.percentile(cur[:, 0], _LEVEL_PCT)
                        - np.percentile(base[:, 0], _LEVEL_PCT))
        d_pitch = float(np.median(cur[:, 1]) - np.median(base[:, 1]))
        q75, q25 = np.percentile(base[:, 1], [75, 25])
        pitch_spread = float(q75 - q25) / 1.349
        need = self.cfg.raised_level_db + _EARLY_MARGIN_DB * max(
            0.0, 1.0 - base_s / self.cfg.min_baseline_s)
        if max(self.cfg.raised_pitch_st, pitch_spread) <= d_pitch <= _MAX_PITCH_RISE_ST:
            need -= _PITCH_CREDIT_DB
        if d_level < need:
            sp.raised_armed = True
            sp.raised_run = 0
            return None
        sp.raised_run += 1
        if (sp.raised_run < _PERSIST_EVALS or not sp.raised_armed
                or t - sp.last_cue_s < self.cfg.cooldown_s):
            return None
        sp.raised_armed = False
        sp.last_cue_s = t
        sp.raised_count += 1
        sp.last_state = ("raised" if p == "agent" else "agitated", t)
        data = Tone(state="raised" if p == "agent" else "agitated",
                    start_s=round(sp.recent[0][0] - _FRAME_GUESS_S, 3),
                    level_db=round(d_level, 1), pitch_st=round(d_pitch, 1))
        if p == "agent":
            return Cue(t, p, "warn", "Voice raised: slow down, soften", data)
        return Cue(t, p, "info", "Caller sounds upset: stay calm", data)

    def _monotone(self, t: float) -> Cue | None:
        sp = self._sp["agent"]
        if len(sp.mono) * _FRAME_GUESS_S < 0.75 * self.cfg.monotone_window_s:
            return None
        arr = np.asarray(sp.mono)
        q75, q25 = np.percentile(arr, [75, 25])
        spread = float(q75 - q25) / 1.349
        if spread >= self.cfg.monotone_st:
            if spread >= 1.25 * self.cfg.monotone_st:
                sp.mono_armed = True
            return None
        if not sp.mono_armed or t - sp.last_cue_s < self.cfg.cooldown_s:
            return None
        sp.mono_armed = False
        sp.last_cue_s = t
        sp.monotone_count += 1
        sp.last_state = ("monotone", t)
        return Cue(t, "agent", "info", "Sounding flat: vary your tone",
                   Tone(state="monotone", pitch_spread_st=round(spread, 2)))

    def state(self, p: Party, t_s: float, hold_s: float = 10.0) -> str:
        """"calm", or the latest tone cue's state while it is recent (dashboard)."""
        last = self._sp[p].last_state
        if last is None or t_s - last[1] > (3 * hold_s if last[0] == "monotone" else hold_s):
            return "calm"
        return last[0]

    def close(self, t_s: float) -> list[Cue]:
        return []

    def summary(self) -> dict[str, Any]:
        return {"tone": {
            "agent": {"raised": self._sp["agent"].raised_count,
                      "monotone": self._sp["agent"].monotone_count},
            "customer": {"agitated": self._sp["customer"].raised_count},
        }}
