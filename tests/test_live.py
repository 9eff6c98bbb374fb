"""The live runner on a replayed recording: cues and state snapshots flow, the hold key
makes a hold, the end key closes the call, health and metrics report the counters."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from appliance.audio.replay import ReplaySource
from appliance.config import Config, config_from_dict
from appliance.engine.vad import SileroModel
from appliance.sinks.metrics import RunnerCollector
from appliance.stream.live import LiveRunner
from appliance.stream.pipeline import BlockQueue
from tests import virtual_time
from tests.scripted import ScriptedSource
from tests.test_metrics import samples, scrape
from tests.virtual_time import VirtualTimeLoop

DEMO = Path(__file__).resolve().parent.parent / "appliance" / "demo" / "demo_call.wav"


async def _run_for(runner: LiveRunner, seconds: float, actions=()) -> None:
    task = asyncio.create_task(runner.run())
    t0 = asyncio.get_running_loop().time()
    for at, fn in actions:
        await asyncio.sleep(max(0.0, t0 + at - asyncio.get_running_loop().time()))
        fn()
    await asyncio.sleep(max(0.0, t0 + seconds - asyncio.get_running_loop().time()))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_replay_through_the_live_runner():
    cfg = config_from_dict({"dashboard": {"snapshot_s": 0.05}})
    events: list[dict] = []
    runner: LiveRunner

    source = ScriptedSource([(20.0, lambda: runner.hold_key("hold_start")),
                             (30.0, lambda: runner.hold_key("hold_end")),
                             (40.0, lambda: runner.end_call())])
    runner = LiveRunner(cfg, source, SileroModel(), publish=events.append)
    asyncio.run(runner.run())  # the source ends the last call (and the run) itself
    kinds = [e["kind"] for e in events]
    assert "interruption" in kinds  # the demo's interruption at ~15 s
    held = [e for e in events if e["kind"] == "hold_started"]
    assert held and held[0]["data"]["via"] == "marks"
    assert abs(held[0]["data"]["start"] - 20.0) < 0.1  # the key's audio time
    ended = next(e for e in events if e["kind"] == "hold_ended")
    assert abs(ended["data"]["end"] - 30.0) < 0.1
    assert [(e["call_id"], e["data"]["reason"]) for e in events
            if e["kind"] == "call_ended"] == [("call-1", "end_key"), ("call-2", "source_closed")]
    assert [e["call_id"] for e in events if e["kind"] == "summary"] == ["call-1", "call-2"]
    health = runner.health()
    assert health["queue_drops"] == 0 and runner.calls == 2  # the end key started call 2
    metrics = samples(scrape(RunnerCollector(runner)))
    assert metrics["appliance_audio_flowing"] == 1 and metrics["appliance_calls_total"] == 2
    assert metrics['appliance_cues_total{kind="interruption"}'] == 1


def test_the_replay_paces_blocks_at_its_speed(virtual_clock):
    """Block n is due at n × block_s / speed (a virtual clock: no waiting here)."""
    source = ReplaySource(DEMO, speed=4.0, block_s=0.032, at_end="stop",
                          clock=virtual_clock, sleep=virtual_clock.sleep)
    got: list[tuple[float, Any]] = []

    class Queue:
        def put_nowait(self, block: Any) -> bool:
            got.append((virtual_clock.t, block))
            return True

        async def put(self, block: Any) -> None:
            got.append((virtual_clock.t, block))

    asyncio.run(source.run(Queue()))  # type: ignore[arg-type]
    assert got[-1][1] is None and source.passes == 1
    blocks = got[:-1]
    assert len(blocks) == source.blocks > 3000
    for n, (t, _) in enumerate(blocks[:200]):
        assert t - 1000.0 == pytest.approx(n * 0.032 / 4.0, abs=1e-9)
    assert source.flowing


def test_a_slow_consumer_drops_and_counts_instead_of_blocking_the_source():
    loop = VirtualTimeLoop()
    cfg = config_from_dict({"audio": {"queue_s": 0.1}})
    source = ReplaySource(DEMO, speed=200.0, clock=loop.time)
    runner = LiveRunner(cfg, source, SileroModel())

    async def stalled() -> None:
        await asyncio.sleep(3600)

    runner.analyse = stalled  # type: ignore[method-assign]
    virtual_time.run(_run_for(runner, 0.5), loop)  # 0.5 s at 200x: 3125 blocks of 32 ms
    assert source.blocks == pytest.approx(3125, abs=1)  # the source never waited
    assert runner.queue.dropped == source.blocks - runner.queue.maxsize


def test_audio_stops_flowing_shows_in_health():
    loop = VirtualTimeLoop()
    source = ReplaySource(DEMO, speed=1000.0, at_end="stop", clock=loop.time)
    runner = LiveRunner(Config(), source, SileroModel())
    seen: list[bool] = []

    async def go() -> None:
        await source.run(BlockQueue(10**6))  # the whole recording, then the stream's end
        seen.append(runner.health()["audio_flowing"])
        await asyncio.sleep(0.99)
        seen.append(runner.health()["audio_flowing"])
        await asyncio.sleep(0.02)  # a second after the last block

    virtual_time.run(go(), loop)
    assert seen == [True, True] and source.passes == 1
    assert runner.health()["audio_flowing"] is False
