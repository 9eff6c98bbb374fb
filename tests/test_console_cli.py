"""``appliance console --export``: the central store's ended calls for scripts, in the same
forms as the web page's export and the box's ``summaries export`` dates."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from appliance.cli.app import main
from appliance.console.store_sqlite import DB_NAME, SqliteStore
from tests.consoleutil import T0, BoxSim
from tests.test_console_store import incoming


def _config(tmp_path: Path) -> Path:
    store = SqliteStore(tmp_path / "state" / DB_NAME)
    b = BoxSim("box1", start=T0)
    store.apply(incoming(b.new("c1", agent="agent-1"), b.end("c1", interruptions=3),
                         b.new("c2", agent="agent-2"), b.end("c2", holds=(75.0,)),
                         b.new("open", agent="agent-1")))
    store.close()
    cfg = tmp_path / "console.toml"
    cfg.write_text(f'[storage]\nstate_dir = "{tmp_path / "state"}"\n', encoding="utf-8")
    return cfg


def test_export_prints_the_ended_calls_as_jsonl_and_csv(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    assert main(["console", "--config", str(cfg), "--export", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["call_id"] for r in rows] == ["c1", "c2"]  # the open call is not exported
    assert rows[0]["interruptions_agent"] == 3 and rows[1]["holds_over_60s"] == 1
    assert main(["console", "--config", str(cfg), "--export", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["agent_id"] for r in table] == ["agent-1", "agent-2"]
    assert table[0]["cues.interruption"] == "3"


def test_export_takes_the_box_s_date_forms(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _config(tmp_path)
    day = T0.date().isoformat()
    assert main(["console", "--config", str(cfg), "--export", "jsonl", "--since", day,
                 "--until", day]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["console", "--config", str(cfg), "--export", "jsonl",
                 "--until", "2020-01-01"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["console", "--config", str(cfg), "--export", "csv", "--since", "nope"]) == 2
    assert "export.bad_date" in capsys.readouterr().err
    assert main(["console", "--config", str(cfg), "--since", "7d"]) == 2
