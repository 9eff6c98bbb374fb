"""How many concurrent calls the acoustic path carries at real-time pace on this machine.

    python -m benchmarks.bench_scale [--calls 1,10,50,100,200] [--seconds 30] [--workers N]

For each load, N calls are fed at real-time pace (one 32 ms block per call per tick, as a
PBX tap delivers them) for ``--seconds`` of wall time, sharded over worker processes (default:
one per core), each with its own Silero session and a bank that batches Silero across its
calls.  Every call is the bundled demo call started at a different offset, so the calls do
not speak in step.  Reported per load:

* whether the box keeps up (the audio analysed trails the wall clock by less than 0.5 s at
  the end) and the worst trail;
* CPU per call (real-time factor: CPU seconds per second of call audio) and the peak
  memory per worker, and per call beyond the first;
* the interruption cue's lateness after its defining moment (0.6 s of overlap, demo
  ground truth 14.97 s): p50/p95 over the calls that reach it, and the part of it that is
  processing delay (emission wall time − the wall time the PBX delivered the audio that
  completed the cue's frame).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

DEMO = Path(__file__).resolve().parent.parent / "appliance" / "demo" / "demo_call.wav"
BLOCK = 512
BLOCK_S = BLOCK / 16000
T_DEF_INTERRUPTION_S = 14.97
KEEP_UP_S = 0.5


def _worker(calls: list[tuple[str, float]], start_wall: float, seconds: float,
            out: Any) -> None:
    from appliance.config import Config
    from appliance.engine.call_engine import CallEngine
    from appliance.engine.vad import SileroModel
    from appliance.stream.bank import CallBank
    from benchmarks.bench import _load

    agent, customer = _load(DEMO)
    n_total = len(agent) // BLOCK
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = SileroModel()
    bank = CallBank(model)
    offsets = {}
    for call_id, offset_s in calls:
        bank.add(CallEngine(Config(), model, call_id=call_id))
        offsets[call_id] = int(offset_s / BLOCK_S)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cues: list[tuple[str, float, float, float]] = []  # call, cue t_s, emit, delivered
    while time.time() < start_wall:
        time.sleep(0.001)
    cpu0 = time.process_time()
    n = 0
    worst_trail = 0.0
    while True:
        now = time.time() - start_wall
        if now >= seconds:
            break
        due = int(now / BLOCK_S)  # blocks the PBX has delivered by now
        while n < due:
            for call_id, k0 in offsets.items():
                i = (k0 + n) % n_total * BLOCK
                bank.feed(call_id, agent[i:i + BLOCK], customer[i:i + BLOCK])
            n += 1
            if n % 8 == 0 or n >= due:  # analyse in rounds, as a worker would
                for call_id, got in bank.drain().items():
                    emit = time.time()
                    # when the PBX delivered the block that completed the cue's frame
                    cues += [(call_id, c.t_s, emit, start_wall + c.t_s) for c in got
                             if c.kind == "interruption"]
        trail = (time.time() - start_wall) - n * BLOCK_S
        worst_trail = max(worst_trail, trail)
        time.sleep(max(0.0, (n * BLOCK_S) - (time.time() - start_wall)))
    cpu = time.process_time() - cpu0
    final_trail = (time.time() - start_wall) - n * BLOCK_S
    out.put({"calls": len(calls), "audio_s": n * BLOCK_S, "cpu_s": cpu,
             "final_trail_s": final_trail, "worst_trail_s": worst_trail,
             "rss_before_calls_mib": rss1 / 1024, "rss_empty_mib": rss0 / 1024,
             "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
             "offsets": {c: o for c, o in calls}, "cues": cues, "start_wall": start_wall})


def run_load(n_calls: int, workers: int, seconds: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    rng = np.random.default_rng(n_calls)
    calls = [(f"c{k}", float(rng.uniform(0, 100))) for k in range(n_calls)]
    shards = [calls[w::workers] for w in range(workers)]
    start_wall = time.time() + 4.0 + 0.02 * n_calls  # every worker loaded and ready
    procs = [ctx.Process(target=_worker, args=(s, start_wall, seconds, out))
             for s in shards if s]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(30)
    return _summarise(n_calls, results)


def _summarise(n_calls: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    audio_s = min(r["audio_s"] for r in results)
    cpu = sum(r["cpu_s"] for r in results)
    late, delay = [], []
    for r in results:
        for call_id, t_s, emit, fed in r["cues"]:
            offset = r["offsets"][call_id]
            t_def = (T_DEF_INTERRUPTION_S - offset) % 107.06
            if abs(t_s - t_def) > 1.0:  # not the demo's interruption (a wrapped call)
                continue
            late.append(emit - (r["start_wall"] + t_def))
            delay.append(emit - fed)
    per_call_mib = [(r["rss_peak_mib"] - r["rss_before_calls_mib"]) / max(1, r["calls"])
                    for r in results]
    return {
        "calls": n_calls, "workers": len(results),
        "keeps_up": all(r["final_trail_s"] < KEEP_UP_S for r in results),
        "worst_trail_s": max(r["worst_trail_s"] for r in results),
        "rtf_per_call": cpu / (n_calls * audio_s),
        "rss_peak_mib": max(r["rss_peak_mib"] for r in results),
        "mib_per_call": max(per_call_mib),
        "late_p50": float(np.percentile(late, 50)) if late else None,
        "late_p95": float(np.percentile(late, 95)) if late else None,
        "delay_p95": float(np.percentile(delay, 95)) if delay else None,
        "n_cues": len(late),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", default="1,10,50,100,200",
                    help="comma-separated loads (concurrent calls)")
    ap.add_argument("--seconds", type=float, default=30.0, help="wall seconds per load (30)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="worker processes (default: one per core)")
    args = ap.parse_args()
    print(f"{'calls':>6} {'workers':>7} {'keeps up':>8} {'worst trail':>11} {'RTF/call':>9} "
          f"{'MiB/worker':>10} {'MiB/call':>8} {'late p50':>8} {'late p95':>8} "
          f"{'delay p95':>9} {'n':>4}")
    for n in (int(x) for x in args.calls.split(",")):
        r = run_load(n, min(args.workers, n), args.seconds)

        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}"

        print(f"{r['calls']:>6} {r['workers']:>7} {'yes' if r['keeps_up'] else 'NO':>8} "
              f"{r['worst_trail_s']:>10.2f}s {r['rtf_per_call']:>9.4f} "
              f"{r['rss_peak_mib']:>10.0f} {r['mib_per_call']:>8.2f} {f(r['late_p50']):>8} "
              f"{f(r['late_p95']):>8} {f(r['delay_p95']):>9} {r['n_cues']:>4}", flush=True)


if __name__ == "__main__":
    main()
