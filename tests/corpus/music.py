"""Synthetic hold music: a loop of a few bars in a random key, tempo and timbre, tiled.

Styles: ``piano`` (arpeggiated chords, decaying inharmonic partials), ``pad`` (sustained
detuned chords with slow attack/release and a slow tremolo) and ``melody`` (a melody over
bass notes with soft kick and hi-hat).  Output is float32 at the requested RMS level.
"""

from __future__ import annotations

import numpy as np

STYLES = ("piano", "pad", "melody")
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
_PROGRESSIONS = ((0, 5, 3, 4), (0, 3, 4, 0), (0, 4, 5, 3), (5, 3, 0, 4), (0, 2, 3, 4))


def _hz(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


class _Score:
    def __init__(self, rng: np.random.Generator, sr: int):
        self.rng = rng
        self.sr = sr
        self.root = int(rng.integers(45, 58))
        self.scale = _MAJOR if rng.random() < 0.7 else _MINOR
        self.prog = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
        self.bpm = float(rng.uniform(62, 128))
        self.beat = 60.0 / self.bpm
        self.bars = len(self.prog) * int(rng.integers(1, 3))
        self.length = self.bars * 4 * self.beat
        self.out = np.zeros(int(self.length * sr) + 1, np.float64)

    def degree(self, d: int, octave: int = 0) -> float:
        o, i = divmod(d, 7)
        return self.root + 12 * (o + octave) + self.scale[i]

    def chord(self, bar: int) -> list[float]:
        d = self.prog[bar % len(self.prog)]
        return [self.degree(d), self.degree(d + 2), self.degree(d + 4)]

    def add(self, start: float, sig: np.ndarray) -> None:
        """Add ``sig`` at ``start`` seconds, wrapping around the loop end (seamless tiling)."""
        i = int(start * self.sr) % len(self.out)
        n = min(len(sig), len(self.out))
        first = min(n, len(self.out) - i)
        self.out[i: i + first] += sig[:first]
        self.out[: n - first] += sig[first:n]


def _partials(sr: int, f0: float, t: np.ndarray, amps: list[float], decays: list[float],
              inharm: float = 0.0, detune: float = 0.0, phase: float = 0.0) -> np.ndarray:
    y = np.zeros_like(t)
    for k, (a, dec) in enumerate(zip(amps, decays, strict=True), start=1):
        fk = k * f0 * np.sqrt(1.0 + inharm * k * k) * (1.0 + detune)
        if fk >= 0.45 * sr:
            break
        y += a * np.exp(-dec * t) * np.sin(2 * np.pi * fk * t + phase * k)
    return y


def _env(t: np.ndarray, attack: float, release_at: float, release: float) -> np.ndarray:
    e = np.clip(t / max(attack, 1e-3), 0.0, 1.0)
    return e * np.clip(1.0 - (t - release_at) / release, 0.0, 1.0)


def _piano(s: _Score) -> None:
    rng, sr = s.rng, s.sr
    n_part = int(rng.integers(5, 10))
    bright = float(rng.uniform(0.9, 1.8))
    base_decay = float(rng.uniform(1.2, 3.0))
    pattern = rng.permutation([0, 1, 2, 1, 2, 0, 1, 2])
    step = s.beat / 2
    ring = min(2.5, 6 * step)
    t = np.arange(int(ring * sr)) / sr
    amps = [1.0 / k**bright for k in range(1, n_part + 1)]
    for bar in range(s.bars):
        ch = s.chord(bar)
        bdec = [base_decay * 0.7 * k for k in (1, 2, 3, 4)]
        bass = _partials(sr, _hz(ch[0] - 12), t, amps[:4], bdec)
        s.add(bar * 4 * s.beat, 0.8 * bass * _env(t, 0.004, ring - 0.1, 0.1))
        for j in range(8):
            note = ch[pattern[j]] + (12 if j >= 4 and rng.random() < 0.5 else 0)
            vel = float(rng.uniform(0.5, 0.9))
            decays = [base_decay * (1 + 0.6 * k) for k in range(1, n_part + 1)]
            y = _partials(sr, _hz(note), t, amps, decays, inharm=1.5e-4)
            s.add(bar * 4 * s.beat + j * step, vel * y * _env(t, 0.003, ring - 0.1, 0.1))


def _pad(s: _Score) -> None:
    rng, sr = s.rng, s.sr
    n_part = int(rng.integers(3, 7))
    amps = [1.0 / k ** float(rng.uniform(1.0, 1.6)) for k in range(1, n_part + 1)]
    bars_per_chord = 2 if s.bars >= 8 else 1
    dur = bars_per_chord * 4 * s.beat
    att = float(rng.uniform(0.3, 1.0))
    t = np.arange(int((dur + 0.8) * sr)) / sr
    env = _env(t, att, dur, 0.8)
    for i in range(0, s.bars, bars_per_chord):
        ch = s.chord(i)
        y = np.zeros_like(t)
        for note in [*ch, ch[0] - 12]:
            for det in (-0.003, 0.0, 0.0035):
                y += _partials(sr, _hz(note), t, amps, [0.0] * n_part, detune=det,
                               phase=float(rng.uniform(0, 2 * np.pi)))
        s.add(i * 4 * s.beat, y * env * 0.3)
    lfo = float(rng.uniform(0.15, 0.5))
    trem = 1.0 + 0.15 * np.sin(2 * np.pi * lfo * np.arange(len(s.out)) / sr)
    s.out *= trem


def _melody(s: _Score) -> None:
    rng, sr = s.rng, s.sr
    odd = [1.0, 0.0, 1 / 9, 0.0, 1 / 25, 0.0, 1 / 49]
    step = s.beat / 2
    t_note = np.arange(int(2 * step * sr)) / sr
    t_beat = np.arange(int(s.beat * sr)) / sr
    deg = 7
    for bar in range(s.bars):
        ch = s.chord(bar)
        for b in range(4):
            t0 = (bar * 4 + b) * s.beat
            bass = _partials(sr, _hz(ch[0] - 12), t_beat, [1.0, 0.3], [3.0, 5.0])
            s.add(t0, 0.6 * bass * _env(t_beat, 0.01, s.beat - 0.05, 0.05))
            if b in (0, 2):  # kick: falling sine
                f = 50 + 90 * np.exp(-t_beat * 25)
                kick = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t_beat * 14)
                s.add(t0, 0.35 * kick)
            hat_len = int(0.04 * sr)
            hat = np.diff(rng.standard_normal(hat_len + 1))
            hat *= np.exp(-np.arange(hat_len) / (0.008 * sr))
            s.add(t0 + s.beat / 2, 0.05 * hat)
        for j in range(8):
            if rng.random() < 0.2:
                continue
            deg = int(np.clip(deg + rng.integers(-2, 3), 4, 13))
            ln = step * (2 if rng.random() < 0.3 else 1)
            y = _partials(sr, _hz(s.degree(deg, 1)), t_note, odd, [2.0] * len(odd))
            s.add(bar * 4 * s.beat + j * step, 0.5 * y * _env(t_note, 0.02, ln - 0.04, 0.04))


def hold_music(rng: np.random.Generator, dur_s: float, sr: int, level_dbfs: float,
               style: str | None = None) -> tuple[np.ndarray, dict[str, object]]:
    """Hold music of ``dur_s`` seconds at ``level_dbfs`` RMS, with 30 ms fades at both ends."""
    style = style or STYLES[int(rng.integers(len(STYLES)))]
    score = _Score(rng, sr)
    {"piano": _piano, "pad": _pad, "melody": _melody}[style](score)
    n = round(dur_s * sr)
    y = np.resize(score.out, n)
    y *= 10 ** (level_dbfs / 20) / (np.sqrt(np.mean(y**2)) + 1e-12)
    f = min(int(0.03 * sr), n // 2)
    ramp = np.linspace(0.0, 1.0, f)
    y[:f] *= ramp
    y[n - f:] *= ramp[::-1]
    meta = {"style": style, "bpm": round(score.bpm, 1), "root_midi": score.root,
            "loop_s": round(score.length, 2), "level_dbfs": round(level_dbfs, 1)}
    return y.astype(np.float32), meta
