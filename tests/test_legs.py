"""Two legs of a call into one block stream (``audio/legs.py``): in step, any chunking gives
the same blocks; a lagging leg is filled with silence and its late audio dropped, both
counted, so the call's timeline and its cues stay near real time; a leg that hangs up is
silence; 8 kHz legs come out at the pipeline rate."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.audio.legs import LegAligner

RNG = np.random.default_rng(11)


def _tone(n: int, rate: int, f: float = 440.0) -> np.ndarray:
    t = np.arange(n) / rate
    return (8000 * np.sin(2 * np.pi * f * t)).astype(np.int16)


def _join(blocks):
    a = np.concatenate([b.agent for b in blocks]) if blocks else np.zeros(0, np.int16)
    c = np.concatenate([b.customer for b in blocks]) if blocks else np.zeros(0, np.int16)
    return a, c


def _feed(al: LegAligner, agent: np.ndarray, customer: np.ndarray, sizes: list[int]):
    out, i, k = [], 0, 0
    while i < len(agent) or i < len(customer):
        n = sizes[k % len(sizes)]
        out += al.push("agent", agent[i:i + n])
        out += al.push("customer", customer[i:i + n])
        i += n
        k += 1
    return out + al.flush()


@pytest.mark.parametrize("sizes", [[160], [320, 17, 999], [4000]])
def test_legs_in_step_give_the_same_blocks_whatever_the_chunking(sizes):
    agent = RNG.integers(-9000, 9000, 16000 * 3, dtype=np.int16)
    customer = RNG.integers(-9000, 9000, 16000 * 3, dtype=np.int16)
    blocks = _feed(LegAligner(16000, max_skew_s=0.5), agent, customer, sizes)
    a, c = _join(blocks)
    assert np.array_equal(a[:len(agent)], agent) and np.array_equal(c[:len(customer)], customer)
    assert [b.t_s for b in blocks] == pytest.approx([i * 0.032 for i in range(len(blocks))])
    assert all(len(b.agent) == len(b.customer) == 512 for b in blocks)


def test_narrowband_legs_come_out_at_the_pipeline_rate():
    agent, customer = _tone(8000 * 2, 8000), _tone(8000 * 2, 8000, 300.0)
    one = _join(_feed(LegAligner(8000), agent, customer, [160]))
    other = _join(_feed(LegAligner(8000), agent, customer, [333, 80]))
    assert np.array_equal(one[0], other[0]) and np.array_equal(one[1], other[1])
    assert len(one[0]) == -(-32000 // 512) * 512
    ref = _tone(32000, 16000)
    assert np.corrcoef(one[0][2000:30000].astype(float), ref[2000:30000])[0, 1] > 0.99


def test_a_stalled_leg_is_filled_with_silence_and_its_late_audio_dropped():
    al = LegAligner(16000, max_skew_s=0.2)
    agent = RNG.integers(-9000, 9000, 16000, dtype=np.int16)
    blocks = al.push("agent", agent)  # one second of the agent, nothing from the customer
    a, c = _join(blocks)
    assert len(a) == 16000 // 512 * 512  # not held back by the silent leg
    assert not c.any() and al.stats()["customer"]["filled_s"] == pytest.approx(1.0, abs=0.01)
    # the customer's second arrives late: its span was filled, so it is dropped, counted
    late = RNG.integers(-9000, 9000, 16000, dtype=np.int16)
    assert al.push("customer", late) == []
    assert al.stats()["customer"]["late_s"] == pytest.approx(1.0, abs=0.01)
    # from now on both legs are in step again (20 ms packets), on the agent's timeline
    nxt_a = RNG.integers(-9000, 9000, 5120, dtype=np.int16)
    nxt_c = RNG.integers(-9000, 9000, 5120, dtype=np.int16)
    blocks = []
    for i in range(0, 5120, 320):
        blocks += al.push("agent", nxt_a[i:i + 320]) + al.push("customer", nxt_c[i:i + 320])
    blocks += al.flush()
    a, c = _join(blocks)
    assert blocks[0].t_s == pytest.approx(31 * 0.032)
    assert np.array_equal(a[:5248], np.concatenate([agent[-128:], nxt_a]))
    assert np.array_equal(c[128:5248], nxt_c)  # the fresh audio lands in step
    assert al.stats()["customer"]["late_s"] == pytest.approx(1.0, abs=0.01)  # nothing more


def test_a_leg_that_joins_late_keeps_its_live_audio():
    al = LegAligner(16000, max_skew_s=0.2)
    blocks = al.push("agent", RNG.integers(-900, 900, 8000, dtype=np.int16))  # 0.5 s alone
    assert al.stats()["customer"]["filled_s"] == pytest.approx(0.5)
    live_c = RNG.integers(-900, 900, 3200, dtype=np.int16)
    for i in range(0, 3200, 320):  # then both live, 20 ms packets, the customer first
        blocks += al.push("customer", live_c[i:i + 320])
        blocks += al.push("agent", RNG.integers(-900, 900, 320, dtype=np.int16))
    blocks += al.flush()
    _, c = _join(blocks)
    assert al.stats()["customer"]["late_s"] == 0.0  # none of its live audio dropped
    assert np.array_equal(c[8000:11200], live_c)  # right after its silence


def test_a_leg_within_the_skew_is_waited_for():
    al = LegAligner(16000, max_skew_s=0.2)
    assert al.push("agent", RNG.integers(-900, 900, 2048, dtype=np.int16)) == []  # 0.128 s
    assert al.stats()["customer"]["filled_s"] == 0.0
    got = al.push("customer", RNG.integers(-900, 900, 2048, dtype=np.int16))
    assert len(got) == 4


def test_a_leg_that_hung_up_is_silence_and_the_other_sets_the_pace():
    al = LegAligner(16000)
    al.push("agent", RNG.integers(-900, 900, 1024, dtype=np.int16))
    al.push("customer", RNG.integers(-900, 900, 1024, dtype=np.int16))
    al.end_leg("agent")
    blocks = al.push("customer", RNG.integers(-900, 900, 1024, dtype=np.int16))
    assert len(blocks) == 2 and not blocks[-1].agent.any()
    assert al.push("agent", np.ones(512, np.int16)) == []  # after its end: ignored
    assert al.t_s == pytest.approx(4 * 0.032)


def test_only_telephone_rates():
    with pytest.raises(ValueError):
        LegAligner(44100)


@pytest.mark.parametrize("burst_s", [0.5, 4.0])
def test_a_burst_of_both_legs_in_one_turn_is_not_a_stall(burst_s):
    """A listener whose loop was held up delivers a burst of one leg, then of the other, at
    the same moment (one big chunk, or many 20 ms messages): nothing is filled or dropped,
    as if they had come in step."""
    n = int(burst_s * 8000)
    agent = RNG.integers(-9000, 9000, 3 * n, dtype=np.int16)
    customer = RNG.integers(-9000, 9000, 3 * n, dtype=np.int16)
    for piece in (n, 160):
        al = LegAligner(8000)
        ref = LegAligner(8000)
        out: list = []
        for k in range(3):
            now = 10.0 + k * burst_s  # each burst arrives at once, a burst's length apart
            for party, leg in (("agent", agent), ("customer", customer)):
                for i in range(k * n, (k + 1) * n, piece):
                    out += al.push(party, leg[i:i + piece], now)
        out += al.flush()
        want = _feed(ref, agent, customer, [160])
        assert al.stats() == {"agent": {"filled_s": 0.0, "late_s": 0.0},
                              "customer": {"filled_s": 0.0, "late_s": 0.0}}
        got_a, got_c = _join(out)
        want_a, want_c = _join(want)
        assert np.array_equal(got_a, want_a) and np.array_equal(got_c, want_c)


def test_a_leg_that_stops_arriving_is_a_stall_by_the_clock():
    """The agent's leg goes on in real time, the customer's stops: after max_skew_s of
    arrival time (and of audio) the customer is filled; its backlog, when it comes, is
    dropped."""
    al = LegAligner(8000, max_skew_s=0.3)
    x = _tone(8000 * 2, 8000)
    now = 0.0
    for i in range(0, 8000, 160):  # 1 s in step
        al.push("agent", x[i:i + 160], now)
        al.push("customer", x[i:i + 160], now)
        now += 0.02
    filled_at = None
    for i in range(8000, 16000, 160):  # the customer stalls
        al.push("agent", x[i:i + 160], now)
        if filled_at is None and al.stats()["customer"]["filled_s"] > 0:
            filled_at = now
        now += 0.02
    assert filled_at is not None and 1.3 <= filled_at <= 1.4
    al.push("customer", x[8000:16000], now)  # the stalled leg's backlog, all at once
    st = al.stats()["customer"]  # filled in steps once each span is 0.3 s old
    assert 0.6 <= st["filled_s"] <= 1.0 and st["late_s"] == st["filled_s"]
