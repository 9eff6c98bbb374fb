"""Signal processing for the corpus: room noise, keyboard typing, echo, the telephone band,
G.711 µ-law and a small WAV reader/writer (PCM16, float32, µ-law; mono or multi-channel)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import soxr
from scipy import fft as sfft
from scipy import signal

NOISE_KINDS = ("pink", "brown", "hvac", "murmur")
TEL_RATE_HZ = 8000
TEL_BUILD_RATE_HZ = 16000
TEL_BAND_HZ = (300.0, 3400.0)


def db2lin(db: float) -> float:
    return float(10.0 ** (db / 20.0))


def rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2) + 1e-20))


# ---------------------------------------------------------------------------- room noise
def room_noise(rng: np.random.Generator, n: int, sr: int, kind: str, level_dbfs: float,
               ) -> np.ndarray:
    """Coloured stationary-ish noise of ``n`` samples at ``level_dbfs`` RMS.

    pink (1/f), brown (1/f², rumble), hvac (low-passed pink + mains hum), murmur
    (speech-shaped noise with a slow syllable-rate modulation, like distant chatter).
    """
    m = sfft.next_fast_len(n, real=True)
    spec = sfft.rfft(rng.standard_normal(m))
    f = sfft.rfftfreq(m, 1.0 / sr)
    fc = np.maximum(f, 20.0)
    hp = (f / 40.0) ** 2 / (1 + (f / 40.0) ** 2)  # gentle high-pass against DC drift
    if kind == "pink":
        shape = 1 / np.sqrt(fc)
    elif kind == "brown":
        shape = 1 / fc
    elif kind == "hvac":
        shape = 1 / np.sqrt(fc) / (1 + (f / float(rng.uniform(500, 1200))) ** 2)
    elif kind == "murmur":
        shape = (f / (f + 250.0)) / (1 + (f / 900.0) ** 2)
    else:
        raise ValueError(kind)
    y = sfft.irfft(spec * shape * hp, m)[:n]
    t = np.arange(n) / sr
    if kind == "hvac":
        mains = 50.0 if rng.random() < 0.5 else 60.0
        y /= np.sqrt(np.mean(y**2)) + 1e-20
        for k, a in ((1, 0.25), (2, 0.15), (3, 0.08)):
            y += a * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 2 * np.pi))
    if kind == "murmur":
        env = np.zeros(n)
        for fm in rng.uniform(0.3, 4.5, 6):
            env += np.sin(2 * np.pi * fm * t + rng.uniform(0, 2 * np.pi))
        y *= 1.0 + 0.35 * env / 3.0
    y *= db2lin(level_dbfs) / (np.sqrt(np.mean(y**2)) + 1e-20)
    return y.astype(np.float32)


# ---------------------------------------------------------------------------- typing
def _click_bank(rng: np.random.Generator, sr: int, n_shapes: int = 10) -> list[np.ndarray]:
    ln = int(0.03 * sr)
    t = np.arange(ln) / sr
    bank = []
    for _ in range(n_shapes):
        burst = np.diff(rng.standard_normal(ln + 1)) * np.exp(-t / rng.uniform(0.0008, 0.0025))
        fr = min(rng.uniform(1500, 4500), 0.4 * sr)
        ring = np.sin(2 * np.pi * fr * t) * np.exp(-t / rng.uniform(0.002, 0.004))
        thock = np.sin(2 * np.pi * rng.uniform(180, 350) * t) * np.exp(-t / 0.008)
        c = burst + rng.uniform(0.4, 1.0) * ring + rng.uniform(0.2, 0.5) * thock
        bank.append(c / np.abs(c).max())
    return bank


def typing(rng: np.random.Generator, intervals: list[tuple[float, float]], n: int, sr: int,
           peak_dbfs: float) -> np.ndarray:
    """Keyboard clicks (key press + softer release) at 4–10 keys/s inside ``intervals``."""
    out = np.zeros(n, np.float32)
    bank = _click_bank(rng, sr)
    for s, e in intervals:
        t = s + rng.uniform(0.0, 0.1)
        while t < e - 0.05:
            amp = db2lin(peak_dbfs + rng.uniform(-5.0, 0.0))
            if rng.random() < 0.12:  # space bar / enter: louder, duller
                amp *= 1.4
            for dt, a in ((0.0, 1.0), (rng.uniform(0.04, 0.11), rng.uniform(0.3, 0.6))):
                c = bank[int(rng.integers(len(bank)))]
                i = int((t + dt) * sr)
                j = min(n, i + len(c))
                if i < j:
                    out[i:j] += (amp * a * c[: j - i]).astype(np.float32)
            t += float(rng.gamma(4.0, 0.035)) + (rng.uniform(0.3, 0.9) if rng.random() < 0.1 else 0)
    return out


# ---------------------------------------------------------------------------- echo
def echo(src: np.ndarray, sr: int, gain_db: float, delay_ms: float,
         lowpass_hz: float | None) -> np.ndarray:
    """Delayed, attenuated (optionally low-passed) copy of ``src`` — sidetone / line echo."""
    y = np.asarray(src, np.float64)
    if lowpass_hz is not None:
        y = signal.sosfilt(signal.butter(2, lowpass_hz, fs=sr, output="sos"), y)
    d = round(delay_ms * sr / 1000.0)
    out = np.zeros(len(src), np.float64)
    out[d:] = y[: len(y) - d] * db2lin(gain_db)
    return out.astype(np.float32)


# ---------------------------------------------------------------------------- telephone
_TEL_SOS = np.vstack([
    signal.butter(4, TEL_BAND_HZ[0], "highpass", fs=TEL_BUILD_RATE_HZ, output="sos"),
    signal.butter(10, TEL_BAND_HZ[1], "lowpass", fs=TEL_BUILD_RATE_HZ, output="sos"),
])


def telephone(x: np.ndarray) -> np.ndarray:
    """300–3400 Hz band-pass at 16 kHz, resample to 8 kHz, G.711 µ-law round trip."""
    y = signal.sosfilt(_TEL_SOS, np.asarray(x, np.float64))
    y = soxr.resample(y, TEL_BUILD_RATE_HZ, TEL_RATE_HZ, quality="HQ")
    return mulaw_decode(mulaw_encode(y))


_BIAS, _CLIP = 0x84, 32635


def mulaw_encode(x: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] -> G.711 µ-law bytes (ITU-T reference algorithm)."""
    pcm = np.clip(np.round(np.asarray(x, np.float64) * 32768.0), -32768, 32767).astype(np.int32)
    sign = np.where(pcm < 0, 0x80, 0)
    mag = np.minimum(np.abs(pcm), _CLIP) + _BIAS
    exp = np.clip(np.floor(np.log2(mag)).astype(np.int32) - 7, 0, 7)
    mant = (mag >> (exp + 3)) & 0x0F
    return (~(sign | (exp << 4) | mant) & 0xFF).astype(np.uint8)


def mulaw_decode(b: np.ndarray) -> np.ndarray:
    """G.711 µ-law bytes -> float32 in [-1, 1] (code 0xFF decodes to exact 0)."""
    u = ~np.asarray(b, np.int32) & 0xFF
    exp = (u >> 4) & 0x07
    mag = (((u & 0x0F) << 3) + _BIAS << exp) - _BIAS
    return (np.where(u & 0x80, -mag, mag) / 32768.0).astype(np.float32)


# ---------------------------------------------------------------------------- WAV I/O
_TAGS = {"pcm16": (1, 16), "float32": (3, 32), "mulaw": (7, 8)}


def write_wav(path: Path, data: np.ndarray, sr: int, fmt: str) -> None:
    """Write ``data`` (n,) or (n, channels) float in [-1, 1] as PCM16, float32 or µ-law WAV.

    Non-PCM formats get an 18-byte ``fmt`` chunk (cbSize = 0) and a ``fact`` chunk."""
    x = np.asarray(data, np.float64)
    x = x[:, None] if x.ndim == 1 else x
    n, ch = x.shape
    tag, bits = _TAGS[fmt]
    if fmt == "pcm16":
        payload = np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2").tobytes()
    elif fmt == "float32":
        payload = x.astype("<f4").tobytes()
    else:
        payload = mulaw_encode(x).tobytes()
    block = ch * bits // 8
    fmt_body = struct.pack("<HHIIHH", tag, ch, sr, sr * block, block, bits)
    chunks = []
    if tag == 1:
        chunks.append(b"fmt " + struct.pack("<I", 16) + fmt_body)
    else:
        chunks.append(b"fmt " + struct.pack("<I", 18) + fmt_body + struct.pack("<H", 0))
        chunks.append(b"fact" + struct.pack("<II", 4, n))
    pad = b"\x00" if len(payload) % 2 else b""
    chunks.append(b"data" + struct.pack("<I", len(payload)) + payload + pad)
    body = b"WAVE" + b"".join(chunks)
    Path(path).write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


def read_wav(path: Path) -> tuple[int, np.ndarray]:
    """Read a PCM16 / float32 / µ-law (or extensible) WAV -> (rate, float32 (n, channels))."""
    raw = Path(path).read_bytes()
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a RIFF/WAVE file")
    pos, fmt, data = 12, None, None
    while pos + 8 <= len(raw):
        cid, size = raw[pos:pos + 4], struct.unpack("<I", raw[pos + 4:pos + 8])[0]
        body = raw[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt = body
        elif cid == b"data":
            data = body
        pos += 8 + size + (size & 1)
    if fmt is None or data is None:
        raise ValueError(f"{path}: missing fmt or data chunk")
    tag, ch, sr, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == 0xFFFE:
        tag = struct.unpack("<H", fmt[24:26])[0]
    if tag == 1 and bits == 16:
        x = np.frombuffer(data[: len(data) // 2 * 2], "<i2").astype(np.float32) / 32768.0
    elif tag == 3 and bits == 32:
        x = np.frombuffer(data[: len(data) // 4 * 4], "<f4").astype(np.float32)
    elif tag == 7 and bits == 8:
        x = mulaw_decode(np.frombuffer(data, np.uint8))
    else:
        raise ValueError(f"{path}: unsupported WAV format tag {tag} / {bits} bits")
    n = len(x) // ch
    return sr, x[: n * ch].reshape(n, ch)
