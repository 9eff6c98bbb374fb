"""MusicDetector: several kinds of synthetic hold music vs speech, noise, typing, silence."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from appliance.engine.features.extractor import FeatureFrames
from appliance.engine.features.music import MusicDetector
from tests.featutil import (
    HAVE_ESPEAK,
    HAVE_SOX,
    MUSIC,
    SR,
    TEXTS,
    chunked,
    colored_noise,
    espeak,
    extract,
    longest_run,
    music_arpeggio,
    music_melody_drums,
    music_pad,
    needs_espeak,
    scale_to,
    telephone,
    to_i16,
    typing,
)

MUSIC_S = 8.0
PRE_S = 3.0
POST_S = 3.0
LATENCY_S = 2.5  # goal: music flagged within this
RELEASE_S = 1.5  # goal: flag dropped within this after the music stops


def _pre(seed: int) -> np.ndarray:
    """What comes before the music: the agent's speech if espeak is there, else noise."""
    noise = colored_noise(int(PRE_S * SR), 1.0, -55.0, seed=seed)
    if not HAVE_ESPEAK:
        return noise
    s = espeak("Let me check that for you, please hold the line.", "en", 175).astype(float)
    s = scale_to(s[: noise.shape[0]], -22.0)
    noise[: s.shape[0]] += s
    return noise


def _music_case(name: str, level_dbfs: float, phone: bool) -> np.ndarray:
    music = scale_to(MUSIC[name](MUSIC_S), level_dbfs)
    music += colored_noise(music.shape[0], 1.0, -60.0, seed=7)
    post = colored_noise(int(POST_S * SR), 2.0, -50.0, seed=8)
    x = to_i16(np.concatenate([_pre(3), music, post]))
    return telephone(x) if phone else x


MUSIC_CASES = [(name, -20.0, False) for name in MUSIC] + [
    (name, -24.0, True) for name in MUSIC
]


def _check_music(x: np.ndarray) -> None:
    frames = extract(x)
    flags = MusicDetector().process(frames)
    t = frames.t_s
    start, end = PRE_S, PRE_S + MUSIC_S
    assert not flags[t <= start].any(), "music before the music"
    on = t[(t > start) & flags]
    assert on.size and on[0] - start <= LATENCY_S, f"late: {on[:1] - start}"
    held = flags[(t > start + LATENCY_S) & (t <= end)]
    assert held.mean() >= 0.95, f"music hops {held.mean():.3f}"
    after = flags[t > end + RELEASE_S]
    assert not after.any(), "still music after the release time"


@pytest.mark.parametrize(("name", "level_dbfs", "phone"), MUSIC_CASES)
def test_hold_music_is_detected(name: str, level_dbfs: float, phone: bool) -> None:
    if phone and not HAVE_SOX:
        pytest.skip("no sox")
    _check_music(_music_case(name, level_dbfs, phone))


@pytest.mark.parametrize(
    "make",
    [
        lambda d: music_arpeggio(d, tempo_bpm=80, key=64, seed=11),
        lambda d: music_pad(d, key=52, chord_s=2.5),
        lambda d: music_melody_drums(d, tempo_bpm=132, key=60, seed=12),
    ],
    ids=["arpeggio", "pad", "melody_drums"],
)
@pytest.mark.parametrize("phone", [False, True])
def test_quiet_hold_music_is_detected(make: Callable[[float], np.ndarray], phone: bool) -> None:
    if phone and not HAVE_SOX:
        pytest.skip("no sox")
    music = scale_to(make(MUSIC_S), -35.0) + colored_noise(int(MUSIC_S * SR), 1.0, -58.0)
    post = colored_noise(int(POST_S * SR), 1.0, -58.0, seed=9)
    x = to_i16(np.concatenate([_pre(4), music, post]))
    _check_music(telephone(x) if phone else x)


# ------------------------------------------------------------------------ not music
def _speech(voice: str, lang: str, wpm: int) -> np.ndarray:
    s = espeak(TEXTS[lang], voice, wpm).astype(float)
    s = np.concatenate([s, espeak(TEXTS[lang], voice, wpm + 20).astype(float)])
    return scale_to(s, -22.0) + colored_noise(s.shape[0], 1.0, -58.0, seed=wpm)


def _assert_not_music(x: np.ndarray) -> None:
    flags = MusicDetector().process(extract(x))
    assert longest_run(flags) <= 50, f"music run of {longest_run(flags) * 0.01:.2f} s"
    assert flags.mean() <= 0.01


SPEECH_CASES = [
    ("en", "en", 120), ("en", "en", 175), ("en", "en", 240),
    ("en+f3", "en", 130), ("en+f3", "en", 200), ("en-us+m3", "en", 160),
    ("de", "de", 120), ("de", "de", 200), ("fr", "fr", 140), ("fr", "fr", 230),
]


@needs_espeak
@pytest.mark.parametrize(("voice", "lang", "wpm"), SPEECH_CASES)
def test_speech_is_not_music(voice: str, lang: str, wpm: int) -> None:
    x = _speech(voice, lang, wpm)
    _assert_not_music(to_i16(x))
    if HAVE_SOX and wpm % 2 == 0:
        _assert_not_music(telephone(to_i16(x)))


@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("level_dbfs", [-65.0, -45.0, -25.0])
def test_room_noise_is_not_music(exponent: float, level_dbfs: float) -> None:
    x = to_i16(colored_noise(8 * SR, exponent, level_dbfs, seed=int(-level_dbfs)))
    _assert_not_music(x)
    if HAVE_SOX and exponent == 1.0:
        _assert_not_music(telephone(x))


@pytest.mark.parametrize(("level_dbfs", "rate_hz"), [(-30.0, 6.0), (-18.0, 10.0), (-40.0, 3.0)])
def test_typing_is_not_music(level_dbfs: float, rate_hz: float) -> None:
    n = 8 * SR
    x = typing(n, level_dbfs, rate_hz, seed=int(rate_hz)) + colored_noise(n, 1.0, -60.0)
    _assert_not_music(to_i16(x))


def test_silence_is_not_music() -> None:
    _assert_not_music(np.zeros(5 * SR, np.int16))
    dither = np.random.default_rng(0).integers(-1, 2, 5 * SR).astype(np.int16)
    _assert_not_music(dither)


@needs_espeak
def test_speech_with_typing_is_not_music() -> None:
    s = _speech("en", "en", 160)
    _assert_not_music(to_i16(s + typing(s.shape[0], -28.0, 7.0, seed=5)))


# --------------------------------------------------------------------- decision rule
def _synthetic_frames(
    tonal_run: int, other_run: int, quiet_of_20: int = 0, seconds: float = 8.0
) -> FeatureFrames:
    """``tonal_run`` tonal hops then ``other_run`` non-tonal, repeated; the level is -30 dBFS
    except for ``quiet_of_20`` hops in every 20 at -50 dBFS (pauses)."""
    n = int(seconds * 100)
    pattern = np.array([0.95] * tonal_run + [0.0] * other_run)
    tonality = np.resize(pattern, n)
    level = np.resize(np.array([-30.0] * (20 - quiet_of_20) + [-50.0] * quiet_of_20), n)
    z = np.zeros(n)
    return FeatureFrames(
        t_s=np.arange(1, n + 1, dtype=np.float64) * 0.01, level_dbfs=level, band_db=level - 3.0,
        f0_hz=z + np.nan, voicing=z, flatness=z + 0.1, tonality=tonality,
        digital_silence=np.zeros(n, bool), noise_floor_dbfs=z - 40.0, band_floor_db=z - 43.0,
    )


def test_tonal_fraction_decides() -> None:
    assert not MusicDetector().process(_synthetic_frames(10, 23)).any()  # 30 % tonal
    assert MusicDetector().process(_synthetic_frames(23, 10))[300:].all()  # 70 % tonal
    assert not MusicDetector().process(_synthetic_frames(0, 1)).any()  # never tonal


def test_many_low_energy_hops_veto_borderline_tonality() -> None:
    assert MusicDetector().process(_synthetic_frames(11, 9))[300:].all()  # 55 % tonal
    # the same with 60 % of the hops 20 dB down (speech-like pauses): not music
    assert not MusicDetector().process(_synthetic_frames(11, 9, quiet_of_20=12)).any()


# --------------------------------------------------------------------- streaming
def test_latency_properties_meet_the_goals() -> None:
    det = MusicDetector()
    assert det.decision_latency_s <= LATENCY_S
    assert det.release_latency_s <= RELEASE_S


def test_chunk_invariance_and_reset() -> None:
    x = _music_case("melody_drums", -20.0, False)
    frames = extract(x)
    det = MusicDetector()
    ref = det.process(frames)
    ref_prob = det.music_prob.copy()
    assert ref.any() and not ref.all()
    for sizes in ([1], [3], [7, 1, 30], [333]):
        det = MusicDetector()
        flags, probs = [], []
        for part in chunked(frames, sizes):
            flags.append(det.process(part))
            probs.append(det.music_prob)
        np.testing.assert_array_equal(np.concatenate(flags), ref)
        np.testing.assert_allclose(np.concatenate(probs), ref_prob, rtol=0, atol=1e-12)
    det.reset()
    np.testing.assert_array_equal(det.process(frames), ref)
    # the audio side too: 10 / 20 / 32 ms chunks
    for chunk in (160, 320, 512):
        np.testing.assert_array_equal(MusicDetector().process(extract(x, chunk)), ref)
