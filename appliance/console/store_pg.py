"""The central store on the site's PostgreSQL (``[console] store = "postgresql"``), with
the same schema as SQLite.  The connection string comes from a file or a systemd
credential, never from the TOML.  A lost connection is opened again on the next use; the
writer retries its batch (nothing was acknowledged to the broker)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from appliance.console.store import SCHEMA_VERSION, CentralStore, schema
from appliance.errors import STORE_NEWER_SCHEMA, STORE_UNAVAILABLE, ApplianceError

log = logging.getLogger(__name__)
_MARK = re.compile(r"\?")


def _pg(sql: str) -> str:
    """``?`` placeholders (the shared SQL's) as psycopg's ``%s``."""
    return _MARK.sub("%s", sql)


class PostgresStore(CentralStore):
    kind = "postgresql"

    def __init__(self, dsn: str, *, keep_days: float = 365.0,
                 connect_timeout_s: int = 10) -> None:
        super().__init__(keep_days)
        try:
            import psycopg
        except ImportError as exc:
            raise ApplianceError(STORE_UNAVAILABLE, "the PostgreSQL store needs psycopg: "
                                 "pip install 'appliance[postgres]'") from exc
        self._psycopg = psycopg
        self._dsn = dsn
        self._timeout = connect_timeout_s
        self._conn: Any = None
        with self._lock:
            self._connect()
            self._migrate()

    def _connect(self) -> Any:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = self._psycopg.connect(self._dsn, autocommit=True,
                                                   connect_timeout=self._timeout)
            except self._psycopg.Error as exc:
                # the message may name the host, never the password
                raise ApplianceError(STORE_UNAVAILABLE, "cannot connect to the console's "
                                     f"PostgreSQL store: {type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0][:200]}") from exc
        return self._conn

    def _migrate(self) -> None:
        conn = self._connect()
        row = conn.execute("SELECT to_regclass('console_meta')").fetchone()
        if row[0] is None:
            with conn.transaction():
                for stmt in schema("DOUBLE PRECISION"):
                    conn.execute(stmt)
            return
        row = conn.execute("SELECT value FROM console_meta WHERE key = 'schema'").fetchone()
        if row is None or int(row[0]) > SCHEMA_VERSION:
            raise ApplianceError(STORE_NEWER_SCHEMA, "the PostgreSQL store was written by a "
                                 "newer version of the console")

    def _lost(self, exc: Exception) -> ApplianceError:
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self._conn = None
        return ApplianceError(STORE_UNAVAILABLE, f"PostgreSQL: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200] if str(exc) else ''}")

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            return int(self._connect().execute(_pg(sql), params).rowcount)
        except self._psycopg.OperationalError as exc:
            raise self._lost(exc) from exc

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self._connect().execute(_pg(sql), params).fetchall())
        except self._psycopg.OperationalError as exc:
            raise self._lost(exc) from exc

    def _begin(self) -> None:
        try:
            self._connect().execute("BEGIN")
        except self._psycopg.OperationalError as exc:
            raise self._lost(exc) from exc

    def _commit(self) -> None:
        try:
            self._connect().execute("COMMIT")
        except self._psycopg.OperationalError as exc:
            raise self._lost(exc) from exc

    def _rollback(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.execute("ROLLBACK")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
