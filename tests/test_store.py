"""Local storage: summaries in SQLite (bounds, guard, damage, read-only export, power cut by
SIGKILL) and retained transcripts (masked, atomic, expiring)."""

from __future__ import annotations

import inspect
import json
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from appliance.errors import (
    STORE_CORRUPT,
    STORE_NEWER_SCHEMA,
    STORE_UNAVAILABLE,
    ApplianceError,
)
from appliance.events import Summary
from appliance.sinks.store import SummaryStore, TranscriptStore, summaries_path
from appliance.sinks.store.summaries import SCHEMA_VERSION
from appliance.sinks.store.transcripts import NAME_RE

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
BIG = 64 << 20


def summary(i: int = 0, pad: int = 0, **extra: Any) -> dict[str, Any]:
    data = {"duration_s": 30.0, "talk_s": {"agent": 12.5, "customer": 9.0},
            "cues": {"interruption": i % 5, "hold_leak": 1}, **extra}
    if pad:
        data["pad"] = "x" * pad
    return Summary(30.0, data).to_json()


def add(store: SummaryStore, i: int, pad: int = 0, **kw: Any) -> int:
    ended = T0 + timedelta(minutes=i)
    kw.setdefault("now", ended)
    return store.add(summary(i, pad), call_id=f"c{i}", started_at=ended - timedelta(seconds=30),
                     ended_at=ended, language="en", **kw)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return summaries_path(tmp_path / "state")


def test_round_trip_files_and_pragmas(db: Path) -> None:
    with SummaryStore.open(db, max_bytes=BIG, keep_days=90) as store:
        ids = [add(store, i) for i in range(3)]
        rid = store.add(summary(9), call_id="c9", started_at=T0, ended_at=T0 + timedelta(hours=1),
                        language="de", transcript_file="x.jsonl", now=T0)
        assert store.count() == 4
    assert ids == sorted(ids) and rid > ids[-1]
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    with SummaryStore.open(db, max_bytes=BIG, keep_days=90) as store:
        rows = list(store.export())
        for p in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            assert stat.S_IMODE(p.stat().st_mode) == 0o600
        conn = store._conn
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # full
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    assert [r["call_id"] for r in rows] == ["c0", "c1", "c2", "c9"]
    assert rows[0] == {"id": ids[0], "call_id": "c0", "started_at": "2026-03-01T08:59:30.000Z",
                       "ended_at": "2026-03-01T09:00:00.000Z", "duration_s": 30.0,
                       "language": "en", "transcript_file": None, "summary": summary(0),
                       "agent_id": None, "source": None}
    assert rows[3]["transcript_file"] == "x.jsonl" and rows[3]["language"] == "de"


def test_times_are_stored_in_utc_and_naive_times_are_refused(db: Path) -> None:
    cet = timezone(timedelta(hours=1))
    with SummaryStore.open(db, max_bytes=BIG, keep_days=90) as store:
        store.add(summary(), call_id="a", started_at=datetime(2026, 3, 1, 10, 0, tzinfo=cet),
                  ended_at=datetime(2026, 3, 1, 10, 5, 0, 250000, tzinfo=cet), language="en",
                  now=T0)
        with pytest.raises(ValueError, match="timezone"):
            store.add(summary(), call_id="b", started_at=datetime(2026, 3, 1),
                      ended_at=datetime(2026, 3, 1, 0, 5), language="en", now=T0)
        (row,) = store.export()
    assert row["started_at"] == "2026-03-01T09:00:00.000Z"
    assert row["ended_at"] == "2026-03-01T09:05:00.250Z"


def test_duration_falls_back_to_wall_time_and_non_finite_numbers_become_null(db: Path) -> None:
    s = Summary(1.0, {"agent_share": float("nan"), "cues": {}}).to_json()
    with SummaryStore.open(db, max_bytes=BIG, keep_days=90) as store:
        store.add(s, call_id="a", started_at=T0, ended_at=T0 + timedelta(seconds=42),
                  language="en", now=T0)
        (row,) = store.export()
    assert row["duration_s"] == 42.0
    assert row["summary"]["data"]["agent_share"] is None


def test_expiry_by_days(db: Path) -> None:
    with SummaryStore.open(db, max_bytes=BIG, keep_days=3) as store:
        for day in range(10):
            ended = T0 + timedelta(days=day)
            store.add(summary(day), call_id=f"d{day}", started_at=ended, ended_at=ended,
                      language="en", now=ended)
        # each add expired what was older than 3 days at that moment
        assert [r["call_id"] for r in store.export()] == ["d6", "d7", "d8", "d9"]
        # the call just written is never expired by its own add, even with a wrong clock
        store.add(summary(), call_id="late", started_at=T0, ended_at=T0, language="en",
                  now=T0 + timedelta(days=9))
        assert store.count() == 5
        assert store.prune(T0 + timedelta(days=11, hours=12)) == 4  # late, d6, d7, d8
        assert [r["call_id"] for r in store.export()] == ["d9"]


def _used(store: SummaryStore) -> int:
    return store.info().used_bytes


def test_size_bound_keeps_the_newest_calls(db: Path) -> None:
    bound = 128 * 1024
    with SummaryStore.open(db, max_bytes=bound, keep_days=3650) as store:
        for i in range(300):
            add(store, i, pad=1500)
            assert _used(store) <= bound
            # the main file follows (checkpoint after each call), the WAL stays bounded
            assert db.stat().st_size <= bound + 4 * 4096
        rows = list(store.export())
        wal = db.with_name(db.name + "-wal").stat().st_size
    assert 20 < len(rows) < 100  # the bound did bite
    n = [int(r["call_id"][1:]) for r in rows]
    assert n == list(range(300 - len(rows), 300))  # oldest went first, newest all kept
    assert all(r["summary"] == summary(int(r["call_id"][1:]), 1500) for r in rows)
    assert db.stat().st_size <= bound + 4 * 4096
    assert wal <= 4 << 20


def test_a_lower_bound_prunes_in_batches_and_gives_the_space_back(db: Path) -> None:
    with SummaryStore.open(db, max_bytes=BIG, keep_days=3650) as store:
        conn = store._conn
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO calls (call_id, started_at, ended_at, duration_s, language, "
            "summary_json) VALUES (?, ?, ?, 30, 'en', ?)",
            [(f"c{i}", f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
              f"2026-01-{1 + i // 3600:02d}T00:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
              json.dumps(summary(i, 900))) for i in range(4000)])
        conn.execute("COMMIT")
    big = db.stat().st_size
    assert big > 4 << 20
    with SummaryStore.open(db, max_bytes=256 * 1024, keep_days=3650) as store:
        deletes: list[str] = []
        store._conn.set_trace_callback(
            lambda sql: deletes.append(sql) if sql.startswith("DELETE") else None)
        removed = store.prune(T0)
        store._conn.set_trace_callback(None)
        assert len(deletes) <= 10  # a few batches, not one statement per call
        assert _used(store) <= 256 * 1024
        left = [int(r["call_id"][1:]) for r in store.export()]
    assert removed == 4000 - len(left) and left == list(range(4000 - len(left), 4000))
    assert db.stat().st_size <= 256 * 1024 + 4 * 4096  # the file shrank, not only the freelist


def test_a_summary_larger_than_the_bound_is_refused(db: Path) -> None:
    with SummaryStore.open(db, max_bytes=64 * 1024, keep_days=90) as store:
        add(store, 0)
        with pytest.raises(ValueError, match="exceeds"):
            add(store, 1, pad=70 * 1024)
        assert store.count() == 1


@pytest.mark.parametrize("extra", [
    {"transcript": [{"party": "agent", "text": "hello"}]},
    {"holds": [{"start": 1.0, "text": "my card is 4242"}]},
    {"follow_up": [{"t": 3.0, "Text": "call back"}]},
    {"transcript": []},
])
def test_transcript_text_is_never_stored(db: Path, extra: dict[str, Any]) -> None:
    with SummaryStore.open(db, max_bytes=BIG, keep_days=90) as store:
        with pytest.raises(ValueError, match="transcript text is never stored"):
            store.add(summary(0, **extra), call_id="a", started_at=T0, ended_at=T0,
                      language="en", now=T0)
        assert store.count() == 0


def test_word_counts_may_count_the_word_text(db: Path) -> None:
    s = summary(0, jargon={"text": 2, "Transcript": 1}, fillers={"words": {"agent": {"text": 1}}})
    with SummaryStore.open(db, max_bytes=BIG, keep_days=90) as store:
        store.add(s, call_id="a", started_at=T0, ended_at=T0, language="en", now=T0)
        assert [r["summary"] for r in store.export()] == [s]


def _first_release_file(db: Path) -> None:
    """A database as the first release wrote it (schema 1: no agent_id, no source)."""
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE calls (id INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT NOT "
                 "NULL, started_at TEXT NOT NULL, ended_at TEXT NOT NULL, duration_s REAL NOT "
                 "NULL, language TEXT NOT NULL, summary_json TEXT NOT NULL, transcript_file "
                 "TEXT)")
    conn.execute("CREATE INDEX calls_ended_at ON calls (ended_at)")
    conn.execute("INSERT INTO calls (call_id, started_at, ended_at, duration_s, language, "
                 "summary_json) VALUES ('old', '2026-01-01T00:00:00Z', "
                 "'2026-01-01T00:01:00Z', 60.0, 'de', '{\"kind\": \"summary\"}')")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()


def test_a_first_release_file_is_read_and_upgraded_in_place(db: Path) -> None:
    _first_release_file(db)
    with SummaryStore.open_readonly(db) as ro:  # a reader never migrates
        (row,) = ro.export()
        assert row["call_id"] == "old" and row["agent_id"] is None and row["source"] is None
    with SummaryStore.open(db, max_bytes=BIG, keep_days=36500) as store:
        store.add({"kind": "summary", "data": {"duration_s": 5.0}}, call_id="tap-1",
                  started_at=T0, ended_at=T0, language="en", agent_id="a-7", source="rtp",
                  now=T0)
        rows = {r["call_id"]: r for r in store.export()}
    assert rows["old"]["agent_id"] is None and rows["old"]["summary"] == {"kind": "summary"}
    assert (rows["tap-1"]["agent_id"], rows["tap-1"]["source"]) == ("a-7", "rtp")
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_a_newer_schema_is_refused_clearly(db: Path) -> None:
    SummaryStore.open(db, max_bytes=BIG, keep_days=90).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    for opener in (lambda: SummaryStore.open(db, max_bytes=BIG, keep_days=90),
                   lambda: SummaryStore.open_readonly(db)):
        with pytest.raises(ApplianceError) as e:
            opener()
        assert e.value.code == STORE_NEWER_SCHEMA
        assert str(db) in e.value.message and "newer version" in e.value.message


def test_a_garbage_file_is_corrupt_and_named(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(random.Random(1).randbytes(20000))
    for opener in (lambda: SummaryStore.open(db, max_bytes=BIG, keep_days=90),
                   lambda: SummaryStore.open_readonly(db).count()):
        with pytest.raises(ApplianceError) as e:
            opener()
        assert e.value.code == STORE_CORRUPT
        assert str(db) in e.value.message and "move it aside" in e.value.message


def test_damaged_pages_are_found_by_the_check_on_open(db: Path) -> None:
    with SummaryStore.open(db, max_bytes=BIG, keep_days=90) as store:
        for i in range(200):
            add(store, i, pad=500)
    size = db.stat().st_size
    with db.open("r+b") as f:  # keep the header page, overwrite the middle of the file
        f.seek(size // 2 // 4096 * 4096)
        f.write(random.Random(2).randbytes(3 * 4096))
    for opener in (lambda: SummaryStore.open(db, max_bytes=BIG, keep_days=90),
                   lambda: SummaryStore.open_readonly(db)):  # a reader sees what the service sees
        with pytest.raises(ApplianceError) as e:
            opener()
        assert e.value.code == STORE_CORRUPT


def test_a_foreign_database_is_not_taken_over(db: Path) -> None:
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    for opener in (lambda: SummaryStore.open(db, max_bytes=BIG, keep_days=90),
                   lambda: SummaryStore.open_readonly(db)):
        with pytest.raises(ApplianceError, match="not a summaries database") as e:
            opener()
        assert e.value.code == STORE_CORRUPT


def test_an_unusable_state_dir_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("a file, not a directory")
    with pytest.raises(ApplianceError) as e:
        SummaryStore.open(summaries_path(tmp_path / "state"), max_bytes=BIG, keep_days=90)
    assert e.value.code == STORE_UNAVAILABLE
    with pytest.raises(ApplianceError) as e:
        SummaryStore.open_readonly(tmp_path / "missing.sqlite3")
    assert e.value.code == STORE_UNAVAILABLE
    assert not (tmp_path / "missing.sqlite3").exists()


def test_export_filters_by_end_time_and_orders_by_it(db: Path) -> None:
    with SummaryStore.open(db, max_bytes=BIG, keep_days=3650) as store:
        for i in (5, 1, 3, 0, 4, 2):  # written out of order
            add(store, i, now=T0)
        m = [T0 + timedelta(minutes=k) for k in range(6)]
        assert [r["call_id"] for r in store.export()] == [f"c{k}" for k in range(6)]
        assert [r["call_id"] for r in store.export(m[2])] == ["c2", "c3", "c4", "c5"]
        assert [r["call_id"] for r in store.export(None, m[2])] == ["c0", "c1"]
        assert [r["call_id"] for r in store.export(m[1], m[4])] == ["c1", "c2", "c3"]
        assert list(store.export(m[5] + timedelta(seconds=1))) == []


def test_export_pages_through_many_calls(db: Path) -> None:
    with SummaryStore.open(db, max_bytes=BIG, keep_days=3650) as store:
        conn = store._conn
        conn.execute("BEGIN")
        same = "2026-03-01T09:00:00.000Z"  # many calls ending at the same instant
        conn.executemany(
            "INSERT INTO calls (call_id, started_at, ended_at, duration_s, language, "
            "summary_json) VALUES (?, ?, ?, 1, 'en', '{}')",
            [(f"c{i}", same, same if i < 400 else f"2026-03-01T10:{i % 60:02d}:00.000Z")
             for i in range(700)])
        conn.execute("COMMIT")
        rows = list(store.export())
    assert len(rows) == 700 and len({r["id"] for r in rows}) == 700
    keys = [(r["ended_at"], r["id"]) for r in rows]
    assert keys == sorted(keys)


def test_read_only_export_never_blocks_the_writer(db: Path) -> None:
    writer = SummaryStore.open(db, max_bytes=BIG, keep_days=3650)
    for i in range(300):
        add(writer, i, now=T0)
    reader = SummaryStore.open_readonly(db)
    it = reader.export()
    first = [next(it) for _ in range(10)]
    # a reader holding a snapshot open (mid-export) does not stop the service's writes
    raw = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None)
    raw.execute("BEGIN")
    assert raw.execute("SELECT count(*) FROM calls").fetchone()[0] == 300
    writer._conn.execute("PRAGMA busy_timeout = 0")  # a write that had to wait would fail
    for i in range(300, 310):
        add(writer, i, now=T0)
    assert raw.execute("SELECT count(*) FROM calls").fetchone()[0] == 300  # its snapshot
    raw.execute("COMMIT")
    rest = list(it)
    assert [r["call_id"] for r in first + rest] == [f"c{i}" for i in range(310)]
    with pytest.raises(ValueError, match="read-only"):
        reader.prune(T0)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader._conn.execute("DELETE FROM calls")
    assert writer.count() == 310
    raw.close()
    reader.close()
    writer.close()


# -- a power cut mid-call: SIGKILL the writer -----------------------------------------------


def expected(n: int, pad: int) -> dict[str, Any]:
    """What the writer process stores for call ``n`` (the parent derives it again)."""
    return {"t": 30.0, "kind": "summary", "party": None, "severity": "info",
            "message": "call summary",
            "data": {"duration_s": 30.0, "n": n, "cues": {"interruption": n % 7},
                     "pad": (f"{n:08d}" * (pad // 8 + 1))[:pad]}}


CHILD = r"""
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from appliance.sinks.store import SummaryStore
T0 = datetime(2026, 1, 1, tzinfo=UTC)
{expected}
path, max_bytes, start, pad = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
store = SummaryStore.open(Path(path), max_bytes=max_bytes, keep_days=3650)
if start < 0:
    print("prune", flush=True)
    store.prune(T0)
    print("pruned", flush=True)
    sys.stdin.read()
n = start
while True:
    ended = T0 + timedelta(seconds=n)
    rid = store.add(expected(n, pad), call_id=f"c{{n}}", started_at=ended - timedelta(seconds=30),
                    ended_at=ended, language="en", now=ended)
    sys.stdout.write(f"{{rid}} {{n}}\n")
    sys.stdout.flush()
    n += 1
"""


def _spawn(db: Path, max_bytes: int, start: int, pad: int) -> subprocess.Popen[str]:
    code = CHILD.format(expected=inspect.getsource(expected))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    return subprocess.Popen([sys.executable, "-c", code, str(db), str(max_bytes), str(start),
                             str(pad)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)


def _kill_after(proc: subprocess.Popen[str], lines: int, delay_s: float) -> list[str]:
    """Read ``lines`` lines, wait ``delay_s`` (the child keeps writing), SIGKILL; returns
    every line the child printed (all of them were printed after a commit)."""
    guard = threading.Timer(20.0, proc.kill)
    guard.start()
    try:
        assert proc.stdout is not None and proc.stderr is not None
        got = []
        while len(got) < lines:
            line = proc.stdout.readline()
            assert line, f"writer died: {proc.stderr.read()}"
            got.append(line.strip())
        time.sleep(delay_s)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        rest = proc.stdout.read().split("\n")
        # an unterminated last line was cut by the kill: that call was not reported
        return got + [g for g in rest[:-1] if g]
    finally:
        guard.cancel()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if f is not None:
                f.close()


def _intact(db: Path, pad: int) -> dict[int, int]:
    """After the kill: the file checks out, every row is whole; returns id -> n."""
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]
        rows = conn.execute("SELECT id, call_id, ended_at, summary_json FROM calls").fetchall()
    finally:
        conn.close()
    out = {}
    for rid, call_id, ended, js in rows:
        n = int(call_id[1:])
        assert json.loads(js) == expected(n, pad), f"row {rid} damaged"
        assert ended == (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n)).isoformat(
            timespec="milliseconds").replace("+00:00", "Z")
        out[rid] = n
    SummaryStore.open(db, max_bytes=BIG, keep_days=3650).close()  # opens (checks) cleanly
    return out


def test_killing_the_writer_never_loses_or_damages_committed_calls(db: Path) -> None:
    rnd = random.Random(7)
    pad = 1000
    committed: dict[int, int] = {}
    start = 0
    # unbounded: every committed call survives; at most the one being written is extra
    # bounded (every add prunes): the survivors are the newest calls, without holes
    for bound in (BIG, BIG, BIG, 96 * 1024, 96 * 1024):
        proc = _spawn(db, bound, start, pad)
        lines = _kill_after(proc, rnd.choice([1, 5, 20, 60]), rnd.uniform(0.0, 0.03))
        assert all(len(line.split()) == 2 for line in lines), lines
        reported = {int(rid): int(n) for rid, n in (line.split() for line in lines)}
        with SummaryStore.open_readonly(db) as ro:  # a supervisor's export before the restart
            seen = {r["id"] for r in ro.export()}
        assert reported and all(n >= start for n in reported.values())
        assert max(reported) in seen and (bound != BIG or set(reported) <= seen)
        committed.update(reported)
        rows = _intact(db, pad)
        top = max(reported)
        extra = [rid for rid in rows if rid > top]
        assert len(extra) <= 1, "more than the call being written appeared"
        if bound == BIG:
            assert all(rows.get(rid) == n for rid, n in committed.items())
        else:
            assert rows[top] == reported[top]
            live = sorted(rows)
            assert all(rows.get(rid) == n for rid, n in committed.items() if rid >= live[0])
            assert [rows[r] for r in live] == list(range(rows[live[0]], rows[live[-1]] + 1))
        start = max(rows.values()) + 1


def test_killing_a_large_prune_leaves_all_or_the_pruned_set(db: Path) -> None:
    pad = 2000
    n_rows = 3000
    rnd = random.Random(11)
    for delay in (0.0, 0.01, 0.03, 0.05, 0.5):
        if db.exists():
            for p in db.parent.iterdir():
                p.unlink()
        with SummaryStore.open(db, max_bytes=BIG, keep_days=3650) as store:
            conn = store._conn
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO calls (call_id, started_at, ended_at, duration_s, language, "
                "summary_json) VALUES (?, ?, ?, 30, 'en', ?)",
                [(f"c{n}", "x",
                  (datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=n)).isoformat(
                      timespec="milliseconds").replace("+00:00", "Z"),
                  json.dumps(expected(n, pad))) for n in range(n_rows)])
            conn.execute("COMMIT")
        proc = _spawn(db, 128 * 1024, -1, pad)
        _kill_after(proc, 1, delay + rnd.uniform(0, 0.002))
        rows = _intact(db, pad)
        ns = sorted(rows.values())
        assert ns == list(range(ns[0], n_rows)), "a prune left holes or lost the newest"
        assert len(ns) == n_rows or len(ns) < 100  # rolled back, or done


# -- transcripts ------------------------------------------------------------------------------


def test_transcripts_are_masked_private_and_written_atomically(tmp_path: Path) -> None:
    d = tmp_path / "state" / "transcripts"
    ts = TranscriptStore(d, keep_days=7)
    utts = [{"party": "customer", "start": 1.0, "end": 4.0,
             "text": "my card is 4242 4242 4242 4242 thanks"},
            {"party": "customer", "start": 5.0, "end": 7.0, "text": "four two four two"},
            {"party": "agent", "start": 8.0, "end": 9.0, "text": "thank you"}]
    name = ts.write("call/7 x", datetime(2026, 3, 1, 10, 30, 5, tzinfo=timezone(
        timedelta(hours=1))), utts)
    assert name == "20260301T093005Z_call-7-x.jsonl" and NAME_RE.match(name)
    f = d / name
    text = f.read_text(encoding="utf-8")
    assert "4242" not in text and "four two" not in text and "•••" in text
    lines = [json.loads(x) for x in text.splitlines()]
    assert [x["text"] for x in lines] == ["my card is ••• thanks", "•••", "thank you"]
    assert lines[0]["party"] == "customer" and lines[0]["start"] == 1.0
    assert stat.S_IMODE(f.stat().st_mode) == 0o600 and stat.S_IMODE(d.stat().st_mode) == 0o700
    assert sorted(p.name for p in d.iterdir()) == [name]  # no temporary file left
    again = ts.write("call/7 x", datetime(2026, 3, 1, 9, 30, 5, tzinfo=UTC), utts[2:])
    assert again == "20260301T093005Z_call-7-x-2.jsonl" and f.read_text() == text


def test_a_failed_transcript_write_leaves_nothing(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "t"
    d.mkdir()

    def no_sync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_sync)
    with pytest.raises(ApplianceError) as e:
        TranscriptStore(d, 7).write("c1", T0, [{"text": "hello"}])
    assert e.value.code == STORE_UNAVAILABLE and "No space" in e.value.message
    assert list(d.iterdir()) == []


def test_transcript_expiry_only_touches_its_own_files(tmp_path: Path) -> None:
    d = tmp_path / "t"
    ts = TranscriptStore(d, keep_days=7)
    now = datetime(2026, 3, 20, tzinfo=UTC)
    old = ts.write("old", now - timedelta(days=8), [{"text": "a"}])
    new = ts.write("new", now - timedelta(days=6), [{"text": "b"}])
    bad_stamp = d / "20261399T000000Z_x.jsonl"  # no such date: falls back to the mtime
    bad_stamp.write_text("{}\n")
    os.utime(bad_stamp, (0, (now - timedelta(days=30)).timestamp()))
    stale_tmp = d / f".{new}.abc123_x.tmp"
    stale_tmp.write_text("partial")
    os.utime(stale_tmp, (0, (now - timedelta(hours=2)).timestamp()))
    fresh_tmp = d / f".{old}.zz9_q.tmp"
    fresh_tmp.write_text("being written")
    os.utime(fresh_tmp, (0, (now - timedelta(minutes=1)).timestamp()))
    keep = ["notes.txt", "20200101T000000Z_x.json", "x_20200101T000000Z.jsonl"]
    for k in keep:
        (d / k).write_text("mine")
        os.utime(d / k, (0, 0))
    (d / "20200101T000000Z_dir.jsonl").mkdir()
    assert ts.expire(now) == 3
    assert sorted(p.name for p in d.iterdir()) == sorted(
        [new, fresh_tmp.name, *keep, "20200101T000000Z_dir.jsonl"])
    assert ts.expire(now) == 0
    ts.keep_days = 1  # a reloaded [storage] transcript_days applies from the next expiry
    assert ts.expire(now) == 1 and new not in {p.name for p in d.iterdir()}
    assert TranscriptStore(tmp_path / "absent", 7).expire(now) == 0
