"""``appliance summaries export | list | prune``: the stored call summaries for a supervisor.

The state directory resolves like the service's: ``--state-dir``, else ``[storage]
state_dir`` of the config (``--config``, ``APPLIANCE_CONFIG`` or /etc/appliance, with the
environment overrides), else systemd's ``STATE_DIRECTORY``, else ~/.local/state/appliance.
``export`` and ``list`` open the database read-only: they never block or change the running
service's database.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from appliance.config import Config, load_config
from appliance.config_env import default_config_path, resolve_state_dir
from appliance.errors import EXPORT_BAD_DATE, EXPORT_OUTPUT_FAILED, ApplianceError, shown
from appliance.events import CUE_KINDS
from appliance.sinks.store import (
    SummaryStore,
    TranscriptStore,
    summaries_path,
    transcripts_dir,
)

# The CSV always has a ``cues.<kind>`` column for every kind of CUE_KINDS, in its order (0
# when a call had none; a kind added later adds a column at the end, so the columns of an
# older export keep their places), plus any other kind found in the exported calls
# (written by another version), after them.
BASE_COLUMNS = ("call_id", "started_at", "ended_at", "duration_s", "language")
TAP_COLUMNS = ("agent_id", "source")
"""After the summary: the second release's columns (a PBX tap's agent and source)."""
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*([dh])")
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE_HELP = ("2026-11-01 (UTC day), an ISO date-time (2026-11-01T09:00, UTC unless it "
              "carries an offset), or an age: 7d, 24h")


def add_summaries_parser(sub: Any) -> None:
    s = sub.add_parser("summaries", help="export or inspect the stored call summaries",
                       description="The call summaries the service keeps (no audio, no "
                       "transcript): export them for a supervisor, list or prune them.")
    ssub = s.add_subparsers(dest="summaries_command", required=True)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--config", type=Path, metavar="FILE",
                       help="TOML configuration file (default: $APPLIANCE_CONFIG, else "
                       "/etc/appliance/appliance.toml if present)")
    where.add_argument("--state-dir", type=Path, metavar="DIR",
                       help="state directory (default: [storage] state_dir of the config)")
    e = ssub.add_parser("export", parents=[where], help="write the summaries as JSONL or CSV",
                        description="Write the stored call summaries, oldest first, one per "
                        "line (JSONL) or one CSV row per call.  Read-only.")
    e.add_argument("--since", metavar="DATE", help=f"calls that ended at or after: {_DATE_HELP}")
    e.add_argument("--until", metavar="DATE",
                   help="calls that ended before (a date: up to the end of that day)")
    e.add_argument("--format", choices=["jsonl", "csv"], default="jsonl", help="jsonl (default) "
                   "or csv (flat columns: call, times, cues.<kind> counts, summary_json)")
    e.add_argument("--output", "-o", type=Path, metavar="FILE",
                   help="write to this file (default: stdout)")
    ssub.add_parser("list", parents=[where], help="how many calls are stored, oldest, newest, "
                    "size")
    ssub.add_parser("prune", parents=[where], help="apply the [storage] age and size bounds "
                    "now (summaries and retained transcripts)")


def run_summaries(args: argparse.Namespace) -> int | None:
    if args.command != "summaries":
        return None
    return run(args, os.environ, datetime.now(UTC), sys.stdout, sys.stderr)


def run(args: argparse.Namespace, env: Mapping[str, str], now: datetime, out: TextIO,
        err: TextIO) -> int:
    """The ``summaries`` command with its environment, clock and streams injected."""
    cfg: Config | None = None
    if args.state_dir is None or args.summaries_command == "prune":
        cfg = load_config(args.config or default_config_path(env), env)
    state = args.state_dir or resolve_state_dir(cfg.storage.state_dir if cfg else "", env)
    db = summaries_path(state)
    if args.summaries_command == "export":
        return _export(args, db, now, out, err)
    if args.summaries_command == "list":
        return _list(db, out)
    assert cfg is not None
    return _prune(cfg, db, state, now, out)


def parse_when(text: str, now: datetime, *, end_of_day: bool = False) -> datetime:
    """``2026-11-01`` (midnight UTC, or the next midnight with ``end_of_day``), an ISO
    date-time (UTC unless it has an offset) or an age (``7d``, ``24h``) before ``now``."""
    t = text.strip()
    try:
        if m := _RELATIVE.fullmatch(t):
            n = float(m[1])
            return now - (timedelta(days=n) if m[2] == "d" else timedelta(hours=n))
        if _DATE_ONLY.fullmatch(t):
            d = date.fromisoformat(t)
            day = datetime(d.year, d.month, d.day, tzinfo=UTC)
            return day + timedelta(days=1) if end_of_day else day
        when = datetime.fromisoformat(t)
    except (ValueError, OverflowError):
        raise ApplianceError(EXPORT_BAD_DATE, f"{shown(text)} is not a date: give {_DATE_HELP}") \
            from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _export(args: argparse.Namespace, db: Path, now: datetime, out: TextIO,
            err: TextIO) -> int:
    since = parse_when(args.since, now) if args.since else None
    until = parse_when(args.until, now, end_of_day=True) if args.until else None
    if since and until and since >= until:
        raise ApplianceError(EXPORT_BAD_DATE, f"--since {args.since} is not before "
                             f"--until {args.until}")
    if not db.is_file():
        err.write(f"appliance: no summaries yet at {db}\n")
        with _output(args.output, out):
            pass
        return 0
    with SummaryStore.open_readonly(db) as store, _output(args.output, out) as f:
        if args.format == "csv":
            write_csv(f, lambda: store.export(since, until))
        else:
            for row in store.export(since, until):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return 0


def write_csv(f: TextIO, rows: Callable[[], Iterable[Mapping[str, Any]]]) -> int:
    """One row per call; ``rows()`` is called twice (the columns need every cue kind first)."""
    extra = sorted({k for r in rows() for k in _cues(r)} - set(CUE_KINDS))
    kinds = [*CUE_KINDS, *extra]  # in CUE_KINDS's order: new kinds add columns at the end
    w = csv.writer(f, lineterminator="\n")
    w.writerow([*BASE_COLUMNS, *(f"cues.{k}" for k in kinds), "summary_json", *TAP_COLUMNS])
    n = 0
    for r in rows():
        cues = _cues(r)
        w.writerow([*(r[c] for c in BASE_COLUMNS), *(cues.get(k, 0) for k in kinds),
                    json.dumps(r["summary"], ensure_ascii=False, separators=(",", ":")),
                    *(r.get(c) or "" for c in TAP_COLUMNS)])
        n += 1
    return n


def _cues(row: Mapping[str, Any]) -> dict[str, Any]:
    """The cue counts of a stored summary event (``data.cues``)."""
    summary = row.get("summary")
    data = summary.get("data", summary) if isinstance(summary, dict) else None
    cues = data.get("cues") if isinstance(data, dict) else None
    return cues if isinstance(cues, dict) else {}


def _list(db: Path, out: TextIO) -> int:
    if not db.is_file():
        out.write(f"no summaries yet at {db}\n")
        return 0
    with SummaryStore.open_readonly(db) as store:
        info = store.info()
    rows = [("database", str(db)), ("calls", str(info.count)),
            ("oldest", info.oldest or "-"), ("newest", info.newest or "-"),
            ("size", f"{_mib(info.file_bytes)} on disk, {_mib(info.used_bytes)} in use")]
    width = max(len(k) for k, _ in rows)
    out.write("".join(f"{k:<{width}}  {v}\n" for k, v in rows))
    return 0


def _prune(cfg: Config, db: Path, state: Path, now: datetime, out: TextIO) -> int:
    st = cfg.storage
    if db.is_file():
        with SummaryStore.open(db, max_bytes=int(st.summaries_max_mb * 1024 * 1024),
                               keep_days=st.summaries_days) as store:
            n = store.prune(now)
            left = store.count()
        out.write(f"{n} call summaries removed, {left} kept ({db})\n")
    else:
        out.write(f"no summaries yet at {db}\n")
    gone = TranscriptStore(transcripts_dir(state), st.transcript_days).expire(now)
    if gone:
        out.write(f"{gone} expired transcript files deleted\n")
    return 0


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB"


@contextmanager
def _output(path: Path | None, default: TextIO) -> Iterator[TextIO]:
    if path is None:
        yield default
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise ApplianceError(EXPORT_OUTPUT_FAILED, f"cannot write {path}: "
                             f"{exc.strerror or exc}") from exc
    with open(fd, "w", encoding="utf-8", newline="") as f:
        yield f
