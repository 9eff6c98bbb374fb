"""The fleet's ``[fleet]`` config and its on-disk outbox, without a broker."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from appliance.config import config_from_dict, defaults_toml
from appliance.config.fleet import FleetConfig, parse_broker, read_password
from appliance.errors import (
    CONFIG_INVALID,
    FLEET_CREDENTIALS,
    FLEET_OUTBOX_CORRUPT,
    ApplianceError,
)
from appliance.sinks.fleet.outbox import Outbox, outbox_path

ON = {"enabled": True, "box_id": "box1", "site": "site1"}


# -- config -----------------------------------------------------------------------------------
def test_fleet_is_off_by_default_and_printed_with_units() -> None:
    cfg = config_from_dict({})
    assert cfg.fleet.enabled is False
    text = defaults_toml()
    assert "[fleet]" in text and "stats_interval_s = 60.0" in text
    assert "Range 1.0..3600.0 s." in text


def test_a_valid_fleet_config_loads() -> None:
    cfg = config_from_dict({"fleet": {**ON, "broker": "mqtts://broker.site:8884",
                                      "username": "box1", "password_file": "/x"}})
    assert cfg.fleet.prefix() == "coach/site1/box1"
    addr = parse_broker(cfg.fleet.broker)
    assert (addr.tls, addr.host, addr.port) == (True, "broker.site", 8884)
    assert parse_broker("mqtts://b").port == 8883


@pytest.mark.parametrize(("fleet", "where"), [
    ({**ON, "broker": "mqtt://10.0.0.5:1883"}, "[fleet] broker"),
    ({**ON, "broker": "http://x"}, "[fleet] broker"),
    ({**ON, "broker": "mqtts://u:p@x"}, "[fleet] broker"),
    ({"enabled": True, "site": "s"}, "[fleet] box_id"),
    ({**ON, "site": "a/b"}, "[fleet] site"),
    ({**ON, "box_id": "+"}, "[fleet] box_id"),
    ({**ON, "protocol": "4"}, "[fleet] protocol"),
    ({**ON, "topic_prefix": "coach/{site}"}, "[fleet] topic_prefix"),
    ({**ON, "topic_prefix": "coach/{x}/{box}"}, "[fleet] topic_prefix"),
    ({**ON, "topic_prefix": "coach/#/{box}"}, "[fleet] topic_prefix"),
    ({**ON, "client_cert": "/c"}, "[fleet] client_cert"),
    ({**ON, "password_file": "/p"}, "[fleet] username"),
    ({**ON, "username": "u", "password_file": "/p", "password_credential": "c"},
     "[fleet] password_file"),
    ({**ON, "reconnect_min_s": 10.0, "reconnect_max_s": 5.0}, "[fleet] reconnect_min_s"),
    ({**ON, "stats_interval_s": float("nan")}, "[fleet] stats_interval_s"),
    ({**ON, "outbox_max_messages": 1}, "[fleet] outbox_max_messages"),
])
def test_a_bad_fleet_config_is_refused_at_load(fleet: dict[str, object], where: str) -> None:
    with pytest.raises(ApplianceError) as err:
        config_from_dict({"fleet": fleet})
    assert err.value.code == CONFIG_INVALID
    assert where in err.value.message


def test_plain_mqtt_is_allowed_on_loopback_only() -> None:
    cfg = config_from_dict({"fleet": {**ON, "broker": "mqtt://127.0.0.1:1883"}})
    assert parse_broker(cfg.fleet.broker).tls is False


def test_the_password_comes_from_a_file_or_a_systemd_credential(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n", encoding="utf-8")
    cfg = FleetConfig(username="u", password_file=str(tmp_path / "pw"))
    assert read_password(cfg, {}) == "s3cret"
    cred = FleetConfig(username="u", password_credential="fleet-password")
    (tmp_path / "fleet-password").write_text("other", encoding="utf-8")
    assert read_password(cred, {"CREDENTIALS_DIRECTORY": str(tmp_path)}) == "other"
    assert read_password(FleetConfig(), {}) is None
    for bad, env in ((FleetConfig(username="u", password_file=str(tmp_path / "no")), {}),
                     (cred, {}), (FleetConfig(username="u", password_file=str(tmp_path)), {})):
        with pytest.raises(ApplianceError) as err:
            read_password(bad, env)
        assert err.value.code == FLEET_CREDENTIALS
        assert "s3cret" not in err.value.message


# -- outbox -----------------------------------------------------------------------------------
def test_the_outbox_keeps_order_and_deletes_on_acknowledgement(tmp_path: Path) -> None:
    box = Outbox.open(outbox_path(tmp_path))
    seqs = [box.append(f"t/{i}", f"m{i}".encode()) for i in range(5)]
    assert seqs == sorted(seqs) and box.pending == 5
    rows = box.peek(limit=3)
    assert [r.payload for r in rows] == [b"m0", b"m1", b"m2"]
    assert [r.topic for r in box.peek(after=rows[-1].seq)] == ["t/3", "t/4"]
    assert box.delete(rows[1].seq) and not box.delete(rows[1].seq)
    assert [r.payload for r in box.peek()] == [b"m0", b"m2", b"m3", b"m4"]
    assert box.pending == 4 and box.pending_bytes == sum(len(r.topic) + len(r.payload)
                                                         for r in box.peek())
    box.close()


def test_the_outbox_survives_a_restart(tmp_path: Path) -> None:
    box = Outbox.open(outbox_path(tmp_path))
    for i in range(3):
        box.append("t", f"m{i}".encode())
    box.delete(box.peek(limit=1)[0].seq)
    box.close()  # the box stops (or dies: WAL keeps each committed append)
    again = Outbox.open(outbox_path(tmp_path))
    assert [r.payload for r in again.peek()] == [b"m1", b"m2"]
    assert again.pending == 2
    assert again.append("t", b"m3") > again.peek()[1].seq  # order goes on after the restart
    again.close()


def test_the_outbox_evicts_the_oldest_and_counts_it_across_restarts(tmp_path: Path) -> None:
    box = Outbox.open(outbox_path(tmp_path), max_messages=10, max_bytes=1 << 20)
    for i in range(25):
        box.append("t", f"m{i}".encode())
    assert box.pending == 10 and box.evicted == 15
    assert [r.payload for r in box.peek(limit=100)] == [f"m{i}".encode() for i in range(15, 25)]
    box.close()
    small = Outbox.open(outbox_path(tmp_path), max_messages=1000, max_bytes=100)
    assert small.evicted == 15
    small.append("t", b"x" * 70)  # 10 rows of 4 bytes + 71: over 100 bytes
    assert small.pending_bytes <= 100 and small.evicted > 15
    assert small.peek(limit=100)[-1].payload == b"x" * 70
    small.append("t", b"y" * 500)  # one message above the byte bound is still kept alone
    assert [r.payload for r in small.peek()] == [b"y" * 500]
    small.close()


def test_a_damaged_outbox_is_a_clear_error_never_a_crash(tmp_path: Path) -> None:
    path = outbox_path(tmp_path)
    path.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(ApplianceError) as err:
        Outbox.open(path)
    assert err.value.code == FLEET_OUTBOX_CORRUPT and "move it aside" in err.value.message
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE x (a)")
    with pytest.raises(ApplianceError) as err:
        Outbox.open(other)
    assert err.value.code == FLEET_OUTBOX_CORRUPT


def test_appending_to_the_outbox_is_cheap_enough_for_the_event_loop(tmp_path: Path) -> None:
    """A cue is one insert on the event loop: counted in SQLite's own terms (one commit per
    append, no fsync in WAL NORMAL), not timed."""
    box = Outbox.open(outbox_path(tmp_path))
    mode = box._conn.execute("PRAGMA journal_mode").fetchone()[0]
    sync = box._conn.execute("PRAGMA synchronous").fetchone()[0]
    assert (mode, sync) == ("wal", 1)  # 1 = NORMAL: no fsync per commit
    box.close()
