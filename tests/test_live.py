"""The live runner on a replayed recording: cues and state snapshots flow, the hold key
makes a hold, the end key closes the call, health and metrics report the counters."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from appliance.audio.replay import ReplaySource
from appliance.config import Config, config_from_dict
from appliance.engine.vad import SileroModel
from appliance.stream.live import LiveRunner

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
    cfg = config_from_dict({"dashboard": {"snapshot_s": 0.1}})
    events: list[dict] = []
    # 10x leaves a wide margin on a busy 2-core box (analysis runs at ~37x real time on one
    # core); the wall clock still paces this test until the runner takes an injected clock
    source = ReplaySource(DEMO, speed=10.0)
    runner = LiveRunner(cfg, source, SileroModel(), publish=events.append)
    # at 10x, 1.0 s of wall time is 10 s of call audio: hold key at ~20 s, release at ~30 s
    asyncio.run(_run_for(runner, 5.2, [(2.0, lambda: runner.hold_key("hold_start")),
                                       (3.0, lambda: runner.hold_key("hold_end")),
                                       (4.0, runner.end_call)]))
    kinds = [e["kind"] for e in events]
    assert "interruption" in kinds  # the demo's interruption at ~15 s
    assert kinds.count("state") >= 15
    held = [e for e in events if e["kind"] == "hold_started"]
    assert held and held[0]["data"]["via"] == "marks" and 15.0 < held[0]["data"]["start"] < 25.0
    assert "hold_ended" in kinds and "summary" in kinds
    on_hold = [e for e in events if e["kind"] == "state" and e["hold"]["on"]]
    assert on_hold and max(e["hold"]["elapsed_s"] for e in on_hold) > 3.0
    health = runner.health()
    assert health["audio_flowing"] is True and health["queue_drops"] == 0
    assert runner.calls == 2  # the end key started a new call
    metrics = runner.metrics()
    assert "appliance_audio_flowing 1" in metrics
    assert 'appliance_cues_total{kind="interruption"} 1' in metrics


def test_a_slow_consumer_drops_and_counts_instead_of_blocking_the_source():
    cfg = config_from_dict({"audio": {"queue_s": 0.1}})
    source = ReplaySource(DEMO, speed=200.0)
    runner = LiveRunner(cfg, source, SileroModel())

    async def stalled() -> None:
        await asyncio.sleep(3600)

    runner.analyse = stalled  # type: ignore[method-assign]
    asyncio.run(_run_for(runner, 0.5))
    assert runner.queue.dropped > 0 and source.blocks > runner.queue.maxsize


@pytest.mark.parametrize("speed", [1000.0])
def test_audio_stops_flowing_shows_in_health(speed):
    source = ReplaySource(DEMO, speed=speed, at_end="stop")
    runner = LiveRunner(Config(), source, SileroModel())

    async def go() -> None:
        await _run_for(runner, 1.0)
        await asyncio.sleep(1.1)

    asyncio.run(go())
    assert runner.health()["audio_flowing"] is False
