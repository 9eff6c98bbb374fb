"""Dead air (rule 12): both parties silent, no hold, for too long."""

from __future__ import annotations

from typing import Any

from appliance.config import DeadAirConfig
from appliance.cue_payloads import DeadAir
from appliance.engine.conversation import FrameContext
from appliance.events import Cue


class DeadAirRule:
    def __init__(self, cfg: DeadAirConfig) -> None:
        self.cfg = cfg
        self._silent_since_s: float | None = 0.0
        self._cued = False
        self.intervals: list[list[float]] = []

    def on_frame(self, ctx: FrameContext) -> list[Cue]:
        quiet = not (ctx.agent.speaking or ctx.customer.speaking or ctx.hold.on_hold)
        if not quiet:
            self._end(ctx.t0_s)
            return []
        if self._silent_since_s is None:
            self._silent_since_s = ctx.t0_s
        silent = ctx.t_s - self._silent_since_s
        if not self._cued and silent >= self.cfg.after_s:
            self._cued = True
            return [Cue(ctx.t_s, None, "warn", f"{silent:.0f} s of silence: say what you are doing",
                        DeadAir(start_s=round(self._silent_since_s, 3),
                                silent_s=round(silent, 1)))]
        return []

    def silent_s(self, t_s: float) -> float:
        """Seconds both parties have been silent (0 while anyone speaks or on hold)."""
        return 0.0 if self._silent_since_s is None else max(0.0, t_s - self._silent_since_s)

    def _end(self, t_s: float) -> None:
        if self._cued and self._silent_since_s is not None:
            self.intervals.append([round(self._silent_since_s, 3), round(t_s, 3)])
        self._silent_since_s = None
        self._cued = False

    def close(self, t_s: float) -> list[Cue]:
        self._end(t_s)
        return []

    def summary(self) -> dict[str, Any]:
        return {"dead_air": {"count": len(self.intervals), "intervals": self.intervals}}
