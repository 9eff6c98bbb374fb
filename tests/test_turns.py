"""Turns, not VAD fragments: the speech tracker's turns, the interruption rule and talk time
over within-turn pauses, and the level detector fused with Silero (no audio, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.config import InterruptionConfig, TalkRatioConfig
from appliance.engine.conversation import SpeechTracker
from appliance.engine.cues.interruption import InterruptionRule
from appliance.engine.cues.talk_ratio import TalkRatioRule
from appliance.engine.features.extractor import FeatureFrames
from appliance.engine.level_vad import LevelDetector
from tests.ctxutil import frames, run

FRAME_S = 0.032


def _track(segments: list[tuple[float, float]], turn_gap_s: float = 0.4,
           until: float = 6.0) -> list[tuple[float, float | None, bool]]:
    tr = SpeechTracker(0.5, 0.35, 0.25, turn_gap_s)
    out = []
    for i in range(round(until / FRAME_S)):
        t0, t1 = i * FRAME_S, (i + 1) * FRAME_S
        sp = any(s <= t0 < e for s, e in segments)
        tr.update(t0, t1, 0.9 if sp else 0.02, False)
        out.append((t1, tr.turn_start_s, tr.turn_open(t1)))
    return out


def test_a_short_pause_stays_inside_the_turn_a_long_one_ends_it():
    rows = _track([(0.5, 2.0), (2.35, 3.5), (4.2, 5.0)])
    starts = sorted({ts for _, ts, _ in rows if ts is not None})
    assert len(starts) == 2  # the 0.35 s pause is bridged, the 0.7 s pause is a new turn
    assert starts[0] == pytest.approx(0.5, abs=0.04) and starts[1] == pytest.approx(4.2, abs=0.04)
    assert all(open_ for t, _, open_ in rows if 2.0 <= t <= 2.35)
    assert not any(open_ for t, _, open_ in rows if 3.95 <= t <= 4.15)


def _interruptions(agent, customer, duration=8.0):
    rule = InterruptionRule(InterruptionConfig())
    return [(c.party, round(c.data.start_s, 2), c.t_s)
            for c in run(rule, frames(duration, agent, customer))]


def test_interrupter_pausing_inside_the_turn_is_still_one_interruption():
    # customer speaks 0-4 s; agent cuts in at 1.5 s with a 0.35 s pause after 0.4 s
    cues = _interruptions(agent=[(1.5, 1.9), (2.25, 3.5)], customer=[(0.0, 4.0)])
    assert [(p, s) for p, s, _ in cues] == [("agent", 1.5)]
    # the pause counts: the cue comes as the agent speaks again, within 0.3 s of 0.6 s
    assert cues[0][2] <= 1.5 + 0.6 + 0.3


def test_host_pausing_inside_the_turn_does_not_stall_the_count():
    cues = _interruptions(agent=[(1.5, 3.5)], customer=[(0.0, 1.8), (2.15, 4.0)])
    assert [(p, s) for p, s, _ in cues] == [("agent", 1.5)]


def test_the_speaker_who_resumes_after_a_within_turn_pause_is_not_the_interrupter():
    # customer pauses 0.35 s at 2.0; the agent starts in that pause and keeps talking while
    # the customer resumes: the agent cut in, the customer did not
    cues = _interruptions(agent=[(2.1, 4.5)], customer=[(0.0, 2.0), (2.35, 4.0)])
    assert [p for p, _, _ in cues] == ["agent"]


def test_resuming_after_a_long_pause_over_the_other_is_an_interruption():
    cues = _interruptions(agent=[(0.0, 2.0), (3.0, 5.0)], customer=[(2.3, 5.0)])
    assert [p for p, _, _ in cues] == ["agent"]


@pytest.mark.parametrize("gap", [-0.2, -0.05, 0.1, 0.35])
def test_quick_turn_taking_is_not_an_interruption(gap):
    assert _interruptions(agent=[(0.0, 3.0)], customer=[(3.0 + gap, 6.0)]) == []


def test_backchannel_is_not_an_interruption():
    assert _interruptions(agent=[(1.0, 1.45)], customer=[(0.0, 4.0)]) == []


def _talk(agent, turn_gap_s=0.4, duration=10.0):
    rule = TalkRatioRule(TalkRatioConfig(), turn_gap_s)
    run(rule, frames(duration, agent, []))
    return rule.talk_s["agent"]


def test_talk_time_counts_pauses_inside_turns_only():
    speech = [(0.0, 1.0), (1.3, 2.3), (3.0, 4.0)]  # a 0.3 s and a 0.7 s pause
    assert _talk(speech) == pytest.approx(3.3, abs=0.07)
    assert _talk(speech, turn_gap_s=0.0) == pytest.approx(3.0, abs=0.07)


# ------------------------------------------------------------------ level detector
def _feats(levels: list[float], *, flatness: float = 0.12, tonality: float = 0.05,
           t0: float = 0.0) -> FeatureFrames:
    n = len(levels)
    z = np.zeros(n)
    return FeatureFrames(t_s=t0 + 0.01 * np.arange(1, n + 1), level_dbfs=np.asarray(levels, float),
                         band_db=np.asarray(levels, float), f0_hz=np.full(n, 150.0),
                         voicing=z + 0.8, flatness=z + flatness, tonality=z + tonality,
                         digital_silence=np.zeros(n, bool), noise_floor_dbfs=z - 60.0,
                         band_floor_db=z - 60.0)


def _run_level(hop_levels: list[float], **kw: float) -> list[float]:
    det = LevelDetector(15.0, 7.0, 0.425)
    return [det.update(_feats(hop_levels[i:i + 3], **kw), -60.0)
            for i in range(0, len(hop_levels) - 2, 3)]


def _syllables(n_frames: int, peak: float = -25.0, dip: float = -40.0) -> list[float]:
    """A 5 Hz syllable envelope between ``dip`` and ``peak`` dBFS, in 10 ms hops."""
    t = np.arange(3 * n_frames) * 0.01
    return list(dip + (peak - dip) * (0.5 + 0.5 * np.cos(2 * np.pi * 5 * t)))


def test_level_detector_finds_loud_syllabic_speech_and_carries_its_dips():
    ev = _run_level(_syllables(30, peak=-22.0, dip=-38.0))
    assert max(ev) == 1.0
    assert ev.index(1.0) <= 4  # within ~0.13 s
    assert sum(e > 0 for e in ev[ev.index(1.0):]) >= 0.8 * len(ev[ev.index(1.0):])


def test_level_detector_ignores_steady_music_clicks_and_hiss():
    assert max(_run_level([-25.0] * 90)) == 0.0  # steady: no syllabic fall
    assert max(_run_level(_syllables(30), tonality=0.8)) == 0.0  # sustained notes
    assert max(_run_level(_syllables(30), flatness=0.0)) == 0.0  # pure partials
    assert max(_run_level(_syllables(30), flatness=0.45)) == 0.0  # clicks, hiss
    assert max(_run_level(_syllables(30, peak=-50.0, dip=-58.0))) == 0.0  # near the floor


def test_level_detector_single_loud_frame_is_not_speech():
    hops = [-58.0] * 30 + [-20.0, -30.0, -45.0] + [-58.0] * 30
    assert max(_run_level(hops)) == 0.0
