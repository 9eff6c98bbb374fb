"""The console's central store on both backends (SQLite, and PostgreSQL on a real server
the test starts): each message once, a call whose end comes first is still one row, the
floor's live state of a call, retention and export."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from appliance.console.export import write_csv, write_jsonl
from appliance.console.store import CentralStore, Incoming
from appliance.console.store_pg import PostgresStore
from appliance.console.store_sqlite import SqliteStore
from appliance.events import iso_utc
from appliance.sinks.fleet.messages import decode, encode
from tests import pgserver
from tests.consoleutil import T0, BoxSim, Msg


@pytest.fixture(scope="module")
def pg() -> Iterator[pgserver.PgServer]:
    why = pgserver.available()
    if why:
        pytest.skip(why)
    with pgserver.PgServer() as server:
        yield server


_N = iter(range(1000))


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CentralStore]:
    if request.param == "sqlite":
        s: CentralStore = SqliteStore(tmp_path / "console.sqlite3", keep_days=30)
    else:
        server = request.getfixturevalue("pg")
        import psycopg
        db = f"t{next(_N)}"
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {db}")
        s = PostgresStore(server.dsn.replace("dbname=postgres", f"dbname={db}"), keep_days=30)
    yield s
    s.close()


def incoming(*msgs: Msg, at: str | None = None) -> list[Incoming]:
    out = []
    for topic, payload in msgs:
        t, p = decode(topic, encode(payload))
        out.append(Incoming(t, p, at or payload["at"]))
    return out


def test_each_message_is_stored_once(store: CentralStore) -> None:
    box = BoxSim("box1")
    msgs = [box.status(), box.new("c1"), box.cue("c1", "interruption", 12.5),
            box.cue("c1", "filler", 20.0), box.end("c1", interruptions=3)]
    r = store.apply(incoming(*msgs))
    assert (r.stored, r.duplicates) == (5, 0)
    # the broker delivers again, the box resends from its outbox: nothing is doubled
    r = store.apply(incoming(msgs[2], msgs[4], msgs[2]))
    assert (r.stored, r.duplicates) == (0, 3)
    assert store.counts() == {"messages": 5, "boxes": 1, "calls": 1, "cues": 2}
    call = store.call("site1", "box1", "c1")
    assert call is not None
    assert call["agent_id"] == "agent-1" and call["cue_count"] == 2
    assert call["interruptions_agent"] == 3 and call["greeting_done"] == 1
    assert call["summary"]["interruptions"] == {"agent": 3, "customer": 1}
    assert "words" not in json.dumps(call["summary"])  # the filler words never left the box
    assert [c["kind"] for c in store.cues("site1", "box1", "c1")] == ["interruption", "filler"]


def test_an_end_before_its_new_is_one_call(store: CentralStore) -> None:
    box = BoxSim("box1")
    new, end = box.new("c9", agent="agent-7"), box.end("c9", duration_s=60.0)
    store.apply(incoming(end))
    early = store.call("site1", "box1", "c9")
    assert early is not None and early["agent_id"] is None
    assert early["started_at"] is not None and early["ended_at"] is not None  # from duration
    store.apply(incoming(new))
    call = store.call("site1", "box1", "c9")
    assert call is not None and call["agent_id"] == "agent-7"
    assert call["started_at"] == new[1]["started_at"] and call["duration_s"] == 60.0
    assert store.counts()["calls"] == 1
    # an end without any new (the box restarted): one call, no agent
    store.apply(incoming(box.end("c10")))
    assert store.counts()["calls"] == 2


def test_the_floor_state_of_an_open_call(store: CentralStore) -> None:
    box = BoxSim("box1")
    store.apply(incoming(box.status(), box.stats(), box.new("c1"),
                         box.cue("c1", "hold_started", 30.0, party=None, severity="info")))
    [call] = store.open_calls(iso_utc(T0))
    assert call["last_cue_kind"] == "hold_started" and call["hold_started_at"] is not None
    store.apply(incoming(box.cue("c1", "hold_ended", 50.0, party=None, severity="info")))
    [call] = store.open_calls(iso_utc(T0))
    assert call["hold_started_at"] is None and call["last_cue_kind"] == "hold_ended"
    [b] = store.boxes()
    assert b["state"] == "online" and b["healthy"] is True and b["stats"]["cues"] == {"filler": 1}
    # an older status arriving late never overrides a newer one
    old = box.status("offline")
    old[1]["at"] = iso_utc(T0)
    store.apply(incoming(old))
    assert store.boxes()[0]["state"] == "online"
    store.apply(incoming(box.end("c1")))
    assert store.open_calls(iso_utc(T0)) == []


def test_retention_expires_old_calls(store: CentralStore) -> None:
    old, recent = BoxSim("box1"), BoxSim("box2", start=T0 + timedelta(days=40))
    store.apply(incoming(old.new("a"), old.cue("a", "filler", 3.0), old.end("a"),
                         at=iso_utc(T0)))
    store.apply(incoming(recent.new("b"), recent.end("b"), at=iso_utc(T0 + timedelta(days=40))))
    assert store.expire(T0 + timedelta(days=41)) == 1
    assert store.call("site1", "box1", "a") is None
    assert store.call("site1", "box2", "b") is not None
    counts = store.counts()
    assert counts["cues"] == 0 and counts["messages"] == 2 and counts["boxes"] == 1


def test_export_csv_and_jsonl(store: CentralStore, tmp_path: Path) -> None:
    box = BoxSim("box1")
    for i in range(7):
        store.apply(incoming(box.new(f"c{i}", agent=f"agent-{i % 2}"),
                             box.end(f"c{i}", interruptions=i)))
    store.apply(incoming(box.new("open")))
    rows = list(store.export(chunk=3))  # several chunks
    assert [r["call_id"] for r in rows] == [f"c{i}" for i in range(7)]
    since = rows[2]["ended_at"]
    assert [r["call_id"] for r in store.export(since=since)] == [f"c{i}" for i in range(2, 7)]
    jl = tmp_path / "x.jsonl"
    with jl.open("w") as f:
        assert write_jsonl(f, store.export()) == 7
    lines = [json.loads(x) for x in jl.read_text().splitlines()]
    assert lines[3]["summary"]["interruptions"]["agent"] == 3
    cs = tmp_path / "x.csv"
    with cs.open("w") as f:
        assert write_csv(f, store.export()) == 7
    import csv
    table = list(csv.DictReader(cs.open()))
    assert len(table) == 7 and table[5]["interruptions_agent"] == "5"
    assert table[5]["cues.interruption"] == "5" and table[5]["agent_id"] == "agent-1"
