"""A longer fuzz run than CI's: every target of ``tests/fuzzing.py`` for a time budget.

    python -m benchmarks.fuzz --minutes 10            # all targets, the time shared equally
    python -m benchmarks.fuzz --minutes 2 --only wav,http --seed 7

Each target runs rounds of Hypothesis-generated cases (a new seed per round, so a long run
keeps finding new inputs) under the same property and memory budget as the tests.  Prints,
per target, the cases tried, the failures (the first falsifying input of each, shrunk), the
rate, and the process's peak memory; exit status 1 when anything failed.
"""

from __future__ import annotations

import argparse
import logging
import random
import resource
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings

from tests.fuzzing import BY_NAME, TARGETS, Target, check

_ROUND_EXAMPLES = 200


@dataclass(slots=True)
class Tally:
    cases: int = 0
    rounds: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)


def _round(target: Target, round_seed: int, tally: Tally) -> None:
    @seed(round_seed)
    @settings(max_examples=_ROUND_EXAMPLES, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck))
    @given(target.strategy)
    def run(case: Any) -> None:
        tally.cases += 1
        check(target, case)

    try:
        run()
    except Exception as exc:  # a falsifying input, already shrunk by Hypothesis
        text = "".join(traceback.format_exception(exc)).strip()
        tally.failures.append(f"seed {round_seed}: {type(exc).__name__}\n{text[-3000:]}")


def fuzz(targets: list[Target], seconds: float, first_seed: int) -> dict[str, Tally]:
    tallies = {t.name: Tally() for t in targets}
    rng = random.Random(first_seed)
    share = seconds / len(targets)
    for t in targets:
        tally = tallies[t.name]
        start = time.monotonic()
        while time.monotonic() - start < share:
            _round(t, rng.getrandbits(32), tally)
            tally.rounds += 1
            print(f"\r{t.name:<8} {tally.cases:>8} cases, {len(tally.failures)} failures",
                  end="", file=sys.stderr, flush=True)
        tally.seconds = time.monotonic() - start
        print(file=sys.stderr)
    return tallies


def main(argv: list[str] | None = None) -> int:
    logging.disable(logging.WARNING)  # the parsers' warnings about damaged inputs: expected
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=2.0, help="total time budget (2)")
    ap.add_argument("--only", help="comma-separated targets: " + ", ".join(BY_NAME))
    ap.add_argument("--seed", type=int, default=0, help="first seed (0)")
    args = ap.parse_args(argv)
    names = args.only.split(",") if args.only else list(BY_NAME)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        ap.error(f"unknown target {unknown[0]!r}; known: {', '.join(BY_NAME)}")
    targets = [BY_NAME[n] for n in names] if args.only else list(TARGETS)
    tallies = fuzz(targets, args.minutes * 60.0, args.seed)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'target':<8} {'cases':>9} {'failures':>9} {'cases/s':>9}")
    for name, t in tallies.items():
        print(f"{name:<8} {t.cases:>9} {len(t.failures):>9} {t.cases / max(t.seconds, 1e-9):>9.0f}")
    total = sum(t.cases for t in tallies.values())
    failed = sum(len(t.failures) for t in tallies.values())
    print(f"{'all':<8} {total:>9} {failed:>9}   in {args.minutes:g} min, seed {args.seed}, "
          f"peak RSS {peak_mib:.0f} MiB")
    for name, t in tallies.items():
        for f in t.failures:
            print(f"FAIL {name}: {f}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
