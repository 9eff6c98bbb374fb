"""What the box's own SQLite files share (the summaries database, the fleet outbox): the
integrity and schema-version probes, the write transaction, and sqlite3's errors turned
into one :class:`~appliance.errors.ApplianceError` with the file's own codes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from appliance.errors import ApplianceError


def user_version(conn: sqlite3.Connection) -> int:
    """The schema version written in the file (0: a new, empty file)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def has_tables(conn: sqlite3.Connection) -> bool:
    """Whether the file holds anything at all (a version 0 file with tables is not ours)."""
    return bool(conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0])


def integrity_problems(conn: sqlite3.Connection) -> str:
    """``PRAGMA quick_check``: "" for a whole file, else its first three complaints."""
    problems = [r[0] for r in conn.execute("PRAGMA quick_check").fetchall()]
    return "" if problems == ["ok"] else "; ".join(str(p) for p in problems[:3])


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (autocommit connection); rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


@contextmanager
def sqlite_errors(corrupt: Callable[[str], ApplianceError], unavailable_code: str,
                  doing: str, what: str) -> Iterator[None]:
    """sqlite3 errors become ApplianceError: a damaged file (``SQLITE_CORRUPT``,
    ``SQLITE_NOTADB``) -> ``corrupt(detail)``; anything else (locked, read-only, disk full,
    I/O error...) -> ``unavailable_code`` with "cannot <doing> <what>: <error>"."""
    try:
        yield
    except sqlite3.Error as exc:
        name = getattr(exc, "sqlite_errorname", "") or ""
        if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
            raise corrupt(str(exc)) from exc
        raise ApplianceError(unavailable_code, f"cannot {doing} {what}: {exc}") from exc
