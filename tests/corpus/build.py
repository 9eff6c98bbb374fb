"""Corpus plan, rendering of a timeline to channel audio, truth + self-check, and the CLI.

``python -m tests.corpus.build OUTDIR [--seed N] [--scale full|small] [--jobs N]`` builds (or
reuses) the corpus and prints one line per call.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import mix
from .scenarios import AGENT, CUSTOMER, SCENARIOS, Party, Timeline, merge
from .speech import LANGS, NAMES, VOICES, Synth

_SYNTH = Synth()  # per-process espeak cache
FADE_S = 0.03


# ============================================================================== plan
def plan(seed: int, scale: str) -> list[dict[str, Any]]:
    rng = np.random.default_rng([seed, 0])
    calls: list[tuple[str, dict[str, Any]]] = []
    if scale == "small":
        calls = [("conversation", {"n_int_agent": 2, "n_int_customer": 1, "n_bc": 2, "n_turn": 2}),
                 ("hold", {"kind": "muted", "via": "marks", "dur": 24.0, "remark": True}),
                 ("hold", {"kind": "unmuted", "via": "marks", "dur": 21.0, "leaks": 1,
                           "typing": True}),
                 ("hold", {"kind": "music", "via": "marks", "dur": 20.0}),
                 ("raised", {"party": CUSTOMER}),
                 ("dead_air", {"dur": 12.0})]
        tel = [True, False, False, True, False, True]
        rates = [16000, 48000, 44100, 16000, 48000, 16000]
        fmts = ["pcm16", "pcm16", "float32", "mulaw", "pcm16", "pcm16"]
        mono = [False, False, True, False, False, False]
    elif scale == "full":
        for i in range(8):
            calls.append(("conversation", {"n_int_agent": 3 + i % 2, "n_int_customer": 1 - i % 2,
                                           "n_bc": 2 + i % 2, "n_turn": 2}))
        holds = [("music", "music", 24, 0), ("music", "music", 48, 0), ("music", "music", 67, 0),
                 ("muted", "marks", 30, 0), ("muted", "marks", 52, 0), ("muted", "marks", 64, 0),
                 ("unmuted", "marks", 22, 1), ("unmuted", "marks", 47, 2),
                 ("unmuted", "marks", 63, 0), ("unmuted", "marks", 38, 0),
                 ("music", "marks", 35, 0), ("music", "marks", 62, 0)]
        for kind, via, dur, leaks in holds:
            calls.append(("hold", {"kind": kind, "via": via, "dur": dur + float(rng.uniform(-2, 2)),
                                   "leaks": leaks, "remark": bool(rng.random() < 0.5),
                                   "typing": kind == "unmuted" and bool(rng.random() < 0.7)}))
        for i in range(4):
            near = float(rng.uniform(4.0, 6.5)) if i % 2 else None
            calls.append(("dead_air", {"dur": float(rng.uniform(11.0, 18.0)), "near_miss": near}))
        for wpm in np.linspace(90, 280, 12):
            calls.append(("speaking_rate", {"wpm": round(wpm)}))
        for i, party in enumerate([CUSTOMER] * 5 + [AGENT] * 3 + [None] * 2):
            calls.append(("raised", {"party": party, "episodes": 2 if i in (0, 3, 5) else 1,
                                     "interrupt": [CUSTOMER, AGENT, None][i % 3] if i < 8
                                     else None}))
        n = len(calls)
        tel = [False] * n
        for lo, hi in _groups(calls):  # ~40 % telephone within every scenario group
            for j in rng.permutation(np.arange(lo, hi))[: round(0.4 * (hi - lo))]:
                tel[j] = True
        rates = [int(rng.choice([16000, 16000, 44100, 48000])) for _ in range(n)]
        fmts = ["pcm16" if rng.random() < 0.7 else "float32" for _ in range(n)]
        for j in [j for j in range(n) if tel[j]][2::9]:
            fmts[j] = "mulaw"
        mono = [False] * n
        for j in rng.choice(n, 4, replace=False):
            mono[j] = True
    else:
        raise ValueError(f"scale must be 'full' or 'small', not {scale!r}")
    langs = [LANGS[k] for k in rng.choice(3, len(calls), p=[0.5, 0.25, 0.25])]
    specs = []
    for i, (scen, params) in enumerate(calls):
        lang = langs[i]
        va, vc = (VOICES[lang][k] for k in rng.choice(len(VOICES[lang]), 2, replace=False))
        raised_party = params.get("party") if scen == "raised" else None
        lvl = {p: float(rng.uniform(-33, -28) if p == raised_party else rng.uniform(-32, -22))
               for p in (AGENT, CUSTOMER)}
        spread = 4.0 if scen == "raised" and params.get("party") is None else 3.0
        agent_speed = params["wpm"] if scen == "speaking_rate" else int(rng.integers(150, 176))
        specs.append({
            "index": i, "name": f"{i:02d}_{_label(scen, params)}_{lang}", "scenario": scen,
            "params": params, "lang": lang, "telephone": tel[i],
            "sample_rate_hz": mix.TEL_RATE_HZ if tel[i] else rates[i],
            "format": fmts[i] if tel[i] or fmts[i] != "mulaw" else "pcm16", "mono_pair": mono[i],
            "agent_name": str(rng.choice(NAMES[lang])),
            "agent": {"voice": va, "speed": agent_speed, "pitch": int(rng.integers(35, 66)),
                      "level_db": lvl[AGENT], "spread_db": spread},
            "customer": {"voice": vc, "speed": int(rng.integers(140, 186)),
                         "pitch": int(rng.integers(30, 71)), "level_db": lvl[CUSTOMER],
                         "spread_db": spread},
        })
    return specs


def _groups(calls: list[tuple[str, dict[str, Any]]]) -> list[tuple[int, int]]:
    out, lo = [], 0
    for i in range(1, len(calls) + 1):
        if i == len(calls) or calls[i][0] != calls[lo][0]:
            out.append((lo, i))
            lo = i
    return out


def _label(scen: str, p: dict[str, Any]) -> str:
    if scen == "hold":
        return f"hold_{p['kind']}_{p['via']}"
    if scen == "raised":
        return f"raised_{p['party']}" if p["party"] else "calm"
    return {"conversation": "conv", "speaking_rate": f"rate{p.get('wpm')}"}.get(scen, scen)


# ============================================================================== render
def render(tl: Timeline, rng: np.random.Generator, dur: float, tel: bool,
           acoustics: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Mix a timeline to (n, 2) float32 [agent, customer]; ``acoustics`` fixes echo, noise
    and typing level instead of drawing them."""
    sr = tl.sr
    n = round(dur * sr)
    stems = {AGENT: np.zeros(n, np.float32), CUSTOMER: np.zeros(n, np.float32)}
    for p in tl.placed:
        a = p.utt.audio * mix.db2lin(p.gain_db)
        if p.cut is not None:
            a = a[: round((p.cut - p.start) * sr)].copy()
            f = min(round(FADE_S * sr), len(a))
            a[len(a) - f:] *= np.linspace(1.0, 0.0, f)
        i = round(p.start * sr)
        stems[p.party][i: i + len(a)] += a[: n - i]
    music = np.zeros(n, np.float32)
    for m in tl.music:
        i = round(m.start * sr)
        music[i: i + len(m.audio)] += m.audio[: n - i]
    hold_mask = np.zeros(n, bool)
    for h in tl.holds:
        hold_mask[round(h["start"] * sr): round(h["end"] * sr)] = True
    ac: dict[str, Any] = {"echo": {}, "noise": {}}
    for ch in (AGENT, CUSTOMER):
        ac["echo"][ch] = {"gain_db": float(rng.uniform(-40, -28)),
                          "delay_ms": float(rng.uniform(10, 80)),
                          "lowpass_hz": float(rng.uniform(1800, 3500)) if rng.random() < 0.5
                          else None}
        level = float(rng.uniform(-70, -45))
        kinds = mix.NOISE_KINDS if level < -50 else mix.NOISE_KINDS[:3]
        ac["noise"][ch] = {"kind": str(rng.choice(kinds)), "dbfs": level}
    ac["typing_peak_dbfs"] = float(rng.uniform(-36, -22))
    if acoustics is not None:
        ac = {**ac, **acoustics}
    e = ac["echo"]
    a_echo = mix.echo(stems[CUSTOMER], sr, **e[AGENT])
    a_echo[hold_mask] = 0.0  # on hold, the agent does not hear the customer
    agent = stems[AGENT] + a_echo + mix.room_noise(rng, n, sr, **_nz(ac["noise"][AGENT]))
    customer = (stems[CUSTOMER] + mix.echo(stems[AGENT] + music, sr, **e[CUSTOMER])
                + mix.room_noise(rng, n, sr, **_nz(ac["noise"][CUSTOMER])))
    agent += mix.typing(rng, tl.typing, n, sr, ac["typing_peak_dbfs"])
    for h in tl.holds:
        s, t = round(h["start"] * sr), round(h["end"] * sr)
        if h["type"] == "music":  # the PBX replaces the agent leg by the music
            agent[s:t] = music[s:t]
        elif h["type"] == "muted":
            agent[s:t] = 0.0
    peak = max(np.abs(agent).max(), np.abs(customer).max())
    g = min(1.0, 0.89 / peak)
    ac["gain_db"] = 20 * np.log10(g)
    agent, customer = agent * g, customer * g
    if tel:
        agent, customer = mix.telephone(agent), mix.telephone(customer)
        sr = mix.TEL_RATE_HZ
    for h in tl.holds:
        if h["type"] == "muted":
            agent[round(h["start"] * sr): round(h["end"] * sr)] = 0.0
    return np.stack([agent, customer], axis=1).astype(np.float32), ac


def _nz(d: dict[str, Any]) -> dict[str, Any]:
    return {"kind": d["kind"], "level_dbfs": d["dbfs"]}


# ============================================================================== truth
def _r(x: float) -> float:
    return round(float(x), 3)


def _clip_out(iv: list[tuple[float, float]], holes: list[tuple[float, float]],
              ) -> list[tuple[float, float]]:
    out = []
    for s, e in iv:
        pieces = [(s, e)]
        for hs, he in holes:
            pieces = [q for a, b in pieces for q in ((a, min(b, hs)), (max(a, he), b))
                      if q[1] > q[0]]
        out += pieces
    return out


def make_truth(tl: Timeline, dur: float, ac: dict[str, Any]) -> dict[str, Any]:
    speech = {p: merge([s for q in tl.placed if q.party == p for s in q.segs()])
              for p in (AGENT, CUSTOMER)}
    both = merge(speech[AGENT] + speech[CUSTOMER], gap=0.0)
    dead = []
    for m in tl.dead_air_marks:
        prev = max([e for s, e in both if e <= m], default=0.0)
        dead.append([prev, min([s for s, e in both if s >= m], default=dur)])
    masked = [(h["start"], h["end"]) for h in tl.holds if h["type"] in ("muted", "music")]
    typing = merge(_clip_out(tl.typing, masked), gap=0.0)
    g = ac["gain_db"]
    talk = [q for q in tl.placed if q.party == AGENT and q.kind == "speech" and q.cut is None]
    rnd = lambda d: {k: (_r(v) if isinstance(v, float) else v) for k, v in d.items()}  # noqa: E731
    return {
        "duration_s": _r(dur),
        "speech": {p: [[_r(s), _r(e)] for s, e in v] for p, v in speech.items()},
        "interruptions": [rnd(d) for d in tl.interruptions],
        "non_interruptions": [rnd(d) for d in tl.non_interruptions],
        "holds": [{**rnd(h), "leaks": [[_r(s), _r(e)] for s, e in h["leaks"]]} for h in tl.holds],
        "dead_air": [[_r(s), _r(e)] for s, e in dead],
        "true_wpm": tl.true_wpm,
        "agent_rate": {"words": sum(q.utt.words for q in talk), "utterances": len(talk),
                       "voiced_s": _r(sum(e - s for q in talk for s, e in q.segs()))},
        "raised": [rnd(d) for d in tl.raised],
        "typing": [[_r(s), _r(e)] for s, e in typing],
        "utterances": [{"party": q.party, "start": _r(q.start), "end": _r(q.end), "kind": q.kind,
                        "level_dbfs": round(q.gain_db + g, 1), "text": q.utt.text,
                        "cut": q.cut is not None} for q in tl.placed],
        "acoustics": ac,
    }


def validate(t: dict[str, Any]) -> list[str]:
    """Self-check of one truth dict against the corpus definitions; returns the problems."""
    bad: list[str] = []
    sp = {p: [tuple(x) for x in v] for p, v in t["speech"].items()}
    dur = t["duration_s"]

    def covers(p: str, a: float, b: float) -> bool:
        return any(s <= a + 1e-6 and e >= b - 1e-6 for s, e in sp[p])

    for s, e in [x for v in sp.values() for x in v] + [tuple(x) for x in t["dead_air"]]:
        if not 0 <= s < e <= dur:
            bad.append(f"interval {s}-{e} outside 0-{dur}")
    onsets = []
    for ev in t["interruptions"]:
        p, o = ev["party"], ev["onset"]
        other = AGENT if p == CUSTOMER else CUSTOMER
        if not (covers(other, o - 1.0, o + 1.2) and covers(p, o, o + 1.2)):
            bad.append(f"interruption at {o} does not hold")
        onsets.append(o)
    for ev in t["non_interruptions"]:
        p, o = ev["party"], ev["onset"]
        other = AGENT if p == CUSTOMER else CUSTOMER
        seg = [x for x in sp[p] if abs(x[0] - o) < 0.011]
        if ev["type"] == "backchannel":
            ok = bool(seg) and seg[0][1] - seg[0][0] <= 0.5 + 1e-6 and covers(other, o - 0.5,
                                                                                seg[0][1])
        else:
            ok = bool(seg) and any(-0.2 - 1e-6 <= o - e <= 0.4 + 1e-6 for _, e in sp[other])
        if not ok:
            bad.append(f"{ev['type']} at {o} does not hold")
        onsets.append(o)
    for s1, e1 in sp[AGENT]:
        for s2, e2 in sp[CUSTOMER]:
            s, e = max(s1, s2), min(e1, e2)
            if e > s and not any(abs(s - o) < 0.011 for o in onsets):
                bad.append(f"unexplained overlap {s:.2f}-{e:.2f}")
    busy = merge([x for v in sp.values() for x in v]
                 + [(h["start"], h["end"]) for h in t["holds"]], gap=0.0)
    edges = [0.0] + [x for s, e in busy for x in (s, e)] + [dur]
    gaps = [(a, b) for a, b in zip(edges[::2], edges[1::2], strict=True) if b - a >= 8.0]
    if sorted(gaps) != sorted(tuple(x) for x in t["dead_air"]):
        bad.append(f"silences >= 8 s {gaps} != dead air {t['dead_air']}")
    for r in t["raised"]:
        before = sum(min(e, r["start"]) - s for s, e in sp[r["party"]] if s < r["start"])
        if before < 20.0 or not 2.0 <= r["end"] - r["start"] <= 6.0:
            bad.append(f"raised at {r['start']}: baseline {before:.1f} s")
    return bad


def _json_default(o: object) -> object:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o).__name__)


# ============================================================================== one call
def build_call(spec: dict[str, Any], seed: int, out_dir: Path) -> dict[str, Any]:
    rng = np.random.default_rng([seed, 1000 + spec["index"]])
    tel = spec["telephone"]
    sr = mix.TEL_BUILD_RATE_HZ if tel else spec["sample_rate_hz"]
    parties = {p: Party(**spec[p]) for p in (AGENT, CUSTOMER)}
    tl = Timeline(rng, _SYNTH, sr, parties, spec["agent_name"])
    SCENARIOS[spec["scenario"]](tl, **spec["params"])
    dur = max([tl.t] + [q.end for q in tl.placed]) + float(rng.uniform(0.8, 2.0))
    audio, ac = render(tl, rng, dur, tel)
    name, fmt = spec["name"], spec["format"]
    truth: dict[str, Any] = {"name": name, "scenario": spec["scenario"]}
    if spec["mono_pair"]:
        files = {AGENT: f"{name}.agent.wav", CUSTOMER: f"{name}.customer.wav"}
        for k, p in enumerate((AGENT, CUSTOMER)):
            mix.write_wav(out_dir / files[p], audio[:, k], spec["sample_rate_hz"], fmt)
    else:
        files = {"stereo": f"{name}.wav"}
        mix.write_wav(out_dir / files["stereo"], audio, spec["sample_rate_hz"], fmt)
    marks = None
    marked = [h for h in tl.holds if h["via"] == "marks"]
    if marked:
        marks = f"{name}.marks.jsonl"
        lines = [json.dumps({"t": _r(h[k]), "event": f"hold_{k}"}) for h in marked
                 for k in ("start", "end")]
        (out_dir / marks).write_text("\n".join(lines) + "\n")
    truth.update({"files": files, "sample_rate_hz": spec["sample_rate_hz"], "telephone": tel,
                  "format": fmt, "marks": marks, "lang": spec["lang"],
                  "voices": {p: spec[p]["voice"] for p in (AGENT, CUSTOMER)}})
    truth.update(make_truth(tl, dur, ac))
    problems = validate(truth)
    if problems:
        raise AssertionError(f"{name}: " + "; ".join(problems))
    (out_dir / f"{name}.truth.json").write_text(json.dumps(truth, indent=1, ensure_ascii=False,
                                                           default=_json_default))
    return truth


# ============================================================================== CLI
def table(truths: list[dict[str, Any]]) -> str:
    rows = [f"{'name':34} {'sr':>5} {'tel':>3} {'fmt':7} {'dur':>6} {'int':>3} {'non':>3} "
            f"{'holds':14} {'dead':>4} {'wpm':>4} {'rsd':>3}"]
    for t in truths:
        holds = ",".join(f"{h['type'][:3]}{round(h['end'] - h['start'])}" for h in t["holds"])
        rows.append(f"{t['name']:34} {t['sample_rate_hz']:>5} {'y' if t['telephone'] else '':>3} "
                    f"{t['format'] + ('/2' if 'agent' in t['files'] else ''):7} "
                    f"{t['duration_s']:6.1f} {len(t['interruptions']):3d} "
                    f"{len(t['non_interruptions']):3d} {holds:14} {len(t['dead_air']):4d} "
                    f"{t['true_wpm'] or '':>4} {len(t['raised']):3d}")
    mins = sum(t["duration_s"] for t in truths) / 60
    n_int = sum(len(t["interruptions"]) for t in truths)
    n_non = sum(len(t["non_interruptions"]) for t in truths)
    rows.append(f"{len(truths)} calls, {mins:.1f} min, {n_int} interruptions, "
                f"{n_non} non-interruptions")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    from . import build_corpus

    ap = argparse.ArgumentParser(prog="python -m tests.corpus.build")
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--scale", choices=("full", "small"), default="full")
    ap.add_argument("--jobs", type=int, default=None)
    a = ap.parse_args(argv)
    t0 = time.monotonic()
    truths = build_corpus(a.out_dir, seed=a.seed, scale=a.scale, jobs=a.jobs)
    print(table(truths))
    print(f"{a.out_dir}: ready in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
