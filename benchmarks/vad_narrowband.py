"""Voice activity on real voices, wideband vs telephone band: which detector holds up.

    python -m benchmarks.vad_narrowband [REAL_CORPUS_DIR]

For every call of the real-speech corpus (built if missing) and both parties, frames of
32 ms are scored against the truth: the share of the truth's speech frames found (recall)
and the share of frames where nobody speaks, or only the other party (echo), called speech.
Four detectors:

* ``silero-16k``: Silero VAD on the audio resampled to 16 kHz (what the engine feeds it);
* ``silero-8k``: Silero's native 8 kHz mode (256-sample windows) on the audio at 8 kHz;
* ``level``: the level detector alone (:mod:`appliance.engine.level_vad`);
* ``engine``: the engine's decision (Silero fused with the level detector, then the echo,
  music and silence gates, hysteresis, no hangover).
"""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

FRAME_S = 0.032


def _silero(x: np.ndarray, sr: int, session: Any) -> np.ndarray:
    win, ctxn = (512, 64) if sr == 16000 else (256, 32)
    state = np.zeros((2, 1, 128), np.float32)
    ctx = np.zeros((1, ctxn), np.float32)
    out = []
    for i in range(len(x) // win):
        inp = np.concatenate([ctx, x[i * win:(i + 1) * win][None].astype(np.float32)], 1)
        o, state = session.run(None, {"input": inp, "state": state,
                                      "sr": np.array(sr, np.int64)})
        ctx = inp[:, -ctxn:]
        out.append(float(o[0, 0]))
    return np.asarray(out)


def _call(truth: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    import soxr

    from appliance.config import Config
    from appliance.engine.call_engine import CallEngine
    from appliance.engine.conversation import FrameContext
    from appliance.engine.features.extractor import FeatureExtractor
    from appliance.engine.level_vad import LevelDetector
    from appliance.engine.vad import SileroModel
    from tests.corpus.mix import read_wav

    model = SileroModel()
    sr, x = read_wav(Path(truth["files"]["stereo"]))
    eng = CallEngine(Config(), model, call_id=truth["name"])
    active: dict[str, list[bool]] = {"agent": [], "customer": []}

    class _Tap:
        def on_frame(self, ctx: FrameContext) -> list[Any]:
            for p in active:
                active[p].append(ctx.party(p).active)
            return []

        def close(self, t_s: float) -> list[Any]:
            return []

        def summary(self) -> dict[str, Any]:
            return {}

    eng.rules.append(_Tap())  # type: ignore[arg-type]
    to16 = [soxr.resample(x[:, k], sr, 16000) if sr != 16000 else x[:, k] for k in (0, 1)]
    pcm = [np.clip(c * 32768, -32768, 32767).astype(np.int16) for c in to16]
    for i in range(0, len(pcm[0]), 1600):
        eng.push(pcm[0][i:i + 1600], pcm[1][i:i + 1600])
    out: dict[str, dict[str, list[float]]] = {}
    for k, p in enumerate(("agent", "customer")):
        other = "customer" if p == "agent" else "agent"
        n = len(active[p])
        x8 = soxr.resample(x[:, k], sr, 8000) if sr != 8000 else x[:, k]
        fe = FeatureExtractor(16000)
        lv = LevelDetector(15.0, 7.0, 0.425)
        level = np.zeros(n)
        for i in range(n):
            f = fe.process(pcm[k][i * 512:(i + 1) * 512])
            level[i] = lv.update(f, float(f.noise_floor_dbfs[-1])) if len(f) else 0.0
        dets = {"silero-16k": _silero(to16[k], 16000, model._session) >= 0.5,
                "silero-8k": _silero(x8, 8000, model._session) >= 0.5,
                "level": level >= 1.0, "engine": np.asarray(active[p])}

        def mask(iv: list[list[float]], n: int = n) -> np.ndarray:
            m = np.zeros(n, bool)
            for s, e in iv:
                m[int(s / FRAME_S):int(np.ceil(e / FRAME_S))] = True
            return m

        holds = mask([[h["start"], h["end"]] for h in truth["holds"]])
        speech = mask(truth["speech"][p]) & ~holds
        echo = mask(truth["speech"][other]) & ~mask(
            [[s - 0.2, e + 0.2] for s, e in truth["speech"][p]]) & ~holds
        quiet = ~mask([[s - 0.2, e + 0.2] for s, e in truth["speech"][p]]) \
            & ~mask(truth["speech"][other]) & ~holds
        out[p] = {}
        for name, d in dets.items():
            d = np.resize(d, n)
            out[p][name] = [float(d[speech].sum()), float(speech.sum()), float(d[quiet].sum()),
                            float(quiet.sum()), float(d[echo].sum()), float(echo.sum())]
    return out


def main() -> None:
    from tests.corpus.real import build_real_corpus

    corpus = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/appliance-corpus-real")
    truths = [t for t in build_real_corpus(corpus) if t["scenario"] != "hold"]
    with ProcessPoolExecutor(2) as pool:
        results = list(pool.map(_call, truths))
    print(f"{'band':10} {'detector':11} {'speech found':>12} {'quiet called':>12} "
          f"{'echo called':>12}")
    for band in ("wideband", "telephone"):
        for det in ("silero-16k", "silero-8k", "level", "engine"):
            acc = np.zeros(6)
            for t, r in zip(truths, results, strict=True):
                if t["band"] == band:
                    for p in r:
                        acc += np.asarray(r[p][det])
            print(f"{band:10} {det:11} {acc[0] / acc[1]:12.3f} {acc[2] / acc[3]:12.4f} "
                  f"{acc[4] / acc[5]:12.4f}")


if __name__ == "__main__":
    main()
