"""Many boxes, one broker, one console: can one console process keep a thousand desks?

    python -m benchmarks.bench_fleet [--desks 1000] [--seconds 120] [--speed 1]
                                     [--procs 4] [--store sqlite|postgresql]

A real Mosquitto (tests/mqttbroker.py: TLS, a password per box, the per-box ACL) and a real
:class:`~appliance.service.console_service.ConsoleService` (its subscriber, writer and
central store; SQLite by default, or a throw-away PostgreSQL server) run on this machine;
``--procs`` processes connect ``--desks`` simulated boxes (benchmarks/fleet_boxes.py: one
MQTT client per box, TLS, MQTT v5, QoS 1) that publish at a desk's pace — calls of 2-7 min,
ten cues a call, stats every minute — times ``--speed``.

Reported: messages sent and stored (every one must be stored once), the rate, the event
latency from the box's clock (``at``) to the console's commit (p50/p95/max), the console
process's CPU share and peak memory, the broker's CPU share, and the time for the boxes to
connect.  Everything shares the same cores: the figures are for the whole site on one box.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.fleet_boxes import BoxPlan, run_boxes

SITE = "site1"
PASSWORD = "bench-box-password"


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, clock ticks


async def _until(cond: Any, limit_s: float) -> None:
    """Poll ``cond`` every 50 ms for at most ``limit_s`` (a hang guard)."""
    for _ in range(int(limit_s / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)


async def _run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from appliance.config import config_from_dict
    from appliance.console.metrics import quantile
    from appliance.console.settings import Secrets
    from appliance.service.console_service import ConsoleService
    from tests.mqttbroker import MosquittoBroker

    boxes = [f"desk{i:04d}" for i in range(args.desks)]
    broker = MosquittoBroker(root / "broker", {**dict.fromkeys(boxes, PASSWORD),
                                               "console": "console-password"}, site=SITE)
    broker.start()
    pg = None
    try:  # the broker and the database go down even when set-up fails
        console_cfg: dict[str, Any] = {
            "broker": broker.url, "ca_file": str(broker.ca_file), "username": "console",
            "port": 0, "client_id": "console-bench", "queue_size": 20000}
        dsn = ""
        if args.store == "postgresql":
            from tests.pgserver import PgServer

            pg = PgServer(root / "pg")
            pg.start()
            dsn = pg.dsn
            (root / "dsn").write_text(dsn, encoding="utf-8")
            console_cfg.update(store="postgresql", dsn_file=str(root / "dsn"))
        cfg = config_from_dict({"storage": {"state_dir": str(root / "state")},
                                "console": console_cfg})
        svc = ConsoleService(cfg, env={}, secrets=Secrets("console-password", "t" * 32, dsn))
        await svc.start()
        try:
            await _until(lambda: svc.ingest.connected, 30)
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            broker_cpu0 = _proc_cpu_s(broker.proc.pid) if broker.proc else 0.0
            t0 = time.monotonic()
            slices = [tuple(boxes[i::args.procs]) for i in range(args.procs)]
            plans = [BoxPlan("127.0.0.1", broker.port, str(broker.ca_file), SITE, s, PASSWORD,
                             args.seconds, args.speed, seed=i) for i, s in enumerate(slices)]
            ctx = mp.get_context("spawn")
            with ctx.Pool(args.procs) as pool:
                results = await asyncio.to_thread(pool.map, run_boxes, plans)
            sent = [m for r in results for m in r["sent"]]
            failed = [f for r in results for f in r["failed"]]
            await _until(lambda: svc.ingest.stored + svc.ingest.duplicates >= len(sent), 120)
            wall = time.monotonic() - t0
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            console_cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
            broker_cpu = (_proc_cpu_s(broker.proc.pid) if broker.proc else 0.0) - broker_cpu0
            lat = svc.ingest.latencies_s()
            counts = svc.store.counts()
            first = min(t for _, t in sent) if sent else 0.0
            last = max(t for _, t in sent) if sent else 0.0
            return {"desks": args.desks, "speed": args.speed, "sent": len(sent),
                    "distinct": len({i for i, _ in sent}), "stored": svc.ingest.stored,
                    "duplicates": svc.ingest.duplicates, "bad": svc.ingest.bad,
                    "messages_rows": counts.get("messages"), "calls_rows": counts.get("calls"),
                    "failed_connects": len(failed),
                    "rate_msg_s": len(sent) / max(last - first, 1e-9),
                    "lat_p50_s": statistics.median(lat) if lat else float("nan"),
                    "lat_p95_s": quantile(lat, 0.95) if lat else float("nan"),
                    "lat_max_s": max(lat, default=float("nan")),
                    "console_cpu": console_cpu / wall, "broker_cpu": broker_cpu / wall,
                    "console_peak_mib": cpu1.ru_maxrss / 1024, "wall_s": wall,
                    "store": svc.store.kind}
        finally:
            await svc.stop()
    finally:
        broker.stop()
        if pg is not None:
            pg.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--desks", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--speed", type=float, default=1.0,
                    help="multiply every desk's message rate (a stress run)")
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    args = ap.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
        r = asyncio.run(_run(args, Path(tmp)))
    print(f"{r['desks']} desks x{r['speed']:g} for {args.seconds:g} s, store {r['store']}: "
          f"{r['sent']} messages ({r['rate_msg_s']:.1f}/s), stored {r['stored']} "
          f"(+{r['duplicates']} duplicates, {r['bad']} bad; {r['messages_rows']} message rows, "
          f"{r['calls_rows']} calls), {r['failed_connects']} failed connects")
    print(f"  latency box -> console store: p50 {r['lat_p50_s']:.3f} s, "
          f"p95 {r['lat_p95_s']:.3f} s, max {r['lat_max_s']:.3f} s")
    print(f"  console process: {r['console_cpu']:.2f} core, peak {r['console_peak_mib']:.0f} "
          f"MiB; broker {r['broker_cpu']:.2f} core; wall {r['wall_s']:.0f} s")
    if r["stored"] + r["duplicates"] < r["sent"] or r["distinct"] != r["messages_rows"]:
        print("  INCOMPLETE: not every message was stored once")


if __name__ == "__main__":
    main()
