"""Real recorded voices for the real-speech corpus: clips from Debian packages, no synthesis.

Sources (each package's own files, installed by ``scripts/setup.sh``; nothing is committed):

=============  ======  ==========================================  =============  ==============
speaker        sex     package / files                             native audio   licence
=============  ======  ==========================================  =============  ==============
en-allison     female  asterisk-core-sounds-en-g722 (Allison        G.722 16 kHz   CC-BY-SA-3.0
                       Smith, US English IVR prompts)
fr-june        female  asterisk-core-sounds-fr-g722 (June Wallack,  G.722 16 kHz   CC-BY-SA-3.0
                       Canadian French)
it-carlo       male    asterisk-core-sounds-it-g722 (Carlo, Italian) G.722 16 kHz  CC-BY-SA-3.0
fr-armelle     female  asterisk-prompt-fr-armelle (Armelle          GSM 8 kHz      BSD-style
                       Desjardins, French)                                        (M. Gutierrez)
en-dhd         male    pocketsphinx-testdata: goforward, something, 16 kHz raw     BSD-2 (CMU)
                       numbers, tidigits/dhd
en-austen      male    pocketsphinx-testdata: librivox/ (a reader   16 kHz         BSD-2 (CMU;
                       of Sense and Sensibility)                                   LibriVox PD)
en-cards       male    pocketsphinx-testdata: cards/                16 kHz         BSD-2 (CMU)
en-alsa        female  alsa-utils: /usr/share/sounds/alsa (the      48 kHz         GPL-2
                       speaker-test voice, « Front Left » …)
=============  ======  ==========================================  =============  ==============

Every clip is decoded to 16 kHz float32, trimmed to its voiced extent and normalised to an
active-speech RMS of 1.0 (as the espeak material of :mod:`tests.corpus.speech`).  Tones,
beeps and silence files are left out.  ``CORPUS_REAL_ROOT`` (default ``/``) relocates the
``/usr/share`` tree, e.g. to a folder where the ``.deb`` files were unpacked.
"""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
from scipy import signal

from .speech import FRAME_S, MERGE_GAP_S, THRESH_DB

RATE_HZ = 16000
_SKIP = ("beep", "tone", "silence", "dictate", "ding", "click", "queue-periodic", "-musiconhold")


@dataclass(frozen=True)
class Speaker:
    name: str
    sex: str
    lang: str
    files: tuple[str, ...]  # glob patterns under the root
    wideband: bool = True


SPEAKERS: dict[str, Speaker] = {s.name: s for s in (
    Speaker("en-allison", "f", "en", ("usr/share/asterisk/sounds/en_US_f_Allison/*.g722",
                                      "usr/share/asterisk/sounds/en_US_f_Allison/digits/*.g722")),
    Speaker("fr-june", "f", "fr", ("usr/share/asterisk/sounds/fr_CA_f_June/*.g722",
                                   "usr/share/asterisk/sounds/fr_CA_f_June/digits/*.g722")),
    Speaker("it-carlo", "m", "it", ("usr/share/asterisk/sounds/it_IT_m_Carlo/*.g722",
                                    "usr/share/asterisk/sounds/it_IT_m_Carlo/digits/*.g722")),
    Speaker("fr-armelle", "f", "fr", ("usr/share/asterisk/sounds/fr/*.gsm",
                                      "usr/share/asterisk/sounds/digits/fr/*.gsm"),
            wideband=False),
    Speaker("en-dhd", "m", "en", ("usr/share/pocketsphinx/test/data/goforward.raw",
                                  "usr/share/pocketsphinx/test/data/something.raw",
                                  "usr/share/pocketsphinx/test/data/numbers.raw",
                                  "usr/share/pocketsphinx/test/data/tidigits/dhd.*.raw")),
    Speaker("en-austen", "m", "en", ("usr/share/pocketsphinx/test/data/librivox/*.wav",)),
    Speaker("en-cards", "m", "en", ("usr/share/pocketsphinx/test/data/cards/*.wav",)),
    Speaker("en-alsa", "f", "en", ("usr/share/sounds/alsa/[FRS]*_*.wav",)),
)}


@dataclass(frozen=True)
class Clip:
    """One trimmed recording: audio at 16 kHz (active RMS 1.0) and its voiced segments."""

    audio: np.ndarray
    segs: tuple[tuple[float, float], ...]
    source: str

    @property
    def dur(self) -> float:
        return len(self.audio) / RATE_HZ


def root() -> Path:
    return Path(os.environ.get("CORPUS_REAL_ROOT", "/"))


def missing() -> list[str]:
    """Speakers with no clip on this machine (their packages are not installed)."""
    return [s.name for s in SPEAKERS.values() if not _paths(s)]


def _paths(s: Speaker) -> list[Path]:
    r = root()
    out: list[Path] = []
    for pat in s.files:
        out += sorted(p for p in r.glob(pat) if not any(k in p.name for k in _SKIP))
    return out


def decode(path: Path) -> np.ndarray:
    """Any of the source formats -> float32 mono at 16 kHz."""
    if path.suffix == ".g722":
        from G722 import G722  # PyPI G722 (public domain): the ITU reference decoder

        pcm = np.asarray(G722(RATE_HZ, 64000).decode(path.read_bytes()), np.float32) / 32768.0
        return pcm
    if path.suffix == ".raw":  # pocketsphinx: 16 kHz s16le
        return np.fromfile(path, "<i2").astype(np.float32) / 32768.0
    cmd = ["sox", str(path), "-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1", "-"]
    info = subprocess.run(["soxi", "-r", str(path)], capture_output=True, text=True, check=True)
    sr = int(float(info.stdout.strip()))
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    x = np.frombuffer(raw, "<f4").astype(np.float32)
    return soxr.resample(x, sr, RATE_HZ, quality="HQ").astype(np.float32) if sr != RATE_HZ else x


#: Recordings are not digital silence between words: a frame is voiced when it is within
#: 40 dB of the clip's peak *and* this far above its noise floor (its 10th percentile; the
#: threshold stays at least 20 dB under the peak).
FLOOR_MARGIN_DB = 12.0


def voiced_segments(x: np.ndarray, sr: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Active 10 ms frames of a real recording and their runs merged over pauses shorter
    than 0.3 s (as :func:`tests.corpus.speech.voiced_segments`, noise-floor aware).

    Energy is measured in the speech band (150-3800 Hz, zero-phase): breath pops, rumble and
    DC steps of real recordings are not speech."""
    f = round(sr * FRAME_S)
    n = len(x) // f
    sos = signal.butter(4, (150.0, min(3800.0, 0.45 * sr)), "bandpass", fs=sr, output="sos")
    y = signal.sosfiltfilt(sos, np.asarray(x, np.float64)) if len(x) > 64 else x
    e = (y[: n * f].reshape(n, f).astype(np.float64) ** 2).mean(axis=1)
    db = 10 * np.log10(e + 1e-20)
    floor = float(np.percentile(db, 10)) if n else -200.0
    act = db > max(db.max() - THRESH_DB, min(floor + FLOOR_MARGIN_DB, db.max() - 20.0), -90.0)
    runs: list[tuple[int, int]] = []
    max_gap = round(MERGE_GAP_S / FRAME_S)
    for i in np.flatnonzero(act):
        if runs and i - runs[-1][1] < max_gap:
            runs[-1] = (runs[-1][0], int(i) + 1)
        else:
            runs.append((int(i), int(i) + 1))
    return act, runs


_DC_SOS = signal.butter(2, 50.0, "highpass", fs=RATE_HZ, output="sos")


def trim(x: np.ndarray, source: str) -> Clip | None:
    x = signal.sosfilt(_DC_SOS, np.asarray(x, np.float64)).astype(np.float32)  # DC, rumble
    act, runs = voiced_segments(x, RATE_HZ)
    if not runs:
        return None
    f = round(RATE_HZ * FRAME_S)
    a, b = runs[0][0], runs[-1][1]
    y = x[a * f: b * f].astype(np.float32)
    frames = y[: (b - a) * f].reshape(b - a, f)
    rms = float(np.sqrt((frames[act[a:b]] ** 2).mean()))
    if rms <= 0:
        return None
    segs = tuple((float((s - a) * FRAME_S), float((e - a) * FRAME_S)) for s, e in runs)
    return Clip((y / rms).astype(np.float32), segs, source)


@functools.cache
def clips(name: str) -> tuple[Clip, ...]:
    """All usable clips of one speaker (0.25-8 s after trimming), in file order."""
    s = SPEAKERS[name]
    out = []
    for p in _paths(s):
        try:
            c = trim(decode(p), p.name)
        except (OSError, subprocess.CalledProcessError, ValueError):
            continue
        if c is not None and 0.25 <= c.dur <= 8.0:
            out.append(c)
    if not out:
        raise FileNotFoundError(f"no clips for speaker {name} under {root()}: install "
                                "its package (scripts/setup.sh)")
    return tuple(out)
