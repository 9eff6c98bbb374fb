"""End-to-end cue latency: from the audio sample that defines an event to the cue in the
browser's DOM, through the live path (real-time replay → engine → dashboard → Chromium).

For an interruption the defining sample is where the overlap reaches 0.6 s; for a hold leak,
0.5 s into the leaked speech.  Calls from the synthetic corpus are replayed at real-time pace
(speed 1: this takes as long as the calls); a headless Chromium with the dashboard records
when each cue element appears.  Needs /usr/bin/chromium and tests/browser/node_modules.

    python -m benchmarks.bench_latency [CORPUS_DIR] [--calls N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np

from appliance.audio.marks_file import load_marks
from appliance.audio.replay import ReplaySource
from appliance.config import Config
from appliance.engine.vad import SileroModel
from appliance.sinks.dashboard.server import DashboardServer
from appliance.stream.live import LiveRunner

ROOT = Path(__file__).resolve().parent.parent


def pick_calls(corpus: Path, n: int) -> list[dict[str, Any]]:
    truths = [json.loads(p.read_text()) for p in sorted(corpus.glob("*.truth.json"))]
    stereo = [t for t in truths if "stereo" in t["files"]]
    conv = sorted((t for t in stereo if t["interruptions"]),
                  key=lambda t: -len(t["interruptions"]) / t["duration_s"])
    leaks = [t for t in stereo if any(h["leaks"] for h in t["holds"])]
    chosen = conv[: max(1, n - 1)] + leaks[:1]
    for t in chosen:
        t["dir"] = str(corpus)
    return chosen


def defining_moments(truth: dict[str, Any]) -> list[tuple[str, float]]:
    out = [("interruption", float(e["t_def"])) for e in truth["interruptions"]]
    out += [("hold_leak", s + 0.5) for h in truth["holds"] for s, e in h["leaks"] if e - s >= 1]
    return out


async def replay(truth: dict[str, Any], server: DashboardServer, model: SileroModel) -> float:
    base = Path(truth["dir"])
    marks = load_marks(base / truth["marks"]) if truth.get("marks") else []
    source = ReplaySource(base / truth["files"]["stereo"], speed=1.0, at_end="stop")
    runner = LiveRunner(Config(), source, model, publish=server.publish, marks=marks)
    task = asyncio.create_task(runner.run())
    await asyncio.sleep(truth["duration_s"] + 1.0)
    runner.end_call()
    await asyncio.sleep(0.5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert source.started_wall_s is not None
    return source.started_wall_s


async def main_async(corpus: Path, n: int) -> None:
    calls = pick_calls(corpus, n)
    total = sum(t["duration_s"] + 2 for t in calls) + 20
    model = SileroModel()
    server = DashboardServer("127.0.0.1", 0)
    await server.start()
    node = await asyncio.create_subprocess_exec(
        "node", str(ROOT / "benchmarks" / "latency.mjs"), f"http://127.0.0.1:{server.port}/",
        str(total), stdout=asyncio.subprocess.PIPE)
    seen: list[dict[str, Any]] = []
    ready = asyncio.Event()

    async def read() -> None:
        assert node.stdout is not None
        async for line in node.stdout:
            obj = json.loads(line)
            if obj.get("ready"):
                ready.set()
            else:
                seen.append(obj)

    reader = asyncio.create_task(read())
    await asyncio.wait_for(ready.wait(), 60)
    lat: dict[str, list[float]] = {"interruption": [], "hold_leak": []}
    for truth in calls:
        start = len(seen)
        t0 = await replay(truth, server, model)
        got = seen[start:]
        for kind, t_def in defining_moments(truth):
            cand = [c for c in got if c["kind"] == kind and t_def - 0.5 <= c["t"] <= t_def + 1.5]
            if cand:
                lat[kind].append(cand[0]["dom_s"] - (t0 + t_def))
        print(f"  {truth['name']}: {truth['duration_s']:.0f} s replayed", flush=True)
    node.terminate()
    await node.wait()
    reader.cancel()
    await server.stop()
    for kind, xs in lat.items():
        if xs:
            a = np.asarray(xs)
            print(f"{kind}: defining sample → DOM  p50 {np.median(a) * 1000:.0f} ms, "
                  f"p95 {np.percentile(a, 95) * 1000:.0f} ms, max {a.max() * 1000:.0f} ms "
                  f"(n={len(a)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus", nargs="?", type=Path, default=Path("/tmp/appliance-corpus"))
    ap.add_argument("--calls", type=int, default=3)
    args = ap.parse_args()
    if not list(args.corpus.glob("*.truth.json")):
        from tests.corpus import build_corpus

        build_corpus(args.corpus)
    asyncio.run(main_async(args.corpus, args.calls))


if __name__ == "__main__":
    main()
