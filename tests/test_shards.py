"""Many calls over worker processes (``stream/shards.py``): the same cues as the file path
for every call, whichever worker it lands on; calls keyed by id; a worker killed mid-call
closes its calls with what was analysed, is started again, and the other worker's calls go
on untouched; the service stop ends every call with its summary."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from appliance.audio.filesource import FileSource
from appliance.audio.marks_file import load_marks
from appliance.config import config_from_dict
from appliance.engine.vad import SileroModel
from appliance.errors import CALL_EXISTS, CALL_UNKNOWN, CALLS_FULL, ApplianceError
from appliance.events import Event
from appliance.sinks.metrics import WorkerCollector
from appliance.stream.pipeline import analyse_blocks
from appliance.stream.session import CallSession
from appliance.stream.shards import ShardPool
from tests.waiting import until

DEMO = Path(__file__).resolve().parent.parent / "appliance" / "demo"
HANG_S = 120.0  # bounds a hang only

CFG = config_from_dict({"asr": {"enabled": False}})


def _blocks() -> list[Any]:
    return list(FileSource(DEMO / "demo_call.wav", block_s=0.032).blocks())


def _file_cues() -> list[tuple[Any, ...]]:
    out: list[Event] = []
    session = CallSession(CFG, SileroModel(), out.append, call_id="x", lang="en",
                          marks=load_marks(DEMO / "demo_marks.jsonl"))
    asyncio.run(analyse_blocks(FileSource(DEMO / "demo_call.wav", block_s=0.1).blocks(),
                               session))
    return _cues([e.to_json() for e in out], "x")


def _cues(lines: list[dict[str, Any]], call_id: str) -> list[tuple[Any, ...]]:
    return [(e["t"], e["kind"], e["party"], e["severity"], repr(e["data"])) for e in lines
            if e["call_id"] == call_id and e["kind"] not in ("call_started", "call_ended")
            and e["kind"] != "summary"]


async def _until(cond: Any) -> None:
    """Wait for a condition that another process brings about; the deadline only bounds a
    hang (a worker loads its models, two workers share two busy cores)."""
    await until(cond, hang_s=HANG_S)


async def _push(pool: ShardPool, call_id: str, block: Any) -> None:
    """Send a block, waiting for room in the worker's queue (a test never drops)."""
    await _until(lambda: pool.push(call_id, block))


def test_calls_on_two_workers_give_the_file_paths_cues():
    expected = _file_cues()
    lines: list[dict[str, Any]] = []
    blocks = _blocks()
    marks = load_marks(DEMO / "demo_marks.jsonl")
    states: list[tuple[str, dict[str, Any]]] = []

    async def go() -> dict[str, int]:
        pool = ShardPool(CFG, lambda ev: lines.append(ev.to_json()), processes=2,
                         on_state=lambda cid, snap: states.append((cid, snap)), states_s=0.2)
        await pool.start()
        where = {cid: pool.open_call(cid, lang="en", agent_id=f"agent-{cid}", source="test",
                                     marks=marks) for cid in ("a", "b", "c")}
        with pytest.raises(ApplianceError) as exc:
            pool.open_call("a")
        assert exc.value.code == CALL_EXISTS
        for i, block in enumerate(blocks):  # interleaved, as a PBX delivers them
            for cid in where:
                await _push(pool, cid, block)
            if i % 64 == 0:
                await asyncio.sleep(0)
        # the live state of every call comes back for the per-agent pages
        await _until(lambda: {cid for cid, _ in states} == set(where))
        pool.signal("c", "answered", ring_s=20.0)  # the PBX's call control, on one call
        pool.signal("c", "leg_ended", party="agent")
        with pytest.raises(ValueError):
            pool.signal("c", "answered")
        for cid in where:
            assert pool.end_call(cid, "source_closed")
        assert not pool.end_call("a")  # ended already
        await _until(lambda: sum(e["kind"] == "summary" for e in lines) == 3)
        await pool.ping()  # fresh figures from both workers
        assert sum(w["frames"] for w in pool.stats()) == 3 * (len(blocks) - 1)
        await pool.stop()
        return where

    where = asyncio.run(go())
    assert sorted(set(where.values())) == [0, 1]  # both workers carried calls
    assert all(snap["kind"] == "state" and "hold" in snap for _, snap in states)
    late = [e for e in lines if e["kind"] == "answer_delay"]
    assert [(e["call_id"], e["data"]["ring_s"]) for e in late] == [("c", 20.0)]
    assert late[0]["t"] == pytest.approx(107.04, abs=0.05)  # after the call's audio
    summary_c = next(e for e in lines if e["call_id"] == "c" and e["kind"] == "summary")
    assert summary_c["data"]["call_control"]["ring_s"] == 20.0
    for cid in where:
        assert _cues([e for e in lines if e["kind"] != "answer_delay"], cid) == expected, cid
        own = [e for e in lines if e["call_id"] == cid]
        assert own[0]["kind"] == "call_started" and own[0]["data"]["agent_id"] == f"agent-{cid}"
        assert [e["kind"] for e in own[-2:]] == ["call_ended", "summary"]
        assert own[-2]["data"]["reason"] == "source_closed"
        assert "incomplete" not in own[-1]["data"]


def test_a_killed_worker_closes_its_calls_and_is_restarted():
    lines: list[dict[str, Any]] = []
    blocks = _blocks()

    async def go() -> None:
        pool = ShardPool(CFG, lambda ev: lines.append(ev.to_json()), processes=2,
                         max_restarts=1)
        await pool.start()
        where = {cid: pool.open_call(cid, lang="en") for cid in ("a", "b")}
        victim = next(w for w in pool._workers if w.index == where["a"])
        for block in blocks[:600]:  # 19 s of audio: progress has been reported
            for cid in where:
                await _push(pool, cid, block)
        await _until(lambda: victim.calls["a"].t_s >= 15.0)
        os.kill(victim.proc.pid, signal.SIGKILL)
        await _until(lambda: any(e["kind"] == "summary" and e["call_id"] == "a"
                                 for e in lines))
        await _until(lambda: pool.healthy)  # the worker is back
        assert pool.restarts == 1 and pool.crashes == 1
        # /metrics shows every worker, the restarted one with its restart
        registry = CollectorRegistry()
        registry.register(WorkerCollector(pool.stats))
        got = {(s.name, s.labels["worker"]): s.value
               for fam in text_string_to_metric_families(generate_latest(registry).decode())
               for s in fam.samples}
        other = 1 - where["a"]
        assert got[("appliance_worker_up", str(where["a"]))] == 1
        assert got[("appliance_worker_restarts_total", str(where["a"]))] == 1
        assert got[("appliance_worker_restarts_total", str(other))] == 0
        assert got[("appliance_worker_calls", str(other))] == 1
        assert not pool.push("a", blocks[0]) and pool.unknown_call_blocks == 1
        with pytest.raises(ApplianceError) as exc:
            pool.add_mark("a", load_marks(DEMO / "demo_marks.jsonl")[0])
        assert exc.value.code == CALL_UNKNOWN
        # the other call goes on; a new call lands on the restarted worker too
        where["d"] = pool.open_call("d", lang="en")
        for block in blocks[600:900]:
            for cid in ("b", "d"):
                await _push(pool, cid, block)
        await pool.stop()  # service stop: each open call ends with its summary

    asyncio.run(go())
    a = [e for e in lines if e["call_id"] == "a"]
    err = next(e for e in a if e["kind"] == "error")
    assert err["data"]["code"] == "worker.crashed"
    ended = next(e for e in a if e["kind"] == "call_ended")
    assert ended["data"]["reason"] == "error" and ended["t"] >= 15.0
    summary = a[-1]
    assert summary["kind"] == "summary" and summary["data"]["incomplete"] is True
    assert summary["data"]["duration_s"] >= 15.0 and summary["data"]["cues"]  # what it saw
    for cid in ("b", "d"):
        own = [e for e in lines if e["call_id"] == cid]
        assert own[-2]["kind"] == "call_ended" and own[-2]["data"]["reason"] == "service_stop"
        assert own[-1]["kind"] == "summary" and "incomplete" not in own[-1]["data"]
    assert not [e for e in lines if e["call_id"] == "b" and e["kind"] == "error"]
    b = [e for e in lines if e["call_id"] == "b"]
    assert b[-1]["data"]["duration_s"] == pytest.approx(900 * 0.032, abs=0.1)


def test_calls_beyond_every_workers_limit_are_refused():
    async def go() -> None:
        pool = ShardPool(CFG, lambda ev: None, processes=1, max_calls=1)
        await pool.start()
        pool.open_call("a")
        with pytest.raises(ApplianceError) as exc:
            pool.open_call("b")
        assert exc.value.code == CALLS_FULL and pool.refused_calls == 1
        await pool.stop()

    asyncio.run(go())


def test_a_call_ended_with_audio_not_yet_analysed_keeps_all_of_it(silero):
    """In the worker: the end of a call comes behind its last blocks in the same queue;
    whatever was fed and not yet analysed is analysed and its cues emitted before the
    call's end (run in this process, without the queues)."""
    from appliance.stream.shard_worker import Shard

    sent: list[tuple[Any, ...]] = []
    expected = _file_cues()

    async def go() -> None:
        shard = Shard(0, CFG, sent.append, vad=silero)
        marks = load_marks(DEMO / "demo_marks.jsonl")
        shard.handle(("open", "x", "en", None, "test", None, marks))
        shard.handle(("audio", [("x", b) for b in _blocks()]))  # nothing analysed yet
        shard.handle(("audio", [("nobody", _blocks()[0])]))
        shard.handle(("end", "x", "source_closed"))
        await shard.close_all()

    asyncio.run(go())
    lines = [m[1].to_json() for m in sent if m[0] == "event"]
    assert _cues(lines, "x") == expected
    assert [e["kind"] for e in lines[-2:]] == ["call_ended", "summary"]
    assert ("closed", "x") in sent
