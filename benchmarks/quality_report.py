"""Detection quality on the synthetic corpus: prints the figures kept in the README.

    python -m benchmarks.quality_report [CORPUS_DIR]   (built if missing)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tests.quality import acoustic_fillers_per_min, analyse_corpus, report, score


def load(corpus_dir: Path) -> list[dict]:
    truths = []
    for p in sorted(corpus_dir.glob("*.truth.json")):
        t = json.loads(p.read_text())
        t["dir"] = str(corpus_dir)
        truths.append(t)
    return truths


def main() -> None:
    corpus_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/appliance-corpus")
    truths = load(corpus_dir)
    if not truths:
        from tests.corpus import build_corpus

        build_corpus(corpus_dir)
        truths = load(corpus_dir)
    t0 = time.perf_counter()
    results = analyse_corpus(truths)
    took = time.perf_counter() - t0
    sc = score(truths, results)
    audio_min = sum(t["duration_s"] for t in truths) / 60
    print(f"corpus: {len(truths)} calls, {audio_min:.1f} min of audio, analysed in {took:.1f} s")
    print(report(sc))
    print(f"acoustic filled pauses on filler-free speech: "
          f"{acoustic_fillers_per_min(results):.2f} per minute of speech")
    if "-v" in sys.argv:
        print("\n".join(sc.misses + sc.false_leak_alarms + sc.false_unmuted + sc.false_holds))


if __name__ == "__main__":
    main()
