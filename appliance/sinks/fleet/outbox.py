"""The fleet outbox: messages not yet acknowledged by the broker, on disk.

``<state_dir>/fleet-outbox.sqlite3`` (WAL) holds one row per message, in the order they were
written; the publisher sends the oldest first and deletes a row only when the broker has
acknowledged it (its PUBACK), so a broker or network outage, and a restart of the box,
lose nothing: the MQTT client's own session is in memory only.  The outbox is bounded (by
messages and bytes): beyond either bound the oldest rows are evicted, and their number is
kept in the file too (``evicted``), for ``/healthz``, ``/metrics`` and ``doctor``.

One connection, shared by the event loop (which appends) and the publisher's sender thread
(which peeks and deletes), behind a lock; each call is one short transaction.  A damaged
file is refused with ``fleet.outbox_corrupt`` (move it aside; the box keeps coaching without
the fleet meanwhile), never a crash.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import FLEET_OUTBOX_CORRUPT, FLEET_OUTBOX_UNAVAILABLE, ApplianceError
from appliance.sinks.store.sqlitefile import (
    has_tables,
    integrity_problems,
    sqlite_errors,
    transaction,
    user_version,
)

OUTBOX_NAME = "fleet-outbox.sqlite3"
SCHEMA_VERSION = 1
_BUSY_TIMEOUT_MS = 5000
_SCHEMA = (
    "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
    "payload BLOB NOT NULL, size INTEGER NOT NULL)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "INSERT INTO meta (key, value) VALUES ('evicted', 0)",
)


def outbox_path(state_dir: Path) -> Path:
    return Path(state_dir) / OUTBOX_NAME


@dataclass(frozen=True, slots=True)
class Row:
    """One message waiting for the broker's acknowledgement."""

    seq: int
    topic: str
    payload: bytes


class Outbox:
    """Append in order, peek the oldest, delete on acknowledgement; bounded, evictions
    counted.  Thread-safe.  Use :meth:`open`."""

    def __init__(self, path: Path, conn: sqlite3.Connection, *, max_messages: int,
                 max_bytes: int) -> None:
        self.path = path
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._conn = conn
        self._lock = threading.Lock()
        self.appended = 0
        """Messages appended since this process opened the outbox."""
        with self._lock, self._errors("read"):
            n, size = conn.execute(
                "SELECT count(*), coalesce(sum(size), 0) FROM outbox").fetchone()
            self._pending, self._bytes = int(n), int(size)
            self._evicted = int(conn.execute(
                "SELECT value FROM meta WHERE key = 'evicted'").fetchone()[0])

    @classmethod
    def open(cls, path: Path, *, max_messages: int = 100000,
             max_bytes: int = 64 * 1024 * 1024) -> Outbox:
        """Open (or create) the outbox; ``fleet.outbox_corrupt`` for a damaged file or one
        that is not an outbox, ``fleet.outbox_unavailable`` when it cannot be opened."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ApplianceError(FLEET_OUTBOX_UNAVAILABLE, f"cannot create {path.parent}: "
                                 f"{exc.strerror or exc}") from None
        conn: sqlite3.Connection | None = None
        try:
            with _sqlite_errors(path, "open"):
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                _prepare(conn, path)
            return cls(path, conn, max_messages=max_messages, max_bytes=max_bytes)
        except BaseException:
            if conn is not None:
                conn.close()
            raise

    # -- figures --------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Messages waiting (sent or not) for the broker's acknowledgement."""
        return self._pending

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    @property
    def evicted(self) -> int:
        """Messages evicted (the oldest first) to keep within the bounds, since the file
        was created."""
        return self._evicted

    def stats(self) -> dict[str, Any]:
        return {"pending": self._pending, "pending_bytes": self._bytes,
                "evicted": self._evicted, "max_messages": self.max_messages,
                "max_bytes": self.max_bytes}

    # -- rows -----------------------------------------------------------------------------
    def append(self, topic: str, payload: bytes) -> int:
        """Add a message after the others; evict the oldest beyond the bounds.  Returns its
        sequence number.  Raises :class:`ApplianceError` when the disk refuses."""
        size = len(topic.encode()) + len(payload)
        with self._lock, self._errors("append to"), transaction(self._conn):
            cur = self._conn.execute(
                "INSERT INTO outbox (topic, payload, size) VALUES (?, ?, ?)",
                (topic, payload, size))
            seq = int(cur.lastrowid or 0)
            pending, nbytes = self._pending + 1, self._bytes + size
            evicted = 0
            while pending > 1 and (pending > self.max_messages or nbytes > self.max_bytes):
                row = self._conn.execute(
                    "SELECT seq, size FROM outbox ORDER BY seq LIMIT 1").fetchone()
                self._conn.execute("DELETE FROM outbox WHERE seq = ?", (row[0],))
                pending, nbytes, evicted = pending - 1, nbytes - int(row[1]), evicted + 1
            if evicted:
                self._conn.execute("UPDATE meta SET value = value + ? WHERE key = 'evicted'",
                                   (evicted,))
        self._pending, self._bytes = pending, nbytes
        self._evicted += evicted
        self.appended += 1
        return seq

    def peek(self, after: int = 0, limit: int = 32) -> list[Row]:
        """The oldest ``limit`` messages whose sequence number is above ``after``."""
        with self._lock, self._errors("read"):
            rows = self._conn.execute(
                "SELECT seq, topic, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit)).fetchall()
        return [Row(int(s), str(t), bytes(p)) for s, t, p in rows]

    def delete(self, seq: int) -> bool:
        """Forget an acknowledged message (False if it was already evicted)."""
        with self._lock, self._errors("delete from"):
            row = self._conn.execute("SELECT size FROM outbox WHERE seq = ?",
                                     (seq,)).fetchone()
            if row is None:
                return False
            self._conn.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._pending -= 1
            self._bytes -= int(row[0])
        return True

    def close(self) -> None:
        with self._lock, suppress(sqlite3.Error):
            self._conn.close()

    # -- helpers --------------------------------------------------------------------------
    def _errors(self, doing: str) -> AbstractContextManager[None]:
        return _sqlite_errors(self.path, doing)


def _prepare(conn: sqlite3.Connection, path: Path) -> None:
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    version = user_version(conn)
    problems = integrity_problems(conn)
    if problems:
        raise _corrupt(path, problems)
    if version > SCHEMA_VERSION:
        raise _corrupt(path, f"written by a newer version (schema {version})")
    if version == 0 and has_tables(conn):
        raise _corrupt(path, "not a fleet outbox")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable across a crash of the box
    if version == 0:
        with transaction(conn):
            for stmt in _SCHEMA:
                conn.execute(stmt)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not {"outbox", "meta"} <= names:
        raise _corrupt(path, "tables missing")


def _corrupt(path: Path, detail: str) -> ApplianceError:
    return ApplianceError(FLEET_OUTBOX_CORRUPT, f"fleet outbox {path} is damaged ({detail}): "
                          "move it aside (with its -wal and -shm files) and restart; a new, "
                          "empty one is created (its unsent messages are lost)")


def _sqlite_errors(path: Path, doing: str) -> AbstractContextManager[None]:
    return sqlite_errors(lambda detail: _corrupt(path, detail), FLEET_OUTBOX_UNAVAILABLE,
                         doing, f"the fleet outbox {path}")
