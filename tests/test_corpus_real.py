"""Sanity tests of the real-speech corpus generator (tests/corpus/real.py), small scale."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.corpus import read_call
from tests.corpus.real import _validate, build_real_corpus
from tests.quality import real_voices_marks

pytestmark = real_voices_marks()


@pytest.fixture(scope="module")
def small(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return build_real_corpus(Path(request.config.cache.mkdir("corpus_real_small")),
                             seed=7, scale="small")


def test_every_call_comes_in_a_wideband_and_a_telephone_copy(small):
    pairs: dict[str, dict[str, dict[str, Any]]] = {}
    for t in small:
        pairs.setdefault(t["pair"], {})[t["band"]] = t
        assert _validate(t) == [], t["name"]
    assert len(pairs) == 3
    for copies in pairs.values():
        wb, tel = copies["wideband"], copies["telephone"]
        assert wb["speech"] == tel["speech"] and wb["interruptions"] == tel["interruptions"]
        assert wb["sample_rate_hz"] in (16000, 48000) and tel["sample_rate_hz"] == 8000
        assert tel["format"] == "mulaw"


def test_telephone_copy_is_band_limited_and_wideband_is_not(small):
    for t in small:
        sr, a, c = read_call(t)
        for x in (a, c):
            spec = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
            f = np.fft.rfftfreq(len(x), 1 / sr)
            ratio = 10 * np.log10(spec[f > 3700].sum() / spec[(f > 300) & (f < 3400)].sum())
            if t["band"] == "telephone":
                assert ratio < -25, t["name"]
        if t["band"] == "wideband" and t["voices"]["agent"] != "fr-armelle":
            spec = np.abs(np.fft.rfft(a.astype(np.float64))) ** 2
            f = np.fft.rfftfreq(len(a), 1 / sr)
            assert 10 * np.log10(spec[f > 4000].sum() / spec[f > 0].sum()) > -40


def test_real_speech_has_pauses_inside_turns_and_raised_episodes_have_truth(small):
    truths = {t["name"]: t for t in small}
    gaps = [b[0] - a[1] for t in small for segs in t["speech"].values()
            for a, b in itertools.pairwise(segs)]
    assert any(0.3 <= g <= 0.45 for g in gaps)  # real within-turn pauses beyond 0.3 s
    raised = [r for t in truths.values() for r in t["raised"]]
    assert raised and all({"level_delta_db", "pitch_delta_st", "baseline_s"} <= set(r)
                          for r in raised)
    for t in small:
        assert t["talk_s"]["agent"] > 5 and t["talk_s"]["customer"] > 5
