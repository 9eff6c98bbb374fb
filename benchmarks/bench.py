"""Speed, latency and memory of the acoustic path: the figures kept in the README.

    python -m benchmarks.bench [--calls N] [--corpus DIR]

* real-time factor (CPU seconds per second of audio) per channel and per call, on one core,
  with its split between Silero VAD, the feature extractors and the rest;
* Silero cost per stream when batched across calls (1 … 200 streams);
* cue latency in audio time (defining moment → emission) on the synthetic corpus;
* peak memory of one process analysing one call, and of a bank of many calls.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np

from appliance.audio.filesource import FileSource
from appliance.audio.marks_file import load_marks
from appliance.config import Config
from appliance.engine.call_engine import CallEngine
from appliance.engine.features.extractor import FeatureExtractor
from appliance.engine.vad import SileroModel, VadStream
from appliance.stream.bank import CallBank

DEMO = Path(__file__).resolve().parent.parent / "appliance" / "demo"


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    blocks = list(FileSource(path).blocks())
    return (np.concatenate([b.agent for b in blocks]),
            np.concatenate([b.customer for b in blocks]))


def rtf(model: SileroModel, repeats: int = 3) -> dict[str, float]:
    agent, customer = _load(DEMO / "demo_call.wav")
    marks = load_marks(DEMO / "demo_marks.jsonl")
    audio_s = len(agent) / 16000
    best = 1e9
    for _ in range(repeats):
        eng = CallEngine(Config(), model, marks)
        t0 = time.process_time()
        for i in range(0, len(agent), 512):
            eng.push(agent[i:i + 512], customer[i:i + 512])
        eng.finish()
        best = min(best, time.process_time() - t0)
    # the parts: Silero alone (batch of the two parties) and the feature extractor alone
    streams = [VadStream(), VadStream()]
    n = len(agent) // 512
    w = np.stack([agent[: n * 512].reshape(n, 512), customer[: n * 512].reshape(n, 512)], 1)
    t0 = time.process_time()
    for i in range(n):
        model.run_batch(streams, w[i])
    vad = time.process_time() - t0
    fx = FeatureExtractor(channels=2)  # both parties in one pass, as the engine runs it
    t0 = time.process_time()
    for i in range(0, len(agent), 512):
        fx.process_channels(np.stack([agent[i:i + 512], customer[i:i + 512]]))
    feat = time.process_time() - t0
    return {"audio_s": audio_s, "call_rtf": best / audio_s, "channel_rtf": best / audio_s / 2,
            "vad_share": vad / best, "features_share": feat / best}


def batching(model: SileroModel) -> dict[int, float]:
    rng = np.random.default_rng(0)
    out = {}
    for n in (1, 2, 8, 50, 200):
        streams = [VadStream() for _ in range(n)]
        w = (rng.standard_normal((n, 512)) * 1000).astype(np.int16)
        reps = max(20, 4000 // n)
        t0 = time.process_time()
        for _ in range(reps):
            model.run_batch(streams, w)
        out[n] = (time.process_time() - t0) / reps / n * 1000.0
    return out


def bank_memory(model: SileroModel, calls: int) -> tuple[float, float]:
    agent, customer = _load(DEMO / "demo_call.wav")
    n = 16000 * 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    bank = CallBank(model)
    for k in range(calls):
        bank.add(CallEngine(Config(), model, call_id=f"c{k}"))
    t0 = time.process_time()
    for i in range(0, n, 1600):
        for k in range(calls):
            bank.feed(f"c{k}", agent[i:i + 1600], customer[i:i + 1600])
        bank.drain()
    cpu = time.process_time() - t0
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return after - before, cpu / (calls * 20.0)


def latency(corpus: Path) -> str:
    from tests.quality import analyse_corpus, score

    truths = []
    for p in sorted(corpus.glob("*.truth.json")):
        t = json.loads(p.read_text())
        t["dir"] = str(corpus)
        truths.append(t)
    if not truths:
        from tests.corpus import build_corpus

        truths = build_corpus(corpus)
    sc = score(truths, analyse_corpus(truths))

    def fmt(xs: list[float]) -> str:
        a = np.asarray(xs)
        return (f"p50 {np.median(a):.2f} s, p95 {np.percentile(a, 95):.2f} s, "
                f"max {a.max():.2f} s (n={len(a)})")

    return (f"interruption (overlap reaches 0.6 s → cue): {fmt(sc.interruption_latency_s)}\n"
            f"hold leak (0.5 s of leaked speech → cue):   {fmt(sc.leak_latency_s)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=50, help="calls in the bank memory test")
    ap.add_argument("--corpus", type=Path, default=Path("/tmp/appliance-corpus"),
                    help="corpus directory for the latency figures (built if missing)")
    ap.add_argument("--skip-latency", action="store_true")
    args = ap.parse_args()
    model = SileroModel()
    r = rtf(model)
    print(f"acoustic path on one core ({r['audio_s']:.0f} s demo call, 32 ms pushes):")
    print(f"  real-time factor per call    {r['call_rtf']:.4f}")
    print(f"  real-time factor per channel {r['channel_rtf']:.4f}   (goal < 0.02)")
    print(f"  of which Silero VAD {r['vad_share']:.0%}, feature extractors "
          f"{r['features_share']:.0%}, the rest (music, nuclei, echo, rules) "
          f"{1 - r['vad_share'] - r['features_share']:.0%}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak memory of the process (model loaded, one call): {peak:.0f} MiB")
    print("Silero VAD cost per stream and 32 ms window, batched:")
    for n, ms in batching(model).items():
        print(f"  batch {n:>3}: {ms:.3f} ms")
    mem, per_call = bank_memory(model, args.calls)
    print(f"bank of {args.calls} calls (VAD batched across calls): +{mem:.0f} MiB peak, "
          f"real-time factor per call {per_call:.4f}")
    if not args.skip_latency:
        print("cue latency in audio time on the synthetic corpus:")
        print("  " + latency(args.corpus).replace("\n", "\n  "))


if __name__ == "__main__":
    main()
