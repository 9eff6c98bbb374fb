"""NucleiDetector: synthetic syllables, rejection rules, streaming, espeak rate tracking."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from appliance.engine.features.extractor import FeatureExtractor
from appliance.engine.features.nuclei import NucleiDetector
from tests.featutil import (
    HAVE_SOX,
    SR,
    chunked,
    colored_noise,
    espeak,
    extract,
    needs_espeak,
    scale_to,
    telephone,
    to_i16,
    trim,
)

log = logging.getLogger(__name__)


def syllables(
    n: int, f0: float = 120.0, syl_s: float = 0.16, gap_s: float = 0.08, voiced: bool = True,
    dip_db: float = 20.0, seed: int = 0,
) -> tuple[np.ndarray, list[float]]:
    """``n`` vowel-like bursts (raised-cosine envelopes over a floor ``dip_db`` down),
    unit peak; returns the float signal and the burst centres (s)."""
    rng = np.random.default_rng(seed)
    period = syl_s + gap_s
    lead = 0.3
    total = int((lead * 2 + n * period) * SR)
    t = np.arange(total) / SR
    if voiced:
        carrier = sum(np.sin(2 * np.pi * f0 * h * t + h * h) / h for h in range(1, 25))
    else:
        carrier = rng.standard_normal(total)
    carrier = carrier / np.sqrt(np.mean(carrier**2))
    env = np.zeros(total)
    centres = []
    for i in range(n):
        c = lead + i * period + syl_s / 2
        centres.append(c)
        m = np.abs(t - c) < syl_s / 2
        env[m] = np.maximum(env[m], 0.5 + 0.5 * np.cos(2 * np.pi * (t[m] - c) / syl_s))
    floor = 10 ** (-dip_db / 20)
    inside = (t > lead - 0.05) & (t < lead + n * period)
    env = np.where(inside, np.maximum(env, floor), 0.0)
    return carrier * env, centres


def detect(x: np.ndarray, **kw: Any) -> list[float]:
    return NucleiDetector(**kw).process(extract(to_i16(x)))


def test_counts_and_places_synthetic_syllables() -> None:
    sig, centres = syllables(10)
    x = scale_to(sig, -20) + colored_noise(sig.shape[0], 1.0, -60.0)
    found = detect(x)
    assert len(found) == 10
    assert np.max(np.abs(np.array(found) - centres)) < 0.03


def test_small_dips_do_not_split_and_prominence_is_a_parameter() -> None:
    sig, _ = syllables(8, dip_db=1.0)  # envelope never dips 2 dB: one long vowel
    x = scale_to(sig, -20) + colored_noise(sig.shape[0], 1.0, -60.0)
    assert len(detect(x)) <= 1
    sig, _ = syllables(8, dip_db=4.0)
    x = scale_to(sig, -20) + colored_noise(sig.shape[0], 1.0, -60.0)
    assert len(detect(x)) == 8
    assert len(detect(x, prominence_db=6.0)) <= 1


def test_unvoiced_bursts_are_not_nuclei() -> None:
    sig, _ = syllables(10, voiced=False)
    x = scale_to(sig, -20) + colored_noise(sig.shape[0], 1.0, -60.0)
    assert detect(x) == []


def test_bursts_near_the_noise_floor_are_not_nuclei() -> None:
    sig, _ = syllables(10)
    noise = colored_noise(sig.shape[0] + 3 * SR, 0.0, -40.0, seed=2)
    x = noise.copy()
    x[3 * SR :] += scale_to(sig, -38.0)  # peaks only a few dB above the noise floor
    assert detect(x) == []


def test_quiet_bursts_after_loud_speech_are_dropped() -> None:
    loud, _ = syllables(6, seed=1)
    quiet, _ = syllables(6, seed=2)
    x = np.concatenate([scale_to(loud, -15.0), scale_to(quiet, -15.0 - 32.0)])
    x = x + colored_noise(x.shape[0], 1.0, -85.0)
    assert len(detect(x, max_decay_db_per_s=0.0)) == 6  # all quiet ones dropped
    # the reference decays 6 dB/s: quiet bursts count again ~(32-25)/6 s after the loud
    assert 6 < len(detect(x)) < 12
    assert len(detect(x, max_drop_db=40.0)) == 12


def test_streaming_latency_and_chunk_invariance() -> None:
    sig, _ = syllables(12, syl_s=0.12, gap_s=0.07)
    x = to_i16(scale_to(sig, -25) + colored_noise(sig.shape[0], 1.0, -60.0))
    frames = extract(x)
    reference = NucleiDetector().process(frames)
    assert len(reference) == 12
    for sizes in ([1], [3], [7, 1, 30], [1000]):
        det = NucleiDetector()
        got: list[float] = []
        for part in chunked(frames, sizes):
            new = det.process(part)
            if sizes == [1]:
                for t in new:  # reported within 0.25 s of the nucleus
                    assert part.t_s[-1] - t < 0.25
            got += new
        assert got == reference
    # and on the audio side: chunks of 10 / 20 / 32 ms give the same nuclei
    for chunk in (160, 320, 512):
        ex, det = FeatureExtractor(), NucleiDetector()
        got = []
        for i in range(0, x.shape[0], chunk):
            got += det.process(ex.process(x[i : i + chunk]))
        assert got == reference


# ------------------------------------------------------------------ espeak rate tracking
RATE_TEXT = {
    "en": "The quick brown fox jumps over the lazy dog. "
    "Please hold the line while I check your account details.",
    "de": "Guten Tag, ich schaue mir Ihre Rechnung an. "
    "Bitte bleiben Sie einen Moment in der Leitung.",
}
RATE_VOICES = [("en", "en"), ("en+f3", "en"), ("de", "de")]
RATES = list(range(100, 261, 16))  # 11 rates


def syllable_rate(x: np.ndarray, speech_s: float) -> float:
    return len(NucleiDetector().process(extract(x))) / speech_s


def degrade(x: np.ndarray, seed: int) -> np.ndarray:
    """Telephone band + mu-law, +7 dB then -7 dB halves, room noise at -55 dBFS."""
    y = telephone(x).astype(np.float64)
    half = y.shape[0] // 2
    y[:half] *= 10 ** (7 / 20)
    y[half:] *= 10 ** (-7 / 20)
    return to_i16(y + colored_noise(y.shape[0], 1.0, -55.0, seed=seed))


@needs_espeak
@pytest.mark.parametrize("condition", ["clean", "telephone_noise_levels"])
def test_syllable_rate_follows_espeak_rate(condition: str) -> None:
    """Speech time = espeak's output without its leading/trailing silence."""
    from scipy.stats import spearmanr

    if condition != "clean" and not HAVE_SOX:
        pytest.skip("no sox")
    rates, values = [], []
    per_voice: dict[str, list[float]] = {}
    for voice, lang in RATE_VOICES:
        for wpm in RATES:
            x = trim(espeak(RATE_TEXT[lang], voice, wpm))
            speech_s = x.shape[0] / SR
            if condition != "clean":
                x = degrade(x, seed=wpm)
            r = syllable_rate(x, speech_s)
            rates.append(wpm)
            values.append(r)
            per_voice.setdefault(voice, []).append(r)
    rho = float(spearmanr(rates, values)[0])
    log.info("%s: Spearman %.3f; syll/s %s", condition, rho,
             {v: [round(r, 2) for r in rs] for v, rs in per_voice.items()})
    assert rho >= 0.8
    for voice, rs in per_voice.items():
        assert float(spearmanr(RATES, rs)[0]) >= 0.8, voice
    at_175 = np.interp(175, RATES, per_voice["en"])
    assert 3.5 <= at_175 <= 5.5
