"""The central store in one SQLite file (the default): ``<state_dir>/console.sqlite3``.

WAL journal with ``synchronous=FULL``: a batch the writer committed (and then acknowledged
to the broker) survives a power cut.  Created mode 0600 in a 0700 directory."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from appliance.console.store import SCHEMA_VERSION, CentralStore, schema
from appliance.errors import STORE_CORRUPT, STORE_NEWER_SCHEMA, STORE_UNAVAILABLE, ApplianceError

DB_NAME = "console.sqlite3"


class SqliteStore(CentralStore):
    kind = "sqlite"

    def __init__(self, path: Path, *, keep_days: float = 365.0) -> None:
        super().__init__(keep_days)
        self.path = Path(path)
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
            self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=5.0,
                                         check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise ApplianceError(STORE_UNAVAILABLE, f"cannot open the console's store "
                                 f"{self.path}: {exc}") from exc
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise ApplianceError(STORE_CORRUPT, f"{self.path} is not a console store ({exc}): "
                                 "move it aside") from exc

    def _migrate(self) -> None:
        have = self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND "
                                  "name = 'console_meta'").fetchone()
        if have is None:
            self._conn.execute("BEGIN IMMEDIATE")
            for stmt in schema("REAL"):
                self._conn.execute(stmt)
            self._conn.execute("COMMIT")
            return
        row = self._conn.execute("SELECT value FROM console_meta WHERE key = 'schema'")\
            .fetchone()
        if row is None or int(row[0]) > SCHEMA_VERSION:
            raise ApplianceError(STORE_NEWER_SCHEMA, f"{self.path} was written by a newer "
                                 "version of the console")

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._conn.execute(sql, params).rowcount

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params).fetchall()

    def _begin(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._conn.execute("COMMIT")

    def _rollback(self) -> None:
        self._conn.execute("ROLLBACK")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
