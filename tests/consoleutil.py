"""Fleet messages for the console's tests, built with the contract's own builders
(:mod:`appliance.sinks.fleet.messages`): a :class:`BoxSim` speaks for one box."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

from appliance.events import Cue, iso_utc
from appliance.sinks.fleet import messages as m

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday

Msg = tuple[str, dict[str, Any]]


def box_summary(duration_s: float = 180.0, *, interruptions: int = 2, agent_share: float = 0.5,
                holds: tuple[float, ...] = (), dead_air: int = 0, fillers_per_min: float = 2.0,
                greeting: bool | None = True, closing: bool | None = True,
                language: str = "en") -> dict[str, Any]:
    """A box's call summary (the shape the engine writes), before :func:`fleet_summary`."""
    s: dict[str, Any] = {
        "duration_s": duration_s, "language": language,
        "interruptions": {"agent": interruptions, "customer": 1},
        "talk_s": {"agent": duration_s * agent_share * 0.8,
                   "customer": duration_s * (1 - agent_share) * 0.8},
        "agent_share": agent_share,
        "dead_air": {"count": dead_air, "intervals": [[10.0 * i, 10.0 * i + 12.0]
                                                      for i in range(dead_air)]},
        "fillers": {"agent": 4, "customer": 1, "words": {"um": 4},
                    "per_min": {"agent": fillers_per_min, "customer": 0.5}},
        "holds": [{"duration_s": d, "leaks": []} for d in holds],
        "cues": {"interruption": interruptions},
    }
    if greeting is not None:
        s["greeting"] = {"name": greeting, "company": True, "offer": True}
    if closing is not None:
        s["closing"] = {"question": closing, "thanks": True}
    return s


class BoxSim:
    """One box's messages, its wall clock advancing one second per message."""

    def __init__(self, box: str, site: str = "site1", start: datetime = T0) -> None:
        self.box, self.site = box, site
        self.prefix = m.topic_prefix(site, box)
        self.now = start
        self._n = itertools.count()

    def _at(self) -> str:
        self.now += timedelta(seconds=1)
        return iso_utc(self.now)

    def status(self, state: m.StatusState = "online") -> Msg:
        return (m.status_topic(self.prefix),
                m.status_payload(self.box, self.site, state, self._at(), version="test"))

    def stats(self, *, healthy: bool = True, problems: tuple[str, ...] = ()) -> Msg:
        return (m.stats_topic(self.prefix),
                m.stats_payload(self.box, self.site, self._at(), healthy=healthy,
                                problems=list(problems), calls_open=0, cues={"filler": 1},
                                drops={}, outbox_pending=0, outbox_evicted=0))

    def new(self, call_id: str, agent: str | None = "agent-1") -> Msg:
        at = self._at()
        return (m.call_topic(self.prefix, call_id),
                m.call_new_payload(self.box, self.site, at, call_id, agent_id=agent,
                                   language="en", source="tap", started_at=at))

    def cue(self, call_id: str, kind: str, t_s: float, party: str | None = "agent",
            severity: str = "warn") -> Msg:
        cue = cast(Cue, SimpleNamespace(call_id=call_id, kind=kind, party=party,
                                        severity=severity, t_s=t_s))
        return (m.call_topic(self.prefix, call_id),
                m.call_update_payload(self.box, self.site, self._at(), cue))

    def end(self, call_id: str, **summary: Any) -> Msg:
        at = self._at()
        return (m.call_topic(self.prefix, call_id),
                m.call_end_payload(self.box, self.site, at, call_id, reason="source_closed",
                                   ended_at=at, summary=box_summary(**summary)))


def wire(msg: Msg) -> tuple[str, bytes]:
    return msg[0], m.encode(msg[1])
