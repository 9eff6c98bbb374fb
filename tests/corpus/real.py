"""The real-speech corpus: two-party calls mixed from real recorded voices, each call in a
wideband copy and a telephone copy (300-3400 Hz, 8 kHz G.711 µ-law) of the same mix.

The calls are scripted by the same :class:`~tests.corpus.scenarios.Timeline` as the espeak
corpus (interruptions, backchannels, quick turns, holds, leaks, dead air, echo, room noise,
typing), but every utterance is made of real recordings (:mod:`tests.corpus.voices`):

* an utterance joins clips of one speaker with real within-turn pauses (70 % 0.10-0.25 s,
  30 % 0.25-0.40 s) on top of the pauses inside the recordings themselves;
* the speaking rate is varied with ``sox tempo`` (the espeak ``-s`` words per minute of the
  script, relative to 165), small pitch variation with ``sox pitch``;
* raised episodes: +7 to +12 dB over the speaker's mean level, a pitch rise of +0.3 to +3.5
  semitones (``sox pitch``), a little faster, lasting 1-6 s; some come early in the call,
  after only 5-8 s of the speaker's speech.

Truth is as in the espeak corpus (speech = the voiced extent of the placed clips, pauses
shorter than 0.3 s merged), plus ``band`` (``wideband`` | ``telephone``), ``pair`` (the
name shared by the two copies) and ``talk_s`` (speech seconds per party outside holds).

``python -m tests.corpus.real OUTDIR [--scale full|small]`` builds (or reuses) it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from . import _resolve, load_corpus, mix
from .build import _json_default, _r, make_truth, render, table, validate
from .scenarios import (
    AGENT,
    CUSTOMER,
    OTHER,
    SCENARIOS,
    SHORT_ROLE,
    Party,
    Timeline,
    _close,
    _monologue,
    _open,
)
from .speech import TEXT, Utt
from .voices import RATE_HZ, SPEAKERS, Clip, clips, voiced_segments

GENERATOR_VERSION = 1
MANIFEST = "corpus.json"  # the same layout as the espeak corpus: its loader reads both
NOMINAL_WPM = 165.0
BACKCHANNEL_MAX_S = 0.5
_SOURCES = ("speech.py", "music.py", "mix.py", "scenarios.py", "build.py", "voices.py",
            "real.py")
for _lang in ("it",):  # the Italian voice reads from the English script (its words don't matter)
    TEXT.setdefault(_lang, TEXT["en"])


# ============================================================================== synthesis
def _seed(*key: object) -> int:
    return zlib.crc32(repr(key).encode())


def _sox(x: np.ndarray, tempo: float, cents: float) -> np.ndarray:
    effects: list[str] = []
    if abs(tempo - 1.0) > 0.01:
        effects += ["tempo", "-s", f"{tempo:.4f}"]
    if abs(cents) > 5:
        effects += ["pitch", f"{cents:.0f}"]
    if not effects:
        return x
    fmt = ["-t", "raw", "-r", str(RATE_HZ), "-e", "floating-point", "-b", "32", "-c", "1"]
    out = subprocess.run(["sox", *fmt, "-", *fmt, "-", *effects],
                         input=np.asarray(x, "<f4").tobytes(), capture_output=True, check=True)
    return np.frombuffer(out.stdout, "<f4").astype(np.float32)


def _finish(x: np.ndarray, text: str, words: int, sr: int) -> Utt:
    """Trim, measure voiced segments and normalise as :func:`tests.corpus.speech._analyse`."""
    if sr != RATE_HZ:
        x = soxr.resample(x, RATE_HZ, sr, quality="HQ").astype(np.float32)
    f = round(sr * 0.010)
    act, runs = voiced_segments(x, sr)
    while len(runs) > 1 and runs[-1][1] - runs[-1][0] < 8:  # a click or breath at an edge
        runs.pop()
    while len(runs) > 1 and runs[0][1] - runs[0][0] < 8:
        runs.pop(0)
    a, b = runs[0][0], runs[-1][1]
    y = x[a * f: b * f].copy()
    frames = y[: (b - a) * f].reshape(b - a, f)
    rms = float(np.sqrt((frames[act[a:b]] ** 2).mean()))
    segs = tuple((float((s - a) * 0.010), float((e - a) * 0.010)) for s, e in runs)
    return Utt((y / rms).astype(np.float32), segs, text, words, sr)


@dataclass
class RealSynth:
    """Drop-in for :class:`~tests.corpus.speech.Synth` that speaks with recorded voices.

    ``voice`` is a speaker of :data:`~tests.corpus.voices.SPEAKERS`; ``speed`` (espeak words
    per minute) becomes a tempo factor ``speed / 165``; ``pitch`` is 50 ± 10 per semitone.
    The text only sets the length (0.36 s a word) and seeds the choice of clips."""

    _cache: dict[tuple[Any, ...], Utt] = field(default_factory=dict)

    def utt(self, voice: str, speed: int, pitch: int, text: str, sr: int, amp: int = 100,
            *, dur_s: float | None = None) -> Utt:
        key = (voice, int(speed), int(pitch), text, sr, dur_s)
        if key not in self._cache:
            words = len(text.split())
            target = dur_s if dur_s is not None else min(7.0, max(0.6, 0.36 * words))
            x = self._join(voice, target, np.random.default_rng(_seed(voice, text, dur_s)))
            x = _sox(x, speed / NOMINAL_WPM, 100.0 * (pitch - 50) / 10.0)
            self._cache[key] = _finish(x, text, words, sr)
        return self._cache[key]

    @staticmethod
    def _join(voice: str, target_s: float, rng: np.random.Generator) -> np.ndarray:
        pool = clips(voice)
        parts: list[np.ndarray] = []
        total = 0.0
        while total < 0.85 * target_s:
            fit = [c for c in pool if c.dur <= max(1.2, target_s - total + 0.6)]
            c: Clip = fit[int(rng.integers(len(fit)))] if fit else min(pool, key=lambda c: c.dur)
            if parts:
                gap = rng.uniform(0.10, 0.25) if rng.random() < 0.7 else rng.uniform(0.25, 0.40)
                parts.append(np.zeros(round(gap * RATE_HZ), np.float32))
                total += gap
            # clips differ in recording level by a few dB, as a speaker's phrases do
            parts.append(c.audio * mix.db2lin(float(rng.uniform(-2.0, 2.0))))
            total += c.dur
        return np.concatenate(parts)

    def backchannel(self, voice: str, pitch: int, text: str, sr: int) -> Utt:
        """A real word of at most 0.5 s: a short clip, or the speaker's shortest first word."""
        pool = clips(voice)
        rng = np.random.default_rng(_seed(voice, "bc", text))
        short = [c for c in pool if c.dur <= BACKCHANNEL_MAX_S - 0.02]
        if short:
            x = short[int(rng.integers(len(short)))].audio
        else:
            c = min(pool, key=lambda c: c.segs[0][1] - c.segs[0][0])
            end = min(c.segs[0][1], BACKCHANNEL_MAX_S - 0.05)
            x = c.audio[: round(end * RATE_HZ)].copy()
            fade = round(0.03 * RATE_HZ)
            x[-fade:] *= np.linspace(1.0, 0.0, fade)
        u = _finish(_sox(x, 1.0, 100.0 * (pitch - 50) / 10.0), text, 1, sr)
        if u.dur > BACKCHANNEL_MAX_S:
            u = _finish(_sox(x, u.dur / (BACKCHANNEL_MAX_S - 0.05), 0.0), text, 1, sr)
        return u


class RealTimeline(Timeline):
    """Timeline whose raised episodes are real voices made louder and higher."""

    def raised_episode(self, party: str, dur_s: float | None = None) -> None:
        p = self.parties[party]
        rng = self.rng
        dl = float(rng.uniform(7.0, 12.0))
        st = float(rng.uniform(0.3, 3.5))
        dur = dur_s if dur_s is not None else float(rng.uniform(1.0, 5.0))
        u = self.synth.utt(p.voice, int(p.speed * rng.uniform(1.0, 1.1)),
                           50 + round(10 * st), f"raised {len(self.raised)}", self.sr,
                           dur_s=dur)
        base = float(np.mean([q.gain_db for q in self.placed
                              if q.party == party and q.kind == "speech"]))
        pl = self.put(party, u, self.t + float(rng.uniform(0.4, 1.0)), kind="raised",
                      gain_db=base + dl)
        self.raised.append({"party": party, "start": pl.start, "end": pl.end,
                            "level_delta_db": dl, "pitch_delta_st": round(st, 2),
                            "baseline_s": round(self.voiced(party), 1)})
        self.t, self.last = pl.end, pl


def raised_real(tl: RealTimeline, *, party: str | None, episodes: int = 1,
                early: bool = False, short: bool = False,
                interrupt: str | None = None) -> None:
    """Like :func:`tests.corpus.scenarios.raised`; ``early``: the first episode after only
    5-8 s of the speaker's speech; ``short``: episodes of 1.0-1.5 s."""
    _open(tl)
    target = party or CUSTOMER
    for ep in range(max(episodes, 1)):
        need = (float(tl.rng.uniform(5.0, 8.0)) if early else 21.5) if ep == 0 \
            else tl.voiced(target) + 10.0
        while tl.voiced(target) < need:
            _monologue(tl, target)
        if party is not None:
            if tl.last is not None and tl.last.party == party:
                tl.say(OTHER[party], SHORT_ROLE[OTHER[party]])
            tl.raised_episode(party, float(tl.rng.uniform(1.0, 1.5)) if short else None)
    if interrupt is not None:
        if tl.last is not None and tl.last.party == OTHER[interrupt]:
            tl.say(interrupt, SHORT_ROLE[interrupt])
        tl.interrupt(interrupt, "interject" if interrupt == AGENT else "cinterject")
    need = tl.voiced(target) + 8.0
    while tl.voiced(target) < need:
        _monologue(tl, target)
    _close(tl)


_SCENARIOS = {**SCENARIOS, "raised": raised_real}


# ============================================================================== plan
def _speakers(rng: np.random.Generator, male: bool) -> tuple[str, str]:
    """An (agent, customer) pair of different speakers; ``male``: one of them is a man."""
    big = ["en-allison", "fr-june", "it-carlo", "fr-armelle"]
    men = ["it-carlo", "en-dhd", "en-austen", "en-cards"]
    a = str(rng.choice(big))
    if male and SPEAKERS[a].sex != "m":
        c = str(rng.choice(men))
    else:
        c = str(rng.choice([s for s in SPEAKERS if s != a]))
    return (a, c) if rng.random() < 0.6 else (c, a) if c in big else (a, c)


def plan(seed: int, scale: str) -> list[dict[str, Any]]:
    rng = np.random.default_rng([seed, 9])
    calls: list[tuple[str, dict[str, Any]]] = []
    if scale == "small":
        calls = [("conversation", {"n_int_agent": 2, "n_int_customer": 1, "n_bc": 2, "n_turn": 2}),
                 ("hold", {"kind": "unmuted", "via": "marks", "dur": 20.0, "leaks": 1}),
                 ("raised", {"party": CUSTOMER, "early": True})]
    elif scale == "full":
        for i in range(8):
            calls.append(("conversation", {"n_int_agent": 2 + i % 2, "n_int_customer": 1 + i % 2,
                                           "n_bc": 2 + i % 3, "n_turn": 2}))
        for kind, via, dur, leaks in [("music", "music", 26, 0), ("music", "music", 64, 0),
                                      ("muted", "marks", 30, 0), ("muted", "marks", 63, 0),
                                      ("unmuted", "marks", 24, 1), ("unmuted", "marks", 46, 2),
                                      ("music", "marks", 40, 0)]:
            calls.append(("hold", {"kind": kind, "via": via, "dur": dur + float(rng.uniform(-2, 2)),
                                   "leaks": leaks, "remark": bool(rng.random() < 0.5),
                                   "typing": kind == "unmuted"}))
        for i in range(2):
            calls.append(("dead_air", {"dur": float(rng.uniform(11.0, 16.0)),
                                       "near_miss": float(rng.uniform(4.0, 6.5)) if i else None}))
        for wpm in np.linspace(105, 245, 6):
            calls.append(("speaking_rate", {"wpm": round(wpm)}))
        for i, party in enumerate([CUSTOMER] * 4 + [AGENT] * 3 + [None]):
            calls.append(("raised", {"party": party, "episodes": 2 if i in (0, 4) else 1,
                                     "early": i in (1, 5), "short": i in (2, 6),
                                     "interrupt": CUSTOMER if i == 3 else None}))
    else:
        raise ValueError(f"scale must be 'full' or 'small', not {scale!r}")
    specs = []
    for i, (scen, params) in enumerate(calls):
        agent, customer = _speakers(rng, male=i % 2 == 0)
        if scen == "speaking_rate":  # one agent voice per half, so rates compare
            agent = ("en-allison", "it-carlo")[i % 2]
            customer = "fr-june"
        raised_party = params.get("party") if scen == "raised" else None
        lvl = {p: float(rng.uniform(-33, -28) if p == raised_party else rng.uniform(-32, -22))
               for p in (AGENT, CUSTOMER)}
        agent_speed = params["wpm"] if scen == "speaking_rate" else int(rng.integers(150, 180))
        specs.append({
            "index": i, "name": f"r{i:02d}_{_label(scen, params)}", "scenario": scen,
            "params": params, "lang": SPEAKERS[agent].lang, "agent_name": "Anna",
            "sample_rate_hz": int(rng.choice([16000, 16000, 48000])),
            "agent": {"voice": agent, "speed": agent_speed, "pitch": 50,
                      "level_db": lvl[AGENT], "spread_db": 3.0},
            "customer": {"voice": customer, "speed": int(rng.integers(150, 181)), "pitch": 50,
                         "level_db": lvl[CUSTOMER], "spread_db": 3.0},
        })
    return specs


def _label(scen: str, p: dict[str, Any]) -> str:
    if scen == "hold":
        return f"hold_{p['kind']}_{p['via']}"
    if scen == "raised":
        return f"raised_{p['party']}" if p["party"] else "calm"
    return {"conversation": "conv", "speaking_rate": f"rate{p.get('wpm')}"}.get(scen, scen)


# ============================================================================== one call
def _validate(t: dict[str, Any]) -> list[str]:
    bad = [b for b in validate(t) if not b.startswith("raised at")]
    for r in t["raised"]:
        if not 0.9 <= r["end"] - r["start"] <= 6.5:
            bad.append(f"raised at {r['start']}: {r['end'] - r['start']:.1f} s")
    return bad


def _talk_s(t: dict[str, Any]) -> dict[str, float]:
    holds = [(h["start"], h["end"]) for h in t["holds"]]
    out = {}
    for p, segs in t["speech"].items():
        tot = 0.0
        for s, e in segs:
            tot += e - s - sum(max(0.0, min(e, he) - max(s, hs)) for hs, he in holds)
        out[p] = round(tot, 2)
    return out


def build_call(spec: dict[str, Any], seed: int, out_dir: Path) -> list[dict[str, Any]]:
    rng = np.random.default_rng([seed, 2000 + spec["index"]])
    parties = {p: Party(**spec[p]) for p in (AGENT, CUSTOMER)}
    tl = RealTimeline(rng, RealSynth(), RATE_HZ, parties, spec["agent_name"])  # type: ignore[arg-type]
    _SCENARIOS[spec["scenario"]](tl, **spec["params"])
    dur = max([tl.t] + [q.end for q in tl.placed]) + float(rng.uniform(0.8, 2.0))
    wide, ac = render(tl, rng, dur, False)
    tel = np.stack([mix.telephone(wide[:, 0]), mix.telephone(wide[:, 1])], axis=1)
    for h in tl.holds:
        if h["type"] == "muted":
            tel[round(h["start"] * mix.TEL_RATE_HZ): round(h["end"] * mix.TEL_RATE_HZ), 0] = 0.0
    base = spec["name"]
    marked = [h for h in tl.holds if h["via"] == "marks"]
    marks = None
    if marked:
        marks = f"{base}.marks.jsonl"
        lines = [json.dumps({"t": _r(h[k]), "event": f"hold_{k}"}) for h in marked
                 for k in ("start", "end")]
        (out_dir / marks).write_text("\n".join(lines) + "\n")
    common = make_truth(tl, dur, ac)
    out = []
    sr_wide = spec["sample_rate_hz"]
    if sr_wide != RATE_HZ:
        wide = soxr.resample(wide, RATE_HZ, sr_wide, quality="HQ").astype(np.float32)
    for band, audio, sr, fmt in (("wideband", wide, sr_wide, "pcm16"),
                                 ("telephone", tel, mix.TEL_RATE_HZ, "mulaw")):
        name = f"{base}_{'wb' if band == 'wideband' else 'tel'}"
        files = {"stereo": f"{name}.wav"}
        mix.write_wav(out_dir / files["stereo"], audio, sr, fmt)
        truth: dict[str, Any] = {
            "name": name, "pair": base, "band": band, "scenario": spec["scenario"],
            "files": files, "sample_rate_hz": sr, "telephone": band == "telephone",
            "format": fmt, "marks": marks, "lang": spec["lang"],
            "voices": {p: spec[p]["voice"] for p in (AGENT, CUSTOMER)},
            "sexes": {p: SPEAKERS[spec[p]["voice"]].sex for p in (AGENT, CUSTOMER)},
            **common,
        }
        truth["talk_s"] = _talk_s(truth)
        problems = _validate(truth)
        if problems:
            raise AssertionError(f"{name}: " + "; ".join(problems))
        (out_dir / f"{name}.truth.json").write_text(
            json.dumps(truth, indent=1, ensure_ascii=False, default=_json_default))
        out.append(truth)
    return out


# ============================================================================== corpus
def _version() -> str:
    h = hashlib.sha256(str(GENERATOR_VERSION).encode())
    for name in _SOURCES:
        h.update((Path(__file__).parent / name).read_bytes())
    for s in SPEAKERS:
        h.update(f"{s}:{len(clips(s))}".encode())
    h.update(subprocess.run(["sox", "--version"], capture_output=True, text=True).stdout.encode())
    return h.hexdigest()[:16]


def _build_one(args: tuple[dict[str, Any], int, str]) -> list[dict[str, Any]]:
    spec, seed, out = args
    return build_call(spec, seed, Path(out))


def build_real_corpus(out_dir: Path, *, seed: int = 7, scale: str = "full",
                      jobs: int | None = None) -> list[dict[str, Any]]:
    """Build (or reuse) the real-speech corpus in ``out_dir``; truth dicts, both copies of
    every call (wideband first)."""
    out_dir = Path(out_dir).resolve()
    version = _version()
    try:
        man = json.loads((out_dir / MANIFEST).read_text())
        if ((man.get("seed"), man.get("scale"), man.get("version")) == (seed, scale, version)
                and all((out_dir / f).exists() for f in man.get("files", []))):
            return load_corpus(out_dir)
    except (OSError, ValueError):
        pass
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = plan(seed, scale)
    work = [(s, seed, str(out_dir)) for s in specs]
    jobs = max(1, min(jobs or (os.cpu_count() or 1), len(specs)))
    if jobs == 1:
        done = [_build_one(w) for w in work]
    else:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            done = list(pool.map(_build_one, work))
    truths = [t for pair in done for t in pair]
    files = sorted({f for t in truths for f in [*t["files"].values(), t["marks"],
                                                 f"{t['name']}.truth.json"] if f})
    man = {"seed": seed, "scale": scale, "version": version, "generator": GENERATOR_VERSION,
           "calls": [t["name"] for t in truths], "files": files}
    (out_dir / MANIFEST).write_text(json.dumps(man, indent=1))
    return [_resolve(t, out_dir) for t in truths]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.corpus.real")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--scale", choices=("full", "small"), default="full")
    ap.add_argument("--jobs", type=int, default=None)
    a = ap.parse_args(argv)
    t0 = time.monotonic()
    truths = build_real_corpus(a.out_dir, seed=a.seed, scale=a.scale, jobs=a.jobs)
    print(table(truths))
    print(f"{a.out_dir}: ready in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
