"""``appliance summaries export | list | prune``: dates, formats, where the database is, and
a read-only export beside the running service."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from appliance.cli.app import main
from appliance.cli.summaries import CUE_KINDS, parse_when
from appliance.errors import ApplianceError
from appliance.events import Summary
from appliance.sinks.store import SummaryStore, TranscriptStore, summaries_path, transcripts_dir

NOW = datetime.now(UTC).replace(microsecond=0)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["summaries", *args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("APPLIANCE_CONFIG", "APPLIANCE_STATE_DIR", "STATE_DIRECTORY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("appliance.cli.summaries.default_config_path", lambda env: (
        Path(env["APPLIANCE_CONFIG"]) if env.get("APPLIANCE_CONFIG") else None))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _summary(cues: dict[str, int]) -> dict[str, Any]:
    return Summary(95.0, {"duration_s": 95.0, "cues": cues, "holds": []}).to_json()


def _fill(state: Path, ages_h: list[float], cues: dict[str, int] | None = None) -> None:
    with SummaryStore.open(summaries_path(state), max_bytes=64 << 20, keep_days=3650) as s:
        for i, age in enumerate(ages_h):
            ended = NOW - timedelta(hours=age)
            s.add(_summary(cues or {"interruption": i, "dead_air": 1}), call_id=f"c{i}",
                  started_at=ended - timedelta(seconds=95), ended_at=ended, language="en",
                  now=NOW)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    st = tmp_path / "state"
    _fill(st, [24 * 10, 24 * 3, 30, 2, 0.5])  # c0 .. c4, oldest first
    return st


def _ids(jsonl: str) -> list[str]:
    return [json.loads(line)["call_id"] for line in jsonl.splitlines()]


def test_export_jsonl_everything_oldest_first(capsys: pytest.CaptureFixture[str],
                                              state: Path) -> None:
    code, out, err = run(capsys, "export", "--state-dir", str(state))
    assert code == 0 and err == ""
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["call_id"] for r in rows] == ["c0", "c1", "c2", "c3", "c4"]
    assert set(rows[0]) == {"id", "call_id", "started_at", "ended_at", "duration_s", "language",
                            "transcript_file", "summary", "agent_id", "source"}
    assert rows[4]["summary"] == _summary({"interruption": 4, "dead_air": 1})
    assert rows[4]["ended_at"].endswith("Z")


@pytest.mark.parametrize(("args", "want"), [
    (["--since", "7d"], ["c1", "c2", "c3", "c4"]),
    (["--since", "24h"], ["c3", "c4"]),
    (["--since", "48h", "--until", "1h"], ["c2", "c3"]),
    (["--until", "2d"], ["c0", "c1"]),
])
def test_export_relative_dates(capsys: pytest.CaptureFixture[str], state: Path,
                               args: list[str], want: list[str]) -> None:
    code, out, _ = run(capsys, "export", "--state-dir", str(state), *args)
    assert code == 0 and _ids(out) == want


def test_export_calendar_dates(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    st = tmp_path / "s"
    with SummaryStore.open(summaries_path(st), max_bytes=1 << 20, keep_days=3650) as s:
        for i, t in enumerate(["2026-10-31T23:59:59", "2026-11-01T00:00:00",
                               "2026-11-01T23:59:00", "2026-11-02T00:00:00"]):
            ended = datetime.fromisoformat(t).replace(tzinfo=UTC)
            s.add(_summary({}), call_id=f"d{i}", started_at=ended, ended_at=ended,
                  language="en", now=ended)
    base = ["export", "--state-dir", str(st)]
    assert _ids(run(capsys, *base, "--since", "2026-11-01")[1]) == ["d1", "d2", "d3"]
    # a date as --until includes that whole day
    assert _ids(run(capsys, *base, "--since", "2026-11-01", "--until", "2026-11-01")[1]) == [
        "d1", "d2"]
    assert _ids(run(capsys, *base, "--until", "2026-11-01T12:00")[1]) == ["d0", "d1"]
    assert _ids(run(capsys, *base, "--since", "2026-11-01T02:00:00+02:00")[1]) == [
        "d1", "d2", "d3"]


def test_parse_when() -> None:
    now = datetime(2026, 11, 8, 12, 0, tzinfo=UTC)
    assert parse_when("7d", now) == datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    assert parse_when("36h", now) == datetime(2026, 11, 7, 0, 0, tzinfo=UTC)
    assert parse_when("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_when("2026-11-01", now, end_of_day=True) == datetime(2026, 11, 2, tzinfo=UTC)
    assert parse_when("2026-11-01T10:00Z", now) == datetime(2026, 11, 1, 10, tzinfo=UTC)
    for bad in ("yesterday", "7x", "2026-13-01", "", "99999999999d"):
        with pytest.raises(ApplianceError) as e:
            parse_when(bad, now)
        assert e.value.code == "export.bad_date"


@pytest.mark.parametrize("args", [["--since", "last week"],
                                  ["--since", "2026-11-02", "--until", "2026-11-01"]])
def test_a_bad_date_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str], state: Path,
                                           args: list[str]) -> None:
    code, out, err = run(capsys, "export", "--state-dir", str(state), *args)
    assert code == 2 and out == ""
    assert err.startswith("appliance: error: ") and err.endswith("[export.bad_date]\n")
    assert err.count("\n") == 1


def test_export_csv_has_stable_columns(capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    st = tmp_path / "s"
    _fill(st, [2, 1], cues={"interruption": 2, "hold_leak": 1, "brand_new_cue": 3})
    code, out, _ = run(capsys, "export", "--state-dir", str(st), "--format", "csv")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    header = rows[0]
    kinds = [*CUE_KINDS, "brand_new_cue"]  # known kinds in their order, then the others
    assert header == ["call_id", "started_at", "ended_at", "duration_s", "language",
                      *(f"cues.{k}" for k in kinds), "summary_json", "agent_id", "source"]
    assert len(rows) == 3
    rec = dict(zip(header, rows[1], strict=True))
    assert rec["call_id"] == "c0" and rec["language"] == "en" and rec["duration_s"] == "95.0"
    assert rec["cues.interruption"] == "2" and rec["cues.hold_leak"] == "1"
    assert rec["cues.brand_new_cue"] == "3" and rec["cues.dead_air"] == "0"
    assert rec["agent_id"] == rec["source"] == ""  # a desk call
    assert json.loads(rec["summary_json"]) == _summary(
        {"interruption": 2, "hold_leak": 1, "brand_new_cue": 3})
    # no calls: still the header, with every known cue kind
    code, out, _ = run(capsys, "export", "--state-dir", str(st), "--format", "csv",
                       "--since", "1h")
    assert out.splitlines()[0].startswith("call_id,started_at,ended_at,duration_s,language,"
                                          "cues.closing,cues.dead_air,")
    assert len(out.splitlines()) == 1
    # the columns of the first release keep their places; later kinds come after them
    header = out.splitlines()[0].split(",")
    assert header[5:24] == [f"cues.{k}" for k in sorted(
        ["closing", "dead_air", "filler", "follow_up", "greeting", "hold_check_back",
         "hold_ended", "hold_leak", "hold_no_permission", "hold_no_thanks", "hold_started",
         "hold_too_long", "hold_unmuted", "interruption", "jargon", "restated",
         "speaking_rate", "talk_ratio", "tone"])]
    assert header[24:26] == ["cues.answer_delay", "cues.hung_up_first"]


def test_export_to_a_file(capsys: pytest.CaptureFixture[str], state: Path,
                          tmp_path: Path) -> None:
    dest = tmp_path / "out.jsonl"
    code, out, _ = run(capsys, "export", "--state-dir", str(state), "-o", str(dest))
    assert code == 0 and out == ""
    assert _ids(dest.read_text()) == ["c0", "c1", "c2", "c3", "c4"]
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    code, _, err = run(capsys, "export", "--state-dir", str(state), "-o",
                       str(tmp_path / "no" / "such" / "dir.jsonl"))
    assert code == 2 and "[export.output_failed]" in err


def test_no_database_yet(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    st = tmp_path / "empty"
    code, out, err = run(capsys, "export", "--state-dir", str(st))
    assert code == 0 and out == ""
    assert err == f"appliance: no summaries yet at {st / 'summaries.sqlite3'}\n"
    code, out, _ = run(capsys, "list", "--state-dir", str(st))
    assert code == 0 and out == f"no summaries yet at {st / 'summaries.sqlite3'}\n"
    assert not st.exists()  # looking never creates anything


def test_list(capsys: pytest.CaptureFixture[str], state: Path) -> None:
    code, out, _ = run(capsys, "list", "--state-dir", str(state))
    assert code == 0
    table = dict(line.split(None, 1) for line in out.splitlines())
    assert table["database"] == str(summaries_path(state))
    assert table["calls"] == "5"
    assert table["oldest"] == (NOW - timedelta(days=10)).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")
    assert table["newest"] == (NOW - timedelta(minutes=30)).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")
    assert "MiB on disk" in table["size"]


def test_a_damaged_database_is_reported(capsys: pytest.CaptureFixture[str],
                                        tmp_path: Path) -> None:
    db = summaries_path(tmp_path / "s")
    db.parent.mkdir()
    db.write_bytes(b"not a database, definitely" * 500)
    code, out, err = run(capsys, "list", "--state-dir", str(db.parent))
    assert code == 2 and out == "" and "[store.corrupt]" in err and "move it aside" in err


def test_the_state_dir_resolves_like_the_service(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, c, home = tmp_path / "a", tmp_path / "b", tmp_path / "c", tmp_path / "home"
    _fill(a, [1])
    _fill(b, [1, 2])
    _fill(c, [1, 2, 3])
    _fill(home / ".local" / "state" / "appliance", [1, 2, 3, 4])

    def calls(*args: str) -> int:
        code, out, err = run(capsys, "export", *args)
        assert code == 0, err
        return len(out.splitlines())

    assert calls() == 4  # nothing set: ~/.local/state/appliance
    cfg = tmp_path / "appliance.toml"
    cfg.write_text(f'[storage]\nstate_dir = "{a}"\n')
    monkeypatch.setenv("STATE_DIRECTORY", f"{c}:{tmp_path / 'other'}")
    assert calls() == 3  # systemd's STATE_DIRECTORY
    assert calls("--config", str(cfg)) == 1  # the config wins over STATE_DIRECTORY
    monkeypatch.setenv("APPLIANCE_CONFIG", str(cfg))
    assert calls() == 1
    monkeypatch.setenv("APPLIANCE_STATE_DIR", str(b))
    assert calls() == 2  # the environment override of [storage] state_dir
    assert calls("--state-dir", str(c)) == 3  # the flag wins over everything
    cfg.write_text("[storage]\nsummaries_days = 0\n")  # invalid, but not needed with the flag
    assert calls("--state-dir", str(c)) == 3
    code, _, err = run(capsys, "export")
    assert code == 2 and "[config.invalid]" in err


def test_prune_applies_the_configured_bounds(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path, state: Path) -> None:
    ts = TranscriptStore(transcripts_dir(state), keep_days=1)
    old = ts.write("c0", NOW - timedelta(days=3), [{"text": "hello"}])
    new = ts.write("c4", NOW - timedelta(hours=1), [{"text": "hello"}])
    cfg = tmp_path / "p.toml"
    cfg.write_text(f'[storage]\nstate_dir = "{state}"\nsummaries_days = 2\n'
                   "transcript_days = 1\n")
    code, out, _ = run(capsys, "prune", "--config", str(cfg))
    assert code == 0
    assert out.splitlines() == [f"2 call summaries removed, 3 kept ({summaries_path(state)})",
                                "1 expired transcript files deleted"]
    assert _ids(run(capsys, "export", "--state-dir", str(state))[1]) == ["c2", "c3", "c4"]
    assert sorted(p.name for p in transcripts_dir(state).iterdir()) == [new]
    assert old != new


def test_export_beside_the_running_service_is_read_only(capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path) -> None:
    st = tmp_path / "s"
    _fill(st, [3, 2])
    db = summaries_path(st)
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    assert _ids(run(capsys, "export", "--state-dir", str(st))[1]) == ["c0", "c1"]
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # not a byte changed
    service = SummaryStore.open(db, max_bytes=64 << 20, keep_days=3650)
    conn = service._conn
    conn.execute("BEGIN IMMEDIATE")  # the service is in the middle of writing a call
    conn.execute("INSERT INTO calls (call_id, started_at, ended_at, duration_s, language, "
                 "summary_json) VALUES ('x', ?, ?, 1, 'en', '{}')",
                 ("2026-01-01T00:00:00.000Z", "2026-01-01T00:01:00.000Z"))
    code, out, err = run(capsys, "export", "--state-dir", str(st), "--format", "csv")
    assert code == 0, err
    assert [r[0] for r in csv.reader(io.StringIO(out))] == ["call_id", "c0", "c1"]
    conn.execute("COMMIT")  # and its write goes through
    service.add(_summary({}), call_id="c9", started_at=NOW, ended_at=NOW, language="en")
    assert service.count() == 4
    service.close()
    assert _ids(run(capsys, "export", "--state-dir", str(st), "--since", "1h")[1]) == ["c9"]


def _as_reader(tmp: Path) -> tuple[list[str], Callable[[Path], None]]:
    """How to run the CLI as someone who may read the state directory but not write it: as
    root, an unprivileged user (``setpriv``); otherwise ourselves, with the write bits gone.
    Returns the command prefix and a function that sets the permissions of a path."""
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("needs setpriv to drop root")
        tmp.chmod(0o755)
        return (["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
                lambda p: p.chmod(0o755 if p.is_dir() else 0o644))
    return [], lambda p: p.chmod(0o555 if p.is_dir() else 0o444)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_list_and_export_need_only_read_access() -> None:
    """A supervisor's account (or a read-only mount) can list and export: the reader cannot
    create the WAL's -shm file, and must not need to."""
    base = Path(tempfile.mkdtemp(prefix="ro-summaries-"))  # outside pytest's 0700 tree
    try:
        st = base / "state"
        _fill(st, [3, 2])
        prefix, read_only = _as_reader(base)
        for p in (st, *st.iterdir()):
            read_only(p)
        env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
        env["HOME"] = str(base)
        for args in (["list"], ["export"]):
            r = subprocess.run([*prefix, sys.executable, "-m", "appliance", "summaries", *args,
                                "--state-dir", str(st)], capture_output=True, text=True,
                               cwd="/", env=env, timeout=120)
            assert r.returncode == 0, r.stderr
            if args == ["list"]:
                assert dict(line.split(None, 1) for line in r.stdout.splitlines())["calls"] == "2"
            else:
                assert _ids(r.stdout) == ["c0", "c1"]
        assert sorted(p.name for p in st.iterdir()) == ["summaries.sqlite3"]  # nothing written
    finally:
        for p in base.rglob("*"):
            with suppress(OSError):
                p.chmod(0o700)
        shutil.rmtree(base, ignore_errors=True)
