"""Detection quality on real recorded voices (tests/corpus/real.py): every call in a
wideband and a telephone-band copy, the figures asserted for the whole corpus and per band.

The voices come from Debian packages that ``scripts/setup.sh`` installs (Asterisk prompts,
pocketsphinx and alsa-utils test speech); the corpus is built once per machine into
pytest's cache (about 20 s) and the 62 calls analysed in about 90 s on two cores.
"""

from __future__ import annotations

import pytest

from tests.quality import analyse_corpus, by_band, real_voices_marks, report

BANDS = ("all", "wideband", "telephone")


pytestmark = real_voices_marks()


@pytest.fixture(scope="module")
def scored(request):
    from tests.corpus.real import build_real_corpus

    out = request.config.cache.mkdir("corpus_real")
    truths = build_real_corpus(out, seed=7, scale="full")
    results = analyse_corpus(truths)
    bands = by_band(truths, results)
    for band in BANDS:
        print(f"\n-- {band}\n" + report(bands[band]))
    return truths, bands


def test_corpus_covers_both_bands_sexes_and_every_event(scored):
    truths, bands = scored
    assert {t["band"] for t in truths} == {"wideband", "telephone"}
    assert {t["pair"] for t in truths if t["band"] == "wideband"} == \
        {t["pair"] for t in truths if t["band"] == "telephone"}
    assert {s for t in truths for s in t["sexes"].values()} == {"f", "m"}
    assert {t["lang"] for t in truths} >= {"en", "fr"}
    sc = bands["all"]
    assert sc.interruption_tp + sc.interruption_fn >= 60
    assert sum(ev["type"] == "backchannel" for t in truths for ev in t["non_interruptions"]) >= 30
    assert sc.raised_total >= 16 and sc.holds_total >= 14 and sc.dead_air_total >= 4
    assert any(r["end"] - r["start"] < 1.6 for t in truths for r in t["raised"])
    assert any(r["pitch_delta_st"] < 1.0 for t in truths for r in t["raised"])


@pytest.mark.parametrize("band", BANDS)
def test_interruptions(scored, band):
    sc = scored[1][band]
    assert sc.interruption_f1 >= 0.94, sc.misses
    assert sc.backchannels_flagged == 0, sc.misses


@pytest.mark.parametrize("band", BANDS)
def test_interruption_latency(scored, band):
    lat = sorted(scored[1][band].interruption_latency_s)
    assert lat[int(0.9 * (len(lat) - 1))] <= 0.3, lat


@pytest.mark.parametrize("band", BANDS)
def test_raised_voice(scored, band):
    sc = scored[1][band]
    assert sc.raised_recall >= 0.85, sc.misses
    assert sc.raised_precision >= 0.85, sc.misses


@pytest.mark.parametrize("band", BANDS)
def test_talk_time(scored, band):
    sc = scored[1][band]
    assert sc.talk_error_mean <= 0.07, sc.misses
    # per call and party: nine in ten within 15 %; the worst is a GSM-coded voice that
    # Silero scores 0.0-0.4 under loud room noise (README, known limits)
    errs = sorted(abs(e) for e in sc.talk_errors)
    assert errs[int(0.9 * (len(errs) - 1))] <= 0.15, sc.misses
    assert errs[-1] <= 0.5, sc.misses


@pytest.mark.parametrize("band", BANDS)
def test_holds_leaks_open_mic_and_dead_air(scored, band):
    sc = scored[1][band]
    assert sc.holds_found == sc.holds_total and sc.false_holds == [], sc.misses
    assert sc.leaks_found == sc.leaks_total and sc.false_leak_alarms == [], sc.misses
    assert sc.unmuted_found == sc.unmuted_total and sc.false_unmuted == []
    assert sc.dead_air_found == sc.dead_air_total and sc.dead_air_false == 0, sc.misses


@pytest.mark.parametrize("band", BANDS)
def test_speaking_rate_follows_tempo_within_a_voice(scored, band):
    assert scored[1][band].rate_spearman_within_voice >= 0.45
