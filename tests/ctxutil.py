"""Build FrameContext sequences from simple timelines, for rule tests without audio."""

from __future__ import annotations

import math
from collections.abc import Iterator

from appliance.engine.conversation import FrameContext, HoldView, PartyFrame, SpeechTracker

FRAME_S = 0.032


def _in(intervals: list[tuple[float, float]], t: float) -> bool:
    return any(s <= t < e for s, e in intervals)


def frames(
    duration_s: float,
    agent: list[tuple[float, float]] = (),  # type: ignore[assignment]
    customer: list[tuple[float, float]] = (),  # type: ignore[assignment]
    *,
    hold: list[tuple[float, float]] = (),  # type: ignore[assignment]
    agent_f0: float = 120.0,
    customer_f0: float = 200.0,
    agent_level: float = -26.0,
    customer_level: float = -26.0,
    overrides: dict[str, object] | None = None,
    hangover_s: float = 0.25,
    turn_gap_s: float = 0.4,
) -> Iterator[FrameContext]:
    """Frames where each party is speech inside its intervals (prob 0.9) and silent outside."""
    trackers = {p: SpeechTracker(0.5, 0.35, hangover_s, turn_gap_s) for p in ("agent", "customer")}
    n = round(duration_s / FRAME_S)
    for i in range(n):
        t0, t1 = i * FRAME_S, (i + 1) * FRAME_S
        mid = 0.5 * (t0 + t1)
        pf = {}
        for p, ivs, f0, lvl in (("agent", agent, agent_f0, agent_level),
                                ("customer", customer, customer_f0, customer_level)):
            sp = _in(list(ivs), mid)
            tr = trackers[p]
            tr.update(t0, t1, 0.9 if sp else 0.02, False)
            pf[p] = PartyFrame(
                prob=0.9 if sp else 0.02, level_dbfs=lvl if sp else -60.0, echo=False,
                active=tr.active, speaking=tr.speaking, spurt_start_s=tr.spurt_start_s,
                f0_hz=f0 if sp else math.nan, digital_silence=False, noise_floor_dbfs=-60.0,
                music=False, nuclei_s=(), turn_start_s=tr.turn_start_s, in_turn=tr.turn_open(t1),
                band_level_db=lvl - 2.0 if sp else -62.0,
            )
        on_hold = _in(list(hold), mid)
        hv = HoldView(on_hold, 0.0 if on_hold else None, "muted" if on_hold else None)
        yield FrameContext(t0, t1, pf["agent"], pf["customer"], hv)


def run(rule, ctxs) -> list:  # type: ignore[no-untyped-def]
    cues = []
    last = 0.0
    for ctx in ctxs:
        cues += rule.on_frame(ctx)
        last = ctx.t_s
    cues += rule.close(last)
    return cues
