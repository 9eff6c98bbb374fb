"""The whole live path in a real browser: the demo call replayed at 4× real time through
the live runner and the dashboard into headless Chromium.  The interruption flash, the hold
timer and the leak alert must appear in the DOM at the demo's moments (appliance/demo/
README.md), and pressing the page's hold key must start a hold in the engine."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from appliance.audio.marks_file import load_marks
from appliance.audio.replay import ReplaySource
from appliance.config import config_from_dict
from appliance.engine.vad import SileroModel
from appliance.sinks.dashboard.server import DashboardServer
from appliance.sinks.metrics import RunnerCollector
from appliance.stream.live import LiveRunner

ROOT = Path(__file__).resolve().parent.parent
BROWSER = ROOT / "tests" / "browser"
DEMO = ROOT / "appliance" / "demo"
SPEED = 4.0

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists() or shutil.which("node") is None
    or not (BROWSER / "node_modules" / "playwright-core").exists(),
    reason="needs /usr/bin/chromium, node and tests/browser/node_modules (scripts/setup.sh)",
)


async def _session(tmp: Path) -> tuple[list[dict], float, LiveRunner]:
    cfg = config_from_dict({"dashboard": {"snapshot_s": 0.1}})
    source = ReplaySource(DEMO / "demo_call.wav", speed=SPEED)
    runner = LiveRunner(cfg, source, SileroModel(), marks=load_marks(DEMO / "demo_marks.jsonl"))
    server = DashboardServer("127.0.0.1", 0, on_hold=runner.hold_key,
                             on_end_call=runner.end_call, health=runner.health,
                             collectors=[RunnerCollector(runner)])
    await server.start()
    runner.publish = server.publish
    seen: list[dict] = []
    # the demo's hold ends at 90.85 s; the page's hold key is pressed at ~100 s of audio
    watch_s, click_after = 106.0 / SPEED + 2.0, 100.0 / SPEED
    node = await asyncio.create_subprocess_exec(
        "node", str(BROWSER / "watch.mjs"), f"http://127.0.0.1:{server.port}/", str(watch_s),
        str(click_after), str(tmp / "live.png"), cwd=BROWSER, stdout=asyncio.subprocess.PIPE)
    assert node.stdout is not None
    ready = json.loads(await asyncio.wait_for(node.stdout.readline(), 60))
    assert ready["ev"] == "ready"
    task = asyncio.create_task(runner.run())
    t_start = None

    async def read() -> None:
        assert node.stdout is not None
        async for line in node.stdout:
            seen.append(json.loads(line))

    reader = asyncio.create_task(read())
    while source.started_wall_s is None:  # noqa: ASYNC110 - waiting for the source's clock
        await asyncio.sleep(0.01)
    t_start = source.started_wall_s
    await asyncio.wait_for(node.wait(), watch_s + 60)
    await reader
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await server.stop()
    return seen, t_start, runner


def test_demo_call_live_in_the_browser(tmp_path):
    seen, t0, _ = asyncio.run(_session(tmp_path))

    def audio_t(ev: dict) -> float:  # wall clock → audio time of the replay
        return (ev["at"] - t0) * SPEED

    flashes = [audio_t(e) for e in seen if e["ev"] == "flash"]
    assert flashes and 14.97 <= flashes[0] <= 14.97 + 0.3 * SPEED + 0.5, flashes
    on = [audio_t(e) for e in seen if e["ev"] == "hold" and e["on"]]
    assert on and 28.85 <= on[0] <= 28.85 + 1.0, on  # the hold mark at 28.85 s
    timers = [e["text"] for e in seen if e["ev"] == "timer"]
    assert len(set(timers)) >= 10  # the hold timer counts
    leaks = [audio_t(e) for e in seen if e["ev"] == "leak"]
    assert leaks and 58.18 + 0.5 <= leaks[0] <= 58.18 + 0.5 + 0.3 * SPEED + 0.5, leaks
    off = [audio_t(e) for e in seen if e["ev"] == "hold" and not e["on"]]
    assert off and 90.85 <= off[0] <= 92.0, off
    # the page's hold key (pressed at ~100 s of audio) starts a hold in the engine
    clicked = [audio_t(e) for e in seen if e["ev"] == "clicked"]
    assert clicked and any(clicked[0] <= t <= clicked[0] + 1.5 for t in on[1:]), (clicked, on)
    assert (tmp_path / "live.png").exists()
