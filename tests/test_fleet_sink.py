"""The fleet sink without a broker: which events become which messages, and the stats task
on virtual time."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from appliance.cue_payloads import Interruption
from appliance.events import CallEnded, CallStarted, Cue, Summary, TranscriptEvent
from appliance.sinks.fleet.messages import assert_no_text, decode, encode
from appliance.sinks.fleet.sink import END_WAIT_S, FleetSink
from tests.virtual_time import VirtualTimeLoop, run


class Captured:
    box, site, prefix = "box1", "site1", "coach/site1/box1"

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def enqueue(self, topic: str, payload: Mapping[str, Any]) -> bool:
        assert_no_text(payload)
        decode(topic, encode(payload))  # what the console will accept
        self.sent.append((topic, dict(payload)))
        return True

    def health(self) -> dict[str, Any]:
        return {"ok": True, "last_error": None, "pending": 3, "evicted": 1, "dropped": 0}

    def types(self) -> list[str]:
        return [p.get("type", t.rsplit("/", 1)[-1]) for t, p in self.sent]


def _cue(call_id: str, t_s: float) -> Cue:
    return Cue(t_s, "agent", "warn", "You interrupted: 'so basically'",
               Interruption(start_s=t_s, overlap_s=0.5, interrupted="customer"), call_id)


def test_a_call_becomes_new_updates_and_one_end_never_words() -> None:
    out = Captured()
    sink = FleetSink(out)
    sink(CallStarted("c-1", "en", agent_id="a7", source="websocket",
                     started_at="2025-01-01T10:00:00+00:00"))
    sink(TranscriptEvent(1.0, "agent", "my secret words", 0.5, 1.0, "c-1"))
    sink(_cue("c-1", 2.0))
    sink(_cue("c-1", 3.5))
    sink(CallEnded("c-1", 10.0, "source_closed", ended_at="2025-01-01T10:00:10+00:00"))
    sink(Summary(10.0, {"duration_s": 10.0, "language": "en",
                        "fillers": {"agent": 2, "words": {"ehmzz": 2}}}, "c-1"))
    assert out.types() == ["new", "update", "update", "end"]
    assert all(t == "coach/site1/box1/call/c-1/event" for t, _ in out.sent)
    new, upd, _, end = (p for _, p in out.sent)
    assert new["agent_id"] == "a7" and new["started_at"].startswith("2025-01-01T10:00:00")
    assert upd["cue"] == {"kind": "interruption", "party": "agent", "severity": "warn",
                          "t_s": 2.0}
    assert end["reason"] == "source_closed" and end["summary"]["fillers"]["agent"] == 2
    wire = b"".join(encode(p) for _, p in out.sent)
    assert b"secret" not in wire and b"so basically" not in wire and b"ehmzz" not in wire
    assert len({p["id"] for _, p in out.sent}) == 4  # one unique id per message
    assert sink.cues == {"interruption": 2}


def test_a_call_with_an_id_that_cannot_be_a_topic_is_not_published() -> None:
    out = Captured()
    sink = FleetSink(out)
    sink(CallStarted("a/b#", "en"))
    sink(_cue("a/b#", 1.0))
    assert out.sent == [] and sink.skipped == 1 and sink.cues["interruption"] == 1


def test_an_ended_call_without_a_summary_still_ends() -> None:
    now = [100.0]
    out = Captured()
    sink = FleetSink(out, clock=lambda: now[0])
    sink(CallStarted("c-2", "en"))
    sink(CallEnded("c-2", 1.0, "idle"))
    assert out.types() == ["new"]
    now[0] += END_WAIT_S
    sink.expire()
    assert out.types() == ["new", "end"]
    assert out.sent[-1][1]["summary"]["duration_s"] is None


def test_stats_go_out_every_interval_with_health_codes_and_outbox() -> None:
    out = Captured()
    figures = {"healthy": False, "problems": ["storage.failing"], "calls_open": 2,
               "drops": {"queue_drops": 5}}
    sink = FleetSink(out, figures=lambda: figures, stats_interval_s=60.0)
    sink(_cue("x", 1.0))
    loop = VirtualTimeLoop()

    async def go() -> None:
        task = asyncio.create_task(sink.run_stats())
        await asyncio.sleep(60 * 3 + 1)  # virtual seconds: no waiting
        task.cancel()

    run(go(), loop)
    stats = [p for t, p in out.sent if t.endswith("/stats")]
    assert len(stats) == 4  # at 0, 60, 120, 180 s
    s = stats[-1]
    assert s["healthy"] is False and s["problems"] == ["storage.failing"]
    assert s["calls_open"] == 2 and s["cues"] == {"interruption": 1}
    assert s["drops"] == {"fleet_dropped": 0, "queue_drops": 5}
    assert s["outbox"] == {"pending": 3, "evicted": 1}
