"""Where a bank of calls spends its CPU: CPU seconds per second of call audio, per component.

    python -m benchmarks.profile_bank [--calls 20] [--seconds 60] [--repeat 3] [--split]

A :class:`~appliance.stream.bank.CallBank` of ``--calls`` demo calls (each started at a
different offset) is fed ``--seconds`` of audio per call in 32 ms blocks as fast as it goes
(analysed in rounds of 8 blocks, as bench_scale's workers do), and the CPU time it takes
(``time.process_time``: robust on a shared, busy machine) is divided by the call audio.
The best of ``--repeat`` runs is reported.  With ``--split`` each component's methods are
wrapped with a CPU timer (which adds a little overhead of its own; the figures are nested:
``step`` contains everything but Silero and the input plumbing).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from appliance.config import Config
from appliance.engine.call_engine import CallEngine
from appliance.engine.vad import SileroModel
from appliance.stream.bank import CallBank
from benchmarks.bench import _load

DEMO = Path(__file__).resolve().parent.parent / "appliance" / "demo" / "demo_call.wav"
BLOCK = 512

_spent: defaultdict[str, float] = defaultdict(float)
_labels: list[str] = []  # in the order they are printed


def _timed(cls: type, name: str, label: str) -> None:
    f: Callable[..., Any] = getattr(cls, name)
    clock = time.process_time

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = clock()
        try:
            return f(*args, **kwargs)
        finally:
            _spent[label] += clock() - t0

    setattr(cls, name, wrapper)
    if label not in _labels:
        _labels.append(label)


def _instrument(model: SileroModel) -> None:
    from appliance.engine.conversation import EchoGate, SpeechTracker
    from appliance.engine.features.extractor import FeatureExtractor
    from appliance.engine.features.filled_pause import FilledPauseDetector
    from appliance.engine.features.music import MusicDetector
    from appliance.engine.features.nuclei import NucleiDetector
    from appliance.engine.hold import HoldTracker
    from appliance.engine.level_vad import LevelDetector

    _timed(SileroModel, "run_batch", "Silero (batched)")
    _timed(CallEngine, "feed", "feed + take_window")
    _timed(CallEngine, "take_window", "feed + take_window")
    _timed(CallEngine, "step", "step (all below)")
    _timed(FeatureExtractor, "process_channels", "  feature extractor")
    _timed(FilledPauseDetector, "process", "  filled pauses")
    _timed(NucleiDetector, "process", "  syllable nuclei")
    _timed(MusicDetector, "process", "  music")
    _timed(LevelDetector, "update", "  level detector")
    _timed(EchoGate, "is_echo", "  echo gate")
    _timed(SpeechTracker, "update", "  speech trackers")
    _timed(HoldTracker, "update", "  hold")
    probe = CallEngine(Config(), model)
    for rule in probe.rules:
        _timed(type(rule), "on_frame", "  cue rules")


def run(model: SileroModel, calls: int, seconds: float) -> tuple[float, float]:
    """CPU seconds and call-audio seconds of one run."""
    agent, customer = _load(DEMO)
    n_total = len(agent) // BLOCK
    bank = CallBank(model)
    rng = np.random.default_rng(1)
    offsets = {}
    for k in range(calls):
        bank.add(CallEngine(Config(), model, call_id=f"c{k}"))
        offsets[f"c{k}"] = int(rng.uniform(0, 100) * 16000 / BLOCK)
    steps = int(seconds * 16000 / BLOCK)
    t0 = time.process_time()
    for n in range(steps):
        for call_id, k0 in offsets.items():
            i = (k0 + n) % n_total * BLOCK
            bank.feed(call_id, agent[i:i + BLOCK], customer[i:i + BLOCK])
        if n % 8 == 7:
            bank.drain()
    bank.drain()
    return time.process_time() - t0, calls * steps * BLOCK / 16000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60.0, help="audio per call (60)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--split", action="store_true", help="time each component")
    args = ap.parse_args()
    model = SileroModel()
    if args.split:
        _instrument(model)
    best, split = float("inf"), {}
    for _ in range(args.repeat):
        _spent.clear()
        cpu, audio = run(model, args.calls, args.seconds)
        if cpu / audio < best:
            best, split = cpu / audio, {k: v / audio for k, v in _spent.items()}
    print(f"{args.calls} calls x {args.seconds:.0f} s: {best:.4f} CPU s per call-second"
          f" (best of {args.repeat})")
    for label in _labels:
        print(f"  {label:<24} {split.get(label, 0.0):.4f}")


if __name__ == "__main__":
    main()
