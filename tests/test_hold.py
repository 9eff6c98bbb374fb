"""The hold state machine: marks and music start a hold; leaks, open mic and timers."""

from __future__ import annotations

import pytest

from appliance.config import HoldConfig
from appliance.engine.hold import HoldTracker

F = 0.032


def drive(duration_s, *, marks=(), music=(), speech=(), silent=True, level=-60.0, cfg=None,
          request_at=None, customer=()):
    """Run the tracker over a timeline; returns (cues, tracker).

    music/speech: intervals; silent: agent channel digital silence outside speech/music
    (else open-mic room noise at ``level``).
    """
    h = HoldTracker(cfg or HoldConfig())
    pending = sorted(marks)
    cues = []
    spurt_start = None
    for i in range(int(duration_s / F)):
        t0, t1 = i * F, (i + 1) * F
        mid = t0 + F / 2
        due = []
        while pending and pending[0][0] < t1:
            due.append(pending.pop(0))
        if request_at is not None and t0 <= request_at < t1:
            h.request_hold(request_at)
        is_music = any(s <= mid < e for s, e in music)
        is_speech = any(s <= mid < e for s, e in speech)
        if is_speech and spurt_start is None:
            spurt_start = t0
        if not is_speech:
            spurt_start = None
        cues += h.update(
            t0, t1, due, music=is_music, speaking=is_speech, active=is_speech,
            spurt_start_s=spurt_start, digital_silence=silent and not (is_music or is_speech),
            level_dbfs=-25.0 if (is_music or is_speech) else (-120.0 if silent else level),
            other_speaking=any(s <= mid < e for s, e in customer),
        )
    cues += h.close(duration_s)
    return cues, h


def kinds(cues):
    return [c.kind for c in cues]


def test_marked_muted_hold_is_quiet_and_timed():
    cues, h = drive(80, marks=[(10.0, "hold_start"), (72.0, "hold_end")])
    assert kinds(cues) == ["hold_started", "hold_check_back", "hold_too_long", "hold_ended"]
    check = next(c for c in cues if c.kind == "hold_check_back")
    assert check.t_s == pytest.approx(55.0, abs=0.05)
    too_long = next(c for c in cues if c.kind == "hold_too_long")
    assert too_long.t_s == pytest.approx(70.0, abs=0.05) and too_long.severity == "alert"
    assert h.holds[0].hold_type == "muted" and h.holds[0].duration_s == pytest.approx(62, abs=0.1)


def test_open_mic_hold_is_flagged_unmuted():
    cues, h = drive(40, marks=[(5.0, "hold_start"), (30.0, "hold_end")], silent=False)
    un = [c for c in cues if c.kind == "hold_unmuted"]
    assert len(un) == 1 and un[0].t_s == pytest.approx(8.0, abs=0.1)
    assert h.holds[0].hold_type == "unmuted"


def test_leak_of_speech_during_hold_alerts_within_the_min_duration():
    cues, h = drive(40, marks=[(5.0, "hold_start"), (30.0, "hold_end")], silent=False,
                    speech=[(12.0, 14.0), (20.0, 20.3)])
    leaks = [c for c in cues if c.kind == "hold_leak"]
    assert len(leaks) == 1  # the 0.3 s cough is below leak_min_s
    assert leaks[0].t_s == pytest.approx(12.5, abs=0.07)
    assert leaks[0].data.start_s == pytest.approx(12.0, abs=0.04)
    assert h.holds[0].leak_spans_s == ((pytest.approx(12.0, abs=0.04),
                                        pytest.approx(14.0, abs=0.04)),)


def test_music_starts_and_ends_a_hold_without_marks_and_is_not_a_leak():
    cues, h = drive(60, music=[(10.0, 40.0)], speech=[(45.0, 50.0)])
    assert kinds(cues) == ["hold_started", "hold_ended"]
    assert cues[0].data.start_s == pytest.approx(10.0, abs=0.04)
    end = cues[1]
    assert end.data.end_s == pytest.approx(40.0, abs=0.05)
    assert end.t_s == pytest.approx(41.5, abs=0.1)  # music_end_s later
    assert h.holds[0].hold_type == "music" and h.holds[0].via == "music"


def test_marked_hold_with_music_is_a_music_hold_and_never_unmuted():
    cues, h = drive(60, marks=[(10.0, "hold_start"), (50.0, "hold_end")], music=[(10.0, 50.0)],
                    silent=False)
    assert "hold_unmuted" not in kinds(cues) and "hold_leak" not in kinds(cues)
    assert h.holds[0].hold_type == "music"


def test_speech_before_the_hold_is_not_a_leak():
    cues, _ = drive(30, marks=[(10.0, "hold_start"), (20.0, "hold_end")], speech=[(5.0, 11.0)])
    leaks = [c for c in cues if c.kind == "hold_leak"]
    # only the part inside the hold counts: 1 s of it, so a leak, dated from the hold start
    assert len(leaks) == 1 and leaks[0].data.start_s == pytest.approx(10.0, abs=0.04)


def test_hold_end_mark_without_hold_is_ignored_and_thresholds_configurable():
    cfg = HoldConfig(check_back_s=10.0, too_long_s=20.0)
    cues, _ = drive(40, marks=[(1.0, "hold_end"), (5.0, "hold_start")], cfg=cfg)
    assert kinds(cues) == ["hold_started", "hold_check_back", "hold_too_long", "hold_ended"]


def test_music_tail_after_a_hold_end_mark_does_not_start_a_new_hold():
    cues, _ = drive(60, marks=[(10.0, "hold_start"), (40.0, "hold_end")], music=[(10.0, 41.5)])
    assert kinds(cues) == ["hold_started", "hold_ended"]
    cues, _ = drive(80, marks=[(10.0, "hold_start"), (40.0, "hold_end")],
                    music=[(10.0, 41.5), (50.0, 70.0)])
    assert kinds(cues) == ["hold_started", "hold_ended", "hold_started", "hold_ended"]


def test_agent_speaking_after_the_music_ends_a_music_hold_at_once_and_is_no_leak():
    cues, h = drive(60, music=[(10.0, 40.0)], speech=[(40.3, 45.0)])
    assert kinds(cues) == ["hold_started", "hold_ended"]
    assert cues[1].t_s == pytest.approx(40.3, abs=0.07)
    assert h.holds[0].end_s == pytest.approx(40.0, abs=0.05)


def test_a_short_burst_of_music_is_not_a_hold():
    cues, _ = drive(30, music=[(10.0, 10.5), (12.0, 12.9)])
    assert cues == []


def test_hold_request_phrase_then_silence_is_a_hold_until_the_agent_speaks():
    cues, h = drive(60, speech=[(2.0, 10.0), (40.0, 45.0)], customer=[(10.5, 11.0)],
                    request_at=10.0)
    assert kinds(cues) == ["hold_started", "hold_ended"]
    assert cues[0].data.via == "phrase"
    assert cues[0].data.start_s == pytest.approx(11.0, abs=0.05)  # after the « okay »
    assert cues[0].t_s == pytest.approx(16.0, abs=0.05)  # 5 s of silence later
    assert h.holds[0].end_s == pytest.approx(40.0, abs=0.05)


def test_hold_request_followed_by_talk_is_no_hold():
    cues, _ = drive(60, speech=[(2.0, 10.0), (12.0, 30.0)], request_at=10.0)
    assert cues == []
    late, _ = drive(90, speech=[(2.0, 10.0), (12.0, 14.0)], request_at=10.0,
                    customer=[(14.5, 50.0)])
    assert late == []  # silence only long after the request: not this hold
    short, _ = drive(40, speech=[(2.0, 10.0), (10.5, 12.0)], request_at=10.0)
    # « one moment please, I'll check » — a little talk after the request is fine
    assert kinds(short) == ["hold_started", "hold_ended"]


def test_marks_that_make_no_sense_are_ignored_out_loud(caplog):
    """An end with no hold open, a second start while a marked hold runs: one warning line
    each and a line in the summary; a marked hold that never ends says so in its record."""
    cues, h = drive(40, marks=[(1.0, "hold_end"), (5.0, "hold_start"), (8.0, "hold_start"),
                               (12.0, "hold_end"), (13.0, "hold_end"), (20.0, "hold_start")])
    assert kinds(cues) == ["hold_started", "hold_ended", "hold_started", "hold_ended"]
    assert h.marks_ignored == [
        {"t": 1.0, "event": "hold_end", "reason": "no_hold_open"},
        {"t": 8.0, "event": "hold_start", "reason": "already_on_hold"},
        {"t": 13.0, "event": "hold_end", "reason": "no_hold_open"},
    ]
    assert [h.open_at_end for h in h.holds] == [False, True]
    # the record is the hold_ended cue's payload: the cue says so too, built complete
    assert [c.data for c in cues if c.kind == "hold_ended"] == h.holds
    lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert lines == ["hold_end mark at 1.0 s ignored: no hold is open",
                     "hold_start mark at 8.0 s ignored: a marked hold is already running",
                     "hold_end mark at 13.0 s ignored: no hold is open",
                     "the hold marked at 20.0 s has no hold_end: it runs to the end of the "
                     "call (40.0 s)"]


def test_a_hold_key_pressed_over_music_joins_the_music_hold_silently(caplog):
    _, h = drive(40, marks=[(20.0, "hold_start"), (30.0, "hold_end")], music=[(10.0, 30.0)])
    assert h.marks_ignored == [] and h.holds[0].via == "marks+music"
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_the_list_of_ignored_marks_is_bounded():
    _, h = drive(10, marks=[(0.1 * i, "hold_end") for i in range(1, 90)])
    assert h.marks_ignored_total == 89 and len(h.marks_ignored) == 50
