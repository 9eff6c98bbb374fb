"""Cue rules as pure state machines: timelines in, cues out (no audio, no model)."""

from __future__ import annotations

import pytest

from appliance.config import DeadAirConfig, InterruptionConfig, TalkRatioConfig, VadConfig
from appliance.engine.conversation import EchoGate, SpeechTracker
from appliance.engine.cues.dead_air import DeadAirRule
from appliance.engine.cues.interruption import InterruptionRule
from appliance.engine.cues.talk_ratio import TalkRatioRule
from tests.ctxutil import frames, run


def interruptions(agent, customer, duration=12.0, **kw):
    rule = InterruptionRule(InterruptionConfig(**kw))
    return [c for c in run(rule, frames(duration, agent, customer)) if c.kind == "interruption"]


def test_agent_talking_over_customer_is_an_interruption_at_the_defining_moment():
    cues = interruptions(agent=[(3.0, 6.0)], customer=[(1.0, 5.0)])
    assert len(cues) == 1
    c = cues[0]
    assert c.party == "agent"
    assert c.data.start_s == pytest.approx(3.0, abs=0.04)
    assert 3.6 <= c.t_s <= 3.6 + 0.05  # emitted as the overlap reaches 0.6 s


def test_one_turn_is_interrupted_once_even_if_the_interrupter_pauses():
    cues = interruptions(agent=[(3.0, 4.5), (5.0, 6.5)], customer=[(1.0, 8.0)])
    assert len(cues) == 1
    # a new customer turn can be interrupted again
    cues = interruptions(agent=[(3.0, 4.5), (9.5, 11.0)], customer=[(1.0, 5.0), (7.0, 11.5)])
    assert len(cues) == 2


def test_customer_can_interrupt_the_agent_too():
    cues = interruptions(agent=[(1.0, 6.0)], customer=[(2.0, 4.0)])
    assert [c.party for c in cues] == ["customer"]


@pytest.mark.parametrize("length", [0.2, 0.35, 0.5])
def test_backchannel_is_not_an_interruption(length):
    assert interruptions(agent=[(3.0, 3.0 + length)], customer=[(1.0, 8.0)]) == []


def test_quick_turn_taking_is_not_an_interruption():
    # agent starts 0.1 s after the customer stops, and with 0.15 s of overlap at the end
    assert interruptions(agent=[(5.1, 9.0)], customer=[(1.0, 5.0)]) == []
    assert interruptions(agent=[(4.85, 9.0)], customer=[(1.0, 5.0)]) == []


def test_onset_early_in_the_other_turn_is_not_an_interruption():
    # customer had spoken only 0.3 s (< 0.5 s) when the agent started: simultaneous start
    assert interruptions(agent=[(1.3, 4.0)], customer=[(1.0, 4.0)]) == []


def test_interruption_thresholds_are_configurable():
    assert interruptions(agent=[(3.0, 3.5)], customer=[(1.0, 8.0)], min_overlap_s=0.3)
    assert not interruptions(agent=[(3.0, 4.0)], customer=[(1.0, 8.0)], min_overlap_s=1.5)


def test_no_interruptions_on_hold():
    rule = InterruptionRule(InterruptionConfig())
    cues = run(rule, frames(10.0, [(3.0, 6.0)], [(1.0, 5.0)], hold=[(0.0, 10.0)]))
    assert cues == []


def test_speech_tracker_bridges_short_pauses_and_dates_the_end():
    tr = SpeechTracker(0.5, 0.35, 0.25)
    ended = []
    probs = [0.9] * 10 + [0.1] * 5 + [0.9] * 10 + [0.1] * 20  # 0.16 s pause bridged
    for i, p in enumerate(probs):
        e = tr.update(i * 0.032, (i + 1) * 0.032, p, False)
        if e:
            ended.append(e)
    assert len(ended) == 1
    assert ended[0].start_s == 0.0
    assert ended[0].end_s == pytest.approx(25 * 0.032)


def test_speech_tracker_needs_on_threshold_to_start_but_off_to_continue():
    tr = SpeechTracker(0.5, 0.35, 0.25)
    tr.update(0.0, 0.032, 0.4, False)
    assert not tr.speaking
    tr.update(0.032, 0.064, 0.6, False)
    tr.update(0.064, 0.096, 0.4, False)
    assert tr.speaking and tr.active


def test_blocked_frames_are_not_speech():
    tr = SpeechTracker(0.5, 0.35, 0.25)
    tr.update(0.0, 0.032, 0.99, True)
    assert not tr.speaking


def test_echo_gate_uses_the_other_partys_recent_peak():
    cfg = VadConfig()
    gate = EchoGate(cfg.echo_margin_db, 3)
    assert not gate.is_echo(-30.0, -60.0)  # other party quiet: own speech
    assert gate.is_echo(-52.0, -20.0)  # 32 dB below the other: echo
    assert gate.is_echo(-52.0, -70.0)  # other party just stopped: its echo is still arriving
    for _ in range(4):
        gate.is_echo(-70.0, -70.0)
    assert not gate.is_echo(-52.0, -70.0)  # long after: not echo
    assert not gate.is_echo(-35.0, -20.0)  # double talk 15 dB quieter: still speech


def test_dead_air_after_ten_seconds_of_silence_not_on_hold():
    rule = DeadAirRule(DeadAirConfig())
    cues = run(rule, frames(40.0, agent=[(0, 5), (18, 20), (22, 40)], customer=[(20, 22)]))
    assert len(cues) == 1
    assert cues[0].kind == "dead_air"
    assert cues[0].t_s == pytest.approx(5.25 + 10.0, abs=0.1)
    assert rule.summary()["dead_air"]["count"] == 1
    held = DeadAirRule(DeadAirConfig())
    assert run(held, frames(40.0, agent=[(0, 5), (30, 40)], hold=[(5.5, 29.0)])) == []
    short = DeadAirRule(DeadAirConfig())
    assert run(short, frames(30.0, agent=[(0, 5), (14, 30)])) == []


def test_talk_ratio_warns_when_the_agent_dominates_then_rearms():
    rule = TalkRatioRule(TalkRatioConfig())
    agent = [(t, t + 8.0) for t in range(0, 150, 10)]
    customer = [(t + 8.2, t + 9.8) for t in range(0, 150, 10)]
    cues = run(rule, frames(150.0, agent, customer))
    assert [c.kind for c in cues] == ["talk_ratio"]
    assert cues[0].data.share > 0.65
    balanced = TalkRatioRule(TalkRatioConfig())
    agent = [(t, t + 4.0) for t in range(0, 150, 10)]
    customer = [(t + 4.5, t + 9.5) for t in range(0, 150, 10)]
    assert run(balanced, frames(150.0, agent, customer)) == []
