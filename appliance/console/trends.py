"""The supervisor's figures, as pure functions of the store's rows.

* :func:`trends`: per agent or per team, by day or by ISO week: interruptions per call,
  hold time per call and holds over 60 s, the agent's talk share, dead air per call,
  fillers per minute, and how often the greeting and the closing were complete.
* :func:`floor_view`: the floor now: every box online or offline, its health, the calls in
  progress (agent, duration, hold timer, the last cue), the boxes silent too long.

Coaching, not surveillance: counts, rates and durations of etiquette cues, never words.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

Period = Literal["day", "week"]
By = Literal["agent", "team"]
NO_AGENT = "(unknown agent)"
NO_TEAM = "(no team)"

METRICS: tuple[tuple[str, str, str], ...] = (
    ("interruptions_per_call", "Interruptions by the agent per call", ""),
    ("hold_s_per_call", "Hold time per call", "s"),
    ("holds_over_60s", "Holds over 60 s", ""),
    ("talk_share_pct", "Agent's talk share", "%"),
    ("dead_air_s_per_call", "Dead air per call", "s"),
    ("fillers_per_min", "Fillers per minute (agent)", "/min"),
    ("greeting_done_pct", "Greeting complete", "%"),
    ("closing_done_pct", "Closing complete", "%"),
)
"""(field of :class:`TrendPoint`, title, unit) of each plotted figure."""


@dataclass(frozen=True, slots=True)
class TrendPoint:
    group: str
    """The agent id, or the team's name."""
    period: str
    """``2026-11-02`` (a UTC day) or ``2026-W45`` (an ISO week)."""
    calls: int
    interruptions_per_call: float | None
    hold_s_per_call: float | None
    holds_over_60s: int
    talk_share_pct: float | None
    dead_air_s_per_call: float | None
    fillers_per_min: float | None
    greeting_done_pct: float | None
    closing_done_pct: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_time(iso: Any) -> datetime | None:
    if not isinstance(iso, str) or not iso:
        return None
    try:
        t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def period_of(t: datetime, period: Period) -> str:
    """The UTC day (``2026-11-02``) or ISO week (``2026-W45``) of ``t``."""
    if period == "day":
        return t.astimezone(UTC).date().isoformat()
    year, week, _ = t.astimezone(UTC).isocalendar()
    return f"{year}-W{week:02d}"


def team_index(teams: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """agent id -> team name."""
    return {a: team for team, agents in teams.items() for a in agents}


def _mean(xs: Sequence[float]) -> float | None:
    return round(sum(xs) / len(xs), 3) if xs else None


def _rate(flags: Sequence[int]) -> float | None:
    return round(100.0 * sum(flags) / len(flags), 1) if flags else None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def trends(rows: Iterable[Mapping[str, Any]], *, by: By = "agent", period: Period = "week",
           teams: Mapping[str, Sequence[str]] | None = None) -> list[TrendPoint]:
    """The figures of the ended calls ``rows`` (the store's ``calls`` columns) per group and
    period, sorted by group then period.  A call counts in the period it started in (its
    end when its start is unknown).  A figure a call lacks (an incomplete summary, no
    greeting checked) leaves it out of that figure's mean only."""
    index = team_index(teams or {})
    buckets: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        t = parse_time(r.get("started_at")) or parse_time(r.get("ended_at"))
        if t is None:
            continue
        agent = r.get("agent_id") or NO_AGENT
        group = agent if by == "agent" else index.get(agent, NO_TEAM)
        buckets[(group, period_of(t, period))].append(r)
    out = []
    for (group, p), calls in sorted(buckets.items()):
        def vals(col: str, calls: list[Mapping[str, Any]] = calls) -> list[float]:
            return [v for c in calls if (v := _num(c.get(col))) is not None]
        share = vals("agent_share")
        out.append(TrendPoint(
            group=group, period=p, calls=len(calls),
            interruptions_per_call=_mean(vals("interruptions_agent")),
            hold_s_per_call=_mean(vals("hold_s")),
            holds_over_60s=int(sum(vals("holds_over_60s"))),
            talk_share_pct=None if not share else round(100.0 * sum(share) / len(share), 1),
            dead_air_s_per_call=_mean(vals("dead_air_s")),
            fillers_per_min=_mean(vals("fillers_per_min")),
            greeting_done_pct=_rate([int(v) for v in vals("greeting_done")]),
            closing_done_pct=_rate([int(v) for v in vals("closing_done")])))
    return out


def series(points: Iterable[TrendPoint], metric: str) -> dict[str, list[tuple[str, float | None]]]:
    """One figure's values per group, in period order (for a chart)."""
    out: dict[str, list[tuple[str, float | None]]] = defaultdict(list)
    for p in points:
        v = getattr(p, metric)
        out[p.group].append((p.period, None if v is None else float(v)))
    return dict(out)


# -- the floor now -----------------------------------------------------------------------------
OPEN_CALL_MAX_H = 12.0
"""A call without news this long is no longer shown as in progress (its box lost it)."""


def floor_view(boxes: Iterable[Mapping[str, Any]], open_calls: Iterable[Mapping[str, Any]],
               now: datetime, silent_after_s: float) -> dict[str, Any]:
    """Every box with its state, health, silence and calls in progress; and the totals.

    A box is ``online`` when its last status says so; ``silent`` when the console has heard
    nothing from it for more than ``silent_after_s`` (it may have lost its network or its
    power without a goodbye).  Calls in progress are shown for online boxes only."""
    by_box: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for c in open_calls:
        started = parse_time(c.get("started_at"))
        hold = parse_time(c.get("hold_started_at"))
        by_box[(c["site"], c["box"])].append({
            "call_id": c["call_id"], "agent_id": c.get("agent_id"),
            "duration_s": None if started is None else max(0.0, (now - started).total_seconds()),
            "on_hold": hold is not None,
            "hold_s": None if hold is None else max(0.0, (now - hold).total_seconds()),
            "last_cue": c.get("last_cue_kind"), "cues": c.get("cue_count") or 0})
    out = []
    for b in boxes:
        seen = parse_time(b.get("last_seen"))
        quiet_s = None if seen is None else max(0.0, (now - seen).total_seconds())
        stats = b.get("stats") if isinstance(b.get("stats"), Mapping) else {}
        online = b.get("state") == "online"
        out.append({
            "site": b["site"], "box": b["box"], "online": online,
            "state": b.get("state") or "unknown", "healthy": b.get("healthy"),
            "problems": list(stats.get("problems") or []) if isinstance(stats, Mapping) else [],
            "last_seen": b.get("last_seen"), "quiet_s": quiet_s,
            "silent": quiet_s is None or quiet_s > silent_after_s,
            "calls": sorted(by_box.get((b["site"], b["box"]), []),
                            key=lambda c: -(c["duration_s"] or 0.0)) if online else []})
    return {"at": now.astimezone(UTC).isoformat(), "boxes": out, "totals": {
        "boxes": len(out), "online": sum(b["online"] for b in out),
        "silent": sum(b["silent"] for b in out),
        "unhealthy": sum(b["healthy"] is False for b in out),
        "calls": sum(len(b["calls"]) for b in out)}}
