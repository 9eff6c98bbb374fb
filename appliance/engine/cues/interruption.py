"""Interruptions (rule 3): one party starts while the other is speaking, with real overlap.

Works on *turns* (talk spurts joined over within-turn pauses up to ``[vad] turn_gap_s``),
not on raw voice-activity fragments: real speakers pause 0.25-0.4 s inside a sentence, and
a speaker who resumes after such a pause is not starting anew.

A candidate opens when party X starts a new turn while party Y's turn has been running for
at least ``min_prior_speech_s``.  It becomes an interruption (cue at that moment) once X
has spoken ``min_overlap_s`` *inside* Y's turn: X's active speech frames (no hangover, so a
backchannel — « mhm », « ja », « oui » — never grows into one), plus X's pauses between
two spurts of the same turn, count once Y is heard again after them; or once the span from
X's onset to the last moment both were heard reaches ``min_overlap_s`` + ``SPAN_MARGIN_S``.
So pauses inside either turn do not stall the count, while quick turn-taking — X starting
as Y trails off — adds nothing after Y's last word, and the candidate lapses when Y's turn
ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.config import InterruptionConfig
from appliance.cue_payloads import Interruption
from appliance.engine.conversation import FrameContext
from appliance.events import PARTIES, Cue, Party

#: The span from X's onset to the last moment both were heard also decides, with this
#: margin: it does not wait for X's pauses to be bridged by X's own speech (faster for
#: real speakers who pause inside the turn), while the margin keeps a backchannel whose
#: tail the voice activity stretches (echo, reverberation) from reaching it.
SPAN_MARGIN_S = 0.2
#: A party being talked over often stops for longer than a within-turn pause, then goes on:
#: once X has really talked over Y, Y's turn holds this long after Y was last heard, and Y
#: resuming is Y's turn coming back, not Y cutting in.
HOLD_INTERRUPTED_S = 1.0


@dataclass(slots=True)
class _Candidate:
    onset_s: float
    other_turn_start_s: float
    overlap_s: float = 0.0
    """X's speech bracketed by Y's speech (s)."""
    pending_s: float = 0.0
    """X's speech since Y was last heard (s): counts once Y is heard again."""
    x_active_end_s: float | None = None
    """End of X's latest active frame (s)."""
    y_heard_s: float = 0.0
    """End of Y's latest active frame (s)."""
    fired: bool = False

    @property
    def talked_over(self) -> bool:
        """Y has been heard since X began: X really talked over Y."""
        return self.y_heard_s > self.onset_s

    @property
    def span_s(self) -> float:
        """From X's onset to the latest moment at which both have been heard (s)."""
        x_end = self.x_active_end_s if self.x_active_end_s is not None else self.onset_s
        return max(0.0, min(x_end, self.y_heard_s) - self.onset_s)


class InterruptionRule:
    def __init__(self, cfg: InterruptionConfig) -> None:
        self.cfg = cfg
        self._cand: dict[Party, _Candidate | None] = {"agent": None, "customer": None}
        self._was_speaking: dict[Party, bool] = {"agent": False, "customer": False}
        # the other party's spurt that X last interrupted: one turn is interrupted once
        self._fired_on: dict[Party, float | None] = {"agent": None, "customer": None}
        self.count: dict[Party, int] = {"agent": 0, "customer": 0}
        self.overlap_s = 0.0

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
            # a spurt that starts a turn (not one resuming after a within-turn pause)
            onset = px.turn_start_s if started and px.turn_start_s == px.spurt_start_s else None
            # X resuming while Y talks over X is X's turn coming back, not X cutting in
            other = self._cand[y]
            being_interrupted = other is not None and other.talked_over
            if (onset is not None and py.in_turn and py.turn_start_s is not None
                    and not being_interrupted):
                prior = onset - py.turn_start_s
                if (prior >= self.cfg.min_prior_speech_s
                        and self._fired_on[x] != py.turn_start_s):
                    self._cand[x] = _Candidate(onset, py.turn_start_s, y_heard_s=ctx.t0_s)
            cand = self._cand[x]
            if cand is None:
                continue
            if not px.in_turn or px.turn_start_s != cand.onset_s:
                self._cand[x] = None
                continue
            if py.turn_start_s != cand.other_turn_start_s or not py.in_turn:
                # the interrupted party pauses longer when talked over: their turn holds for
                # HOLD_INTERRUPTED_S after they were last heard, and resuming continues it
                if not cand.talked_over or ctx.t_s - cand.y_heard_s > HOLD_INTERRUPTED_S:
                    self._cand[x] = None
                    continue
                if py.speaking and py.turn_start_s is not None:
                    cand.other_turn_start_s = py.turn_start_s
            if px.active:  # the interrupter's own speech, inside the other's running turn
                if started and cand.x_active_end_s is not None:  # a new spurt, same turn
                    cand.pending_s += max(0.0, ctx.t0_s - cand.x_active_end_s)
                cand.pending_s += ctx.dt_s
                cand.x_active_end_s = ctx.t_s
            if py.active:
                cand.overlap_s += cand.pending_s
                cand.pending_s = 0.0
                cand.y_heard_s = ctx.t_s
            if not cand.fired and (cand.overlap_s >= self.cfg.min_overlap_s
                                   or cand.span_s >= self.cfg.min_overlap_s + SPAN_MARGIN_S):
                cand.fired = True
                self._fired_on[x] = cand.other_turn_start_s
                self.count[x] += 1
                ev = Interruption(start_s=round(cand.onset_s, 3),
                                  overlap_s=round(max(cand.overlap_s, cand.span_s), 2),
                                  interrupted=y)
                msg = ("You talked over the caller: let them finish" if x == "agent"
                       else "Caller cut in: pause and listen")
                cues.append(Cue(ctx.t_s, x, "warn" if x == "agent" else "info", msg, ev))
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
