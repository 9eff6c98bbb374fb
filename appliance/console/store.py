"""The console's central store: one interface over SQLite (:mod:`.store_sqlite`, the
default) and PostgreSQL (:mod:`.store_pg`), with the same schema on both.

Tables (every time is UTC ISO 8601 text, ``2026-11-01T09:30:00.000Z``, so text order is
time order on both backends):

* ``messages``: the id of every message stored (the idempotency key: a message the broker
  delivers again, or a box resends from its outbox, is recognised and skipped) and when;
* ``boxes``: per site and box, the last status (online/offline), the last stats (health,
  problems, drops, outbox) and when the console last heard from it;
* ``calls``: per site, box and call id, the agent, language, source, start and end, the
  figures of the call's summary as columns (for the trends) and the whole projected summary
  as JSON; the live state of an open call (the last cue, an open hold; ``updated_at``, the
  console's clock at the call's last news);
* ``cues``: one row per cue: kind, party, severity, call time, the box's time.

Never audio, never words: the fleet contract carries none (see
:mod:`appliance.sinks.fleet.messages`).

:meth:`CentralStore.apply` writes a batch of decoded messages in one transaction.  A
call's ``end`` may arrive before its ``new`` (or without it, after a box restart): the call
is still one row, completed by whichever comes later.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from appliance.events import iso_utc
from appliance.sinks.fleet.messages import Topic

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FIGURES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    # column, type, path in the fleet summary
    ("duration_s", "real", ("duration_s",)),
    ("interruptions_agent", "int", ("interruptions", "agent")),
    ("interruptions_customer", "int", ("interruptions", "customer")),
    ("talk_agent_s", "real", ("talk_s", "agent")),
    ("talk_customer_s", "real", ("talk_s", "customer")),
    ("agent_share", "real", ("agent_share",)),
    ("dead_air_count", "int", ("dead_air", "count")),
    ("dead_air_s", "real", ("dead_air", "total_s")),
    ("fillers_agent", "int", ("fillers", "agent")),
    ("fillers_per_min", "real", ("fillers", "per_min", "agent")),
    ("holds", "int", ("holds", "count")),
    ("hold_s", "real", ("holds", "total_s")),
    ("holds_over_60s", "int", ("holds", "over_60s")),
    ("hold_longest_s", "real", ("holds", "longest_s")),
    ("greeting_done", "flag", ("greeting", "done")),
    ("closing_done", "flag", ("closing", "done")),
    ("incomplete", "flag", ("incomplete",)),
)
"""The summary's figures kept as columns of ``calls`` (the trends read them)."""
FIGURE_COLUMNS = tuple(c for c, _, _ in FIGURES)
CALL_COLUMNS = ("site", "box", "call_id", "agent_id", "language", "source", "started_at",
                "ended_at", "reason", *FIGURE_COLUMNS, "cue_count", "last_cue_kind",
                "last_cue_at", "hold_started_at", "updated_at", "summary_json")
CUE_COLUMNS = ("id", "site", "box", "call_id", "kind", "party", "severity", "t_s", "at")
BOX_COLUMNS = ("site", "box", "state", "status_at", "version", "last_seen", "healthy",
               "stats_at", "stats_json")


def schema(real: str) -> list[str]:
    """The DDL of both backends (``real``: the float type's name)."""
    types = {"real": real, "int": "INTEGER", "flag": "INTEGER"}
    figs = ", ".join(f"{c} {types[t]}" for c, t, _ in FIGURES)
    return [
        "CREATE TABLE console_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE messages (id TEXT PRIMARY KEY, received_at TEXT NOT NULL)",
        "CREATE INDEX messages_received_at ON messages (received_at)",
        "CREATE TABLE boxes (site TEXT NOT NULL, box TEXT NOT NULL, state TEXT, "
        "status_at TEXT, version TEXT, last_seen TEXT, healthy INTEGER, stats_at TEXT, "
        "stats_json TEXT, PRIMARY KEY (site, box))",
        "CREATE TABLE calls (site TEXT NOT NULL, box TEXT NOT NULL, call_id TEXT NOT NULL, "
        "agent_id TEXT, language TEXT, source TEXT, started_at TEXT, ended_at TEXT, "
        f"reason TEXT, {figs}, cue_count INTEGER NOT NULL DEFAULT 0, last_cue_kind TEXT, "
        "last_cue_at TEXT, hold_started_at TEXT, updated_at TEXT NOT NULL, summary_json TEXT, "
        "PRIMARY KEY (site, box, call_id))",
        "CREATE INDEX calls_ended_at ON calls (ended_at)",
        "CREATE INDEX calls_open ON calls (ended_at, updated_at)",
        "CREATE INDEX calls_agent ON calls (agent_id, ended_at)",
        f"CREATE TABLE cues (id TEXT PRIMARY KEY, site TEXT NOT NULL, box TEXT NOT NULL, "
        f"call_id TEXT NOT NULL, kind TEXT NOT NULL, party TEXT, severity TEXT, t_s {real}, "
        "at TEXT NOT NULL)",
        "CREATE INDEX cues_call ON cues (site, box, call_id)",
        "CREATE INDEX cues_at ON cues (at)",
        f"INSERT INTO console_meta (key, value) VALUES ('schema', '{SCHEMA_VERSION}')",
    ]


@dataclass(frozen=True, slots=True)
class Incoming:
    """One decoded message as the writer hands it to the store."""

    topic: Topic
    payload: dict[str, Any]
    received_at: str
    """The console's clock when it arrived (UTC ISO 8601)."""


@dataclass(frozen=True, slots=True)
class ApplyResult:
    stored: int
    """Messages new to the store."""
    duplicates: int
    """Messages whose id was already stored (skipped)."""


def _get(d: Any, path: tuple[str, ...]) -> Any:
    for k in path:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def figure_values(summary: dict[str, Any]) -> list[Any]:
    """The :data:`FIGURES` of a fleet summary, in column order (None where absent)."""
    out: list[Any] = []
    for _, kind, path in FIGURES:
        v = _get(summary, path)
        if kind == "flag":
            out.append(None if not isinstance(v, bool) else int(v))
        elif kind == "int":
            out.append(v if isinstance(v, int) and not isinstance(v, bool) else None)
        else:
            out.append(float(v) if isinstance(v, int | float) and not isinstance(v, bool)
                       else None)
    return out


def _shift(iso: str, seconds: float) -> str | None:
    try:
        t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
        return iso_utc((t if t.tzinfo else t.replace(tzinfo=UTC)) + timedelta(seconds=seconds))
    except (ValueError, OverflowError):
        return None


def norm_time(iso: Any) -> str | None:
    """A box's timestamp in the store's fixed form (None when it is not one)."""
    return _shift(iso, 0.0) if isinstance(iso, str) else None


class CentralStore:
    """The interface both backends share: :meth:`apply` (the writer thread), the reads of
    the pages, :meth:`export` and :meth:`expire`.  Thread-safe: one lock around the
    backend's connection."""

    kind = "base"

    def __init__(self, keep_days: float) -> None:
        self.keep_days = keep_days
        self._lock = threading.RLock()

    # -- the backend's primitives ---------------------------------------------------------
    def _exec(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement in the open transaction; the number of rows it changed."""
        raise NotImplementedError

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def _begin(self) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> CentralStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            self._begin()
            try:
                out = fn(*args)
            except BaseException:
                try:
                    self._rollback()
                except Exception:  # the connection is gone: the next call reconnects
                    log.debug("rollback failed", exc_info=True)
                raise
            self._commit()
            return out

    # -- writing ----------------------------------------------------------------------------
    def apply(self, batch: Sequence[Incoming]) -> ApplyResult:
        """Store a batch of decoded messages in one transaction, each once."""
        out: ApplyResult = self._tx(self._apply, batch)
        return out

    def _apply(self, batch: Sequence[Incoming]) -> ApplyResult:
        stored = dup = 0
        seen: dict[tuple[str, str], str] = {}
        for m in batch:
            if not self._exec("INSERT INTO messages (id, received_at) VALUES (?, ?) "
                              "ON CONFLICT (id) DO NOTHING", (m.payload["id"], m.received_at)):
                dup += 1
                continue
            stored += 1
            key = (m.topic.site, m.topic.box)
            seen[key] = max(seen.get(key, ""), m.received_at)
            self._apply_one(m)
        for (site, box), at in seen.items():
            self._exec("INSERT INTO boxes (site, box, last_seen) VALUES (?, ?, ?) "
                       "ON CONFLICT (site, box) DO UPDATE SET last_seen = CASE WHEN "
                       "boxes.last_seen IS NULL OR excluded.last_seen > boxes.last_seen "
                       "THEN excluded.last_seen ELSE boxes.last_seen END", (site, box, at))
        return ApplyResult(stored, dup)

    def _apply_one(self, m: Incoming) -> None:
        t, p = m.topic, m.payload
        at = norm_time(p.get("at")) or m.received_at
        if t.kind == "status":
            self._exec(
                "INSERT INTO boxes (site, box, state, status_at, version) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (site, box) DO UPDATE SET "
                "state = CASE WHEN boxes.status_at IS NULL OR excluded.status_at >= "
                "boxes.status_at THEN excluded.state ELSE boxes.state END, "
                "version = CASE WHEN boxes.status_at IS NULL OR excluded.status_at >= "
                "boxes.status_at THEN excluded.version ELSE boxes.version END, "
                "status_at = CASE WHEN boxes.status_at IS NULL OR excluded.status_at >= "
                "boxes.status_at THEN excluded.status_at ELSE boxes.status_at END",
                (t.site, t.box, p["state"], at, str(p.get("version") or "")[:64]))
        elif t.kind == "stats":
            stats = {k: p.get(k) for k in ("healthy", "problems", "calls_open", "cues", "drops",
                                            "outbox")}
            self._exec(
                "INSERT INTO boxes (site, box, healthy, stats_at, stats_json) "
                "VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (site, box) DO UPDATE SET "
                "healthy = CASE WHEN boxes.stats_at IS NULL OR excluded.stats_at >= "
                "boxes.stats_at THEN excluded.healthy ELSE boxes.healthy END, "
                "stats_json = CASE WHEN boxes.stats_at IS NULL OR excluded.stats_at >= "
                "boxes.stats_at THEN excluded.stats_json ELSE boxes.stats_json END, "
                "stats_at = CASE WHEN boxes.stats_at IS NULL OR excluded.stats_at >= "
                "boxes.stats_at THEN excluded.stats_at ELSE boxes.stats_at END",
                (t.site, t.box, int(p.get("healthy") is True), at, _json(stats)))
        elif p["type"] == "new":
            self._call_new(t, p, at, m.received_at)
        elif p["type"] == "update":
            self._call_update(t, p, at, m.received_at)
        else:
            self._call_end(t, p, at, m.received_at)

    def _call_new(self, t: Topic, p: dict[str, Any], at: str, now: str) -> None:
        agent = p.get("agent_id") if isinstance(p.get("agent_id"), str) else None
        self._exec(
            "INSERT INTO calls (site, box, call_id, agent_id, language, source, started_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (site, box, call_id) DO "
            "UPDATE SET agent_id = excluded.agent_id, language = excluded.language, "
            "source = excluded.source, started_at = excluded.started_at",
            (t.site, t.box, t.call_id, agent, _str(p.get("language"), 8),
             _str(p.get("source"), 32), norm_time(p.get("started_at")) or at, now))

    def _call_update(self, t: Topic, p: dict[str, Any], at: str, now: str) -> None:
        cue = p["cue"]
        kind = cue["kind"]
        self._exec("INSERT INTO cues (id, site, box, call_id, kind, party, severity, t_s, at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                   (p["id"], t.site, t.box, t.call_id, kind, _str(cue.get("party"), 16),
                    _str(cue.get("severity"), 16), float(cue["t_s"]), at))
        newer = ("calls.last_cue_at IS NULL OR excluded.last_cue_at >= calls.last_cue_at")
        hold = {"hold_started": "excluded.hold_started_at",
                "hold_ended": "NULL"}.get(kind, "calls.hold_started_at")
        self._exec(
            "INSERT INTO calls (site, box, call_id, cue_count, last_cue_kind, last_cue_at, "
            "hold_started_at, updated_at) VALUES (?, ?, ?, 1, ?, ?, ?, ?) "
            "ON CONFLICT (site, box, call_id) DO UPDATE SET cue_count = calls.cue_count + 1, "
            f"last_cue_kind = CASE WHEN {newer} THEN excluded.last_cue_kind "
            "ELSE calls.last_cue_kind END, "
            f"last_cue_at = CASE WHEN {newer} THEN excluded.last_cue_at "
            "ELSE calls.last_cue_at END, "
            f"hold_started_at = CASE WHEN calls.ended_at IS NULL THEN {hold} ELSE NULL END, "
            "updated_at = excluded.updated_at",
            (t.site, t.box, t.call_id, kind, at,
             at if kind == "hold_started" else None, now))

    def _call_end(self, t: Topic, p: dict[str, Any], at: str, now: str) -> None:
        summary = p["summary"]
        ended = norm_time(p.get("ended_at")) or at
        figs = figure_values(summary)
        dur = figs[0]
        started = _shift(ended, -dur) if isinstance(dur, float) else None
        cols = ", ".join(FIGURE_COLUMNS)
        marks = ", ".join("?" for _ in FIGURE_COLUMNS)
        sets = ", ".join(f"{c} = excluded.{c}" for c in FIGURE_COLUMNS)
        self._exec(
            f"INSERT INTO calls (site, box, call_id, language, started_at, ended_at, reason, "
            f"{cols}, summary_json, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, {marks}, ?, ?) "
            "ON CONFLICT (site, box, call_id) DO UPDATE SET ended_at = excluded.ended_at, "
            f"reason = excluded.reason, {sets}, summary_json = excluded.summary_json, "
            "started_at = COALESCE(calls.started_at, excluded.started_at), "
            "language = COALESCE(calls.language, excluded.language), hold_started_at = NULL, "
            "updated_at = excluded.updated_at",
            (t.site, t.box, t.call_id, _str(summary.get("language"), 8), started, ended,
             _str(p.get("reason"), 32), *figs, _json(summary), now))

    def expire(self, now: datetime | None = None) -> int:
        """Delete what is older than ``keep_days``: calls (by their end, or their last news
        when they never ended), cues, message ids, boxes not heard from since.  Returns
        the calls deleted."""
        cutoff = iso_utc((now or datetime.now(UTC)) - timedelta(days=self.keep_days))

        def run() -> int:
            n = self._exec("DELETE FROM calls WHERE COALESCE(ended_at, updated_at) < ?",
                           (cutoff,))
            self._exec("DELETE FROM cues WHERE at < ?", (cutoff,))
            self._exec("DELETE FROM messages WHERE received_at < ?", (cutoff,))
            self._exec("DELETE FROM boxes WHERE last_seen < ?", (cutoff,))
            return n
        n = self._tx(run)
        if n:
            log.info("expired %d calls older than %g days", n, self.keep_days)
        return int(n)

    # -- reading ----------------------------------------------------------------------------
    def _dicts(self, cols: Sequence[str], sql: str,
               params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._rows(sql, params)
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def boxes(self) -> list[dict[str, Any]]:
        """Every box heard from, with its status and last stats (``stats``: parsed)."""
        out = self._dicts(BOX_COLUMNS, f"SELECT {', '.join(BOX_COLUMNS)} FROM boxes "
                          "ORDER BY site, box")
        for b in out:
            b["stats"] = _load(b.pop("stats_json"))
            b["healthy"] = None if b["healthy"] is None else bool(b["healthy"])
        return out

    def open_calls(self, since: str) -> list[dict[str, Any]]:
        """Calls without an end that had news at or after ``since``."""
        cols = CALL_COLUMNS[:-1]
        return self._dicts(cols, f"SELECT {', '.join(cols)} FROM calls WHERE ended_at IS "
                           "NULL AND updated_at >= ? ORDER BY started_at", (since,))

    def ended_calls(self, since: str | None = None,
                    until: str | None = None) -> list[dict[str, Any]]:
        """Calls that ended in ``[since, until)``, oldest first, with their figures."""
        cols = CALL_COLUMNS[:-1]
        where, params = _range(since, until)
        return self._dicts(cols, f"SELECT {', '.join(cols)} FROM calls WHERE {where} "
                           "ORDER BY ended_at, site, box, call_id", params)

    def export(self, since: str | None = None, until: str | None = None,
               chunk: int = 500) -> Iterator[dict[str, Any]]:
        """Ended calls in ``[since, until)`` with their summary (parsed), oldest first, read
        in chunks (a large export never holds the lock for long)."""
        where, params = _range(since, until)
        after = ("", "", "", "")
        while True:
            rows = self._dicts(CALL_COLUMNS, f"SELECT {', '.join(CALL_COLUMNS)} FROM calls "
                               f"WHERE {where} AND (ended_at, site, box, call_id) > (?, ?, ?, ?) "
                               "ORDER BY ended_at, site, box, call_id LIMIT ?",
                               (*params, *after, chunk))
            for r in rows:
                r["summary"] = _load(r.pop("summary_json"))
                yield r
            if len(rows) < chunk:
                return
            last = rows[-1]
            after = (last["ended_at"], last["site"], last["box"], last["call_id"])

    def call(self, site: str, box: str, call_id: str) -> dict[str, Any] | None:
        """One call (``summary`` parsed), or None."""
        rows = self._dicts(CALL_COLUMNS, f"SELECT {', '.join(CALL_COLUMNS)} FROM calls WHERE "
                           "site = ? AND box = ? AND call_id = ?", (site, box, call_id))
        if not rows:
            return None
        rows[0]["summary"] = _load(rows[0].pop("summary_json"))
        return rows[0]

    def cues(self, site: str, box: str, call_id: str) -> list[dict[str, Any]]:
        return self._dicts(CUE_COLUMNS, f"SELECT {', '.join(CUE_COLUMNS)} FROM cues WHERE "
                           "site = ? AND box = ? AND call_id = ? ORDER BY t_s, at",
                           (site, box, call_id))

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        with self._lock:
            return {t: int(self._rows(f"SELECT COUNT(*) FROM {t}")[0][0])
                    for t in ("messages", "boxes", "calls", "cues")}

    def ping(self) -> bool:
        """True when the store answers."""
        try:
            with self._lock:
                self._rows("SELECT 1")
            return True
        except Exception:
            return False


def _range(since: str | None, until: str | None) -> tuple[str, list[Any]]:
    where, params = ["ended_at IS NOT NULL"], []
    if since:
        where.append("ended_at >= ?")
        params.append(since)
    if until:
        where.append("ended_at < ?")
        params.append(until)
    return " AND ".join(where), params


def _str(v: Any, limit: int) -> str | None:
    return v[:limit] if isinstance(v, str) else None


def _json(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _load(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
