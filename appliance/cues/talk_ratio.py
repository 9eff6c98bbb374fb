"""Talk ratio (rule 11): the agent's share of speech time over a rolling window."""

from __future__ import annotations

from collections import deque
from typing import Any

from appliance.config import TalkRatioConfig
from appliance.conversation import FrameContext
from appliance.events import Cue


class TalkRatioRule:
    def __init__(self, cfg: TalkRatioConfig) -> None:
        self.cfg = cfg
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
        a = dt if ctx.agent.active else 0.0
        c = dt if ctx.customer.active else 0.0
        if ctx.hold.on_hold:
            return []
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
            return [Cue(ctx.t_s, "talk_ratio", "agent", "warn",
                        f"You spoke {share:.0%} of the last {self._span_s / 60:.0f} min: "
                        "ask and listen",
                        {"share": round(share, 3), "window_s": round(self._span_s, 1)})]
        if not self._armed and share < self.cfg.max_share - self.cfg.hysteresis:
            self._armed = True
        return []

    def close(self, t_s: float) -> list[Cue]:
        return []

    def summary(self) -> dict[str, Any]:
        total = self.talk_s["agent"] + self.talk_s["customer"]
        return {
            "talk_s": {k: round(v, 1) for k, v in self.talk_s.items()},
            "agent_share": round(self.talk_s["agent"] / total, 3) if total else None,
        }
