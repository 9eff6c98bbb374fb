"""Talk ratio (rule 11): the agent's share of speech time over a rolling window.

Talk time is speech by turns: a party's active frames plus the pauses inside their turns
(a pause of at most ``turn_gap_s`` between two of their active frames), counted when the
party speaks again.  Voice activity alone misses the short pauses and the weak frames
between words, which underestimates real speech by 15-40 %.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from appliance.config import TalkRatioConfig
from appliance.cue_payloads import TalkRatio
from appliance.engine.conversation import FrameContext
from appliance.events import Cue


class TalkRatioRule:
    def __init__(self, cfg: TalkRatioConfig, turn_gap_s: float = 0.0) -> None:
        self.cfg = cfg
        self.turn_gap_s = turn_gap_s
        self._last_end: dict[str, float | None] = {"agent": None, "customer": None}
        self._frames: deque[tuple[float, float, float]] = deque()  # (dt, agent_s, customer_s)
        self._span_s = 0.0
        self._agent_s = 0.0
        self._customer_s = 0.0
        self._armed = True
        self._next_eval_s = 0.0
        self.talk_s = {"agent": 0.0, "customer": 0.0}
        self.peak_share: float | None = None
        self.share: float | None = None
        """The latest agent share over the window (None until enough speech)."""

    def on_frame(self, ctx: FrameContext) -> list[Cue]:
        dt = ctx.dt_s
        if ctx.hold.on_hold:
            self._last_end = {"agent": None, "customer": None}
            return []
        a = self._talk("agent", ctx.agent.active, ctx.t0_s, ctx.t_s)
        c = self._talk("customer", ctx.customer.active, ctx.t0_s, ctx.t_s)
        self.talk_s["agent"] += a
        self.talk_s["customer"] += c
        self._frames.append((dt, a, c))
        self._span_s += dt
        self._agent_s += a
        self._customer_s += c
        while self._frames and self._span_s - self._frames[0][0] >= self.cfg.window_s:
            d0, a0, c0 = self._frames.popleft()
            self._span_s -= d0
            self._agent_s -= a0
            self._customer_s -= c0
        if ctx.t_s < self._next_eval_s:
            return []
        self._next_eval_s = ctx.t_s + 1.0
        total = self._agent_s + self._customer_s
        if total < self.cfg.min_speech_s or self._span_s < 0.5 * self.cfg.window_s:
            return []
        share = self._agent_s / total
        self.share = share
        self.peak_share = share if self.peak_share is None else max(self.peak_share, share)
        if self._armed and share > self.cfg.max_share:
            self._armed = False
            return [Cue(ctx.t_s, "agent", "warn",
                        f"You spoke {share:.0%} of the last {self._span_s / 60:.0f} min: "
                        "ask and listen",
                        TalkRatio(share=round(share, 3), window_s=round(self._span_s, 1)))]
        if not self._armed and share < self.cfg.max_share - self.cfg.hysteresis:
            self._armed = True
        return []

    def _talk(self, party: str, active: bool, t0_s: float, t1_s: float) -> float:
        """Seconds of talk this frame adds: the frame, plus the within-turn pause before it."""
        if not active:
            return 0.0
        last = self._last_end[party]
        self._last_end[party] = t1_s
        gap = t0_s - last if last is not None else 0.0
        return (t1_s - t0_s) + (gap if 0.0 < gap <= self.turn_gap_s + 1e-9 else 0.0)

    def close(self, t_s: float) -> list[Cue]:
        return []

    def summary(self) -> dict[str, Any]:
        total = self.talk_s["agent"] + self.talk_s["customer"]
        return {
            "talk_s": {k: round(v, 1) for k, v in self.talk_s.items()},
            "agent_share": round(self.talk_s["agent"] / total, 3) if total else None,
        }
