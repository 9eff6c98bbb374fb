"""The engine as a whole: chunk-size invariance, batched multi-call bank, live marks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from appliance.audio.filesource import FileSource
from appliance.audio.marks_file import load_marks
from appliance.config import Config
from appliance.engine.call_engine import CallEngine
from appliance.engine.marks import Mark
from appliance.engine.vad import SileroModel
from appliance.stream.bank import CallBank

DEMO = Path(__file__).resolve().parent.parent / "appliance" / "demo"


@pytest.fixture(scope="module")
def model():
    return SileroModel()


@pytest.fixture(scope="module")
def demo():
    blocks = list(FileSource(DEMO / "demo_call.wav").blocks())
    agent = np.concatenate([b.agent for b in blocks])
    customer = np.concatenate([b.customer for b in blocks])
    return agent, customer, load_marks(DEMO / "demo_marks.jsonl")


def _cues(engine, agent, customer, chunk):
    out = []
    for i in range(0, len(agent), chunk):
        out += engine.push(agent[i:i + chunk], customer[i:i + chunk])
    tail, summary = engine.finish()
    return [c.to_json() for c in out + tail], summary.data


@pytest.mark.parametrize("chunk_ms", [10, 20, 32, 100])
def test_engine_is_chunk_size_invariant(model, demo, chunk_ms):
    agent, customer, marks = demo
    ref = _cues(CallEngine(Config(), model, marks), agent, customer, 16000)
    got = _cues(CallEngine(Config(), model, marks), agent, customer, chunk_ms * 16)
    assert got == ref
    assert len(ref[0]) >= 8


def test_bank_batches_calls_and_gives_the_same_cues(model, demo):
    agent, customer, marks = demo
    n = 48000 * 10  # 30 s each
    solo = _cues(CallEngine(Config(), model, marks), agent[:n], customer[:n], 1600)[0]
    bank = CallBank(model)
    for k in range(3):
        bank.add(CallEngine(Config(), model, marks, call_id=f"c{k}"))
    got: dict[str, list] = {f"c{k}": [] for k in range(3)}
    for i in range(0, n, 1600):
        for k in range(3):
            bank.feed(f"c{k}", agent[i:i + 1600], customer[i:i + 1600])
        for cid, cues in bank.drain().items():
            got[cid] += [c.to_json() for c in cues]
    for k in range(3):
        tail, _ = bank.remove(f"c{k}").finish()
        got[f"c{k}"] += [c.to_json() for c in tail]
    for cues in got.values():
        # batched ONNX runs may differ in the last float bits: same cues, same times
        assert [(c["kind"], c["t"]) for c in cues] == [(c["kind"], c["t"]) for c in solo]


def test_live_hold_mark_is_applied_at_its_frame(model):
    rng = np.random.default_rng(0)
    eng = CallEngine(Config(), model)
    noise = (rng.standard_normal(16000 * 5) * 30).astype(np.int16)
    cues = eng.push(noise, noise)
    eng.add_mark(Mark(5.5, "hold_start"))
    cues += eng.push(noise, noise)
    eng.add_mark(Mark(9.0, "hold_end"))
    tail, summary = eng.finish()
    kinds = [c.kind for c in cues + tail]
    assert kinds[:1] == ["hold_started"] and "hold_ended" in kinds
    start = next(c for c in cues if c.kind == "hold_started")
    assert abs(start.data.start_s - 5.5) < 0.04
    assert summary.data["holds"][0]["end"] == pytest.approx(9.0, abs=0.04)


def test_finish_twice_is_an_error(model):
    eng = CallEngine(Config(), model)
    eng.finish()
    with pytest.raises(RuntimeError):
        eng.finish()


def test_vad_model_refuses_a_damaged_file(tmp_path):
    from appliance.engine.vad import _packaged_model_bytes
    from appliance.errors import ApplianceError

    bad = tmp_path / "silero.onnx"
    data = bytearray(_packaged_model_bytes())
    data[1000] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(ApplianceError) as exc:
        SileroModel(bad)
    assert exc.value.code == "model.corrupt"
