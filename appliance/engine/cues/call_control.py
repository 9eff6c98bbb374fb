"""Call control (rule 16): answer by the 2nd–3rd ring; let the customer hang up first.

Only a PBX knows these moments, so the rule is fed by the source's signalling, never by
audio: :meth:`CallControlRule.answered` with the ring time (first ring → answer, seconds),
:meth:`leg_ended` when one party's leg of the call ends (in call time), or
:meth:`hung_up` when the PBX says outright who hung up.  A recording or a headset has
none of these, and then the rule says nothing and adds nothing to the summary.
"""

from __future__ import annotations

import math
from typing import Any

from appliance.config import CallControlConfig
from appliance.cue_payloads import AnswerDelay, HungUpFirst
from appliance.events import Cue, Party


class CallControlRule:
    def __init__(self, cfg: CallControlConfig) -> None:
        self.cfg = cfg
        self.ring_s: float | None = None
        self.ended: dict[Party, float] = {}
        self.hung_up_by: Party | None = None
        self._cued_hangup = False

    def answered(self, t_s: float, ring_s: float) -> list[Cue]:
        """The PBX answered the call after ``ring_s`` seconds of ringing."""
        if self.ring_s is not None or not math.isfinite(ring_s) or ring_s < 0:
            return []
        self.ring_s = round(ring_s, 1)
        if ring_s <= self.cfg.answer_within_s:
            return []
        return [Cue(t_s, "agent", "warn",
                    f"Answered after {ring_s:.0f} s: pick up by the third ring",
                    AnswerDelay(ring_s=self.ring_s, limit_s=self.cfg.answer_within_s))]

    def leg_ended(self, t_s: float, party: Party) -> list[Cue]:
        """One party's leg ended at call time ``t_s`` (its stream closed, its channel hung
        up).  The agent hung up first when the agent's leg ended clearly before the
        customer's; decided once both have ended (or at the end of the call)."""
        if party in self.ended:
            return []
        self.ended[party] = t_s
        if len(self.ended) < 2:
            return []
        return self._decide(t_s)

    def hung_up(self, t_s: float, party: Party) -> list[Cue]:
        """The PBX says who hung up (a hang-up cause naming the side)."""
        if self.hung_up_by is not None:
            return []
        self.hung_up_by = party
        self.ended.setdefault(party, t_s)
        return self._decide(t_s)

    def _decide(self, t_s: float) -> list[Cue]:
        if self._cued_hangup or self._hung_up_by() != "agent":
            return []
        self._cued_hangup = True
        return [Cue(t_s, "agent", "info", "You ended the call first: let the customer hang up",
                    HungUpFirst(agent_end_s=round(self.ended["agent"], 3),
                                customer_end_s=None if self.hung_up_by is not None
                                else round(self.ended["customer"], 3)))]

    def _hung_up_by(self) -> Party | None:
        if self.hung_up_by is not None:
            return self.hung_up_by
        a, c = self.ended.get("agent"), self.ended.get("customer")
        if a is None or c is None:
            return None
        if a + self.cfg.hangup_grace_s < c:
            return "agent"
        if c + self.cfg.hangup_grace_s < a:
            return "customer"
        return None  # too close to tell

    def close(self, t_s: float) -> list[Cue]:
        return []

    def summary(self) -> dict[str, Any]:
        if self.ring_s is None and not self.ended:
            return {}  # no signalling: a file or a headset
        return {"call_control": {
            "ring_s": self.ring_s,
            "answer_delay": None if self.ring_s is None
            else self.ring_s > self.cfg.answer_within_s,
            "hung_up_by": self._hung_up_by(),
            "hung_up_first": self._hung_up_by() == "agent" if self.ended else None,
        }}
