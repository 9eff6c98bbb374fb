"""Streaming RIFF/WAVE reader (stdlib + numpy).

Reads PCM (8-bit unsigned, 16/24/32-bit signed), IEEE float (32/64-bit),
WAVE_FORMAT_EXTENSIBLE with those subformats, and G.711 A-law / µ-law, with any channel count
and any sample rate >= 8000 Hz.  The stdlib :mod:`wave` module is not used: it cannot read
float or extensible files.

The header is parsed once by :func:`open_wav`; :meth:`WavReader.read_blocks` then reads the
``data`` chunk incrementally and yields float32 arrays of shape ``(n, channels)`` in [-1, 1].

Policy for damaged files: a file without a usable header is an error; a ``data`` chunk that is
shorter than declared (a recording cut by a power loss) delivers every complete frame that is
there and logs a warning.  A data size of 0 or 0xFFFFFFFF (written by streaming writers) means
"to the end of the file".
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from appliance.errors import (
    INPUT_EMPTY,
    INPUT_NOT_FOUND,
    INPUT_NOT_WAV,
    INPUT_TRUNCATED,
    INPUT_UNSUPPORTED,
    ApplianceError,
)

logger = logging.getLogger(__name__)

#: Lowest sample rate accepted (narrow-band telephony).
MIN_SAMPLE_RATE_HZ = 8000

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

_CONVERT_HINT = "convert it with e.g. `sox IN.wav -e signed-integer -b 16 OUT.wav`"
_UNLIMITED_SIZES = (0, 0xFFFFFFFF)


@dataclass(frozen=True, slots=True)
class WavInfo:
    """What the header says, after the damage policy has been applied.

    ``n_frames`` counts the complete frames that can actually be read (for a truncated file
    that is fewer than the header declared); ``declared_frames`` is what the header claimed
    (``None`` for a streamed file whose data size is "to the end").
    """

    path: Path
    sample_rate_hz: int
    channels: int
    sample_format: str  # e.g. "pcm_s16le", "float32", "mulaw"
    format_tag: int  # the effective tag (the subformat for WAVE_FORMAT_EXTENSIBLE)
    bits_per_sample: int  # container bits
    block_align_bytes: int
    n_frames: int
    declared_frames: int | None
    truncated: bool

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.sample_rate_hz


@dataclass(frozen=True, slots=True)
class _Fmt:
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


def _decode(raw: bytes, fmt: _Fmt) -> np.ndarray:
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


class WavReader:
    """An opened WAV file: header parsed, data read on demand by :meth:`read_blocks`."""

    __slots__ = ("_data_offset", "_fmt", "info")

    def __init__(self, info: WavInfo, fmt: _Fmt, data_offset: int) -> None:
        self.info = info
        self._fmt = fmt
        self._data_offset = data_offset

    @property
    def path(self) -> Path:
        return self.info.path

    def read_blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """Yield float32 ``(n, channels)`` arrays of at most ``block_frames`` frames, in order.

        Only complete frames are delivered.  If the file turns out shorter than at open time,
        what is there is delivered and a warning is logged.
        """
        if block_frames < 1:
            raise ValueError(f"block_frames must be >= 1, got {block_frames}")
        align = self._fmt.block_align_bytes
        remaining = self.info.n_frames
        try:
            f = open(self.info.path, "rb")  # noqa: SIM115 - closed by `with f` below
        except OSError as exc:
            raise ApplianceError(
                INPUT_NOT_FOUND, f"{self.info.path}: cannot be read any more ({exc.strerror})"
            ) from exc
        with f:
            f.seek(self._data_offset)
            while remaining > 0:
                want = min(block_frames, remaining)
                raw = f.read(want * align)
                got = len(raw) // align
                if got:
                    yield _decode(raw[: got * align], self._fmt)
                remaining -= got
                if got < want:
                    logger.warning(
                        "%s: file ended %d frames early while reading; delivered what was there",
                        self.info.path,
                        remaining,
                    )
                    return


def open_wav(path: Path | str) -> WavReader:
    """Parse the header of the WAV file at ``path``; raise :class:`ApplianceError` if unusable."""
    p = Path(path)
    if not p.exists():
        raise ApplianceError(INPUT_NOT_FOUND, f"{p}: no such file; check the path")
    if p.is_dir():
        raise ApplianceError(INPUT_NOT_FOUND, f"{p}: is a directory, not a WAV file")
    try:
        with open(p, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            return _parse(p, f, file_size)
    except OSError as exc:
        raise ApplianceError(
            INPUT_NOT_FOUND, f"{p}: cannot be read ({exc.strerror}); check the permissions"
        ) from exc


def _sniff(head: bytes) -> str:
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return " (it looks like an MP3)"
    for magic, name in ((b"fLaC", "FLAC"), (b"OggS", "Ogg"), (b"FORM", "AIFF")):
        if head.startswith(magic):
            return f" (it looks like {name})"
    if head[4:8] == b"ftyp":
        return " (it looks like MP4/M4A)"
    return ""


#: The largest real ``fmt `` chunk is 40 bytes (WAVE_FORMAT_EXTENSIBLE); allow a margin.
_MAX_FMT_BYTES = 4096


def _parse(p: Path, f: BinaryIO, file_size: int) -> WavReader:
    if file_size == 0:
        raise ApplianceError(INPUT_EMPTY, f"{p}: the file is empty (0 bytes)")
    head = f.read(12)
    if head[:4] == b"RF64" or head[:4] == b"RIFX":
        raise ApplianceError(
            INPUT_UNSUPPORTED,
            f"{p}: {head[:4].decode()} WAV files are not supported; {_CONVERT_HINT}",
        )
    if len(head) < 12 and b"RIFF".startswith(head[:4]) and b"WAVE".startswith(head[8:]):
        raise ApplianceError(
            INPUT_TRUNCATED, f"{p}: the WAV header is cut short (only {len(head)} bytes)"
        )
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise ApplianceError(
            INPUT_NOT_WAV,
            f"{p}: is not a WAV (RIFF/WAVE) file{_sniff(head)}; convert it to WAV first",
        )

    fmt: _Fmt | None = None
    data_offset: int | None = None
    data_size = 0
    streamed = False
    pos = 12
    while fmt is None or data_offset is None:
        f.seek(pos)
        header = f.read(8)
        if len(header) < 8:
            break
        chunk_id, size = header[:4], struct.unpack("<I", header[4:])[0]
        body = pos + 8
        if chunk_id == b"fmt ":
            if body + size > file_size or size > _MAX_FMT_BYTES:
                break  # a chunk size the file cannot hold decides no allocation
            raw = f.read(size)
            if len(raw) < size:
                break
            fmt = _parse_fmt(p, raw)
        elif chunk_id == b"data":
            data_offset, data_size = body, size
            if size in _UNLIMITED_SIZES and not _empty_data_chunk(f, body, file_size, size):
                data_size, streamed = file_size - body, True
                logger.info("%s: data size is %#x, reading to the end of the file", p, size)
                break
        if body + size > file_size:
            break
        pos = body + size + (size & 1)

    if fmt is None or data_offset is None:
        missing = "'fmt '" if fmt is None else "'data'"
        raise ApplianceError(
            INPUT_TRUNCATED,
            f"{p}: the WAV header is cut short or damaged (no {missing} chunk found)",
        )
    return _make_reader(p, fmt, data_offset, data_size, file_size, streamed)


def _empty_data_chunk(f: BinaryIO, body: int, file_size: int, size: int) -> bool:
    """True if a 0-size data chunk is really empty (followed by another chunk or the end)."""
    if size != 0:
        return False
    f.seek(body)
    nxt = f.read(8)
    if len(nxt) < 8:
        return len(nxt) == 0
    chunk_id, next_size = nxt[:4], struct.unpack("<I", nxt[4:])[0]
    looks_like_chunk = all(0x20 <= c < 0x7F for c in chunk_id) and chunk_id.strip() != b""
    return looks_like_chunk and body + 8 + next_size <= file_size


def _make_reader(
    p: Path, fmt: _Fmt, data_offset: int, data_size: int, file_size: int, streamed: bool
) -> WavReader:
    align = fmt.block_align_bytes
    available = max(0, file_size - data_offset)
    truncated = data_size > available
    usable = min(data_size, available)
    n_frames = usable // align
    declared = None if streamed else data_size // align
    if truncated:
        logger.warning(
            "%s: data chunk declares %d frames but only %d are in the file "
            "(recording cut short?); using what is there",
            p,
            data_size // align,
            n_frames,
        )
    elif usable % align:
        logger.warning("%s: data ends with a partial frame (%d bytes); ignored", p, usable % align)
    if n_frames == 0:
        raise ApplianceError(INPUT_EMPTY, f"{p}: contains no audio (0 frames)")
    info = WavInfo(
        path=p,
        sample_rate_hz=fmt.sample_rate_hz,
        channels=fmt.channels,
        sample_format=fmt.sample_format,
        format_tag=fmt.tag,
        bits_per_sample=fmt.bits_per_sample,
        block_align_bytes=align,
        n_frames=n_frames,
        declared_frames=declared,
        truncated=truncated,
    )
    return WavReader(info, fmt, data_offset)


def _parse_fmt(p: Path, raw: bytes) -> _Fmt:
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
                f"{_CONVERT_HINT}",
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
            f"{p}: uses {label} with {bits}-bit samples, which is not supported; {_CONVERT_HINT}",
        )
    if rate < MIN_SAMPLE_RATE_HZ:
        raise ApplianceError(
            INPUT_UNSUPPORTED,
            f"{p}: sample rate {rate} Hz is below the supported minimum of {MIN_SAMPLE_RATE_HZ} Hz",
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
    return _Fmt(tag, channels, rate, bits, expected_align, kind)


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
