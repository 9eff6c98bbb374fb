"""Call summaries kept on the box: one SQLite file, bounded in age and in size.

``<state_dir>/summaries.sqlite3`` holds one row per call: when it ran, its language and the
summary event (cue counts, talk times, holds...) as JSON.  Never audio, never transcript text
(:meth:`SummaryStore.add` refuses a summary with a ``transcript`` or ``text`` key).

Durability: WAL journal with ``synchronous=FULL`` and one transaction per call (insert, then
prune), so a power cut loses at most the call being written and never damages earlier ones.
Space: rows older than ``keep_days`` go first, then the oldest rows until the pages in use fit
``max_bytes``; freed pages are returned to the file system (``auto_vacuum=INCREMENTAL``).
A supervisor's export opens the file read-only (:meth:`SummaryStore.open_readonly`) and never
blocks the service's writes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from appliance.errors import (
    STORE_CORRUPT,
    STORE_NEWER_SCHEMA,
    STORE_UNAVAILABLE,
    ApplianceError,
)
from appliance.events import iso_utc
from appliance.sinks.store.sqlitefile import (
    has_tables,
    integrity_problems,
    sqlite_errors,
    transaction,
    user_version,
)

log = logging.getLogger(__name__)

DB_NAME = "summaries.sqlite3"
SCHEMA_VERSION = 2
"""1: the first release; 2: ``agent_id`` and ``source`` (the PBX tap's calls) added."""
FORBIDDEN_KEYS = frozenset({"transcript", "text"})
"""Keys a stored summary may not hold text under, at any depth (a number is fine):
transcript text stays in memory."""

_BUSY_TIMEOUT_MS = 5000
_EXPORT_CHUNK = 256
_COLUMNS_V1 = ("id, call_id, started_at, ended_at, duration_s, language, transcript_file, "
               "summary_json")
_COLUMNS = _COLUMNS_V1 + ", agent_id, source"
_SCHEMA_V1 = (
    "CREATE TABLE calls (id INTEGER PRIMARY KEY AUTOINCREMENT, call_id TEXT NOT NULL, "
    "started_at TEXT NOT NULL, ended_at TEXT NOT NULL, duration_s REAL NOT NULL, "
    "language TEXT NOT NULL, summary_json TEXT NOT NULL, transcript_file TEXT)",
    "CREATE INDEX calls_ended_at ON calls (ended_at)",
)
_SCHEMA_V2 = (
    "ALTER TABLE calls ADD COLUMN agent_id TEXT",
    "ALTER TABLE calls ADD COLUMN source TEXT",
)


def summaries_path(state_dir: Path) -> Path:
    """Where the summaries database lives in a state directory."""
    return Path(state_dir) / DB_NAME



@dataclass(frozen=True, slots=True)
class StoreInfo:
    """What ``appliance summaries list`` shows."""

    count: int
    oldest: str | None
    """``ended_at`` of the oldest call (UTC ISO 8601), None when empty."""
    newest: str | None
    used_bytes: int
    """Pages in use (what the size bound measures)."""
    file_bytes: int
    """The database file and its WAL on disk."""


class SummaryStore:
    """One SQLite file of call summaries.  Thread-safe (one lock around the connection);
    :meth:`add` syncs to disk, so call it off the event loop."""

    __slots__ = ("_columns", "_conn", "_empty", "_lock", "_readonly", "keep_days", "max_bytes",
                 "path")

    def __init__(self, path: Path, conn: sqlite3.Connection, *, max_bytes: int,
                 keep_days: float, readonly: bool, empty: bool = False,
                 version: int = SCHEMA_VERSION) -> None:
        self.path = path
        # a reader of a first-release file (never migrated: read-only) has no tap columns
        self._columns = _COLUMNS if version >= 2 else _COLUMNS_V1 + ", NULL, NULL"
        self.max_bytes = max_bytes
        self.keep_days = keep_days
        self._conn = conn
        self._readonly = readonly
        self._empty = empty
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path, *, max_bytes: int, keep_days: float) -> SummaryStore:
        """Open (or create, mode 0600 in a 0700 directory) the database for writing.

        Raises ApplianceError: STORE_CORRUPT (damaged file: move it aside),
        STORE_NEWER_SCHEMA (written by a newer version), STORE_UNAVAILABLE (cannot open).
        """
        if max_bytes <= 0 or keep_days <= 0:
            raise ValueError("max_bytes and keep_days must be positive")
        path = Path(path)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        except OSError as exc:
            raise ApplianceError(STORE_UNAVAILABLE, f"cannot create the summaries database "
                                 f"{path}: {exc.strerror or exc}") from exc
        with _sqlite_errors(path, "open"):
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            with _sqlite_errors(path, "open"):
                _prepare(conn, path, max_bytes)
        except BaseException:
            conn.close()
            raise
        log.debug("summaries database %s open (bound %d bytes, %.1f days)", path, max_bytes,
                  keep_days)
        return cls(path, conn, max_bytes=max_bytes, keep_days=keep_days, readonly=False)

    @classmethod
    def open_readonly(cls, path: Path) -> SummaryStore:
        """Open an existing database read-only (``mode=ro``): never writes, never blocks
        the service.  A missing file raises STORE_UNAVAILABLE."""
        path = Path(path)
        if not path.is_file():
            raise ApplianceError(STORE_UNAVAILABLE, f"no summaries database at {path}")
        try:
            conn, version = _connect_readonly(path, immutable=False)
        except ApplianceError as exc:
            # A WAL database needs its -shm file to be created by a reader; on a read-only
            # file system, or a directory the reader may not write, that fails.  Without a
            # -wal file no writer has the database open (a writer keeps one while it runs),
            # so reading it as immutable is safe.
            if exc.code != STORE_UNAVAILABLE or _wal(path).exists():
                raise
            log.debug("summaries database %s: read-only open failed (%s); reading it as "
                      "immutable", path, exc)
            conn, version = _connect_readonly(path, immutable=True)
        return cls(path, conn, max_bytes=0, keep_days=0.0, readonly=True, empty=version == 0,
                   version=version)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> SummaryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, summary: Mapping[str, Any], *, call_id: str, started_at: datetime,
            ended_at: datetime, language: str, transcript_file: str | None = None,
            agent_id: str | None = None, source: str | None = None,
            now: datetime | None = None) -> int:
        """Store one call (the Summary event's ``to_json()``) and prune, in one transaction.

        Returns the row id.  ``now`` (default: the clock) is the reference for expiry.
        Raises ValueError for a summary holding a ``transcript``/``text`` key, a naive
        datetime, or a summary larger than the size bound; ApplianceError when the database
        cannot be written.
        """
        self._writable()
        payload = _encode(summary)
        if len(payload.encode("utf-8")) >= self.max_bytes:
            raise ValueError(f"summary of {len(payload)} bytes exceeds the store's bound "
                             f"of {self.max_bytes} bytes")
        start, end = iso_utc(started_at), iso_utc(ended_at)
        now = now or datetime.now(UTC)
        iso_utc(now)  # aware, or ValueError before anything is written
        data = summary.get("data")
        dur = data.get("duration_s") if isinstance(data, Mapping) else None
        if not isinstance(dur, int | float) or not math.isfinite(dur):
            dur = (ended_at - started_at).total_seconds()
        row = (str(call_id), start, end, float(dur), str(language), payload, transcript_file,
               agent_id, source)
        with self._lock, _sqlite_errors(self.path, "write to"):
            with transaction(self._conn):
                cur = self._conn.execute(
                    "INSERT INTO calls (call_id, started_at, ended_at, duration_s, language, "
                    "summary_json, transcript_file, agent_id, source) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                new_id = cur.lastrowid
                assert new_id is not None
                pruned = self._prune_locked(now, keep_id=new_id)
            self._checkpoint()
        log.info("call summary stored (id %d, %d old removed)", new_id, pruned)
        return new_id

    def prune(self, now: datetime | None = None) -> int:
        """Apply the age and size bounds now; returns how many calls were removed."""
        self._writable()
        now = now or datetime.now(UTC)
        iso_utc(now)
        with self._lock, _sqlite_errors(self.path, "write to"):
            with transaction(self._conn):
                pruned = self._prune_locked(now, keep_id=None)
            self._checkpoint()
        if pruned:
            log.info("%d old call summaries removed", pruned)
        return pruned

    def _prune_locked(self, now: datetime, keep_id: int | None) -> int:
        conn = self._conn
        keep = -1 if keep_id is None else keep_id
        cutoff = iso_utc(now - timedelta(days=self.keep_days))
        removed = conn.execute("DELETE FROM calls WHERE ended_at < ? AND id != ?",
                               (cutoff, keep)).rowcount
        while (used := _used_bytes(conn)) > self.max_bytes:
            others = conn.execute("SELECT count(*) FROM calls WHERE id != ?",
                                  (keep,)).fetchone()[0]
            if others == 0:
                log.warning("summaries database %s holds %d bytes with only the newest call "
                            "(bound %d)", self.path, used, self.max_bytes)
                break
            per_row = used / (others + (keep_id is not None))
            batch = min(others, max(1, math.ceil((used - self.max_bytes) / per_row)))
            removed += conn.execute(
                "DELETE FROM calls WHERE id IN (SELECT id FROM calls WHERE id != ? "
                "ORDER BY ended_at, id LIMIT ?)", (keep, batch)).rowcount
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        for _ in range(free):
            # Python's sqlite3 steps a statement once, and incremental_vacuum frees one page
            # per step: run it once per free page.
            conn.execute("PRAGMA incremental_vacuum(1)").close()
        return int(removed)

    def _checkpoint(self) -> None:
        """Copy committed pages into the main file so its size follows the bound; passive,
        so it never waits for a reader."""
        try:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # the call is committed; the next checkpoint catches up
            log.warning("summaries database %s: checkpoint failed: %s", self.path, exc)

    def _writable(self) -> None:
        if self._readonly:
            raise ValueError(f"{self.path} was opened read-only")

    def count(self) -> int:
        if self._empty:
            return 0
        with self._lock, _sqlite_errors(self.path, "read"):
            return int(self._conn.execute("SELECT count(*) FROM calls").fetchone()[0])

    def info(self) -> StoreInfo:
        files = sum(p.stat().st_size for p in (self.path, _wal(self.path)) if p.exists())
        if self._empty:
            return StoreInfo(0, None, None, 0, files)
        with self._lock, _sqlite_errors(self.path, "read"):
            n, lo, hi = self._conn.execute(
                "SELECT count(*), min(ended_at), max(ended_at) FROM calls").fetchone()
            used = _used_bytes(self._conn)
        return StoreInfo(int(n), lo, hi, used, files)

    def export(self, since: datetime | None = None,
               until: datetime | None = None) -> Iterator[dict[str, Any]]:
        """Calls with ``since <= ended_at < until``, oldest first, as dicts: ``id``,
        ``call_id``, ``started_at``, ``ended_at``, ``duration_s``, ``language``,
        ``transcript_file``, ``summary`` (the stored summary event), ``agent_id`` and
        ``source`` (a PBX tap's call; null for a desk call and for first-release rows).

        Rows are read in chunks; the lock (and any read transaction) is only held while a
        chunk is fetched, so a slow consumer never holds up :meth:`add`.
        """
        if self._empty:
            return
        where, params = ["1"], []
        if since is not None:
            where.append("ended_at >= ?")
            params.append(iso_utc(since))
        if until is not None:
            where.append("ended_at < ?")
            params.append(iso_utc(until))
        sql = (f"SELECT {self._columns} FROM calls WHERE {' AND '.join(where)} "
               f"AND (ended_at, id) > (?, ?) ORDER BY ended_at, id LIMIT {_EXPORT_CHUNK}")
        last: tuple[str, int] = ("", -1)
        while True:
            with self._lock, _sqlite_errors(self.path, "read"):
                rows = self._conn.execute(sql, (*params, *last)).fetchall()
            for r in rows:
                yield self._row(r)
            if len(rows) < _EXPORT_CHUNK:
                return
            last = (rows[-1][3], rows[-1][0])

    def _row(self, r: tuple[Any, ...]) -> dict[str, Any]:
        try:
            summary = json.loads(r[7])
        except ValueError as exc:
            raise ApplianceError(STORE_CORRUPT, f"{self.path}: call {r[0]} has an unreadable "
                                 "summary") from exc
        return {"id": r[0], "call_id": r[1], "started_at": r[2], "ended_at": r[3],
                "duration_s": r[4], "language": r[5], "transcript_file": r[6],
                "summary": summary, "agent_id": r[8], "source": r[9]}


def _connect_readonly(path: Path, *, immutable: bool) -> tuple[sqlite3.Connection, int]:
    """A read-only connection that passed the integrity and version checks, and the
    database's schema version (0: an empty file)."""
    uri = path.resolve().as_uri() + ("?mode=ro&immutable=1" if immutable else "?mode=ro")
    with _sqlite_errors(path, "open"):
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        with _sqlite_errors(path, "open"):
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            version = user_version(conn)
            _check_integrity(conn, path)
            _check_version(version, path)
            if version == 0 and has_tables(conn):
                raise _corrupt(path, "not a summaries database")
    except BaseException:
        conn.close()
        raise
    return conn, version


def _check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    """``PRAGMA quick_check``: the same test for the service and for a reader, so a file
    the service refuses is never listed or exported as if it were whole."""
    problems = integrity_problems(conn)
    if problems:
        raise _corrupt(path, problems)


def _prepare(conn: sqlite3.Connection, path: Path, max_bytes: int) -> None:
    """Integrity check, version check, pragmas, schema (in that order: ``auto_vacuum`` only
    takes effect when set before the first table exists)."""
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    version = user_version(conn)
    _check_integrity(conn, path)
    _check_version(version, path)
    if version == 0:
        if has_tables(conn):
            raise _corrupt(path, "not a summaries database")
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        log.warning("summaries database %s: WAL journal unavailable (%s)", path, mode)
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(f"PRAGMA journal_size_limit = {min(max(max_bytes // 4, 1 << 16), 4 << 20)}")
    if version < SCHEMA_VERSION:
        with transaction(conn):
            now_at = user_version(conn)  # another process may have done it meanwhile
            if now_at == 0:
                for stmt in _SCHEMA_V1:
                    conn.execute(stmt)
            if now_at < 2:
                for stmt in _SCHEMA_V2:
                    conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _check_version(version: int, path: Path) -> None:
    if version > SCHEMA_VERSION:
        raise ApplianceError(STORE_NEWER_SCHEMA, f"{path} was written by a newer version of "
                             f"the appliance (schema {version}, this one reads up to "
                             f"{SCHEMA_VERSION}): upgrade, or move the file aside")


def _used_bytes(conn: sqlite3.Connection) -> int:
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _corrupt(path: Path, detail: str) -> ApplianceError:
    return ApplianceError(STORE_CORRUPT, f"summaries database {path} is damaged ({detail}): "
                          "move it aside (with its -wal and -shm files) and restart; a new, "
                          "empty one is created")


def _sqlite_errors(path: Path, doing: str) -> AbstractContextManager[None]:
    """sqlite3 errors become ApplianceError: damaged file -> STORE_CORRUPT, else
    STORE_UNAVAILABLE (locked, read-only, disk full, I/O error...)."""
    return sqlite_errors(lambda detail: _corrupt(path, detail), STORE_UNAVAILABLE, doing,
                         f"the summaries database {path}")


def _encode(summary: Mapping[str, Any]) -> str:
    """Compact JSON of the summary; refuses transcript keys, non-finite numbers become null."""
    if not isinstance(summary, Mapping):
        raise ValueError("a summary must be a mapping (Summary.to_json())")
    try:
        return json.dumps(_clean(summary, "summary"), ensure_ascii=False,
                          separators=(",", ":"), allow_nan=False)
    except TypeError as exc:
        raise ValueError(f"summary is not JSON-serialisable: {exc}") from exc


def _clean(obj: Any, where: str) -> Any:
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            # a word-count map (jargon, filler words) may count the word "text": numbers
            # carry no transcript, strings, lists and objects might
            if str(k).casefold() in FORBIDDEN_KEYS and not (v is None
                                                            or isinstance(v, int | float)):
                raise ValueError(f"{where}.{k}: transcript text is never stored with a summary")
            out[k] = _clean(v, f"{where}.{k}")
        return out
    if isinstance(obj, list | tuple):
        return [_clean(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, float) and not math.isfinite(obj):
        log.warning("%s: non-finite number stored as null", where)
        return None
    return obj
