"""Run the engine over the synthetic corpus and score it against the ground truth.

Used by ``tests/test_quality.py`` (assertions) and ``benchmarks/quality_report.py`` (figures).
Each call goes through the same streaming path as the CLI (FileSource → queue → engine).
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.audio.filesource import FileSource
from appliance.audio.marks_file import load_marks
from appliance.config import Config
from appliance.engine.vad import SileroModel
from appliance.events import Cue, Event, Summary
from appliance.stream.pipeline import analyse_blocks
from appliance.stream.session import CallSession

_MODEL: SileroModel | None = None


def real_voices_missing() -> list[str]:
    """What the real-voices corpus needs and this machine lacks (empty: all there)."""
    try:
        import G722  # noqa: F401
    except ImportError:
        return ["the G722 package (test extra)"]
    from tests.corpus.voices import missing

    return missing()


def real_voices_marks() -> list[Any]:
    """The skip marks of a module that builds the real-voices corpus."""
    import shutil

    import pytest

    missing = real_voices_missing()
    return [pytest.mark.skipif(shutil.which("sox") is None, reason="sox is needed for the "
                               "corpus"),
            pytest.mark.skipif(bool(missing), reason=f"real voices not installed: {missing} "
                               "(scripts/setup.sh installs them)")]


def analyse_call(truth: dict[str, Any], cfg: Config | None = None) -> dict[str, Any]:
    """Analyse one corpus call; returns {"name", "cues": [json], "summary": {...}}.

    Relative file names in the truth are resolved against ``truth["dir"]``.
    """
    global _MODEL
    if _MODEL is None:
        _MODEL = SileroModel()
    base = Path(truth.get("dir", "."))
    files = {k: base / v for k, v in truth["files"].items()}
    if "stereo" in files:
        source = FileSource(files["stereo"])
    else:
        source = FileSource(agent_path=files["agent"], customer_path=files["customer"])
    marks = load_marks(base / truth["marks"]) if truth.get("marks") else []
    out: list[dict[str, Any]] = []

    def emit(ev: Event) -> None:
        if isinstance(ev, Cue | Summary):
            out.append(ev.to_json())

    cfg = cfg or Config()
    session = CallSession(cfg, _MODEL, emit, call_id=truth["name"], lang=cfg.language,
                          marks=marks, source="file")
    summary, err = asyncio.run(analyse_blocks(source.blocks(), session))
    assert err is None, err
    return {"name": truth["name"], "cues": out, "summary": summary.data}


def analyse_corpus(
    truths: list[dict[str, Any]], workers: int | None = None
) -> list[dict[str, Any]]:
    workers = workers or min(2, os.cpu_count() or 1)
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(analyse_call, truths))


@dataclass
class Scores:
    interruption_tp: int = 0
    interruption_fp: int = 0
    interruption_fn: int = 0
    interruption_latency_s: list[float] = field(default_factory=list)
    holds_total: int = 0
    holds_found: int = 0
    false_holds: list[str] = field(default_factory=list)
    leaks_total: int = 0
    leaks_found: int = 0
    leak_latency_s: list[float] = field(default_factory=list)
    false_leak_alarms: list[str] = field(default_factory=list)
    unmuted_total: int = 0
    unmuted_found: int = 0
    false_unmuted: list[str] = field(default_factory=list)
    raised_total: int = 0
    raised_found: int = 0
    raised_false_alarms: int = 0
    rate_pairs: list[tuple[float, float]] = field(default_factory=list)
    rate_by_voice: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    dead_air_total: int = 0
    dead_air_found: int = 0
    dead_air_false: int = 0
    backchannels_flagged: int = 0
    talk_errors: list[float] = field(default_factory=list)
    """Relative talk-time errors, (measured - truth) / truth, per party and call."""
    misses: list[str] = field(default_factory=list)

    @property
    def interruption_f1(self) -> float:
        tp, fp, fn = self.interruption_tp, self.interruption_fp, self.interruption_fn
        return 2 * tp / (2 * tp + fp + fn) if tp else 0.0

    @property
    def raised_recall(self) -> float:
        return self.raised_found / self.raised_total if self.raised_total else 1.0

    @property
    def raised_precision(self) -> float:
        n = self.raised_found + self.raised_false_alarms
        return self.raised_found / n if n else 1.0

    @property
    def talk_error_mean(self) -> float:
        return sum(abs(e) for e in self.talk_errors) / len(self.talk_errors) \
            if self.talk_errors else 0.0

    @property
    def talk_error_max(self) -> float:
        return max((abs(e) for e in self.talk_errors), default=0.0)

    @property
    def rate_spearman(self) -> float:
        return _spearman(self.rate_pairs)

    @property
    def rate_spearman_within_voice(self) -> float:
        """Mean Spearman correlation within each agent voice: real voices differ in their
        natural rate, so only the tempo changes of one voice have a known order."""
        import numpy as np

        rs = [_spearman(v) for v in self.rate_by_voice.values() if len(v) >= 3]
        return float(np.mean(rs)) if rs else float("nan")


def _spearman(pairs: list[tuple[float, float]]) -> float:
    import numpy as np

    if len(pairs) < 3:
        return float("nan")
    a, b = np.asarray(pairs).T
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _in_any(t: float, intervals: list[list[float]], pad: float = 0.0) -> bool:
    return any(s - pad <= t <= e + pad for s, e in intervals)


def score(truths: list[dict[str, Any]], results: list[dict[str, Any]]) -> Scores:
    sc = Scores()
    by_name = {r["name"]: r for r in results}
    for truth in truths:
        res = by_name[truth["name"]]
        cues = res["cues"]
        name = truth["name"]
        hold_iv = [[h["start"], h["end"]] for h in truth["holds"]]
        # -- interruptions: match on party and onset (±0.5 s)
        det = [c for c in cues if c["kind"] == "interruption"]
        used: set[int] = set()
        for ev in truth["interruptions"]:
            hit = next((i for i, c in enumerate(det) if i not in used
                        and c["party"] == ev["party"]
                        and abs(c["data"]["start"] - ev["onset"]) <= 0.5), None)
            if hit is None:
                sc.interruption_fn += 1
                sc.misses.append(f"{name}: missed interruption {ev}")
            else:
                used.add(hit)
                sc.interruption_tp += 1
                sc.interruption_latency_s.append(det[hit]["t"] - ev["t_def"])
        for i, c in enumerate(det):
            if i not in used:
                sc.interruption_fp += 1
                sc.misses.append(f"{name}: false interruption {c['party']} at {c['data']['start']}")
                if any(ev["type"] == "backchannel" and ev["party"] == c["party"]
                       and abs(c["data"]["start"] - ev["onset"]) <= 0.5
                       for ev in truth["non_interruptions"]):
                    sc.backchannels_flagged += 1
        # -- talk time per party outside holds, against the truth's speech
        true_talk = truth.get("talk_s") or talk_truth(truth)
        for p, true_s in true_talk.items():
            if true_s >= 5.0:
                err = (res["summary"]["talk_s"][p] - true_s) / true_s
                sc.talk_errors.append(err)
                if abs(err) > 0.08:
                    sc.misses.append(f"{name}: talk time {p} {err:+.0%}")
        # -- holds
        holds = res["summary"]["holds"]
        for th in truth["holds"]:
            sc.holds_total += 1
            dur = th["end"] - th["start"]
            match = [h for h in holds if min(h["end"], th["end"]) - max(h["start"], th["start"])
                     >= 0.5 * dur]
            if match:
                sc.holds_found += 1
            else:
                sc.misses.append(f"{name}: missed hold {th['type']} {th['start']}-{th['end']}")
            leaks = [c for c in cues if c["kind"] == "hold_leak"
                     and th["start"] - 1 <= c["data"]["start"] <= th["end"] + 1]
            for s, e in th["leaks"]:
                if e - s < 1.0:
                    continue
                sc.leaks_total += 1
                got = [c for c in leaks if s - 0.5 <= c["data"]["start"] <= e]
                if got:
                    sc.leaks_found += 1
                    sc.leak_latency_s.append(got[0]["t"] - (s + 0.5))
                else:
                    sc.misses.append(f"{name}: missed leak {s}-{e}")
            if th["type"] in ("music", "muted") or not th["leaks"]:
                for c in leaks:
                    sc.false_leak_alarms.append(f"{name}: {th['type']} hold, leak at {c['t']}")
            un = [c for c in cues if c["kind"] == "hold_unmuted"
                  and th["start"] - 1 <= c["t"] <= th["end"] + 1]
            if th["type"] == "unmuted":
                sc.unmuted_total += 1
                sc.unmuted_found += bool(un)
                if not un:
                    sc.misses.append(f"{name}: open mic hold not flagged")
            elif un:
                sc.false_unmuted.append(f"{name}: {th['type']} hold flagged unmuted")
        for h in holds:
            if not any(min(h["end"], th["end"]) - max(h["start"], th["start"]) > 0
                       for th in truth["holds"]):
                sc.false_holds.append(f"{name}: false hold {h['start']}-{h['end']}")
        # -- raised voice / agitation
        tone = [c for c in cues if c["kind"] == "tone" and c["data"].get("state") in
                ("raised", "agitated")]
        matched: set[int] = set()
        for ep in truth["raised"]:
            sc.raised_total += 1
            hit = next((i for i, c in enumerate(tone) if c["party"] == ep["party"]
                        and ep["start"] - 0.5 <= c["t"] <= ep["end"] + 1.5), None)
            if hit is None:
                sc.misses.append(f"{name}: missed raised {ep}")
            else:
                matched.add(hit)
                sc.raised_found += 1
        for i, c in enumerate(tone):
            if i not in matched:
                sc.raised_false_alarms += 1
                sc.misses.append(f"{name}: false {c['data']['state']} {c['party']} at {c['t']:.1f}"
                                 f" ({c['data']['level_db']} dB, {c['data'].get('pitch_st')} st)")
        # -- rate
        if truth.get("true_wpm"):
            r = res["summary"]["rate"]["agent"]["syllables_per_s"]
            if r is not None:
                sc.rate_pairs.append((float(truth["true_wpm"]), float(r)))
                voice = truth.get("voices", {}).get("agent", "")
                sc.rate_by_voice.setdefault(voice, []).append((float(truth["true_wpm"]), float(r)))
        # -- dead air
        dead = [c for c in cues if c["kind"] == "dead_air"]
        for s, e in truth["dead_air"]:
            sc.dead_air_total += 1
            if any(s <= c["data"]["start"] + 0.5 and c["t"] <= e + 0.5 for c in dead):
                sc.dead_air_found += 1
            else:
                sc.misses.append(f"{name}: missed dead air {s}-{e}")
        for c in dead:
            if not _in_any(c["t"], truth["dead_air"], 0.5) and not _in_any(c["t"], hold_iv):
                sc.dead_air_false += 1
                sc.misses.append(f"{name}: false dead air at {c['t']}")
    return sc


def by_band(truths: list[dict[str, Any]], results: list[dict[str, Any]]
            ) -> dict[str, Scores]:
    """Scores of the whole corpus ("all") and of its wideband and telephone-band calls."""
    by_name = {r["name"]: r for r in results}
    out = {"all": score(truths, results)}
    for band in ("wideband", "telephone"):
        sub = [t for t in truths if bool(t["telephone"]) == (band == "telephone")]
        out[band] = score(sub, [by_name[t["name"]] for t in sub])
    return out


def talk_truth(truth: dict[str, Any]) -> dict[str, float]:
    """Speech seconds per party outside holds, from the truth's speech intervals."""
    holds = [(h["start"], h["end"]) for h in truth["holds"]]
    return {p: sum(e - s - sum(max(0.0, min(e, he) - max(s, hs)) for hs, he in holds)
                   for s, e in segs) for p, segs in truth["speech"].items()}


def report(sc: Scores) -> str:
    import numpy as np

    def p95(xs: list[float]) -> str:
        return f"{np.percentile(xs, 95):.2f}" if xs else "-"

    lat = sc.interruption_latency_s
    return "\n".join([
        f"interruptions: F1 {sc.interruption_f1:.3f} (tp {sc.interruption_tp}, "
        f"fp {sc.interruption_fp}, fn {sc.interruption_fn}); latency after the defining "
        f"moment p50 {np.median(lat) if lat else 0:.2f} s,"
        f" p95 {p95(sc.interruption_latency_s)} s, max "
        f"{max(sc.interruption_latency_s, default=0):.2f} s",
        f"holds found: {sc.holds_found}/{sc.holds_total}, false holds {len(sc.false_holds)};"
        f" open mic flagged "
        f"{sc.unmuted_found}/{sc.unmuted_total}; false open-mic {len(sc.false_unmuted)}",
        f"leaks >= 1 s found: {sc.leaks_found}/{sc.leaks_total}; false leak alarms "
        f"{len(sc.false_leak_alarms)}; latency after 0.5 s of leak p95 {p95(sc.leak_latency_s)} s",
        f"raised/agitated recall: {sc.raised_recall:.2f} ({sc.raised_found}/{sc.raised_total});"
        f" other raised cues {sc.raised_false_alarms}, precision {sc.raised_precision:.2f}",
        f"talk time: mean |error| {sc.talk_error_mean:.1%}, max {sc.talk_error_max:.1%}"
        f" ({len(sc.talk_errors)} party-calls); backchannels flagged {sc.backchannels_flagged}",
        f"speaking rate: Spearman {sc.rate_spearman:.3f} over {len(sc.rate_pairs)} calls,"
        f" within one voice {sc.rate_spearman_within_voice:.3f}",
        f"dead air: found {sc.dead_air_found}/{sc.dead_air_total}, false {sc.dead_air_false}",
    ])


def acoustic_fillers_per_min(results: list[dict[str, Any]]) -> float:
    """Acoustic filled pauses per minute of speech over the corpus, which has none: the
    detector's false-alarm rate on real-ish speech."""
    n = sum(r["summary"]["fillers"]["by_source"].get("acoustic", 0) for r in results)
    speech_s = sum(r["summary"]["rate"][p]["speech_s"] for r in results
                   for p in ("agent", "customer"))
    return 60.0 * n / speech_s if speech_s else 0.0
