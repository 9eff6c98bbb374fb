"""Call control (rule 16) from the PBX's signalling: answered late, the agent hanging up
first, and nothing at all for a call without signalling (a file, a headset)."""

from __future__ import annotations

import pytest

from appliance.config import CallControlConfig, config_from_dict
from appliance.engine.call_engine import CallEngine
from appliance.engine.cues.call_control import CallControlRule


def test_an_answer_after_three_rings_is_cued_once():
    rule = CallControlRule(CallControlConfig(answer_within_s=12.0))
    [cue] = rule.answered(0.0, 18.4)
    assert cue.kind == "answer_delay" and cue.party == "agent" and cue.severity == "warn"
    assert cue.data.to_json() == {"ring_s": 18.4, "limit_s": 12.0}
    assert rule.answered(0.0, 30.0) == []  # answered once
    assert rule.summary()["call_control"]["answer_delay"] is True


@pytest.mark.parametrize("ring_s", [0.0, 6.0, 12.0])
def test_an_answer_within_the_rings_is_quiet(ring_s):
    rule = CallControlRule(CallControlConfig(answer_within_s=12.0))
    assert rule.answered(0.0, ring_s) == []
    assert rule.summary()["call_control"] == {"ring_s": ring_s, "answer_delay": False,
                                              "hung_up_by": None, "hung_up_first": None}


@pytest.mark.parametrize("ring_s", [float("nan"), float("inf"), -1.0])
def test_nonsense_ring_times_are_ignored(ring_s):
    rule = CallControlRule(CallControlConfig())
    assert rule.answered(0.0, ring_s) == [] and rule.summary() == {}


def test_the_agent_leg_ending_first_is_hanging_up_first():
    rule = CallControlRule(CallControlConfig(hangup_grace_s=0.3))
    assert rule.leg_ended(95.0, "agent") == []  # undecided until the other leg ends
    [cue] = rule.leg_ended(95.6, "customer")
    assert cue.kind == "hung_up_first" and cue.t_s == 95.6
    assert cue.data.to_json() == {"agent_end_s": 95.0, "customer_end_s": 95.6}
    assert rule.summary()["call_control"]["hung_up_first"] is True


@pytest.mark.parametrize(("agent", "customer", "by"), [
    (96.0, 95.0, "customer"),  # the customer hung up: fine
    (95.0, 95.2, None),  # within the grace: the teardown's own jitter, no verdict
])
def test_no_cue_when_the_customer_ends_first_or_it_is_too_close(agent, customer, by):
    rule = CallControlRule(CallControlConfig(hangup_grace_s=0.3))
    first, second = sorted([(agent, "agent"), (customer, "customer")])
    assert rule.leg_ended(*first) == [] and rule.leg_ended(*second) == []
    assert rule.summary()["call_control"]["hung_up_by"] == by
    assert rule.summary()["call_control"]["hung_up_first"] is False


def test_the_pbx_naming_who_hung_up_decides():
    rule = CallControlRule(CallControlConfig())
    [cue] = rule.hung_up(80.0, "agent")
    assert cue.data.to_json() == {"agent_end_s": 80.0}
    assert rule.hung_up(80.1, "customer") == []  # decided once
    other = CallControlRule(CallControlConfig())
    assert other.hung_up(80.0, "customer") == []
    assert other.summary()["call_control"]["hung_up_by"] == "customer"


def test_the_engine_takes_signals_and_sums_them_up(silero):
    eng = CallEngine(config_from_dict({"call_control": {"answer_within_s": 10}}), silero,
                     call_id="tap-1")
    [late] = eng.signal("answered", ring_s=14.0)
    assert late.call_id == "tap-1" and eng.cue_counts["answer_delay"] == 1
    eng.signal("leg_ended", party="agent")
    with pytest.raises(ValueError):
        eng.signal("leg_ended")  # a leg needs its party
    _, summary = eng.finish()
    assert summary.data["call_control"]["ring_s"] == 14.0
    assert summary.data["cues"] == {"answer_delay": 1}


def test_a_call_without_signalling_has_no_call_control_in_its_summary(silero):
    _, summary = CallEngine(config_from_dict({}), silero).finish()
    assert "call_control" not in summary.data
