"""The call-summary store: what a call costs on disk and in time, and how exports scale.

* bytes per call summary (the demo call's real summary);
* latency of one ``add`` (one transaction, fsync'd: WAL + synchronous=FULL), p50 / p95;
* the size bound at work: a 1 MiB store filled with 5x that much;
* export of 10 000 calls as JSONL and CSV.

    python -m benchmarks.bench_store
"""

from __future__ import annotations

import asyncio
import io
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from appliance.audio.filesource import FileSource
from appliance.audio.marks_file import load_marks
from appliance.cli.app import _demo_paths
from appliance.cli.summaries import write_csv
from appliance.config import Config
from appliance.engine.vad import SileroModel
from appliance.sinks.store.summaries import SummaryStore
from appliance.stream.pipeline import analyse_blocks
from appliance.stream.session import CallSession


def demo_summary() -> dict:
    call, marks = _demo_paths()
    session = CallSession(Config(), SileroModel(), lambda e: None, call_id="demo_call",
                          lang="en", marks=load_marks(marks), source="file")
    summary, _ = asyncio.run(analyse_blocks(FileSource(call).blocks(), session))
    return summary.to_json()


def main() -> None:
    summary = demo_summary()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "summaries.sqlite3"
        store = SummaryStore.open(path, max_bytes=64 << 20, keep_days=3650)
        lat = []
        for i in range(500):
            start = t0 + timedelta(minutes=5 * i)
            a = time.perf_counter()
            store.add(summary, call_id=f"call-{i}", started_at=start,
                      ended_at=start + timedelta(seconds=107), language="en",
                      now=start + timedelta(seconds=107))
            lat.append((time.perf_counter() - a) * 1000)
        per_call = store.info().used_bytes / store.count()
        lat.sort()
        print(f"summary: {len(str(summary))} chars of JSON; {per_call:.0f} bytes per call in "
              f"the database; 64 MiB holds ~{(64 << 20) / per_call:,.0f} calls")
        print(f"add (one fsync'd transaction): p50 {statistics.median(lat):.2f} ms, "
              f"p95 {lat[int(0.95 * len(lat))]:.2f} ms, max {lat[-1]:.2f} ms (500 calls)")
        store.close()

        path2 = Path(tmp) / "bounded.sqlite3"
        small = SummaryStore.open(path2, max_bytes=1 << 20, keep_days=3650)
        n = int(5 * (1 << 20) / per_call)
        for i in range(n):
            start = t0 + timedelta(minutes=5 * i)
            small.add(summary, call_id=f"call-{i}", started_at=start,
                      ended_at=start + timedelta(seconds=107), language="en",
                      now=start + timedelta(seconds=107))
        info = small.info()
        print(f"bound 1 MiB after {n} calls: {info.count} kept, {info.used_bytes / 1024:.0f} KiB "
              f"used, file {path2.stat().st_size / 1024:.0f} KiB")
        small.close()

        big = SummaryStore.open(Path(tmp) / "big.sqlite3", max_bytes=1 << 30, keep_days=3650)
        rows = [(t0 + timedelta(minutes=i), i) for i in range(10_000)]
        for start, i in rows:
            big.add(summary, call_id=f"call-{i}", started_at=start,
                    ended_at=start + timedelta(seconds=107), language="en",
                    now=t0 + timedelta(days=8))
        big.close()
        ro = SummaryStore.open_readonly(Path(tmp) / "big.sqlite3")
        for name in ("JSONL", "CSV"):
            out = io.StringIO()
            a = time.perf_counter()
            if name == "CSV":
                write_csv(out, ro.export)
            else:
                for row in ro.export():
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
            dt = time.perf_counter() - a
            print(f"export 10 000 calls as {name}: {dt:.2f} s, {len(out.getvalue()) / 1e6:.1f} MB")
        ro.close()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
