"""FeatureExtractor: levels, pitch, digital silence, noise floor, chunk-size invariance."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest

from appliance.engine.features.extractor import FeatureExtractor, FeatureFrames
from tests.featutil import (
    HAVE_SOX,
    SR,
    TEXTS,
    colored_noise,
    espeak,
    extract,
    extract_sizes,
    music_arpeggio,
    needs_espeak,
    scale_to,
    telephone,
    to_i16,
    trim,
    typing,
)


def harmonic_complex(f0: float, dur_s: float, lowest_hz: float = 0.0) -> np.ndarray:
    """Harmonics of f0 up to 3.8 kHz with 1/h amplitudes and scattered phases, -20 dBFS;
    harmonics below ``lowest_hz`` left out (a missing fundamental)."""
    t = np.arange(int(dur_s * SR)) / SR
    x = np.zeros(t.shape[0])
    for h in range(1, 60):
        if lowest_hz <= f0 * h < 3800:
            x += np.sin(2 * np.pi * f0 * h * t + 0.7 * h * h) / h
    return to_i16(scale_to(x, -20))


# ------------------------------------------------------------------------------ basics
def test_hop_times_and_partial_chunks() -> None:
    ex = FeatureExtractor()
    assert len(ex.process(np.zeros(159, np.int16))) == 0
    fr = ex.process(np.zeros(1, np.int16))
    assert len(fr) == 1 and fr.t_s[0] == pytest.approx(0.010)
    fr = ex.process(np.zeros(800, np.int16))
    np.testing.assert_allclose(fr.t_s, [0.02, 0.03, 0.04, 0.05, 0.06])
    assert ex.time_s == pytest.approx(0.06)


@pytest.mark.parametrize("freq_hz", [437.0, 1000.0, 3100.0])
@pytest.mark.parametrize("rms_dbfs", [-6.0, -30.0, -60.0])
def test_level_of_sine(freq_hz: float, rms_dbfs: float) -> None:
    t = np.arange(SR) / SR
    amp = 32768 * 10 ** (rms_dbfs / 20) * np.sqrt(2)
    fr = extract(to_i16(amp * np.sin(2 * np.pi * freq_hz * t)))
    level = fr.level_dbfs[4:]  # after the warm-up (window partly before the start)
    assert np.max(np.abs(level - rms_dbfs)) < 0.2
    if 300 < freq_hz < 2500:  # inside the nuclei band: the band level is the level
        assert np.max(np.abs(fr.band_db[4:] - rms_dbfs)) < 0.5
    else:
        assert np.max(fr.band_db[4:]) < rms_dbfs - 10


def test_zeros_floor_at_minus_120() -> None:
    fr = extract(np.zeros(SR // 2, np.int16))
    assert np.all(fr.level_dbfs == -120.0) and np.all(fr.band_db == -120.0)
    assert np.all(np.isnan(fr.f0_hz)) and np.all(fr.voicing == 0.0)


# ------------------------------------------------------------------------------ pitch
@pytest.mark.parametrize("f0", [100.0, 150.0, 220.0])
@pytest.mark.parametrize("band", ["wide", "no_fundamental", "telephone"])
def test_f0_of_harmonic_complex(f0: float, band: str) -> None:
    if band == "telephone":
        if not HAVE_SOX:
            pytest.skip("no sox")
        x = telephone(harmonic_complex(f0, 1.5))
    else:
        x = harmonic_complex(f0, 1.5, lowest_hz=310.0 if band == "no_fundamental" else 0.0)
    fr = extract(x)
    f = fr.f0_hz[10:-5]
    assert np.mean(np.isfinite(f)) > 0.97
    assert np.nanmax(np.abs(f / f0 - 1.0)) < 0.02
    assert np.median(fr.voicing[10:-5]) > 0.8


@pytest.mark.parametrize("f0", [110.0, 180.0])
def test_strong_even_harmonics_do_not_double_the_pitch(f0: float) -> None:
    """Most energy in harmonics 2 and 4: the autocorrelation at T/2 is ~0.6 (voiced-looking)
    but the period is T; and long lags (2T, 3T) must not win either."""
    t = np.arange(int(1.5 * SR)) / SR
    amps = {1: 0.25, 2: 1.0, 3: 0.2, 4: 0.7, 5: 0.15, 6: 0.3, 7: 0.1, 8: 0.2}
    x = sum(a * np.sin(2 * np.pi * f0 * h * t + 0.3 * h) for h, a in amps.items())
    f = extract(to_i16(scale_to(x, -20)), 512).f0_hz[10:-5]
    assert np.mean(np.isfinite(f)) > 0.97
    assert np.nanmax(np.abs(f / f0 - 1.0)) < 0.02


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_noise_is_unvoiced(exponent: float) -> None:
    fr = extract(to_i16(colored_noise(3 * SR, exponent, -30.0, seed=3)))
    assert np.mean(np.isnan(fr.f0_hz)) > 0.99
    assert np.median(fr.voicing) < 0.35


@needs_espeak
def test_speech_pitch_is_plausible() -> None:
    for voice, lo, hi in (("en", 70.0, 180.0), ("en+f3", 140.0, 320.0)):
        fr = extract(espeak(TEXTS["en"], voice, 175))
        f = fr.f0_hz[np.isfinite(fr.f0_hz)]
        loud = fr.level_dbfs > np.max(fr.level_dbfs) - 30
        assert np.mean(np.isfinite(fr.f0_hz[loud])) > 0.5
        assert lo < np.median(f) < hi, (voice, np.median(f))


# ----------------------------------------------------------------------- spectral shape
def test_flatness_and_tonality_separate_tones_from_noise() -> None:
    tone = extract(harmonic_complex(150.0, 1.0))
    noise = extract(to_i16(colored_noise(SR, 0.0, -30.0)))
    assert np.median(tone.flatness[5:]) < 0.05 < 0.4 < np.median(noise.flatness[5:])
    assert np.median(tone.tonality[8:]) > 0.9
    assert abs(np.median(noise.tonality[8:])) < 0.1


# ----------------------------------------------------------------------- digital silence
def test_digital_silence_flags() -> None:
    rng = np.random.default_rng(0)
    zeros = np.zeros(SR // 2, np.int16)
    dither1 = rng.integers(-1, 2, SR // 2).astype(np.int16)
    dither2 = rng.integers(-2, 3, SR // 2).astype(np.int16)
    quiet = to_i16(colored_noise(SR // 2, 0.0, -70.0, seed=5))  # RMS ~10 LSB
    assert np.max(np.abs(quiet)) > 2
    fr = extract(np.concatenate([zeros, dither1, dither2, quiet]))
    k = SR // 2 // 160  # hops per part
    assert fr.digital_silence[: 3 * k].all()
    assert not fr.digital_silence[3 * k :].any()


def test_digital_silence_is_per_hop() -> None:
    x = np.zeros(SR, np.int16)
    x[8000:8160] = 100  # exactly hop 50
    x[12005] = -3  # one sample in hop 75
    fr = extract(x)
    assert np.flatnonzero(~fr.digital_silence).tolist() == [50, 75]


# --------------------------------------------------------------------------- noise floor
PHRASES = [
    "Thank you for calling.",
    "I can see your order here,",
    "it was shipped on Monday.",
    "Is there anything else",
    "I can help you with today?",
]


@needs_espeak
def test_noise_floor_settles_on_room_noise_under_speech() -> None:
    rng = np.random.default_rng(1)
    noise_dbfs = -55.0
    n = 24 * SR
    x = colored_noise(n, 1.0, noise_dbfs, seed=11)
    phrases = [trim(espeak(p, "en", 175)) for p in PHRASES]
    t = i = 0
    while True:  # phrases at -22 dBFS from the very start, 0.3-1.0 s pauses
        s = scale_to(phrases[i % len(phrases)], -22.0)
        if t + s.shape[0] > n:
            break
        x[t : t + s.shape[0]] += s
        t += s.shape[0] + int(rng.uniform(0.3, 1.0) * SR)
        i += 1
    fr = extract(to_i16(x))
    settled = fr.noise_floor_dbfs[fr.t_s > 5.0]
    assert np.max(np.abs(settled - noise_dbfs)) < 3.0
    assert np.max(fr.level_dbfs) > noise_dbfs + 25  # the speech really is on top


def test_noise_floor_falls_fast_rises_slowly_and_holds_in_silence() -> None:
    loud = colored_noise(3 * SR, 1.0, -30.0, seed=1)
    quiet = colored_noise(3 * SR, 1.0, -60.0, seed=2)
    louder = colored_noise(9 * SR, 1.0, -45.0, seed=3)
    x = np.concatenate([loud, quiet, np.zeros(2 * SR), louder])
    fr = extract(to_i16(x))
    nf, t = fr.noise_floor_dbfs, fr.t_s
    assert abs(np.median(nf[(t > 2.0) & (t < 3.0)]) + 30.0) < 3.0
    assert abs(nf[np.searchsorted(t, 3.2)] + 60.0) < 3.0  # fell within 0.2 s
    held = nf[(t > 6.1) & (t < 8.0)]
    assert np.all(held == held[0]) and abs(held[0] + 60.0) < 3.0  # digital silence: held
    after = nf[(t > 8.0) & (t < 11.0)]
    assert np.max(np.diff(after)) <= 2.0 * 0.01 + 1e-9  # rises at most 2 dB/s
    assert after[-1] < -50.0  # not jumped to the new level
    assert abs(nf[-1] + 45.0) < 3.0  # but gets there


# ------------------------------------------------------------------ chunk-size invariance
def _mixed_signal() -> np.ndarray:
    n = 2 * SR
    parts = [
        to_i16(colored_noise(n, 1.0, -50.0, seed=4)),
        to_i16(scale_to(music_arpeggio(2.0), -25) + typing(n, -30)),
        np.zeros(SR // 2, np.int16),
        harmonic_complex(130.0, 1.0),
    ]
    return np.concatenate(parts)


def _assert_same(a: FeatureFrames, b: FeatureFrames) -> None:
    assert len(a) == len(b)
    for f in fields(FeatureFrames):
        va, vb = getattr(a, f.name), getattr(b, f.name)
        if va.dtype == bool:
            np.testing.assert_array_equal(va, vb, err_msg=f.name)
        else:
            np.testing.assert_allclose(va, vb, rtol=0, atol=1e-9, equal_nan=True, err_msg=f.name)


@pytest.mark.parametrize("sizes", [[160], [320], [512], [1600], [1, 7, 333, 2048, 159]])
def test_chunk_size_invariance(sizes: list[int]) -> None:
    x = _mixed_signal()
    whole = FeatureExtractor().process(x)
    assert len(whole) == x.shape[0] // 160
    _assert_same(whole, extract_sizes(x, sizes))


def test_reset_forgets_the_stream() -> None:
    x = _mixed_signal()
    ex = FeatureExtractor()
    first = ex.process(x)
    ex.reset()
    _assert_same(first, ex.process(x))


@pytest.mark.parametrize("size", [512, 333])
def test_channels_in_one_pass_match_one_extractor_each_bit_for_bit(size: int) -> None:
    """The engine analyses both parties in one pass: each channel's frames are exactly
    those of an extractor of its own (every operation is row-wise)."""
    a = _mixed_signal()
    b = np.roll(a, 12345)[::-1].copy()  # a different signal on the other channel
    both = FeatureExtractor(channels=2)
    one_a, one_b = FeatureExtractor(), FeatureExtractor()
    for i in range(0, a.shape[0], size):
        got = both.process_channels(np.stack([a[i : i + size], b[i : i + size]]))
        for fr, ex, x in ((got[0], one_a, a), (got[1], one_b, b)):
            want = ex.process(x[i : i + size])
            assert len(fr) == len(want)
            for f in fields(FeatureFrames):
                np.testing.assert_array_equal(getattr(fr, f.name), getattr(want, f.name),
                                              err_msg=f.name)
    with pytest.raises(ValueError, match="one channel"):
        both.process(a[:512])
