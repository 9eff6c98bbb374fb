"""How many concurrent calls the box carries at real-time pace, through its own runtime.

    python -m benchmarks.bench_scale [--calls 1,10,50,100,200] [--seconds 30] [--workers N]
                                     [--narrowband]

For each load, N calls are opened on a :class:`~appliance.stream.shards.ShardPool` (the
runner keyed by call id that a PBX tap feeds: worker processes, default one per core, each
with its own Silero session and a bank that batches Silero across its calls) and fed at
real-time pace from this process — one 32 ms block per call per tick, as a PBX tap delivers
them — for ``--seconds`` of wall time.  Every call is the bundled demo call started at a
different offset, so the calls do not speak in step.  ``--narrowband`` sends it through
the telephone band first (8 kHz G.711 µ-law and back up to the pipeline rate), the PBX's
normal case.  Reported per load:

* whether the box keeps up: a ping through each worker's queue every second during the
  run and at its end answers once everything sent before it was analysed; the worst of
  them under 0.5 s means real time;
* CPU per call (real-time factor: the workers' CPU seconds per second of call audio; the
  feeder's own CPU beside it), the peak memory per worker and per call beyond the first;
* the interruption cue's lateness after its defining moment (0.6 s of overlap, demo
  ground truth 14.97 s) as the feeder receives the event: p50/p95 over the calls that
  reach it, and the part of it that is processing delay (arrival − the wall time the
  block completing the cue's frame was sent).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

DEMO = Path(__file__).resolve().parent.parent / "appliance" / "demo" / "demo_call.wav"
BLOCK = 512
BLOCK_S = BLOCK / 16000
T_DEF_INTERRUPTION_S = 14.97
KEEP_UP_S = 0.5


def _narrowband(x: np.ndarray) -> np.ndarray:
    """Through the telephone band: 8 kHz G.711 µ-law, back to the pipeline's 16 kHz."""
    import soxr

    y = soxr.resample(x.astype(np.float32) / 32768.0, 16000, 8000)
    mu = np.sign(y) * np.log1p(255 * np.abs(y)) / np.log1p(255)
    q = np.round(mu * 127) / 127  # 8-bit companded
    y = np.sign(q) * np.expm1(np.abs(q) * np.log1p(255)) / 255
    up = soxr.resample(y.astype(np.float32), 8000, 16000)[:len(x)]
    return np.clip(np.round(up * 32768.0), -32768, 32767).astype(np.int16)


async def run_load(n_calls: int, workers: int, seconds: float,
                   audio: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    from appliance.config import config_from_dict
    from appliance.events import Event
    from appliance.stream.blocks import PartyBlock
    from appliance.stream.shards import ShardPool

    agent, customer = audio
    n_total = len(agent) // BLOCK
    cues: list[tuple[str, float, float]] = []  # call, cue t_s, arrival wall time

    def emit(ev: Event) -> None:
        if getattr(ev, "kind", "") == "interruption":
            cues.append((ev.call_id, float(ev.t_s), time.time()))  # type: ignore[union-attr]

    cfg = config_from_dict({"asr": {"enabled": False}})
    pool = ShardPool(cfg, emit, processes=workers)
    await pool.start()
    rng = np.random.default_rng(n_calls)
    offsets = {f"c{k}": int(float(rng.uniform(0, 100)) / BLOCK_S) for k in range(n_calls)}
    for call_id in offsets:
        pool.open_call(call_id, lang="en", source="bench")
    await pool.ping()
    cpu_w0 = sum(s["cpu_s"] for s in pool.stats())
    cpu0 = time.process_time()
    start = time.time()
    n, worst, dropped = 0, 0.0, 0
    next_ping = start + 1.0
    pinging: asyncio.Future[list[float]] | None = None
    while (now := time.time()) - start < seconds:
        due = int((now - start) / BLOCK_S)
        while n < due:
            for call_id, k0 in offsets.items():
                i = (k0 + n) % n_total * BLOCK
                block = PartyBlock(n * BLOCK_S, agent[i:i + BLOCK], customer[i:i + BLOCK])
                dropped += not pool.push(call_id, block)
            n += 1
        if now >= next_ping and (pinging is None or pinging.done()):
            if pinging is not None:
                worst = max([worst, *pinging.result()])
            next_ping = now + 1.0
            pinging = asyncio.ensure_future(pool.ping())  # never holds up the feeding
        await asyncio.sleep(max(0.0, start + (n + 1) * BLOCK_S - time.time()))
    if pinging is not None:
        worst = max([worst, *await pinging])
    final = max(await pool.ping())
    stats = pool.stats()
    cpu_workers = sum(s["cpu_s"] for s in stats) - cpu_w0
    cpu_feeder = time.process_time() - cpu0
    await pool.stop()
    audio_s = n * BLOCK_S
    late, delay = [], []
    for call_id, t_s, arrived in cues:
        t_def = (T_DEF_INTERRUPTION_S - offsets[call_id] * BLOCK_S) % (n_total * BLOCK_S)
        if abs(t_s - t_def) > 1.0 or t_s > audio_s:  # not the demo's interruption
            continue
        late.append(arrived - (start + t_def))
        delay.append(arrived - (start + t_s))  # the cue's frame was complete at t_s
    rss = [s["rss_peak_mib"] for s in stats]
    return {
        "calls": n_calls, "workers": len(stats),
        "keeps_up": max(worst, final) < KEEP_UP_S,
        "worst_trail_s": max(worst, final), "rtf_per_call": cpu_workers / (n_calls * audio_s),
        "feeder_rtf": cpu_feeder / audio_s, "rss_peak_mib": max(rss),
        "late_p50": float(np.percentile(late, 50)) if late else None,
        "late_p95": float(np.percentile(late, 95)) if late else None,
        "delay_p95": float(np.percentile(delay, 95)) if delay else None,
        "n_cues": len(late), "dropped": dropped,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", default="1,10,50,100,200",
                    help="comma-separated loads (concurrent calls)")
    ap.add_argument("--seconds", type=float, default=30.0, help="wall seconds per load (30)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="worker processes (default: one per core)")
    ap.add_argument("--narrowband", action="store_true",
                    help="the calls arrive through the telephone band (8 kHz G.711)")
    args = ap.parse_args()
    from benchmarks.bench import _load

    agent, customer = _load(DEMO)
    if args.narrowband:
        agent, customer = _narrowband(agent), _narrowband(customer)
    base_mib: float | None = None
    print(f"{'calls':>6} {'workers':>7} {'keeps up':>8} {'worst trail':>11} {'RTF/call':>9} "
          f"{'feeder':>7} {'MiB/worker':>10} {'MiB/call':>8} {'late p50':>8} {'late p95':>8} "
          f"{'delay p95':>9} {'n':>4} {'drops':>5}")
    for n in (int(x) for x in args.calls.split(",")):
        r = asyncio.run(run_load(n, min(args.workers, n), args.seconds, (agent, customer)))
        if base_mib is None:
            base_mib = r["rss_peak_mib"]
        per_call = (r["rss_peak_mib"] - base_mib) * r["workers"] / max(1, n - 1)

        def f(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}"

        print(f"{r['calls']:>6} {r['workers']:>7} {'yes' if r['keeps_up'] else 'NO':>8} "
              f"{r['worst_trail_s']:>10.2f}s {r['rtf_per_call']:>9.4f} {r['feeder_rtf']:>7.3f} "
              f"{r['rss_peak_mib']:>10.0f} {per_call:>8.2f} {f(r['late_p50']):>8} "
              f"{f(r['late_p95']):>8} {f(r['delay_p95']):>9} {r['n_cues']:>4} "
              f"{r['dropped']:>5}", flush=True)


if __name__ == "__main__":
    main()
