"""The fuzz suite: every parser of untrusted input, seeded (the same cases on every run) and
bounded, under a memory budget.  The property and the targets are in ``tests/fuzzing.py``;
``python -m benchmarks.fuzz --minutes N`` runs them for longer."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings

from tests.fuzzing import BY_NAME, TARGETS, Target, check

pytestmark = pytest.mark.fuzz


def _suite(target: Target) -> Any:
    @settings(max_examples=target.examples, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much])
    @given(target.strategy)
    def run(case: Any) -> None:
        check(target, case)

    for case in target.known:
        run = example(case)(run)
    return run


@pytest.mark.parametrize("name", [t.name for t in TARGETS])
def test_bad_input_is_a_result_or_a_clean_refusal(name: str) -> None:
    _suite(BY_NAME[name])()
