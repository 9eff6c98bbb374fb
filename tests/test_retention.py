"""What a finished live call leaves on disk: by default its summary only (no audio, no
words); with ``[storage] transcripts = true`` also its utterances, digit runs masked, in a
file that expires."""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from appliance.asr.worker import Transcript
from appliance.config import config_from_dict
from appliance.engine.vad import SileroModel
from appliance.events import WordEvent
from appliance.sinks.archive import CallArchive
from appliance.sinks.store.summaries import SummaryStore
from appliance.stream.live import LiveRunner
from tests.scripted import ScriptedSource

DEMO = Path(__file__).resolve().parent.parent / "appliance" / "demo" / "demo_call.wav"
SAID = "my card number is 4 5 5 6 7 8 9 0 and my phone is five five five one two three four"


class ScriptedAsr:
    """A recognizer that hears one utterance with a card and a phone number."""

    def __init__(self) -> None:
        self.given = False

    def tap(self, ctx: Any, window: Any) -> None:
        pass

    def poll(self) -> list[Any]:
        if self.given:
            return []
        self.given = True
        words = [WordEvent("customer", w, 1.0 + i * 0.2, 1.1 + i * 0.2)
                 for i, w in enumerate(SAID.split())]
        return [(words, Transcript("customer", SAID, 1.0, 6.0))]

    def finish(self, timeout_s: float | None = None) -> list[Any]:
        return []

    def stats(self) -> dict[str, Any]:
        return {}


def _one_call(state: Path, storage: dict[str, Any]) -> None:
    cfg = config_from_dict({"storage": {"state_dir": str(state), **storage}})
    archive = CallArchive(cfg.storage, {})
    runner = LiveRunner(cfg, ScriptedSource(), SileroModel(), make_asr=ScriptedAsr,
                        archive=archive)
    archive.start()
    asyncio.run(runner.run())  # the recording's end ends the call
    archive.close()
    assert archive.written == 1 and archive.failed == 0


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_by_default_only_the_summary_is_kept_and_it_holds_no_words(tmp_path: Path) -> None:
    _one_call(tmp_path, {})
    names = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert names and all(n.startswith("summaries.sqlite3") for n in names), names
    assert not (tmp_path / "transcripts").exists()
    blob = _all_bytes(tmp_path)
    for word in ("card", "phone", "number", "4556"):
        assert word.encode() not in blob
    with SummaryStore.open_readonly(tmp_path / "summaries.sqlite3") as store:
        (row,) = list(store.export())
    assert row["transcript_file"] is None and row["summary"]["kind"] == "summary"


def test_retention_keeps_masked_transcripts_that_expire(tmp_path: Path) -> None:
    _one_call(tmp_path, {"transcripts": True, "transcript_days": 2.0})
    files = list((tmp_path / "transcripts").glob("*.jsonl"))
    assert len(files) == 1 and (files[0].stat().st_mode & 0o777) == 0o600
    lines = [json.loads(x) for x in files[0].read_text().splitlines()]
    text = json.dumps(lines)
    assert "my card number is" in text and "and my phone is" in text
    assert "4 5 5 6" not in text and "five five five" not in text  # digit runs masked
    with SummaryStore.open_readonly(tmp_path / "summaries.sqlite3") as store:
        (row,) = list(store.export())
    assert row["transcript_file"] == files[0].name
    assert "card" not in json.dumps(row["summary"])  # the summary itself holds no words

    # three days later the next start (or the next call) expires it
    old = time.time() - 3 * 86400
    os.utime(files[0], (old, old))
    renamed = files[0].with_name(
        (datetime.now(UTC) - timedelta(days=3)).strftime("%Y%m%dT%H%M%SZ") + "_call-0.jsonl")
    files[0].rename(renamed)
    _one_call(tmp_path, {"transcripts": True, "transcript_days": 2.0})
    left = sorted(p.name for p in (tmp_path / "transcripts").glob("*.jsonl"))
    assert renamed.name not in left and len(left) == 1
