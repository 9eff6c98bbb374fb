"""The floor: what a team lead sees of the live calls of a PBX tap.

:class:`FloorBoard` subscribes to the calls' events and their live states and keeps, per
open call, only what the team-lead page shows: the agent, the source, when it started, the
hold timer and the last cue (kind, party, severity, time), with the hold limits the page
marks the timer by.  Never audio, never words: transcript and word events are not looked
at, and a cue's message is not kept (a jargon or filler cue's message quotes what was
said).  A call leaves the board at its ``call_ended``.  Bounded: at most ``max_calls`` calls
are tracked (the tap's own limit is lower); beyond that new calls are counted and left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from appliance.events import CallEnded, CallStarted, Cue, Event


@dataclass(slots=True)
class _Row:
    call_id: str
    agent_id: str | None
    source: str
    started_at: str
    opened_s: float
    t_s: float = 0.0
    hold: dict[str, Any] | None = None
    last_cue: dict[str, Any] | None = None
    cues: int = 0


class FloorBoard:
    """Open calls for the team-lead page; feed it events (``__call__``) and states."""

    def __init__(self, clock: Any, *, max_calls: int = 10000, check_back_s: float = 45.0,
                 too_long_s: float = 60.0) -> None:
        self.clock = clock
        """Monotonic seconds (the call's duration on the page)."""
        self.max_calls = max_calls
        self.hold_limits = {"check_back_s": check_back_s, "too_long_s": too_long_s}
        """``[hold]``'s timers: the page marks a hold past each (the agent is cued then)."""
        self.rows: dict[str, _Row] = {}
        self.left_out = 0

    def __call__(self, ev: Event) -> None:
        if isinstance(ev, CallStarted):
            if len(self.rows) >= self.max_calls:
                self.left_out += 1
                return
            self.rows[ev.call_id] = _Row(ev.call_id, ev.agent_id, ev.source, ev.started_at,
                                         self.clock())
        elif isinstance(ev, CallEnded):
            self.rows.pop(ev.call_id, None)
        elif isinstance(ev, Cue):
            row = self.rows.get(ev.call_id)
            if row is not None:
                row.cues += 1
                row.last_cue = {"kind": ev.kind, "party": ev.party, "severity": ev.severity,
                                "t_s": round(ev.t_s, 1)}

    def state(self, call_id: str, snapshot: dict[str, Any]) -> None:
        """A call's live state (the worker's snapshot): its hold panel and audio time."""
        row = self.rows.get(call_id)
        if row is not None:
            row.hold = snapshot.get("hold")
            row.t_s = float(snapshot.get("t", row.t_s))

    def agent_of(self, call_id: str) -> str | None:
        row = self.rows.get(call_id)
        return row.agent_id if row is not None else None

    def view(self) -> dict[str, Any]:
        """The page's JSON: every open call, longest first, and the hold limits."""
        now = self.clock()
        calls = []
        for r in sorted(self.rows.values(), key=lambda r: r.opened_s):
            hold = r.hold or {}
            calls.append({
                "call_id": r.call_id, "agent_id": r.agent_id, "source": r.source,
                "started_at": r.started_at, "duration_s": round(max(0.0, now - r.opened_s), 1),
                "audio_s": round(r.t_s, 1), "on_hold": bool(hold.get("on")),
                "hold_s": float(hold.get("elapsed_s") or 0.0) if hold.get("on") else 0.0,
                "last_cue": r.last_cue, "cues": r.cues})
        return {"calls": calls, "open": len(calls), "left_out": self.left_out,
                "hold_limits": dict(self.hold_limits)}
