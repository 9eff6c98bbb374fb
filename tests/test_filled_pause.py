"""FilledPauseDetector: source-filter and espeak-ng filled pauses inserted between espeak
sentences (en/de/fr, several voices and rates), clean / telephone + mu-law / room noise;
false alarms on normal speech; streaming latency, chunk invariance and CPU."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from appliance.engine.features.extractor import FeatureExtractor, FeatureFrames
from appliance.engine.features.filled_pause import FilledPauseDetector
from tests.featutil import (
    HAVE_SOX,
    SR,
    TEXTS,
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
F64 = np.ndarray

# ------------------------------------------------------------------ source-filter model
# formants (Hz, bandwidth Hz) of an adult male; scaled x1.15 for F0 >= 150 Hz
FORMANTS = {
    "@": [(500, 80), (1500, 100), (2500, 140)],
    "E": [(600, 80), (1800, 110), (2550, 150)],
    "m": [(260, 60), (1100, 250), (2300, 300)],
}


def _resonate(x: F64, formants: list[tuple[int, int]], scale: float) -> F64:
    from scipy.signal import lfilter

    for f, bw in formants:
        r = np.exp(-np.pi * bw / SR)
        a = [1.0, -2.0 * r * np.cos(2 * np.pi * f * scale / SR), r * r]
        x = lfilter([sum(a)], a, x)
    return x


def _nasal(src: F64, scale: float) -> F64:
    from scipy.signal import lfilter

    y = _resonate(src, FORMANTS["m"], scale)  # plus an anti-resonance near 800 Hz
    return lfilter([1.0, -2.0 * np.cos(2 * np.pi * 800 * scale / SR), 1.0], [1.0], y)


def synth_fp(dur_s: float, f0: float, vowel: str, seed: int, jitter: float = 0.007,
             drift_st: float = -0.4, glide_st: float = 0.0, decay_db: float = 0.0) -> F64:
    """Glottal pulses at a flat ``f0`` (jitter, shimmer, a slow 0.15 st wobble and a
    ``drift_st`` + ``glide_st`` pitch change) through formant resonators: ``@``, ``E``,
    ``m`` or ``@m`` (vowel then nasal); 40 ms onset, 80 ms offset, the level falling
    ``decay_db`` over the sound (a word ending, for the negative tests)."""
    rng = np.random.default_rng(seed)
    n = int(dur_s * SR)
    pulses = np.zeros(n)
    t = 0.0
    while True:
        st = (drift_st + glide_st) * t / dur_s + 0.15 * np.sin(2 * np.pi * 0.7 * t)
        t += (1 + jitter * rng.standard_normal()) / (f0 * 2 ** (st / 12))
        if int(t * SR) >= n:
            break
        pulses[int(t * SR)] += 1 + 0.05 * rng.standard_normal()
    g = np.sin(np.pi * np.arange(64) / 64) ** 2  # 4 ms glottal flow pulse, differentiated
    src = np.convolve(pulses, np.diff(g, prepend=0.0))[:n]
    scale = 1.0 if f0 < 150 else 1.15
    if vowel == "@m":
        w = np.clip((np.arange(n) - 0.55 * n) / (0.04 * SR), 0.0, 1.0)
        y = (scale_to(_resonate(src, FORMANTS["@"], scale), 0) * (1 - w)
             + scale_to(_nasal(src, scale), -6) * w)
    elif vowel == "m":
        y = _nasal(src, scale)
    else:
        y = _resonate(src, FORMANTS[vowel], scale)
    tt = np.arange(n) / SR
    env = np.minimum(1.0, tt / 0.04) * np.minimum(1.0, (dur_s - tt) / 0.08) ** 1.5
    env *= 10 ** (-decay_db * tt / dur_s / 20)
    return y * env * (1 + 0.05 * np.sin(2 * np.pi * 3.0 * tt + rng.uniform(0, 6)))


# --------------------------------------------------------------------- espeak material
# espeak's spelled hesitations ("uhhhhm", "ähhhm", "euuuuh") come out as several short
# syllables with a falling statement pitch; phoneme input with length marks gives one
# sustained vowel (checked by test_espeak_fillers_are_sustained).
ESPEAK_FP = [
    ("[[@:::::]]", "en", 80), ("[[@:::::]]", "en+f3", 90), ("[[@::m:]]", "en-us", 90),
    ("[[V:::m]]", "en+m3", 85), ("[[E::::]]", "de", 80), ("[[E:::m]]", "de+f2", 85),
    ("[[W::::]]", "fr", 80), ("[[W:::]]", "fr+f3", 80),
]
SENTENCES = {
    "en": [*TEXTS["en"].split(". "),
           "Well, I know you are worried, but we will sort it out together",
           "Let me look at the history of your account one more time",
           "Okay, so the main issue is that the new modem keeps dropping the line",
           "Many customers mentioned the same thing, and we are working on a fix"],
    "de": [*TEXTS["de"].split(". "),
           "Also, ich verstehe Ihr Anliegen, wir werden das gemeinsam lösen",
           "Ihre neue Karte kommt in ungefähr einer Woche",
           "Dann rufe ich Sie morgen früh noch einmal an"],
    "fr": [*TEXTS["fr"].split(". "),
           "Alors, je comprends bien votre problème, nous allons le régler ensemble",
           "Votre nouvelle carte arrivera dans une semaine",
           "Je vous rappelle demain matin sans faute"],
}
# (voice, language, words per minute) of the host speech
SPEAKERS = [("en", "en", 120), ("en+f3", "en", 175), ("en-us", "en", 220),
            ("de", "de", 140), ("de+f2", "de", 200), ("fr", "fr", 160), ("fr+f3", "fr", 130)]
NORMAL_SPEECH = [("en", "en", 120), ("en+m3", "en", 150), ("en-us", "en", 220),
                 ("en+f3", "en", 185), ("de", "de", 130), ("de+f2", "de", 200),
                 ("fr", "fr", 150), ("fr+f3", "fr", 175), ("en-us+f2", "en", 165)]


@dataclass
class Call:
    audio: np.ndarray  # int16
    onsets: list[float]  # inserted filled pauses, seconds


def build_call(speaker: tuple[str, str, int], n_fp: int, seed: int) -> Call:
    """Sentences of one speaker with ``n_fp`` filled pauses between them: espeak phoneme
    fillers and source-filter ones, 3-8 dB under the speech, gaps of 0.03-0.5 s."""
    voice, lang, wpm = speaker
    rng = np.random.default_rng(seed)
    speech_db = -22.0
    parts: list[F64] = [np.zeros(int(0.3 * SR))]
    onsets: list[float] = []
    sents = SENTENCES[lang]
    for i in range(n_fp + 1):
        s = trim(espeak(sents[(seed + i) % len(sents)], voice, wpm)).astype(np.float64)
        parts.append(scale_to(s, speech_db))
        if i == n_fp:
            break
        parts.append(np.zeros(int(rng.choice([0.03, 0.15, 0.3, 0.5]) * SR)))
        if i % 2 == 0:
            text, v, r = ESPEAK_FP[(seed + i // 2) % len(ESPEAK_FP)]
            fp = trim(espeak(text, v, r)).astype(np.float64)
        else:
            fp = synth_fp(
                float(rng.uniform(0.4, 1.2)), float(rng.choice([100, 130, 160, 190, 220])),
                str(rng.choice(["@", "E", "m", "@m"])), seed * 100 + i,
                jitter=float(rng.uniform(0.004, 0.01)),
                drift_st=float(rng.uniform(-0.6, 0.3)))
        onsets.append(sum(p.shape[0] for p in parts) / SR)
        parts.append(scale_to(fp, speech_db - float(rng.uniform(3.0, 8.0))))
        parts.append(np.zeros(int(rng.choice([0.03, 0.2, 0.4]) * SR)))
    parts.append(np.zeros(int(0.3 * SR)))
    return Call(to_i16(np.concatenate(parts)), onsets)


def degrade(x: np.ndarray, condition: str, seed: int) -> np.ndarray:
    """``clean``; ``telephone``: 300-3400 Hz + mu-law (sox), then room noise at -55 dBFS;
    ``noise``: wide-band, room (pink) noise at -55 dBFS."""
    if condition == "clean":
        return x
    y = telephone(x) if condition == "telephone" else x
    return to_i16(y.astype(np.float64) + colored_noise(y.shape[0], 1.0, -55.0, seed=seed))


def detect(x: np.ndarray, **kw: Any) -> list[tuple[float, float]]:
    return FilledPauseDetector(**kw).process(extract(x))


def score(found: list[tuple[float, float]], onsets: list[float]) -> tuple[int, int]:
    """(hits, detections matching no onset) with a +-0.2 s tolerance on the start."""
    hits = sum(any(abs(a - o) <= 0.2 for a, _ in found) for o in onsets)
    extra = sum(not any(abs(a - o) <= 0.2 for o in onsets) for a, _ in found)
    return hits, extra


# ------------------------------------------------------------------------------ tests
def in_silence(fp: F64, seed: int = 0) -> np.ndarray:
    """0.5 s of room noise (-60 dBFS), ``fp`` at -28 dBFS, 0.5 s of noise."""
    x = np.concatenate([np.zeros(SR // 2), scale_to(fp, -28.0), np.zeros(SR // 2)])
    return to_i16(x + colored_noise(x.shape[0], 1.0, -60.0, seed=seed))


def test_synthetic_filled_pauses_are_found_with_their_times() -> None:
    for i, (dur, f0, vowel) in enumerate([(0.5, 110, "@"), (0.8, 180, "E"), (0.6, 220, "m"),
                                          (1.0, 100, "@m"), (0.4, 150, "@"), (1.2, 130, "m")]):
        found = detect(in_silence(synth_fp(dur, f0, vowel, seed=i), seed=i))
        assert len(found) == 1, (dur, f0, vowel, found)
        start, end = found[0]
        assert abs(start - 0.5) < 0.05 and abs(end - (0.5 + dur)) < 0.12, (found, dur)


@pytest.mark.parametrize(
    ("kw", "why"),
    [({"dur_s": 0.22}, "too short"), ({"glide_st": -3.0}, "pitch glide"),
     ({"glide_st": 2.0, "drift_st": 0.0}, "pitch rise"),
     ({"dur_s": 0.35, "glide_st": -1.5, "drift_st": 0.0}, "fast fall (word ending)"),
     ({"dur_s": 0.5, "decay_db": 25.0}, "level slide (word ending)"),
     ({"jitter": 0.06}, "rough pitch")],
)
def test_non_filled_pauses_are_rejected(kw: dict[str, Any], why: str) -> None:
    args: dict[str, Any] = {"dur_s": 0.8, "f0": 120.0, "vowel": "@", "seed": 3}
    args.update(kw)
    assert detect(in_silence(synth_fp(**args))) == [], why


def test_slow_glides_and_short_dropouts_are_one_filled_pause() -> None:
    # a 1.2 st fall over 1 s is fine (the fast fall above is ~1 st in 0.3 s)
    fp = synth_fp(1.0, 120.0, "@", seed=4, glide_st=-1.2, drift_st=0.0)
    assert len(detect(in_silence(fp))) == 1
    # a 50 ms dropout in the middle breaks the segment; the rest is its continuation
    fp = synth_fp(1.0, 150.0, "E", seed=4)
    fp[int(0.5 * SR) : int(0.55 * SR)] = 0.0
    x = in_silence(fp)
    assert len(detect(x)) == 1
    assert len(detect(x, merge_gap_s=0.0)) == 2


def test_long_sounds_are_judged_at_max_s() -> None:
    frames = extract(in_silence(synth_fp(3.0, 120, "m", seed=5, drift_st=0.0)))
    det = FilledPauseDetector()
    reports = [(part.t_s[-1], fp) for part in chunked(frames, [1]) for fp in det.process(part)]
    assert len(reports) == 1  # one report; the rest of the sound is ignored
    t_rep, (start, end) = reports[0]
    assert abs(start - 0.5) < 0.05 and end - start == pytest.approx(det.max_s, abs=0.011)
    assert t_rep - start <= det.max_s + det.window_s / 2 + 0.011
    assert FilledPauseDetector(report_overlong=False).process(frames) == []
    assert FilledPauseDetector(max_s=4.0).process(frames)[0][1] == pytest.approx(3.5, abs=0.12)


@needs_espeak
def test_espeak_fillers_are_sustained() -> None:
    """The espeak phoneme fillers hold one voiced vowel for >= 0.4 s (else the recall test
    would measure espeak, not the detector)."""
    for text, voice, wpm in ESPEAK_FP:
        f = extract(trim(espeak(text, voice, wpm)))
        voiced = ~np.isnan(f.f0_hz)
        runs = np.diff(np.flatnonzero(np.diff(np.r_[0, voiced.astype(int), 0])))[::2]
        assert runs.max() * 0.01 >= 0.4, (text, voice, runs)


@needs_espeak
@pytest.mark.parametrize("condition", ["clean", "telephone", "noise"])
def test_recall_and_false_alarms_in_calls(condition: str) -> None:
    if condition == "telephone" and not HAVE_SOX:
        pytest.skip("no sox")
    hits = total = extra = 0
    seconds = 0.0
    for k, speaker in enumerate(SPEAKERS):
        call = build_call(speaker, n_fp=4, seed=k)
        x = degrade(call.audio, condition, seed=k)
        found = detect(x)
        h, e = score(found, call.onsets)
        if h < len(call.onsets) or e:
            log.info("%s %s: onsets %s found %s", condition, speaker,
                     [round(o, 2) for o in call.onsets], found)
        hits, total, extra, seconds = hits + h, total + len(call.onsets), extra + e, (
            seconds + x.shape[0] / SR)
    log.info("%s: recall %d/%d = %.2f, unmatched detections %d in %.0f s", condition, hits,
             total, hits / total, extra, seconds)
    assert hits / total >= 0.8
    assert extra <= seconds / 60.0


@needs_espeak
@pytest.mark.parametrize("condition", ["clean", "telephone", "noise"])
def test_false_alarms_on_normal_speech(condition: str) -> None:
    if condition == "telephone" and not HAVE_SOX:
        pytest.skip("no sox")
    alarms = []
    seconds = 0.0
    for k, (voice, lang, wpm) in enumerate(NORMAL_SPEECH):
        s = [trim(espeak(t, voice, wpm)) for t in SENTENCES[lang][(k % 2) :: 2]]
        gaps = [np.zeros(int(0.3 * SR), dtype=np.int16)] * len(s)
        x = np.concatenate([v for pair in zip(gaps, s, strict=True) for v in pair])
        x = degrade(to_i16(scale_to(x, -24.0)), condition, seed=k)
        seconds += x.shape[0] / SR
        found = detect(x)
        alarms += [(voice, wpm, a) for a in found]
    per_min = len(alarms) / (seconds / 60.0)
    log.info("%s: %d false alarms in %.0f s (%.2f/min) %s", condition, len(alarms), seconds,
             per_min, alarms)
    assert seconds >= 60.0
    assert per_min <= 1.0


@needs_espeak
def test_streaming_latency_chunk_invariance_and_cpu() -> None:
    call = build_call(SPEAKERS[1], n_fp=4, seed=11)
    x = call.audio
    frames = extract(x)
    reference = FilledPauseDetector().process(frames)
    assert len(reference) >= 3
    for sizes in ([1], [3], [7, 1, 30], [1000]):
        det = FilledPauseDetector()
        got: list[tuple[float, float]] = []
        for part in chunked(frames, sizes):
            new = det.process(part)
            if sizes == [1]:
                for _, end in new:  # reported report_delay_s after the end (one hop slack)
                    assert part.t_s[-1] - end <= det.report_delay_s + 0.011
            got += new
        assert got == reference
    for chunk in (160, 320, 512):  # audio in 10 / 20 / 32 ms chunks
        ex, det = FeatureExtractor(), FilledPauseDetector()
        got = []
        for i in range(0, x.shape[0], chunk):
            got += det.process(ex.process(x[i : i + chunk]))
        assert got == reference
    # CPU of the detector alone (the extractor is measured in test_features): this process's
    # CPU time, not the wall clock, so other work on a busy machine does not count
    audio_s = x.shape[0] / SR
    for hops in (1, 2, 3):
        parts: list[FeatureFrames] = chunked(frames, [hops])
        det = FilledPauseDetector()
        t0 = time.process_time()
        for part in parts:
            det.process(part)
        ms_per_s = (time.process_time() - t0) * 1000.0 / audio_s
        log.info("CPU: %.2f ms per s of audio with %d-hop calls", ms_per_s, hops)
        assert ms_per_s < 50.0
