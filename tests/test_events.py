"""The closed set of events: every kind serialises to one JSONL line of the contract and
reads back to the same event."""

from __future__ import annotations

import json

import pytest

from appliance.events import (
    CUE_KINDS,
    END_REASONS,
    CallEnded,
    CallStarted,
    Cue,
    ErrorEvent,
    Event,
    Summary,
    TranscriptEvent,
    event_from_json,
)

CONTRACT = {"t", "kind", "party", "severity", "message", "data", "call_id"}


def _examples() -> list[Event]:
    out: list[Event] = [
        CallStarted("c1", "de", agent_id="a7", source="headset",
                    started_at="2026-12-06T09:00:00.000Z"),
        ErrorEvent(12.5, "input.truncated", "the file ended early", call_id="c1"),
        TranscriptEvent(3.0, "customer", "hello there", 1.0, 2.5, call_id="c1"),
        Summary(60.0, {"duration_s": 60.0, "cues": {"tone": 1}}, call_id="c1"),
    ]
    out += [CallEnded("c1", 60.0, r) for r in END_REASONS]
    out += [Cue(10.0 + i, k, "agent" if i % 2 else None, ("info", "warn", "alert")[i % 3],
                f"{k} message", {"start": 9.0 + i}, call_id="c1")
            for i, k in enumerate(CUE_KINDS)]
    return out


@pytest.mark.parametrize("event", _examples(), ids=lambda e: f"{e.kind}")
def test_every_event_kind_round_trips_through_its_jsonl_line(event: Event) -> None:
    line = json.loads(json.dumps(event.to_json()))  # what a reader of the output gets
    assert set(line) == CONTRACT and line["call_id"] == "c1"
    assert event_from_json(line) == event


def test_a_transcript_reads_back_masked() -> None:
    ev = TranscriptEvent(3.0, "agent", "my card is 4 5 5 6 7 8", 1.0, 2.5, call_id="c1")
    back = event_from_json(ev.to_json())
    assert isinstance(back, TranscriptEvent) and "4 5 5" not in back.text


@pytest.mark.parametrize("line", [
    {"t": 1.0, "kind": "brand_new", "party": None, "severity": "info", "message": "",
     "data": {}, "call_id": "c"},
    {"t": 1.0, "kind": "tone", "party": "agent", "severity": "loud", "message": "",
     "data": {}, "call_id": "c"},
    {"t": 1.0, "kind": "call_ended", "party": None, "severity": "info", "message": "",
     "data": {"reason": "boredom"}, "call_id": "c"},
    {"kind": "summary"},
])
def test_a_line_that_is_no_event_is_refused(line: dict) -> None:
    with pytest.raises(ValueError):
        event_from_json(line)


def test_a_failing_sink_costs_nothing_to_the_others(caplog: pytest.LogCaptureFixture) -> None:
    from appliance.stream.bus import EventBus

    got: list[str] = []
    bus = EventBus()

    def broken(ev: Event) -> None:
        raise RuntimeError("sink bug")

    bus.subscribe(broken)
    bus.subscribe(lambda ev: got.append(ev.kind))
    for ev in _examples()[:3]:
        bus.emit(ev)
    assert got == ["call_started", "error", "transcript"] and bus.failures == 3
    assert sum("an event sink failed (RuntimeError)" in m for m in caplog.messages) == 1


def test_the_recorder_makes_one_record_per_summarised_call() -> None:
    from appliance.stream.record import CallRecord, CallRecorder

    records: list[CallRecord] = []
    keep, drop = CallRecorder(records.append, keep_transcripts=True), CallRecorder(
        records.append)
    for rec in (keep, drop):
        for ev in (CallStarted("a", "fr", started_at="2026-12-06T09:00:00.000Z"),
                   TranscriptEvent(2.0, "agent", "bonjour 4 5 6 7", 1.0, 1.8, call_id="a"),
                   CallStarted("b", "fr", started_at="2026-12-06T09:00:30.000Z"),
                   CallEnded("b", 20.0, "idle", "2026-12-06T09:01:00.000Z"),  # nobody spoke
                   CallEnded("a", 75.0, "end_key", "2026-12-06T09:01:15.000Z"),
                   Summary(75.0, {"language": "fr"}, call_id="a")):
            rec(ev)
    kept, plain = records
    assert (kept.call_id, kept.language, kept.started_at.isoformat(),
            kept.ended_at.isoformat()) == ("a", "fr", "2026-12-06T09:00:00+00:00",
                                           "2026-12-06T09:01:15+00:00")
    assert [u["data"]["text"] for u in kept.utterances] == ["bonjour •••"]
    assert plain.utterances == [] and kept.summary["kind"] == "summary"
    assert keep.open_calls() == 0  # call b ended without a summary: nothing is held for it
