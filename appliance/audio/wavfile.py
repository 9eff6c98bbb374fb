"""Streaming RIFF/WAVE reader (stdlib + numpy).

Reads PCM (8-bit unsigned, 16/24/32-bit signed), IEEE float (32/64-bit),
WAVE_FORMAT_EXTENSIBLE with those subformats, and G.711 A-law / µ-law, with any channel count
and any sample rate from 8 to 384 kHz (the codecs: :mod:`appliance.audio.wavfmt`).  The stdlib
:mod:`wave` module is not used: it cannot read float or extensible files.

The header is parsed once by :func:`open_wav`; :meth:`WavReader.read_blocks` then reads the
``data`` chunk incrementally and yields float32 arrays of shape ``(n, channels)`` in [-1, 1].

Policy for damaged files: a file without a usable header is an error; a ``data`` chunk that is
shorter than declared (a recording cut by a power loss) delivers every complete frame that is
there and logs a warning.  A data size of 0 or 0xFFFFFFFF (written by streaming writers) means
"to the end of the file"; so does 0x7FFFF000 (what sox and espeak-ng write to a pipe) when the
file is shorter.

Input that is not a regular file (``-`` for standard input, a pipe, a FIFO, a character
device) is read as a stream: the header is parsed as it arrives (``fmt `` before ``data``),
no chunk is skipped by seeking, and the data is read until the declared size or the end of
the stream, whichever comes first.  Nothing is buffered beyond one block.
"""

from __future__ import annotations

import logging
import os
import stat
import struct
import sys
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from appliance.audio.wavfmt import CONVERT_HINT, Fmt, decode, parse_fmt
from appliance.errors import (
    INPUT_EMPTY,
    INPUT_NOT_A_FILE,
    INPUT_NOT_FOUND,
    INPUT_NOT_WAV,
    INPUT_TRUNCATED,
    INPUT_UNSUPPORTED,
    ApplianceError,
)

logger = logging.getLogger(__name__)

#: The path that means standard input.
STDIN = "-"

_UNLIMITED_SIZES = (0, 0xFFFFFFFF)
_PIPE_PLACEHOLDER = 0x7FFFF000
"""The data size sox and espeak-ng write when they cannot seek back to fix the header."""
_SKIP_PIECE = 1 << 16


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
    stream: bool = False
    """Read from a pipe or standard input: how many frames will come is not known until the
    end; ``n_frames`` is then what the header declares (0 for "to the end")."""

    @property
    def duration_s(self) -> float:
        """From the header; 0.0 for a stream of unknown length."""
        return self.n_frames / self.sample_rate_hz

    @property
    def name(self) -> str:
        """The path, or "standard input", for messages."""
        return "standard input" if str(self.path) == STDIN else str(self.path)


class WavReader:
    """An opened WAV file: header parsed, data read on demand by :meth:`read_blocks`."""

    __slots__ = ("_data_offset", "_fmt", "_stream", "info")

    def __init__(self, info: WavInfo, fmt: Fmt, data_offset: int,
                 stream: BinaryIO | None = None) -> None:
        self.info = info
        self._fmt = fmt
        self._data_offset = data_offset
        self._stream = stream

    @property
    def path(self) -> Path:
        return self.info.path

    def read_blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """Yield float32 ``(n, channels)`` arrays of at most ``block_frames`` frames, in order.

        Only complete frames are delivered.  If the file turns out shorter than at open time,
        what is there is delivered and a warning is logged.  A stream can be read once.
        """
        if block_frames < 1:
            raise ValueError(f"block_frames must be >= 1, got {block_frames}")
        if self._stream is not None:
            stream, self._stream = self._stream, None
            yield from self._read_stream(stream, block_frames)
            return
        if self.info.stream:
            raise ValueError(f"{self.info.name} is a stream and was read already")
        try:
            f = open(self.info.path, "rb")  # noqa: SIM115 - closed by `with f` below
        except OSError as exc:
            raise ApplianceError(
                INPUT_NOT_FOUND, f"{self.info.path}: cannot be read any more ({exc.strerror})"
            ) from exc
        with f:
            f.seek(self._data_offset)
            missing, _, _ = yield from self._frames(f, self.info.n_frames, block_frames)
        if missing:
            logger.warning(
                "%s: file ended %d frames early while reading; delivered what was there",
                self.info.path,
                missing,
            )

    def _read_stream(self, f: BinaryIO, block_frames: int) -> Iterator[np.ndarray]:
        declared = self.info.declared_frames
        try:
            try:
                missing, partial, delivered = yield from self._frames(
                    f, declared if declared is not None else -1, block_frames)
            except OSError as exc:
                raise ApplianceError(INPUT_TRUNCATED, f"{self.info.name}: reading failed "
                                     f"({exc.strerror or exc})") from exc
            if partial:
                logger.warning("%s: data ends with a partial frame (%d bytes); ignored",
                               self.info.name, partial)
            if missing:
                logger.warning("%s: the stream ended %d frames before the size its header "
                               "declared; delivered what came", self.info.name, missing)
            if delivered == 0:
                raise ApplianceError(INPUT_EMPTY, f"{self.info.name}: contains no audio "
                                     "(0 frames)")
        finally:
            if f is not _stdin():
                f.close()

    def _frames(self, f: BinaryIO, remaining: int,
                block_frames: int) -> Generator[np.ndarray, None, tuple[int, int, int]]:
        """Decoded blocks of at most ``block_frames`` frames read from ``f``: ``remaining``
        frames, or to the end when it is -1.  Returns the frames still missing when ``f``
        ended early, the bytes of a trailing partial frame, and the frames delivered."""
        align = self._fmt.block_align_bytes
        delivered = 0
        while remaining != 0:
            want = block_frames if remaining < 0 else min(block_frames, remaining)
            raw = f.read(want * align)
            got = len(raw) // align
            if got:
                yield decode(raw[: got * align], self._fmt)
                delivered += got
            if remaining > 0:
                remaining -= got
            if got < want:
                return max(remaining, 0), len(raw) % align, delivered
        return 0, 0, delivered


def open_wav(path: Path | str) -> WavReader:
    """Parse the header of the WAV file at ``path``; raise :class:`ApplianceError` if unusable.

    ``-`` is standard input; a pipe, FIFO or character device is read as a stream."""
    p = Path(path)
    if str(path) == STDIN:
        return _parse_stream(Path(STDIN), _stdin())
    try:
        mode = p.stat().st_mode
    except FileNotFoundError:
        raise ApplianceError(INPUT_NOT_FOUND, f"{p}: no such file; check the path") from None
    except OSError as exc:
        raise ApplianceError(
            INPUT_NOT_FOUND, f"{p}: cannot be read ({exc.strerror}); check the permissions"
        ) from exc
    if stat.S_ISDIR(mode):
        raise ApplianceError(INPUT_NOT_A_FILE, f"{p}: is a directory, not a WAV file")
    if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)
            or stat.S_ISSOCK(mode)):
        raise ApplianceError(INPUT_NOT_A_FILE, f"{p}: is not a file, a pipe or a character "
                             "device")
    try:
        if not stat.S_ISREG(mode):
            f = open(p, "rb")  # noqa: SIM115 - handed to the reader, which closes it
            try:
                return _parse_stream(p, f)
            except BaseException:
                f.close()
                raise
        with open(p, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            return _parse(p, f, file_size)
    except OSError as exc:
        raise ApplianceError(
            INPUT_NOT_FOUND, f"{p}: cannot be read ({exc.strerror}); check the permissions"
        ) from exc


def _stdin() -> BinaryIO:
    return sys.stdin.buffer


def _check_riff(name: str, head: bytes) -> None:
    """The 12-byte RIFF header, or the clearest error for what the file is instead."""
    if head[:4] == b"RF64" or head[:4] == b"RIFX":
        raise ApplianceError(
            INPUT_UNSUPPORTED,
            f"{name}: {head[:4].decode()} WAV files are not supported; {CONVERT_HINT}",
        )
    if len(head) < 12 and b"RIFF".startswith(head[:4]) and b"WAVE".startswith(head[8:]):
        raise ApplianceError(
            INPUT_TRUNCATED, f"{name}: the WAV header is cut short (only {len(head)} bytes)"
        )
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise ApplianceError(
            INPUT_NOT_WAV,
            f"{name}: is not a WAV (RIFF/WAVE) file{_sniff(head)}; convert it to WAV first",
        )


def _parse_stream(p: Path, f: BinaryIO) -> WavReader:
    """The header of a stream, read in order without seeking; the reader keeps ``f``."""
    name = "standard input" if str(p) == STDIN else str(p)
    head = f.read(12)
    if not head:
        raise ApplianceError(INPUT_EMPTY, f"{name}: no data arrived (the stream is empty)")
    _check_riff(name, head)
    fmt: Fmt | None = None
    while True:
        header = f.read(8)
        if len(header) < 8:
            missing = "'fmt '" if fmt is None else "'data'"
            raise ApplianceError(INPUT_TRUNCATED, f"{name}: the stream ended inside the WAV "
                                 f"header (no {missing} chunk)")
        chunk_id, size = header[:4], struct.unpack("<I", header[4:])[0]
        if chunk_id == b"data":
            break
        if chunk_id == b"fmt ":
            if size > _MAX_FMT_BYTES:
                raise ApplianceError(INPUT_NOT_WAV, f"{name}: damaged WAV header ('fmt ' "
                                     f"chunk of {size} bytes)")
            raw = f.read(size)
            if len(raw) < size:
                raise ApplianceError(INPUT_TRUNCATED, f"{name}: the stream ended inside the "
                                     "'fmt ' chunk")
            fmt = parse_fmt(Path(name), raw)
            rest = size & 1  # only its pad byte is left
        else:
            rest = size + (size & 1)
        if rest and not _skip(f, rest):
            raise ApplianceError(INPUT_TRUNCATED, f"{name}: the stream ended inside the WAV "
                                 f"header (in a {chunk_id!r} chunk)")
    if fmt is None:
        raise ApplianceError(INPUT_TRUNCATED, f"{name}: the 'data' chunk comes before the "
                             "'fmt ' chunk, which a stream cannot go back to; save it to a "
                             "file first")
    align = fmt.block_align_bytes
    known = size not in _UNLIMITED_SIZES and size != _PIPE_PLACEHOLDER
    declared = size // align if known else None
    info = WavInfo(path=p, sample_rate_hz=fmt.sample_rate_hz, channels=fmt.channels,
                   sample_format=fmt.sample_format, format_tag=fmt.tag,
                   bits_per_sample=fmt.bits_per_sample, block_align_bytes=align,
                   n_frames=declared or 0, declared_frames=declared, truncated=False,
                   stream=True)
    logger.info("%s: reading a WAV stream (%d Hz, %d channels, %s)", name, fmt.sample_rate_hz,
                fmt.channels, f"{declared} frames declared" if known else "length unknown")
    return WavReader(info, fmt, -1, stream=f)


def _skip(f: BinaryIO, n: int) -> bool:
    """Read and drop ``n`` bytes in bounded pieces; False if the stream ended first."""
    while n > 0:
        got = len(f.read(min(n, _SKIP_PIECE)))
        if got == 0:
            return False
        n -= got
    return True


def _sniff(head: bytes) -> str:
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return " (it looks like an MP3)"
    for magic, name in ((b"fLaC", "FLAC"), (b"OggS", "Ogg"), (b"FORM", "AIFF")):
        if head.startswith(magic):
            return f" (it looks like {name})"
    if head[4:8] == b"ftyp":
        return " (it looks like MP4/M4A)"
    if head.startswith(b"riff"):
        return (" (it looks like Sony Wave64, W64: convert it with "
                "`sox IN.w64 -e signed-integer -b 16 OUT.wav`)")
    return ""


#: The largest real ``fmt `` chunk is 40 bytes (WAVE_FORMAT_EXTENSIBLE); allow a margin.
_MAX_FMT_BYTES = 4096


def _parse(p: Path, f: BinaryIO, file_size: int) -> WavReader:
    if file_size == 0:
        raise ApplianceError(INPUT_EMPTY, f"{p}: the file is empty (0 bytes)")
    head = f.read(12)
    _check_riff(str(p), head)

    fmt: Fmt | None = None
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
            fmt = parse_fmt(p, raw)
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
    p: Path, fmt: Fmt, data_offset: int, data_size: int, file_size: int, streamed: bool
) -> WavReader:
    align = fmt.block_align_bytes
    available = max(0, file_size - data_offset)
    truncated = data_size > available
    if truncated and data_size == _PIPE_PLACEHOLDER:  # written to a pipe, then saved
        truncated, streamed = False, True
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
