"""Detection quality on the synthetic corpus (espeak-ng speech, echo, noise, typing,
telephone band, holds, raised voices): the issue's acceptance figures as assertions.

The corpus is built once per machine into pytest's cache (about 30 s) and reused.
"""

from __future__ import annotations

import shutil

import pytest

from tests.quality import analyse_corpus, by_band, report

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="espeak-ng and sox are needed to build the corpus",
)


@pytest.fixture(scope="module")
def scored(request):
    from tests.corpus import build_corpus

    out = request.config.cache.mkdir("corpus_full")
    truths = build_corpus(out, seed=7, scale="full")
    results = analyse_corpus(truths)
    bands = by_band(truths, results)
    for band, sc in bands.items():
        print(f"\n-- {band}\n" + report(sc))
    request.config.stash[_BANDS] = bands
    return truths, bands["all"]


_BANDS = pytest.StashKey[dict]()


@pytest.fixture(scope="module")
def bands(request, scored):
    return request.config.stash[_BANDS]


@pytest.mark.parametrize("band", ["wideband", "telephone"])
def test_figures_hold_on_each_band(bands, band):
    """No figure of the espeak corpus got worse, on either band."""
    sc = bands[band]
    assert sc.interruption_f1 >= 0.9, sc.misses
    assert [x for x in sc.interruption_latency_s if x > 0.3] == []
    assert sc.holds_found == sc.holds_total and sc.false_holds == []
    assert sc.leaks_found == sc.leaks_total and sc.false_leak_alarms == []
    assert sc.unmuted_found == sc.unmuted_total and sc.false_unmuted == []
    assert sc.raised_recall >= 0.8 and sc.raised_precision >= 0.9, sc.misses
    assert sc.dead_air_found == sc.dead_air_total and sc.dead_air_false == 0
    assert sc.talk_error_mean <= 0.04, sc.misses


def test_corpus_is_big_enough_to_mean_something(scored):
    truths, sc = scored
    assert sc.interruption_tp + sc.interruption_fn >= 30
    assert sum(len(t["non_interruptions"]) for t in truths) >= 40
    assert sum(t["telephone"] for t in truths) >= 0.3 * len(truths)
    assert sc.raised_total >= 10 and len(sc.rate_pairs) >= 12 and sc.holds_total >= 10


def test_interruption_f1(scored):
    _, sc = scored
    assert sc.interruption_f1 >= 0.95, sc.misses


def test_interruption_cue_latency(scored):
    _, sc = scored
    late = [x for x in sc.interruption_latency_s if x > 0.3]
    # the README goal is 0.3 s after the defining moment; allow one straggler in the corpus
    assert len(late) <= 1, late


def test_every_hold_found_and_no_false_hold(scored):
    _, sc = scored
    assert sc.holds_found == sc.holds_total, sc.misses
    assert sc.false_holds == []


def test_every_leak_found_and_no_leak_alarm_on_music_or_muted_holds(scored):
    _, sc = scored
    assert sc.leaks_total >= 3
    assert sc.leaks_found == sc.leaks_total, sc.misses
    assert sc.false_leak_alarms == []
    assert max(sc.leak_latency_s) <= 0.3


def test_open_mic_holds_flagged_and_no_others(scored):
    _, sc = scored
    assert sc.unmuted_found == sc.unmuted_total
    assert sc.false_unmuted == []


def test_raised_voice_recall(scored):
    _, sc = scored
    assert sc.raised_recall >= 0.8, sc.misses
    assert sc.raised_false_alarms <= 1


def test_acoustic_rate_follows_true_rate(scored):
    _, sc = scored
    assert sc.rate_spearman >= 0.8


def test_dead_air(scored):
    _, sc = scored
    assert sc.dead_air_found == sc.dead_air_total
    assert sc.dead_air_false == 0
