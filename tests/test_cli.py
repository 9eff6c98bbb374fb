"""The command line: output contract, demo, and one clear line for every bad input."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from appliance.cli.app import main

DEMO = Path(__file__).resolve().parent.parent / "appliance" / "demo"


def _wav(path: Path, data: np.ndarray, rate: int = 16000) -> Path:
    data = np.asarray(data, dtype=np.int16)
    ch = 1 if data.ndim == 1 else data.shape[1]
    raw = data.tobytes()
    hdr = b"RIFF" + struct.pack("<I", 36 + len(raw)) + b"WAVEfmt "
    hdr += struct.pack("<IHHIIHH", 16, 1, ch, rate, rate * ch * 2, ch * 2, 16)
    path.write_bytes(hdr + b"data" + struct.pack("<I", len(raw)) + raw)
    return path


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def no_models(tmp_path, monkeypatch):
    """No speech model installed unless a test installs one."""
    empty = tmp_path / "models-empty"
    empty.mkdir()
    monkeypatch.setenv("APPLIANCE_MODELS_DIR", str(empty))


@pytest.fixture(scope="module")
def demo_jsonl(tmp_path_factory):
    env = dict(os.environ, APPLIANCE_MODELS_DIR=str(tmp_path_factory.mktemp("nomodels")))
    proc = subprocess.run(
        [sys.executable, "-m", "appliance", "analyze", "--demo", "--format", "jsonl"],
        capture_output=True, text=True, check=True, env=env,
    )
    return [json.loads(line) for line in proc.stdout.splitlines()], proc.stderr


def test_jsonl_contract_on_the_demo(demo_jsonl):
    events, _ = demo_jsonl
    # the call's start first, its end and then its summary last; every line names the call
    assert events[0]["kind"] == "call_started" and events[0]["data"]["language"] == "en"
    assert [e["kind"] for e in events[-2:]] == ["call_ended", "summary"]
    assert events[-2]["data"] == {"reason": "source_closed", "duration_s": 107.04, "ended_at": ""}
    for ev in events:
        assert set(ev) == {"t", "kind", "party", "severity", "message", "data", "call_id"}
        assert ev["call_id"] == "demo_call"
        assert ev["party"] in ("agent", "customer", None)
        assert ev["severity"] in ("info", "warn", "alert")
        assert isinstance(ev["message"], str) and len(ev["message"]) <= 60
    times = [ev["t"] for ev in events]
    assert times == sorted(times), "events must come in emission order"
    kinds = [ev["kind"] for ev in events]
    # the demo's ground truth (appliance/demo/README.md)
    assert kinds.count("interruption") == 1
    inter = next(e for e in events if e["kind"] == "interruption")
    assert inter["party"] == "agent" and 14.97 <= inter["t"] <= 14.97 + 0.3
    leak = next(e for e in events if e["kind"] == "hold_leak")
    assert 58.18 <= leak["data"]["start"] <= 58.7 and leak["t"] <= 58.18 + 0.5 + 0.3
    for k in ("hold_started", "hold_unmuted", "hold_check_back", "hold_too_long", "hold_ended"):
        assert kinds.count(k) == 1, k
    summary = events[-1]["data"]
    for key in ("talk_s", "overlap_s", "interruptions", "holds", "fillers", "rate", "dead_air"):
        assert key in summary
    (hold,) = summary["holds"]
    assert hold["type"] == "unmuted" and abs(hold["duration_s"] - 62.0) < 0.5
    assert len(hold["leaks"]) == 1
    assert summary["interruptions"] == {"agent": 1, "customer": 0}


def test_without_a_model_one_line_says_how_to_install_one(demo_jsonl):
    events, err = demo_jsonl
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "appliance models install" in lines[0]
    assert "word cues are off" in lines[0]
    fillers = events[-1]["data"]["fillers"]
    assert fillers["sources"] == ["acoustic"] and "acoustic" in fillers["note"]


def test_text_output_has_timeline_and_summary_table(capsys):
    code, out, err = run(capsys, "analyze", "--demo", "--no-asr")
    assert code == 0
    assert "interruption" in out and "Call summary" in out and "talk time (s)" in out
    assert err == ""  # no progress bar when stderr is not a terminal


def test_two_mono_files_and_channel_map(tmp_path, capsys):
    rng = np.random.default_rng(1)
    a = (rng.standard_normal(16000) * 300).astype(np.int16)
    c = np.zeros(16000, dtype=np.int16)
    _wav(tmp_path / "a.wav", a)
    _wav(tmp_path / "c.wav", c)
    code, out, _ = run(capsys, "analyze", "--agent", str(tmp_path / "a.wav"),
                       "--customer", str(tmp_path / "c.wav"), "--format", "jsonl")
    assert code == 0 and json.loads(out.splitlines()[-1])["kind"] == "summary"
    _wav(tmp_path / "s.wav", np.stack([c, a], axis=1))
    code, out, _ = run(capsys, "analyze", str(tmp_path / "s.wav"), "--agent-channel", "1",
                       "--customer-channel", "0", "--format", "jsonl")
    assert code == 0


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    good = _wav(tmp / "good.wav", np.zeros((16000, 2), dtype=np.int16))
    (tmp / "text.wav").write_text("hello, I am not audio\n")
    full = _wav(tmp / "full.wav", np.ones((16000, 2), dtype=np.int16))
    (tmp / "trunc_header.wav").write_bytes(full.read_bytes()[:30])
    empty = _wav(tmp / "empty.wav", np.zeros((0, 2), dtype=np.int16))
    (tmp / "marks.jsonl").write_text('{"t": 1.0, "event": "hold_start"}\n{"t": "x"}\n')
    (tmp / "bad.toml").write_text("[hold]\ncheck_back_s = -3\n")
    return {
        "missing file": (["analyze", str(tmp / "nope.wav")], "input.not_found"),
        "not a wav": (["analyze", str(tmp / "text.wav")], "input.not_wav"),
        "truncated header": (["analyze", str(tmp / "trunc_header.wav")], "input.truncated"),
        "zero-length audio": (["analyze", str(empty)], "input.empty"),
        "channel index": (["analyze", str(good), "--customer-channel", "5"], "input.bad_channel"),
        "marks line": (["analyze", str(good), "--marks", str(tmp / "marks.jsonl")],
                       "marks.invalid_line"),
        "marks missing": (["analyze", str(good), "--marks", str(tmp / "none.jsonl")],
                          "marks.not_found"),
        "config value": (["analyze", str(good), "--config", str(tmp / "bad.toml")],
                         "config.invalid"),
        "language": (["analyze", str(good), "--lang", "english!"], "config.invalid"),
    }


@pytest.mark.parametrize("case", [
    "missing file", "not a wav", "truncated header", "zero-length audio", "channel index",
    "marks line", "marks missing", "config value", "language",
])
def test_bad_input_gives_one_clear_line_and_nonzero_exit(tmp_path, capsys, case):
    args, code_str = _bad_inputs(tmp_path)[case]
    code, out, err = run(capsys, *args)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("appliance: error: ") and f"[{code_str}]" in lines[0]
    assert "Traceback" not in err and out == ""


def test_truncated_data_is_analysed_as_far_as_it_goes(tmp_path, capsys):
    full = _wav(tmp_path / "full.wav", np.ones((48000, 2), dtype=np.int16))
    cut = tmp_path / "cut.wav"
    cut.write_bytes(full.read_bytes()[: 44 + 4 * 16000])  # 1 of 3 seconds survives
    code, out, _ = run(capsys, "analyze", str(cut), "--format", "jsonl")
    assert code == 0
    summary = json.loads(out.splitlines()[-1])
    assert summary["kind"] == "summary" and abs(summary["data"]["duration_s"] - 1.0) < 0.05


def test_no_traceback_from_the_console_script_on_bad_input(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "appliance", "analyze", str(tmp_path / "x.wav")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_config_check_and_defaults_round_trip(tmp_path, capsys):
    code, out, _ = run(capsys, "config", "defaults")
    assert code == 0 and "[interruption]" in out and "min_overlap_s = 0.6" in out
    (tmp_path / "c.toml").write_text(out)
    code, out, _ = run(capsys, "config", "check", str(tmp_path / "c.toml"))
    assert code == 0 and out.strip().endswith(": ok")


@pytest.mark.skipif(not Path("/usr/bin/sox").exists() and not Path("/bin/sox").exists(),
                    reason="needs sox")
def test_a_call_piped_in_streams_like_the_file(demo_jsonl, tmp_path):
    """``sox … -t wav - | appliance analyze -`` (sox cannot fix the header on a pipe) and
    ``/dev/stdin`` give the events of the file itself, without the marks."""
    env = dict(os.environ, APPLIANCE_MODELS_DIR=str(tmp_path))
    demo = DEMO / "demo_call.wav"
    expected = subprocess.run(
        [sys.executable, "-m", "appliance", "analyze", str(demo), "--format", "jsonl"],
        capture_output=True, text=True, check=True, env=env).stdout
    for target in ("-", "/dev/stdin"):
        sox = subprocess.Popen(["sox", str(demo), "-t", "wav", "-"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
        got = subprocess.run([sys.executable, "-m", "appliance", "analyze", target,
                              "--format", "jsonl"], stdin=sox.stdout, capture_output=True,
                             text=True, env=env, timeout=300)
        assert sox.stdout is not None
        sox.stdout.close()
        sox.wait(30)
        assert got.returncode == 0, got.stderr
        assert _without_call_id(got.stdout) == _without_call_id(expected), target
        assert json.loads(got.stdout.splitlines()[0])["call_id"] == "stdin"
        assert "empty" not in got.stderr


def test_a_directory_is_not_a_file(capsys, tmp_path):
    code, _, err = run(capsys, "analyze", str(tmp_path))
    assert code == 2 and "is a directory" in err and "[input.not_a_file]" in err


def test_marks_beyond_the_audio_are_reported_not_dropped(capsys, tmp_path):
    marks = tmp_path / "m.jsonl"
    marks.write_text('{"t": 20.0, "event": "hold_end"}\n{"t": 5000, "event": "hold_start"}\n')
    code, out, err = run(capsys, "analyze", str(DEMO / "demo_call.wav"), "--marks", str(marks),
                         "--format", "jsonl", "--no-asr")
    assert code == 0
    summary = json.loads(out.splitlines()[-1])["data"]
    assert summary["marks_ignored"] == [
        {"t": 20.0, "event": "hold_end", "reason": "no_hold_open"},
        {"t": 5000.0, "event": "hold_start", "reason": "after_end"}]
    assert summary["marks_ignored_total"] == 2
    assert "hold_end mark at 20.0 s ignored: no hold is open" in err
    assert "hold_start mark at 5000.0 s ignored: it is after the end of the audio" in err


def test_an_unknown_language_is_refused_naming_what_is_known(capsys, tmp_path):
    code, _, err = run(capsys, "analyze", "--demo", "--lang", "xx")
    assert code == 2 and "[config.invalid]" in err
    assert "language 'xx': no word lists for it (bundled: de, en, fr, ko)" in err
    assert "appliance models install MODEL.zip --lang xx" in err
    code, _, err = run(capsys, "analyze", "--demo", "--lang", "z" * 100_000)
    assert code == 2 and len(err) < 400


def _without_call_id(jsonl: str) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "call_id"}
            for line in jsonl.splitlines()]
