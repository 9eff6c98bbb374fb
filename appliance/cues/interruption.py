"""Interruptions (rule 3): one party starts while the other is speaking, with real overlap.

A candidate opens when party X starts a talk spurt while party Y has been speaking for at
least ``min_prior_speech_s``.  It becomes an interruption (cue at that moment) once the two
have spoken at the same time for ``min_overlap_s``: the interrupter's *active* speech frames
(no hangover, so a backchannel — « mhm », « ja », « oui » — never grows into an interruption)
inside the other party's running turn (with hangover, so the other's word gaps and frames
masked by the echo gate do not stall the count).
Quick turn-taking — X starting as Y trails off — ends Y's spurt before the overlap builds up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.config import InterruptionConfig
from appliance.conversation import FrameContext
from appliance.events import PARTIES, Cue, Party


@dataclass(slots=True)
class _Candidate:
    onset_s: float
    other_spurt_start_s: float
    overlap_s: float = 0.0
    fired: bool = False


class InterruptionRule:
    def __init__(self, cfg: InterruptionConfig) -> None:
        self.cfg = cfg
        self._cand: dict[Party, _Candidate | None] = {"agent": None, "customer": None}
        self._was_speaking: dict[Party, bool] = {"agent": False, "customer": False}
        # the other party's spurt that X last interrupted: one turn is interrupted once
        self._fired_on: dict[Party, float | None] = {"agent": None, "customer": None}
        self.count: dict[Party, int] = {"agent": 0, "customer": 0}
        self.overlap_s = 0.0
        self.events: list[dict[str, Any]] = []

    def on_frame(self, ctx: FrameContext) -> list[Cue]:
        cues: list[Cue] = []
        if ctx.agent.active and ctx.customer.active:
            self.overlap_s += ctx.dt_s
        if ctx.hold.on_hold:
            self._cand = {"agent": None, "customer": None}
            self._was_speaking = {p: ctx.party(p).speaking for p in PARTIES}
            return cues
        pairs: tuple[tuple[Party, Party], ...] = (("agent", "customer"), ("customer", "agent"))
        for x, y in pairs:
            px, py = ctx.party(x), ctx.party(y)
            started = px.speaking and not self._was_speaking[x]
            if started and py.speaking and py.spurt_start_s is not None:
                prior = (px.spurt_start_s or ctx.t0_s) - py.spurt_start_s
                if (prior >= self.cfg.min_prior_speech_s
                        and self._fired_on[x] != py.spurt_start_s):
                    self._cand[x] = _Candidate(px.spurt_start_s or ctx.t0_s, py.spurt_start_s)
            cand = self._cand[x]
            if cand is None:
                continue
            if not px.speaking or not py.speaking or py.spurt_start_s != cand.other_spurt_start_s:
                self._cand[x] = None
                continue
            if px.active:  # the interrupter's own speech, inside the other's running turn
                cand.overlap_s += ctx.dt_s
            if not cand.fired and cand.overlap_s >= self.cfg.min_overlap_s:
                cand.fired = True
                self._fired_on[x] = cand.other_spurt_start_s
                self.count[x] += 1
                ev = {"start": round(cand.onset_s, 3), "overlap_s": round(cand.overlap_s, 2),
                      "interrupted": y}
                self.events.append({"party": x, **ev})
                msg = ("You talked over the caller: let them finish" if x == "agent"
                       else "Caller cut in: pause and listen")
                cues.append(Cue(ctx.t_s, "interruption", x, "warn" if x == "agent" else "info",
                                msg, ev))
        for p in PARTIES:
            self._was_speaking[p] = ctx.party(p).speaking
        return cues

    def close(self, t_s: float) -> list[Cue]:
        return []

    def summary(self) -> dict[str, Any]:
        return {
            "interruptions": dict(self.count),
            "overlap_s": round(self.overlap_s, 1),
        }
