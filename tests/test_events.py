"""The closed set of events: every kind serialises to one JSONL line of the contract and
reads back to the same event."""

from __future__ import annotations

import dataclasses
import json

import pytest

from appliance import cue_payloads as P
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
    out += [Cue(10.0 + i, "agent" if i % 2 else None, ("info", "warn", "alert")[i % 3],
                f"{p.kind} message", p, call_id="c1")
            for i, p in enumerate(PAYLOADS)]
    return out


PAYLOADS: list[P.CuePayload] = [
    P.AnswerDelay(ring_s=18.0, limit_s=12.0),
    P.Closing(question=False, thanks=True),
    P.HungUpFirst(agent_end_s=95.2, customer_end_s=96.0),
    P.HungUpFirst(agent_end_s=95.2),
    P.DeadAir(start_s=5.216, silent_s=10.0),
    P.Filler(count=3, per_min=11.3, threshold_per_min=6.0, window_s=60.0, speech_s=15.9,
             words={"um": 2, "acoustic": 1}),
    P.FollowUp(start_s=41.2),
    P.Greeting(name=True, company=None, offer=True),
    P.Greeting(name=False, company=False, offer=True, missing=("name", "company")),
    P.HoldCheckBack(start_s=9.984, held_s=45.0),
    P.HoldEnded(start_s=4.992, end_s=29.984, duration_s=25.0, hold_type="unmuted",
                via="marks+music", leak_spans_s=((12.0, 13.984), (20.1, 21.0)), open_mic=True,
                open_at_end=False),
    P.HoldEnded(start_s=4.992, end_s=40.0, duration_s=35.0, hold_type="muted", via="phrase",
                leak_spans_s=(), open_mic=False, open_at_end=True),
    P.HoldLeak(start_s=12.0, end_s=12.512),
    P.HoldNoPermission(start_s=24.0, asked=True, answered=False),
    P.HoldNoThanks(start_s=26.0, end_s=40.0),
    P.HoldStarted(start_s=9.984, via="music"),
    P.HoldTooLong(start_s=9.984, held_s=60.0),
    P.HoldUnmuted(start_s=4.992, end_s=8.0),
    P.Interruption(start_s=3.008, overlap_s=0.61, interrupted="customer"),
    P.Jargon(term="DSLAM", start_s=10.38),
    P.Restated(start_s=33.5),
    P.SpeakingRate(syllables_per_s=6.48, window_speech_s=10.3, band_syllables_per_s=(3.0, 5.0),
                   state="fast"),
    P.SpeakingRate(syllables_per_s=4.1, window_speech_s=25.0, band_syllables_per_s=(3.0, 5.0),
                   state="ok", wpm=151),
    P.TalkRatio(share=0.835, window_s=60.4),
    P.Tone(state="raised", start_s=44.352, level_db=6.7, pitch_st=3.9),
    P.Tone(state="monotone", pitch_spread_st=0.95),
]
"""Every cue kind's payload, with each optional field both set and left out."""

# Lines the engine wrote before the payloads were typed (the rule tests' cues, call_id
# added): the contract, key order included, that the typed payloads must still write.
CONTRACT_LINES = [
    '{"t": 30.016, "kind": "closing", "party": "agent", "severity": "info", "message": '
    '"Closing: ask if anything else is needed", "data": {"question": false, "thanks": true}}',
    '{"t": 15.232, "kind": "dead_air", "party": null, "severity": "warn", "message": '
    '"10 s of silence: say what you are doing", "data": {"start": 5.216, "silent_s": 10.0}}',
    '{"t": 16.5, "kind": "filler", "party": "agent", "severity": "warn", "message": '
    '"Many fillers (um): pause instead", "data": {"count": 3, "per_min": 11.3, '
    '"threshold_per_min": 6.0, "window_s": 60.0, "speech_s": 15.9, "words": {"um": 3}}}',
    '{"t": 44.5, "kind": "follow_up", "party": "agent", "severity": "info", "message": '
    '"Callback promised: note a reminder", "data": {"start": 41.2}}',
    '{"t": 6.848, "kind": "greeting", "party": "agent", "severity": "info", "message": '
    '"Good: complete greeting", "data": {"name": true, "company": true, "offer": true}}',
    '{"t": 23.008, "kind": "greeting", "party": "agent", "severity": "info", "message": '
    '"Greeting: say your name", "data": {"name": false, "company": null, "offer": true, '
    '"missing": ["name"]}}',
    '{"t": 55.008, "kind": "hold_check_back", "party": "agent", "severity": "warn", "message": '
    '"45 s on hold: check back with the caller", "data": {"start": 9.984, "held_s": 45.0}}',
    '{"t": 30.016, "kind": "hold_ended", "party": "agent", "severity": "info", "message": '
    '"Hold ended after 25 s", "data": {"start": 4.992, "end": 29.984, "duration_s": 25.0, '
    '"type": "unmuted", "via": "marks", "leaks": [[12.0, 13.984]], "open_mic": true, '
    '"open_at_end": false}}',
    '{"t": 40, "kind": "hold_ended", "party": "agent", "severity": "info", "message": '
    '"Hold ended after 35 s", "data": {"start": 4.992, "end": 40, "duration_s": 35.0, '
    '"type": "muted", "via": "marks", "leaks": [], "open_mic": false, "open_at_end": true}}',
    '{"t": 12.512, "kind": "hold_leak", "party": "agent", "severity": "alert", "message": '
    '"Caller may hear you on hold", "data": {"start": 12.0, "end": 12.512}}',
    '{"t": 27.04, "kind": "hold_no_permission", "party": "agent", "severity": "warn", '
    '"message": "Wait for the caller\'s answer first", "data": {"start": 24.0, "asked": true, '
    '"answered": false}}',
    '{"t": 53.024, "kind": "hold_no_thanks", "party": "agent", "severity": "info", "message": '
    '"Thank the caller for waiting", "data": {"start": 26.0, "end": 40.0}}',
    '{"t": 10.016, "kind": "hold_started", "party": "agent", "severity": "info", "message": '
    '"On hold", "data": {"start": 9.984, "via": "marks"}}',
    '{"t": 70.016, "kind": "hold_too_long", "party": "agent", "severity": "alert", "message": '
    '"Hold over 60 s: return to the caller", "data": {"start": 9.984, "held_s": 60.0}}',
    '{"t": 8.0, "kind": "hold_unmuted", "party": "agent", "severity": "warn", "message": '
    '"Mic open on hold: mute it", "data": {"start": 4.992, "end": 8.0}}',
    '{"t": 2.592, "kind": "interruption", "party": "customer", "severity": "info", "message": '
    '"Caller cut in: pause and listen", "data": {"start": 1.984, "overlap_s": 0.61, '
    '"interrupted": "agent"}}',
    '{"t": 11.296, "kind": "jargon", "party": "agent", "severity": "info", "message": '
    '"Jargon: \'DSLAM\' — say it plainly", "data": {"term": "DSLAM", "start": 10.38}}',
    '{"t": 36.1, "kind": "restated", "party": "agent", "severity": "info", "message": '
    '"Good: you restated the problem", "data": {"start": 33.5}}',
    '{"t": 12.32, "kind": "speaking_rate", "party": "agent", "severity": "warn", "message": '
    '"Speaking fast: slow down a little", "data": {"syllables_per_s": 6.48, '
    '"window_speech_s": 10.3, "band": [3.0, 5.0], "state": "fast"}}',
    '{"t": 12.32, "kind": "speaking_rate", "party": "agent", "severity": "warn", "message": '
    '"Speaking fast: slow down a little", "data": {"syllables_per_s": 6.48, '
    '"window_speech_s": 10.3, "band": [3.0, 5.0], "state": "fast", "wpm": 151}}',
    '{"t": 60.448, "kind": "talk_ratio", "party": "agent", "severity": "warn", "message": '
    '"You spoke 83% of the last 1 min: ask and listen", "data": {"share": 0.835, '
    '"window_s": 60.4}}',
    '{"t": 17.44, "kind": "tone", "party": "agent", "severity": "info", "message": '
    '"Sounding flat: vary your tone", "data": {"state": "monotone", "pitch_spread_st": 0.95}}',
    '{"t": 45.856, "kind": "tone", "party": "customer", "severity": "info", "message": '
    '"Caller sounds upset: stay calm", "data": {"state": "agitated", "start": 44.352, '
    '"level_db": 6.7, "pitch_st": 3.9}}',
]


@pytest.mark.parametrize("event", _examples(), ids=lambda e: f"{e.kind}")
def test_every_event_kind_round_trips_through_its_jsonl_line(event: Event) -> None:
    line = json.loads(json.dumps(event.to_json()))  # what a reader of the output gets
    assert set(line) == CONTRACT and line["call_id"] == "c1"
    assert event_from_json(line) == event


def test_every_cue_kind_has_exactly_one_payload_class() -> None:
    assert len(P.PAYLOAD_CLASSES) == len(CUE_KINDS) == len(P.PAYLOAD_OF_KIND)
    assert sorted(P.PAYLOAD_OF_KIND) == sorted(CUE_KINDS)
    for kind, cls in P.PAYLOAD_OF_KIND.items():
        assert cls.__name__ == "".join(w.title() for w in kind.split("_")), kind
        example = cls(**_minimal(cls))
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(example, dataclasses.fields(cls)[0].name, 1.0)
        assert not hasattr(example, "__dict__"), f"{kind}: not slotted"
    assert {p.kind for p in PAYLOADS} == set(CUE_KINDS)  # the examples cover every kind


def _minimal(cls: type) -> dict:
    return {f.name: 0.0 for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING}


def test_a_cue_takes_its_kind_from_its_payload_and_is_frozen() -> None:
    cue = Cue(3.6, "agent", "warn", "talked over", P.Interruption(3.0, 0.61, "customer"))
    assert cue.kind == "interruption" and cue.to_json()["kind"] == "interruption"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cue.data.overlap_s = 2.0  # type: ignore[misc]


def _kind(line: str) -> str:
    return json.loads(line)["kind"]


@pytest.mark.parametrize("line", CONTRACT_LINES, ids=_kind)
def test_typed_payloads_write_the_contract_as_before(line: str) -> None:
    """Each line, read back and written again, is the same text: no key renamed, dropped,
    added or moved, no value changed."""
    raw = json.loads(line) | {"call_id": "c1"}
    cue = event_from_json(raw)
    assert isinstance(cue, Cue) and isinstance(cue.data, P.PAYLOAD_OF_KIND[raw["kind"]])
    assert json.dumps(cue.to_json(), ensure_ascii=False) == json.dumps(raw, ensure_ascii=False)


def test_payload_fields_carry_units_and_write_the_contract_keys() -> None:
    hold = P.HoldEnded(start_s=1.0, end_s=9.0, duration_s=8.0, hold_type="music", via="music",
                       leak_spans_s=((2.0, 3.0),), open_mic=False, open_at_end=False)
    assert (hold.start_s, hold.end_s, hold.leak_spans_s[0]) == (1.0, 9.0, (2.0, 3.0))
    assert list(hold.to_json()) == ["start", "end", "duration_s", "type", "via", "leaks",
                                    "open_mic", "open_at_end"]
    assert hold.to_json()["leaks"] == [[2.0, 3.0]]  # lists, as json.loads gives them back
    words = {"um": 1}
    filler = P.Filler(1, 6.5, 6.0, 60.0, 10.0, words)
    filler.to_json()["words"]["um"] = 99
    assert filler.words == {"um": 1}  # the serialised form is a copy


@pytest.mark.parametrize(("kind", "data"), [
    ("hold_leak", {"start": 1.0}),  # a key missing
    ("hold_leak", {"start": 1.0, "end": 2.0, "extra": 3}),  # a key the payload does not know
    ("tone", {"start": 1.0}),
    ("greeting", ["name"]),
])
def test_a_cue_line_whose_data_does_not_fit_its_kind_is_refused(kind: str, data: object) -> None:
    line = {"t": 2.0, "kind": kind, "party": "agent", "severity": "info", "message": "",
            "data": data, "call_id": "c"}
    with pytest.raises(ValueError):
        event_from_json(line)


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


def test_the_recorder_keeps_interleaved_calls_apart_with_their_agent_and_source() -> None:
    """Many calls (the PBX tap): another call's events come between a call's end and its
    summary; each record still gets its own times, agent and source."""
    from appliance.stream.record import CallRecord, CallRecorder

    records: list[CallRecord] = []
    rec = CallRecorder(records.append)
    for ev in (CallStarted("a", "de", agent_id="a-7", source="rtp",
                           started_at="2026-12-06T09:00:00.000Z"),
               CallStarted("b", "en", agent_id="b-2", source="websocket",
                           started_at="2026-12-06T09:00:10.000Z"),
               CallEnded("a", 30.0, "source_closed", "2026-12-06T09:00:30.000Z"),
               CallEnded("b", 25.0, "api", "2026-12-06T09:00:35.000Z"),
               Summary(25.0, {"language": "en"}, call_id="b"),
               Summary(30.0, {"language": "de"}, call_id="a")):
        rec(ev)
    got = {r.call_id: (r.agent_id, r.source, r.ended_at.isoformat()) for r in records}
    assert got == {"a": ("a-7", "rtp", "2026-12-06T09:00:30+00:00"),
                   "b": ("b-2", "websocket", "2026-12-06T09:00:35+00:00")}
    for i in range(CallRecorder.MAX_ENDED + 5):  # calls that end without a summary
        rec(CallStarted(f"q{i}", "en"))
        rec(CallEnded(f"q{i}", 1.0, "idle", "2026-12-06T09:01:00.000Z"))
    assert len(rec._ended) == CallRecorder.MAX_ENDED and rec.open_calls() == 0
