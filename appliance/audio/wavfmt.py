"""WAVE ``fmt `` chunks and sample codecs: which encodings the reader takes, and decoding
whole frames of them into float32 (PCM 8/16/24/32-bit, IEEE float 32/64-bit, G.711 A-law
and µ-law, WAVE_FORMAT_EXTENSIBLE with those subformats)."""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.errors import INPUT_NOT_WAV, INPUT_UNSUPPORTED, ApplianceError

logger = logging.getLogger("appliance.audio.wavfile")

#: Lowest sample rate accepted (narrow-band telephony).
MIN_SAMPLE_RATE_HZ = 8000
#: Highest sample rate accepted (studio recorders go to 384 kHz; anything above is damage).
MAX_SAMPLE_RATE_HZ = 384_000

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_ALAW = 0x0006
WAVE_FORMAT_MULAW = 0x0007
WAVE_FORMAT_EXTENSIBLE = 0xFFFE

# The 14 bytes that follow the 2-byte format tag in a KSDATAFORMAT_SUBTYPE_* GUID.
_KSDATAFORMAT_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"

# Names of some encodings people meet in practice, for error messages only.
_FORMAT_NAMES = {
    0x0002: "Microsoft ADPCM",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0040: "G.721 ADPCM",
    0x0045: "G.726 ADPCM",
    0x0050: "MPEG audio",
    0x0055: "MPEG Layer 3 (MP3)",
    0x0064: "G.726 ADPCM",
}

CONVERT_HINT = "convert it with e.g. `sox IN.wav -e signed-integer -b 16 OUT.wav`"


@dataclass(frozen=True, slots=True)
class Fmt:
    """A usable ``fmt `` chunk (the effective tag: the subformat of an extensible one)."""

    tag: int
    channels: int
    sample_rate_hz: int
    bits_per_sample: int
    block_align_bytes: int
    sample_format: str


def _ulaw_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    value = np.where(u & 0x80, -magnitude, magnitude)
    return (value / 32768.0).astype(np.float32)


def _alaw_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    value = np.where(a & 0x80, magnitude, -magnitude)
    return (value / 32768.0).astype(np.float32)


_ULAW = _ulaw_table()
_ALAW = _alaw_table()


def decode(raw: bytes, fmt: Fmt) -> np.ndarray:
    """Decode whole frames of ``raw`` into float32 ``(n, channels)`` in [-1, 1]."""
    kind = fmt.sample_format
    if kind == "pcm_u8":
        x = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif kind == "pcm_s16le":
        x = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif kind == "pcm_s24le":
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3)
        wide = np.zeros((b.shape[0], 4), dtype=np.uint8)
        wide[:, 1:] = b  # value << 8 as little-endian int32: sign comes for free
        x = wide.view("<i4").reshape(-1).astype(np.float32) / 2147483648.0
    elif kind == "pcm_s32le":
        x = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2147483648.0).astype(np.float32)
    elif kind in ("float32", "float64"):
        dtype = "<f4" if kind == "float32" else "<f8"
        f = np.nan_to_num(np.frombuffer(raw, dtype=dtype), nan=0.0, posinf=1.0, neginf=-1.0)
        x = np.clip(f, -1.0, 1.0).astype(np.float32)
    elif kind == "mulaw":
        x = _ULAW[np.frombuffer(raw, dtype=np.uint8)]
    elif kind == "alaw":
        x = _ALAW[np.frombuffer(raw, dtype=np.uint8)]
    else:  # pragma: no cover - _parse_fmt only lets the kinds above through
        raise AssertionError(kind)
    return x.reshape(-1, fmt.channels)


def parse_fmt(p: Path, raw: bytes) -> Fmt:
    if len(raw) < 16:
        raise ApplianceError(
            INPUT_NOT_WAV, f"{p}: damaged WAV header ('fmt ' chunk is only {len(raw)} bytes)"
        )
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack("<HHIIHH", raw[:16])
    if tag == WAVE_FORMAT_EXTENSIBLE:
        if len(raw) < 40:
            raise ApplianceError(
                INPUT_NOT_WAV, f"{p}: damaged WAV header (extensible 'fmt ' chunk too short)"
            )
        guid = raw[24:40]
        if guid[2:] != _KSDATAFORMAT_GUID_TAIL:
            raise ApplianceError(
                INPUT_UNSUPPORTED,
                f"{p}: uses an unknown WAVE_FORMAT_EXTENSIBLE subformat {guid.hex()}; "
                f"{CONVERT_HINT}",
            )
        tag = struct.unpack("<H", guid[:2])[0]
    if channels < 1:
        raise ApplianceError(INPUT_NOT_WAV, f"{p}: damaged WAV header (0 channels)")
    kind = _sample_format(tag, bits)
    if kind is None:
        name = _FORMAT_NAMES.get(tag, "")
        label = f"format tag {tag:#06x}" + (f" ({name})" if name else "")
        raise ApplianceError(
            INPUT_UNSUPPORTED,
            f"{p}: uses {label} with {bits}-bit samples, which is not supported; {CONVERT_HINT}",
        )
    if rate < MIN_SAMPLE_RATE_HZ:
        raise ApplianceError(
            INPUT_UNSUPPORTED,
            f"{p}: sample rate {rate} Hz is below the supported minimum of {MIN_SAMPLE_RATE_HZ} Hz",
        )
    if rate > MAX_SAMPLE_RATE_HZ:
        raise ApplianceError(
            INPUT_UNSUPPORTED,
            f"{p}: sample rate {rate} Hz is above the supported maximum of "
            f"{MAX_SAMPLE_RATE_HZ} Hz (a damaged header?)",
        )
    expected_align = channels * (bits // 8)
    if block_align != expected_align:
        logger.warning(
            "%s: header says block align %d, expected %d for %d x %d-bit; using %d",
            p,
            block_align,
            expected_align,
            channels,
            bits,
            expected_align,
        )
    return Fmt(tag, channels, rate, bits, expected_align, kind)


def _sample_format(tag: int, bits: int) -> str | None:
    if tag == WAVE_FORMAT_PCM:
        return {8: "pcm_u8", 16: "pcm_s16le", 24: "pcm_s24le", 32: "pcm_s32le"}.get(bits)
    if tag == WAVE_FORMAT_IEEE_FLOAT:
        return {32: "float32", 64: "float64"}.get(bits)
    if tag == WAVE_FORMAT_MULAW and bits == 8:
        return "mulaw"
    if tag == WAVE_FORMAT_ALAW and bits == 8:
        return "alaw"
    return None
