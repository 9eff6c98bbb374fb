"""Detection quality on the corpora: prints the figures kept in the README.

    python -m benchmarks.quality_report [--espeak DIR] [--real DIR] [-v]

Both corpora are built if missing (espeak-ng; the real voices need the packages that
``scripts/setup.sh`` installs).  Each corpus is scored whole and split by band (wideband vs
telephone: 300-3400 Hz, 8 kHz µ-law).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from tests.quality import acoustic_fillers_per_min, analyse_corpus, report, score


def _band(t: dict[str, Any]) -> str:
    return "telephone" if t["telephone"] else "wideband"


def show(title: str, truths: list[dict[str, Any]], verbose: bool) -> None:
    t0 = time.perf_counter()
    results = analyse_corpus(truths)
    took = time.perf_counter() - t0
    audio_min = sum(t["duration_s"] for t in truths) / 60
    print(f"== {title}: {len(truths)} calls, {audio_min:.1f} min of audio, analysed in "
          f"{took:.1f} s")
    sc = score(truths, results)
    print(report(sc))
    print(f"acoustic filled pauses on filler-free speech: "
          f"{acoustic_fillers_per_min(results):.2f} per minute of speech")
    by_name = {r["name"]: r for r in results}
    for band in ("wideband", "telephone"):
        sub = [t for t in truths if _band(t) == band]
        if sub:
            print(f"-- {band} ({len(sub)} calls)")
            print(report(score(sub, [by_name[t["name"]] for t in sub])))
    if verbose:
        print("\n".join(sc.misses + sc.false_leak_alarms + sc.false_unmuted + sc.false_holds))


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.quality_report")
    ap.add_argument("--espeak", type=Path, default=Path("/tmp/appliance-corpus"))
    ap.add_argument("--real", type=Path, default=Path("/tmp/appliance-corpus-real"))
    ap.add_argument("--only", choices=("espeak", "real"))
    ap.add_argument("-v", action="store_true", help="list every miss and false alarm")
    a = ap.parse_args()
    if a.only != "real":
        from tests.corpus import build_corpus

        show("espeak-ng corpus", build_corpus(a.espeak), a.v)
    if a.only != "espeak":
        from tests.corpus.real import build_real_corpus

        show("real-speech corpus", build_real_corpus(a.real), a.v)


if __name__ == "__main__":
    main()
