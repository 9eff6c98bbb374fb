"""The shared recognizer pool: order per lane, agent first, bounded with customer audio
dropped first, file mode waits, a failing recognizer stops only its lane.  Driven with
gates (threading events), never by the wall clock."""

from __future__ import annotations

import threading

import pytest

from appliance.asr.pool import RecognizerPool

HANG_S = 30.0  # only bounds a hang; no result depends on it


class _Recorder:
    """A lane's work: records items in order; the first item waits on ``gate``."""

    def __init__(self, log: list, name: str, gate: threading.Event | None = None) -> None:
        self.log, self.name, self.gate = log, name, gate
        self.started = threading.Event()

    def __call__(self, item: object) -> None:
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(HANG_S)
            self.gate = None
        self.log.append((self.name, item))


def _blocked_pool(max_pending: int) -> tuple[RecognizerPool, threading.Event, list]:
    """A one-thread pool whose thread is held inside a first item until the gate opens."""
    pool = RecognizerPool(1, max_pending)
    gate, log = threading.Event(), []
    blocker = _Recorder(log, "blocker", gate)
    lane = pool.lane("agent", blocker)
    assert pool.submit(lane, 0)
    assert blocker.started.wait(HANG_S)
    return pool, gate, log


def test_a_lane_runs_in_order_and_agent_lanes_go_first():
    pool, gate, log = _blocked_pool(100)
    cust = pool.lane("customer", _Recorder(log, "c"))
    agent = pool.lane("agent", _Recorder(log, "a"))
    for i in range(3):
        assert pool.submit(cust, i)
    for i in range(3):
        assert pool.submit(agent, i)
    pool.close(cust)
    pool.close(agent)
    gate.set()
    assert cust.done.wait(HANG_S) and agent.done.wait(HANG_S)
    assert log[1:] == [("a", 0), ("a", 1), ("a", 2), ("c", 0), ("c", 1), ("c", 2)]
    pool.stop()


def test_a_full_pool_drops_customer_audio_first_and_counts_it():
    pool, gate, log = _blocked_pool(4)
    cust = pool.lane("customer", _Recorder(log, "c"))
    agent = pool.lane("agent", _Recorder(log, "a"))
    assert all(pool.submit(cust, i) for i in range(4))
    assert not pool.submit(cust, 4)  # full: the new customer item is dropped
    assert pool.submit(agent, 0)  # an agent item evicts the oldest queued customer item
    assert pool.dropped == {"agent": 0, "customer": 2} and pool.evicted["customer"] == 1
    assert all(pool.submit(agent, i) for i in (1, 2, 3))  # evicts the rest
    assert not pool.submit(agent, 4)  # nothing left to evict: the agent item is dropped
    assert pool.dropped == {"agent": 1, "customer": 5}
    pool.close(agent)
    pool.close(cust)
    gate.set()
    assert agent.done.wait(HANG_S) and cust.done.wait(HANG_S)
    assert [x for x in log if x[0] == "a"] == [("a", i) for i in range(4)]
    assert [x for x in log if x[0] == "c"] == []
    assert pool.pending() == 0
    pool.stop()


def test_file_mode_waits_for_room_instead_of_dropping():
    pool, gate, log = _blocked_pool(2)
    lane = pool.lane("customer", _Recorder(log, "c"))
    assert pool.submit(lane, 0) and pool.submit(lane, 1)
    done = threading.Event()

    def file_reader() -> None:
        for i in range(2, 6):
            pool.submit(lane, i, block=True)
        done.set()

    t = threading.Thread(target=file_reader)
    t.start()
    assert not done.wait(0.2)  # held while the pool is full
    gate.set()
    t.join(HANG_S)
    pool.close(lane)
    assert lane.done.wait(HANG_S)
    assert [i for _, i in log[1:]] == list(range(6)) and pool.dropped["customer"] == 0
    pool.stop()


def test_a_failing_recognizer_stops_its_lane_only():
    pool = RecognizerPool(2, 100)
    log: list = []

    def broken(item: object) -> None:
        raise RuntimeError("decoder died")

    bad = pool.lane("agent", broken)
    good = pool.lane("agent", _Recorder(log, "g"))
    assert pool.submit(bad, 0)
    for i in range(3):
        assert pool.submit(good, i)
    pool.close(bad)
    pool.close(good)
    assert bad.done.wait(HANG_S) and good.done.wait(HANG_S)
    assert isinstance(bad.error, RuntimeError) and good.error is None
    assert log == [("g", 0), ("g", 1), ("g", 2)]
    assert not pool.submit(bad, 1)  # a closed (and failed) lane takes nothing more
    pool.stop()


def test_a_pool_needs_a_thread_and_room():
    with pytest.raises(ValueError):
        RecognizerPool(0)
    with pytest.raises(ValueError):
        RecognizerPool(1, 0)
