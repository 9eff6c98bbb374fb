"""Synthetic, hard two-party call corpus with exact ground truth.

Public API::

    truths = build_corpus(out_dir, seed=7, scale="full")   # or scale="small" (6 short calls)
    sr, agent, customer = read_call(truths[0])              # float32 mono arrays

Each call is written to ``out_dir`` as ``NAME.wav`` (stereo: channel 0 = agent, 1 = customer)
or ``NAME.agent.wav`` + ``NAME.customer.wav``, with ``NAME.marks.jsonl`` for marked holds and
``NAME.truth.json``.  In the JSON files, paths are relative to ``out_dir``; the dicts returned
by :func:`build_corpus` / :func:`load_corpus` carry absolute paths and a ``"dir"`` key.

Truth keys: ``name, scenario, files, sample_rate_hz, telephone, format, marks, lang, voices,
duration_s, speech{agent,customer}: [[s,e]], interruptions: [{party, onset, t_def, ...}],
non_interruptions: [{party, onset, type: backchannel|turn}], holds: [{start, end, type:
music|muted|unmuted, via: music|marks, leaks: [[s,e]]}], dead_air: [[s,e]], true_wpm,
raised: [{party, start, end, level_delta_db, pitch_delta}], typing: [[s,e]], utterances,
acoustics{echo{agent,customer}: {gain_db, delay_ms, lowpass_hz}, noise, gain_db}``.
``acoustics.echo.agent`` is the echo of the customer's voice found on the agent channel (gain
relative to the customer's speech as it appears on the customer channel), and vice versa.

A build is reused when ``out_dir/corpus.json`` records the same seed, scale and generator
version (a hash of the generator sources and the espeak-ng version).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["GENERATOR_VERSION", "build_corpus", "load_corpus", "read_call"]

GENERATOR_VERSION = 1
_SOURCES = ("speech.py", "music.py", "mix.py", "scenarios.py", "build.py")
MANIFEST = "corpus.json"


def _version() -> str:
    h = hashlib.sha256(str(GENERATOR_VERSION).encode())
    for name in _SOURCES:
        h.update((Path(__file__).parent / name).read_bytes())
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout
    h.update(out.encode())
    return h.hexdigest()[:16]


def _resolve(truth: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    t = dict(truth)
    t["dir"] = str(out_dir)
    t["files"] = {k: str(out_dir / v) for k, v in truth["files"].items()}
    t["marks"] = str(out_dir / truth["marks"]) if truth["marks"] else None
    return t


def load_corpus(out_dir: Path) -> list[dict[str, Any]]:
    """Truth dicts of an existing build (absolute paths), in build order."""
    out_dir = Path(out_dir).resolve()
    man = json.loads((out_dir / MANIFEST).read_text())
    return [_resolve(json.loads((out_dir / f"{n}.truth.json").read_text()), out_dir)
            for n in man["calls"]]


def _is_current(out_dir: Path, seed: int, scale: str, version: str) -> bool:
    try:
        man = json.loads((out_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if (man.get("seed"), man.get("scale"), man.get("version")) != (seed, scale, version):
        return False
    return all((out_dir / f).exists() for f in man.get("files", []))


def _build_one(args: tuple[dict[str, Any], int, str]) -> dict[str, Any]:
    from .build import build_call

    spec, seed, out = args
    return build_call(spec, seed, Path(out))


def build_corpus(out_dir: Path, *, seed: int = 7, scale: str = "full",
                 jobs: int | None = None) -> list[dict[str, Any]]:
    """Build (or reuse) the corpus in ``out_dir`` and return its truth dicts."""
    from .build import plan

    out_dir = Path(out_dir).resolve()
    version = _version()
    if _is_current(out_dir, seed, scale, version):
        return load_corpus(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:  # remove the files of a previous, different build (only those it listed)
        for f in json.loads((out_dir / MANIFEST).read_text()).get("files", []):
            (out_dir / f).unlink(missing_ok=True)
        (out_dir / MANIFEST).unlink()
    except (OSError, ValueError):
        pass
    specs = plan(seed, scale)
    jobs = max(1, min(jobs or (os.cpu_count() or 1), len(specs)))
    work = [(s, seed, str(out_dir)) for s in specs]
    # long calls first for a better balance; results are put back in plan order
    order = sorted(range(len(work)), key=lambda i: -_cost(specs[i]))
    if jobs == 1:
        done = {i: _build_one(work[i]) for i in order}
    else:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
            futs = {i: pool.submit(_build_one, work[i]) for i in order}
            done = {i: f.result() for i, f in futs.items()}
    truths = [done[i] for i in range(len(specs))]
    files = [f for t in truths for f in [*t["files"].values(), t["marks"],
                                          f"{t['name']}.truth.json"] if f]
    man = {"seed": seed, "scale": scale, "version": version, "generator": GENERATOR_VERSION,
           "calls": [t["name"] for t in truths], "files": files}
    (out_dir / MANIFEST).write_text(json.dumps(man, indent=1))
    return [_resolve(t, out_dir) for t in truths]


def _cost(spec: dict[str, Any]) -> float:
    p = spec["params"]
    base = {"hold": 40.0 + p.get("dur", 0), "raised": 70.0, "conversation": 70.0}
    return base.get(spec["scenario"], 55.0) * (1 if spec["telephone"] else spec["sample_rate_hz"]
                                               / 16000)


def read_call(truth: dict[str, Any]) -> tuple[int, np.ndarray, np.ndarray]:
    """Decode a call's audio: (sample rate, agent float32, customer float32)."""
    from .mix import read_wav

    files = {k: Path(truth.get("dir", "."), v) for k, v in truth["files"].items()}
    if "stereo" in files:
        sr, x = read_wav(files["stereo"])
        return sr, x[:, 0].copy(), x[:, 1].copy()
    sr, a = read_wav(files["agent"])
    sr2, c = read_wav(files["customer"])
    if sr2 != sr or len(a) != len(c):
        raise ValueError(f"{truth['name']}: mono pair differs in rate or length")
    return sr, a[:, 0].copy(), c[:, 0].copy()
