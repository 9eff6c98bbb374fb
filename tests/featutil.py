"""Test signals for the feature tests: espeak-ng speech, telephone band, noise, music."""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soxr

from appliance.engine.features.extractor import FeatureExtractor, FeatureFrames

SR = 16000
I16 = npt.NDArray[np.int16]
F64 = npt.NDArray[np.float64]

HAVE_ESPEAK = shutil.which("espeak-ng") is not None
HAVE_SOX = shutil.which("sox") is not None
needs_espeak = pytest.mark.skipif(not HAVE_ESPEAK, reason="no espeak-ng")
needs_sox = pytest.mark.skipif(not HAVE_SOX, reason="no sox")


def dbfs(x: npt.ArrayLike) -> float:
    a = np.asarray(x, dtype=np.float64)
    return float(10 * np.log10(np.mean(a * a) / 32768.0**2 + 1e-30))


def to_i16(x: F64) -> I16:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def scale_to(x: npt.ArrayLike, level_dbfs: float) -> F64:
    """Scale so that the RMS of the signal is ``level_dbfs``."""
    a = np.asarray(x, dtype=np.float64)
    return a * 10 ** ((level_dbfs - dbfs(a)) / 20)


@functools.lru_cache(maxsize=256)
def _espeak_cached(text: str, voice: str, rate_wpm: int) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "s.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(rate_wpm), "-w", str(out), text],
            check=True,
            capture_output=True,
        )
        with wave.open(str(out), "rb") as w:
            sr = w.getframerate()
            raw = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    y = soxr.resample(raw.astype(np.float64), sr, SR)
    return to_i16(y).tobytes()


def espeak(text: str, voice: str = "en", rate_wpm: int = 175) -> I16:
    """espeak-ng speech at 16 kHz, int16, with espeak's own leading/trailing silence."""
    return np.frombuffer(_espeak_cached(text, voice, rate_wpm), dtype=np.int16).copy()


def trim(x: I16, thresh: int = 64) -> I16:
    """Strip leading/trailing silence (|sample| <= thresh)."""
    idx = np.flatnonzero(np.abs(x.astype(np.int32)) > thresh)
    return x[idx[0] : idx[-1] + 1] if idx.size else x[:0]


def telephone(x: I16) -> I16:
    """8 kHz, 300-3400 Hz, mu-law round trip, back to 16 kHz (all with sox)."""
    raw16 = ["-t", "raw", "-r", str(SR), "-e", "signed-integer", "-b", "16", "-c", "1"]
    ulaw = ["-t", "raw", "-r", "8000", "-e", "u-law", "-b", "8", "-c", "1"]
    coded = subprocess.run(
        ["sox", *raw16, "-", *ulaw, "-", "sinc", "300-3400"],
        input=np.ascontiguousarray(x, dtype="<i2").tobytes(),
        capture_output=True,
        check=True,
    ).stdout
    back = subprocess.run(
        ["sox", *ulaw, "-", *raw16, "-"], input=coded, capture_output=True, check=True
    ).stdout
    y = np.frombuffer(back, dtype="<i2").astype(np.int16)
    return y[: x.shape[0]] if y.shape[0] >= x.shape[0] else np.pad(y, (0, x.shape[0] - y.shape[0]))


def colored_noise(n: int, exponent: float, level_dbfs: float, seed: int = 0) -> F64:
    """Noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown), RMS level."""
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / SR)
    f[0] = f[1]
    spec *= f ** (-exponent / 2)
    spec[f < 20] = 0
    return scale_to(np.fft.irfft(spec, n), level_dbfs)


def typing(n: int, level_dbfs: float = -30.0, rate_hz: float = 6.0, seed: int = 1) -> F64:
    """Keyboard typing: short damped clicks at irregular intervals, scaled so that the peak
    click is ``level_dbfs`` RMS over its 20 ms."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n)
    t = 0.05
    while True:
        t += rng.exponential(1 / rate_hz) + 0.03
        i = int(t * SR)
        if i >= n - 800:
            break
        m = 320
        env = np.exp(-np.arange(m) / (SR * rng.uniform(0.002, 0.006)))
        click = rng.standard_normal(m) * env
        ring = np.sin(2 * np.pi * rng.uniform(1500, 4000) * np.arange(m) / SR) * env
        out[i : i + m] += (click + 0.5 * ring) * rng.uniform(0.5, 1.0)
    return out * 10 ** (level_dbfs / 20) * 32768 / 0.3


# ----------------------------------------------------------------------------- music
def _note(freq: float, dur_s: float, harmonics: list[float], decay_s: float | None,
          attack_s: float = 0.01, vib_hz: float = 0.0) -> F64:
    n = int(dur_s * SR)
    t = np.arange(n) / SR
    phase = 2 * np.pi * freq * t
    if vib_hz:
        phase = phase + 0.004 * freq / vib_hz * np.sin(2 * np.pi * vib_hz * t)
    y = np.zeros(n)
    for h, a in enumerate(harmonics, start=1):
        if freq * h < 7500:
            y += a * np.sin(h * phase)
    env = np.minimum(1.0, t / attack_s)
    if decay_s is not None:
        env *= np.exp(-t / decay_s)
    env *= np.minimum(1.0, (dur_s - t) / 0.02)  # release
    return y * env


def _midi(m: float) -> float:
    return 440.0 * 2 ** ((m - 69) / 12)


def music_arpeggio(dur_s: float, tempo_bpm: float = 100, key: int = 60, seed: int = 0) -> F64:
    """Piano-like arpeggio: 8th notes, decaying harmonics, notes ring on (sustain pedal)."""
    rng = np.random.default_rng(seed)
    n = int(dur_s * SR)
    out = np.zeros(n + SR * 2)
    step = 60.0 / tempo_bpm / 2
    chords = [[0, 4, 7, 12], [-3, 0, 4, 9], [5, 9, 12, 17], [7, 11, 14, 19]]
    harm = [1.0, 0.5, 0.3, 0.2, 0.1, 0.05]
    i, t = 0, 0.0
    while t < dur_s:
        ch = chords[(i // 8) % 4]
        m = key + ch[i % 4] + (12 if (i % 8) >= 4 else 0)
        note = _note(_midi(m), 1.2, harm, decay_s=0.5 * rng.uniform(0.8, 1.2))
        s = int(t * SR)
        out[s : s + note.shape[0]] += note
        i += 1
        t += step
    return out[:n]


def music_pad(dur_s: float, key: int = 57, chord_s: float = 2.0) -> F64:
    """Sustained string-like pad: 4-note chords with vibrato, slow attack, changing every
    ``chord_s`` seconds."""
    n = int(dur_s * SR)
    out = np.zeros(n)
    chords = [[0, 7, 12, 16], [-2, 5, 10, 14], [-4, 3, 8, 12], [-5, 2, 7, 11]]
    harm = [1.0, 0.7, 0.5, 0.35, 0.25, 0.15, 0.1]
    k = 0
    t = 0.0
    while t < dur_s:
        seg = min(chord_s, dur_s - t)
        s = int(t * SR)
        for j, iv in enumerate(chords[k % 4]):
            note = _note(_midi(key + iv), seg, harm, None, attack_s=0.15, vib_hz=5.0 + 0.3 * j)
            out[s : s + note.shape[0]] += note
        k += 1
        t += chord_s
    return out


def music_melody_drums(dur_s: float, tempo_bpm: float = 120, key: int = 67,
                       seed: int = 2) -> F64:
    """Square-ish lead melody (quarter and 8th notes) over a bass, kick/snare/hi-hat beat."""
    rng = np.random.default_rng(seed)
    n = int(dur_s * SR)
    out = np.zeros(n + SR)
    beat = 60.0 / tempo_bpm
    scale = [0, 2, 4, 5, 7, 9, 11, 12]
    lead = [1.0, 0.0, 0.33, 0.0, 0.2, 0.0, 0.14]
    t = 0.0
    while t < dur_s:
        dur = beat * (0.5 if rng.random() < 0.5 else 1.0)
        note = _note(_midi(key + scale[int(rng.integers(0, 8))]), dur, lead, decay_s=1.5)
        s = int(t * SR)
        out[s : s + note.shape[0]] += 0.6 * note
        t += dur
    t = 0.0
    b = 0
    while t < dur_s:
        s = int(t * SR)
        bass = _note(_midi(key - 24 + [0, 5, 7, 3][(b // 4) % 4]), beat, [1.0, 0.5, 0.2], 0.8)
        out[s : s + bass.shape[0]] += 0.5 * bass
        m = int(0.15 * SR)
        tt = np.arange(m) / SR
        if b % 2 == 0:  # kick
            out[s : s + m] += 1.2 * np.sin(2 * np.pi * (50 + 80 * np.exp(-tt / 0.02)) * tt) * (
                np.exp(-tt / 0.05))
        else:  # snare
            out[s : s + m] += 0.5 * rng.standard_normal(m) * np.exp(-tt / 0.04)
        h = s + int(beat / 2 * SR)
        out[h : h + 800] += 0.15 * rng.standard_normal(800) * np.exp(-np.arange(800) / 200)
        b += 1
        t += beat
    return out[:n]


def music_bells(dur_s: float, tempo_bpm: float = 72, key: int = 72, seed: int = 3) -> F64:
    """Inharmonic bell / marimba-like melody: fast decay, partials 1, 2.76, 5.4, 8.9."""
    rng = np.random.default_rng(seed)
    n = int(dur_s * SR)
    out = np.zeros(n + 2 * SR)
    step = 60.0 / tempo_bpm
    t = 0.0
    pent = [0, 2, 4, 7, 9, 12]
    while t < dur_s:
        f = _midi(key + pent[int(rng.integers(0, 6))])
        m = int(1.5 * SR)
        tt = np.arange(m) / SR
        y = np.zeros(m)
        for p, a, d in ((1.0, 1.0, 0.8), (2.76, 0.5, 0.4), (5.4, 0.25, 0.2), (8.9, 0.1, 0.1)):
            if f * p < 7500:
                y += a * np.sin(2 * np.pi * f * p * tt) * np.exp(-tt / d)
        s = int(t * SR)
        out[s : s + m] += y * np.minimum(1.0, tt / 0.003)
        t += step * (0.5 if rng.random() < 0.3 else 1.0)
    return out[:n]


def music_lead(dur_s: float, tempo_bpm: float = 96, key: int = 69, seed: int = 4,
               vibrato: float = 0.015) -> F64:
    """Legato flute/violin-like lead with vibrato (+-``vibrato`` relative) over a soft
    sustained bass note per bar."""
    rng = np.random.default_rng(seed)
    n = int(dur_s * SR)
    out = np.zeros(n + 4 * SR)
    beat = 60.0 / tempo_bpm
    t = 0.0
    while t < dur_s:
        dur = beat * float(rng.choice([0.5, 1.0, 1.5, 2.0]))
        f = _midi(key + [0, 2, 3, 5, 7, 8, 10, 12][int(rng.integers(0, 8))])
        m = int(dur * SR)
        tt = np.arange(m) / SR
        ph = 2 * np.pi * f * tt + vibrato * f / 5.5 * np.sin(2 * np.pi * 5.5 * tt)
        y = sum(a * np.sin(h * ph) for h, a in enumerate([1.0, 0.4, 0.25, 0.1], 1))
        y *= np.minimum(1.0, tt / 0.04) * np.minimum(1.0, (dur - tt) / 0.03)
        s = int(t * SR)
        out[s : s + m] += y
        t += dur
    bar = 4 * beat
    t = 0.0
    while t < dur_s:
        bass = _note(_midi(key - 24 + int(rng.choice([0, 5, 7, -2]))), bar, [1.0, 0.3], None,
                     attack_s=0.05)
        s = int(t * SR)
        out[s : s + bass.shape[0]] += 0.4 * bass
        t += bar
    return out[:n]


MUSIC: dict[str, Callable[[float], F64]] = {
    "arpeggio": music_arpeggio,
    "arpeggio_fast_a": lambda d: music_arpeggio(d, tempo_bpm=140, key=57, seed=5),
    "pad": music_pad,
    "pad_low_key": lambda d: music_pad(d, key=48, chord_s=3.0),
    "melody_drums": music_melody_drums,
    "melody_drums_slow": lambda d: music_melody_drums(d, tempo_bpm=90, key=62, seed=7),
    "bells": music_bells,
    "lead_vibrato": music_lead,
}


# ----------------------------------------------------------------------------- helpers
def extract(x: I16, chunk: int = 512) -> FeatureFrames:
    """Run a fresh extractor over ``x`` in chunks of ``chunk`` samples."""
    ex = FeatureExtractor(SR)
    parts = [ex.process(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)]
    return FeatureFrames.concat(parts)


def extract_sizes(x: I16, sizes: list[int]) -> FeatureFrames:
    """Like :func:`extract` with chunk sizes cycling through ``sizes``."""
    ex = FeatureExtractor(SR)
    parts = []
    i = j = 0
    while i < x.shape[0]:
        k = sizes[j % len(sizes)]
        parts.append(ex.process(x[i : i + k]))
        i += k
        j += 1
    return FeatureFrames.concat(parts)


def chunked(frames: FeatureFrames, sizes: list[int]) -> list[FeatureFrames]:
    """Cut a FeatureFrames into consecutive pieces of the given (cycled) sizes."""
    out: list[FeatureFrames] = []
    i = j = 0
    while i < len(frames):
        k = sizes[j % len(sizes)]
        out.append(frames.slice(i, i + k))
        i += k
        j += 1
    return out


def longest_run(flags: npt.NDArray[np.bool_]) -> int:
    """Length of the longest run of True."""
    best = run = 0
    for f in flags.tolist():
        run = run + 1 if f else 0
        best = max(best, run)
    return best


TEXTS = {
    "en": "Thank you for calling. I can see your order here, it was shipped on Monday. "
    "Is there anything else I can help you with today?",
    "de": "Vielen Dank für Ihren Anruf. Ich sehe Ihre Bestellung, sie wurde am Montag "
    "verschickt. Kann ich sonst noch etwas für Sie tun?",
    "fr": "Merci de votre appel. Je vois votre commande, elle a été expédiée lundi. "
    "Puis-je vous aider avec autre chose aujourd'hui?",
}
