"""Tests of the streaming WAV reader (appliance.audio.wavfile)."""

from __future__ import annotations

import io
import logging
import os
import shutil
import struct
import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.audio import wavfile
from appliance.audio.wavfile import open_wav
from appliance.errors import (
    INPUT_EMPTY,
    INPUT_NOT_FOUND,
    INPUT_NOT_WAV,
    INPUT_TRUNCATED,
    INPUT_UNSUPPORTED,
    ApplianceError,
)
from tests.memlimit import error_code_under_limit

GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
needs_sox = pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")


def chunk(cid: bytes, body: bytes, size: int | None = None) -> bytes:
    declared = len(body) if size is None else size
    return cid + struct.pack("<I", declared) + body + (b"\x00" if len(body) % 2 else b"")


def fmt_body(tag: int, channels: int, rate: int, bits: int, ext_tag: int | None = None) -> bytes:
    align = channels * bits // 8
    base = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    if ext_tag is None:
        return base
    return base + struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", ext_tag) + GUID_TAIL


def wav_bytes(
    fmt: bytes,
    data: bytes,
    *,
    before: bytes = b"",
    after: bytes = b"",
    data_size: int | None = None,
) -> bytes:
    body = b"WAVE" + before + chunk(b"fmt ", fmt) + chunk(b"data", data, data_size) + after
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write(tmp_path: Path, name: str, content: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(content)
    return p


def signal(n: int, channels: int) -> np.ndarray:
    """A deterministic test signal in (-0.9, 0.9), different per channel."""
    t = np.arange(n)[:, None]
    k = np.arange(1, channels + 1)[None, :]
    return 0.9 * np.sin(2 * np.pi * t * k * 0.013 + k)


def encode(x: np.ndarray, kind: str) -> bytes:
    """Encode with the usual full-scale 2**(bits-1), clipped at the positive end."""

    def ints(bits: int) -> np.ndarray:
        full = 2 ** (bits - 1)
        return np.clip(np.round(x * full), -full, full - 1).astype(np.int64)

    if kind == "u8":
        return (ints(8) + 128).astype(np.uint8).tobytes()
    if kind == "s16":
        return ints(16).astype("<i2").tobytes()
    if kind == "s24":
        return ints(24).astype("<i4").reshape(-1, 1).view(np.uint8)[:, :3].tobytes()
    if kind == "s32":
        return ints(32).astype("<i4").tobytes()
    if kind == "f32":
        return x.astype("<f4").tobytes()
    return x.astype("<f8").tobytes()


ENCODINGS = {  # kind: (tag, bits, max decode error: half a step + float32 rounding)
    "u8": (1, 8, 0.5 / 128 + 1e-7),
    "s16": (1, 16, 0.5 / 32768 + 1e-7),
    "s24": (1, 24, 0.5 / 2**23 + 1e-7),
    "s32": (1, 32, 1e-7),
    "f32": (3, 32, 1e-7),
    "f64": (3, 64, 1e-7),
}


def read_all(path: Path, block_frames: int = 1000) -> np.ndarray:
    return np.concatenate(list(open_wav(path).read_blocks(block_frames)))


@pytest.mark.parametrize("extensible", [False, True])
@pytest.mark.parametrize("kind", list(ENCODINGS))
def test_decodes_every_encoding(tmp_path: Path, kind: str, extensible: bool) -> None:
    tag, bits, tol = ENCODINGS[kind]
    x = signal(1234, 3)
    fmt = fmt_body(0xFFFE, 3, 22050, bits, tag) if extensible else fmt_body(tag, 3, 22050, bits)
    p = write(tmp_path, f"{kind}.wav", wav_bytes(fmt, encode(x, kind)))
    reader = open_wav(p)
    assert (reader.info.sample_rate_hz, reader.info.channels) == (22050, 3)
    assert reader.info.n_frames == 1234
    assert reader.info.duration_s == pytest.approx(1234 / 22050)
    assert reader.info.format_tag == tag
    y = read_all(p)
    assert y.dtype == np.float32 and y.shape == (1234, 3)
    assert np.abs(y - x).max() <= tol


def test_pcm_extremes_and_float_clipping(tmp_path: Path) -> None:
    s16 = np.array([-32768, 32767, 0], "<i2").tobytes()
    p = write(tmp_path, "a.wav", wav_bytes(fmt_body(1, 1, 8000, 16), s16))
    assert read_all(p)[:, 0].tolist() == [-1.0, 32767 / 32768, 0.0]
    u8 = bytes([0, 128, 255])
    p = write(tmp_path, "b.wav", wav_bytes(fmt_body(1, 1, 8000, 8), u8))
    assert read_all(p)[:, 0].tolist() == [-1.0, 0.0, 127 / 128]
    f = np.array([2.5, -3.0, np.nan, np.inf, 0.25], "<f4").tobytes()
    p = write(tmp_path, "c.wav", wav_bytes(fmt_body(3, 1, 8000, 32), f))
    assert read_all(p)[:, 0].tolist() == [1.0, -1.0, 0.0, 1.0, 0.25]


def test_g711_known_codes(tmp_path: Path) -> None:
    # ITU-T G.711 reference points, as 16-bit values.
    ulaw = write(
        tmp_path, "u.wav", wav_bytes(fmt_body(7, 1, 8000, 8), bytes([0xFF, 0x7F, 0x80, 0x00]))
    )
    assert (read_all(ulaw)[:, 0] * 32768).tolist() == [0, 0, 32124, -32124]
    alaw = write(
        tmp_path, "a.wav", wav_bytes(fmt_body(6, 1, 8000, 8), bytes([0xD5, 0x55, 0xAA, 0x2A]))
    )
    assert (read_all(alaw)[:, 0] * 32768).tolist() == [8, -8, 32256, -32256]


@needs_sox
@pytest.mark.parametrize("encoding", ["u-law", "a-law"])
def test_g711_all_codes_match_sox(tmp_path: Path, encoding: str) -> None:
    codes = bytes(range(256))
    tag = 7 if encoding == "u-law" else 6
    p = write(tmp_path, "g.wav", wav_bytes(fmt_body(tag, 1, 8000, 8), codes))
    (tmp_path / "codes.raw").write_bytes(codes)
    ref = subprocess.run(
        [
            "sox",
            "-t",
            "raw",
            "-r",
            "8000",
            "-e",
            encoding,
            "-b",
            "8",
            "-c",
            "1",
            str(tmp_path / "codes.raw"),
            "-t",
            "raw",
            "-e",
            "signed-integer",
            "-b",
            "16",
            "-",
        ],
        check=True,
        capture_output=True,
    ).stdout
    expected = np.frombuffer(ref, "<i2")
    assert np.array_equal(read_all(p)[:, 0] * 32768, expected)


SOX_CASES = [  # (sox encoding args, rate, channels, sample_format)
    (["-e", "floating-point", "-b", "32"], 44100, 2, "float32"),
    (["-e", "floating-point", "-b", "64"], 16000, 1, "float64"),
    (["-e", "signed-integer", "-b", "24"], 48000, 1, "pcm_s24le"),  # sox writes extensible
    (["-e", "signed-integer", "-b", "16"], 8000, 4, "pcm_s16le"),  # >2 ch: extensible
    (["-e", "signed-integer", "-b", "32"], 22050, 2, "pcm_s32le"),
    (["-e", "unsigned-integer", "-b", "8"], 11025, 1, "pcm_u8"),
    (["-e", "u-law"], 8000, 1, "mulaw"),
    (["-e", "a-law"], 8000, 2, "alaw"),
]


@needs_sox
@pytest.mark.parametrize(("enc", "rate", "channels", "kind"), SOX_CASES)
def test_sox_files_decode_like_sox(
    tmp_path: Path, enc: list[str], rate: int, channels: int, kind: str
) -> None:
    p = tmp_path / "x.wav"
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            str(rate),
            "-c",
            str(channels),
            *enc,
            str(p),
            "synth",
            "0.5",
            "sine",
            "440",
            "vol",
            "0.8",
        ],
        check=True,
    )
    raw = subprocess.run(
        ["sox", str(p), "-t", "raw", "-e", "floating-point", "-b", "64", "-"],
        check=True,
        capture_output=True,
    ).stdout
    expected = np.frombuffer(raw, "<f8").reshape(-1, channels)
    reader = open_wav(p)
    assert reader.info.sample_format == kind
    assert (reader.info.sample_rate_hz, reader.info.channels) == (rate, channels)
    assert reader.info.n_frames == rate // 2
    y = read_all(p, 777)
    assert y.shape == expected.shape
    assert np.abs(y - expected).max() < 1e-6
    # and it is really the 440 Hz sine
    spectrum = np.abs(np.fft.rfft(y[:, 0]))
    assert np.argmax(spectrum) * rate / len(y) == pytest.approx(440, abs=2)


def test_unknown_and_odd_chunks_are_skipped(tmp_path: Path) -> None:
    x = signal(101, 1)
    before = chunk(b"LIST", b"INFOISFT\x05\x00\x00\x00sox!\x00") + chunk(b"bext", b"abc")
    after = chunk(b"LIST", b"xyz")
    content = wav_bytes(fmt_body(1, 1, 16000, 16), encode(x, "s16"), before=before, after=after)
    p = write(tmp_path, "chunks.wav", content)
    assert open_wav(p).info.n_frames == 101  # odd-size data: the pad byte is not a frame
    assert np.abs(read_all(p) - x).max() < 1.6e-5


def test_data_before_fmt(tmp_path: Path) -> None:
    x = signal(50, 2)
    body = b"WAVE" + chunk(b"data", encode(x, "s16")) + chunk(b"fmt ", fmt_body(1, 2, 8000, 16))
    p = write(tmp_path, "df.wav", b"RIFF" + struct.pack("<I", len(body)) + body)
    assert np.abs(read_all(p) - x).max() < 1.6e-5


@pytest.mark.parametrize("block_frames", [1, 7, 100, 5000])
def test_blocks_are_bounded_and_independent_of_size(tmp_path: Path, block_frames: int) -> None:
    x = signal(1000, 2)
    p = write(tmp_path, "b.wav", wav_bytes(fmt_body(1, 2, 8000, 24), encode(x, "s24")))
    blocks = list(open_wav(p).read_blocks(block_frames))
    assert all(1 <= len(b) <= block_frames for b in blocks)
    assert np.array_equal(np.concatenate(blocks), read_all(p, 1000))


def test_reads_incrementally(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    x = signal(4000, 1)
    content = wav_bytes(fmt_body(1, 1, 8000, 16), encode(x, "s16"))
    p = write(tmp_path, "inc.wav", content)
    blocks = open_wav(p).read_blocks(1000)
    first = next(blocks)
    # Cut the file behind the reader's back: a reader that loaded it all would not notice.
    p.write_bytes(content[: 44 + 2500 * 2])
    with caplog.at_level(logging.WARNING):
        rest = list(blocks)
    assert len(first) + sum(len(b) for b in rest) == 2500
    assert "ended" in caplog.text


@pytest.mark.parametrize("size", [0, 0xFFFFFFFF])
def test_streamed_data_size_means_to_end_of_file(tmp_path: Path, size: int) -> None:
    x = signal(300, 2)
    p = write(
        tmp_path, "s.wav", wav_bytes(fmt_body(3, 2, 8000, 32), encode(x, "f32"), data_size=size)
    )
    info = open_wav(p).info
    assert info.n_frames == 300 and info.declared_frames is None and not info.truncated
    assert np.abs(read_all(p) - x).max() < 1e-7


def test_truncated_data_delivers_what_is_there(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    x = signal(1000, 2)
    data = encode(x, "s16")
    content = wav_bytes(fmt_body(1, 2, 8000, 16), data)[: 44 + 600 * 4 + 3]  # + a partial frame
    p = write(tmp_path, "cut.wav", content)
    with caplog.at_level(logging.WARNING):
        reader = open_wav(p)
    assert "cut short" in caplog.text and "cut.wav" in caplog.text
    assert reader.info.truncated and reader.info.declared_frames == 1000
    assert reader.info.n_frames == 600
    y = np.concatenate(list(reader.read_blocks(256)))
    assert y.shape == (600, 2) and np.abs(y - x[:600]).max() < 1.6e-5


@pytest.mark.parametrize(
    "content",
    [
        b"RIFF\x24\x00",  # cut inside the RIFF header
        b"RIFF\x24\x00\x00\x00WAVE",  # no chunks at all
        b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x02\x00",  # fmt cut short
        b"RIFF\x24\x00\x00\x00WAVE" + chunk(b"fmt ", fmt_body(1, 1, 8000, 16)),  # no data
        b"RIFF\x24\x00\x00\x00WAVE" + chunk(b"LIST", b"abcd", size=4000),  # chunk past the end
    ],
)
def test_truncated_header(tmp_path: Path, content: bytes) -> None:
    p = write(tmp_path, "h.wav", content)
    with pytest.raises(ApplianceError) as err:
        open_wav(p)
    assert err.value.code == INPUT_TRUNCATED
    assert "h.wav" in err.value.message


@pytest.mark.parametrize(
    ("content", "hint"),
    [
        (b"hello, this is a text file\n", ""),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(100), "MP3"),
        (b"\xff\xfb\x90\x00" + bytes(100), "MP3"),
        (b"fLaC" + bytes(100), "FLAC"),
        (b"RIFF\x24\x00\x00\x00AVI LIST" + bytes(100), ""),
        (b"hi", ""),
    ],
)
def test_not_a_wav(tmp_path: Path, content: bytes, hint: str) -> None:
    p = write(tmp_path, "song.mp3", content)
    with pytest.raises(ApplianceError) as err:
        open_wav(p)
    assert err.value.code == INPUT_NOT_WAV
    assert "song.mp3" in err.value.message and hint in err.value.message


@pytest.mark.parametrize(
    "content",
    [
        b"",
        wav_bytes(fmt_body(1, 1, 8000, 16), b""),  # zero-size data chunk at the end
        wav_bytes(fmt_body(1, 1, 8000, 16), b"", after=chunk(b"LIST", b"INFO")),
        wav_bytes(fmt_body(1, 2, 8000, 16), b"\x01\x00"),  # less than one frame
    ],
)
def test_empty(tmp_path: Path, content: bytes) -> None:
    p = write(tmp_path, "e.wav", content)
    with pytest.raises(ApplianceError) as err:
        open_wav(p)
    assert err.value.code == INPUT_EMPTY and "e.wav" in err.value.message


@pytest.mark.parametrize(
    ("fmt", "needle"),
    [
        (fmt_body(2, 1, 8000, 4), "0x0002 (Microsoft ADPCM)"),
        (fmt_body(0x11, 1, 8000, 4), "0x0011"),
        (struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 12), "12-bit"),
        (fmt_body(3, 1, 8000, 16), "0x0003"),
        (fmt_body(7, 1, 8000, 16), "0x0007"),
        (fmt_body(0xFFFE, 1, 8000, 16, ext_tag=2), "0x0002"),
        (fmt_body(1, 1, 4000, 16), "4000 Hz"),
    ],
)
def test_unsupported(tmp_path: Path, fmt: bytes, needle: str) -> None:
    p = write(tmp_path, "u.wav", wav_bytes(fmt, bytes(64)))
    with pytest.raises(ApplianceError) as err:
        open_wav(p)
    assert err.value.code == INPUT_UNSUPPORTED
    assert needle in err.value.message and "u.wav" in err.value.message


def test_unsupported_extensible_guid_and_rf64(tmp_path: Path) -> None:
    fmt = fmt_body(0xFFFE, 1, 8000, 16, ext_tag=1)[:-14] + bytes(14)
    p = write(tmp_path, "g.wav", wav_bytes(fmt, bytes(64)))
    with pytest.raises(ApplianceError) as err:
        open_wav(p)
    assert err.value.code == INPUT_UNSUPPORTED
    p = write(tmp_path, "r.wav", b"RF64" + wav_bytes(fmt_body(1, 1, 8000, 16), bytes(8))[4:])
    with pytest.raises(ApplianceError) as err:
        open_wav(p)
    assert err.value.code == INPUT_UNSUPPORTED and "RF64" in err.value.message


def test_damaged_fmt(tmp_path: Path) -> None:
    p = write(tmp_path, "z.wav", wav_bytes(fmt_body(1, 0, 8000, 16), bytes(8)))
    with pytest.raises(ApplianceError) as err:
        open_wav(p)
    assert err.value.code == INPUT_NOT_WAV and "0 channels" in err.value.message


def test_not_found(tmp_path: Path) -> None:
    with pytest.raises(ApplianceError) as err:
        open_wav(tmp_path / "missing.wav")
    assert err.value.code == INPUT_NOT_FOUND and "missing.wav: no such file" in err.value.message
    with pytest.raises(ApplianceError) as err:  # there, but not something to read audio from
        open_wav(tmp_path)
    assert err.value.code == "input.not_a_file" and "is a directory" in err.value.message


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can read anything")
def test_unreadable(tmp_path: Path) -> None:
    p = write(tmp_path, "locked.wav", wav_bytes(fmt_body(1, 1, 8000, 16), bytes(8)))
    p.chmod(0)
    with pytest.raises(ApplianceError) as err:
        open_wav(p)
    assert err.value.code == INPUT_NOT_FOUND


def test_messages_are_one_line(tmp_path: Path) -> None:
    p = write(tmp_path, "t.wav", b"not a wav at all")
    with pytest.raises(ApplianceError) as err:
        open_wav(p)
    assert "\n" not in str(err.value) and str(err.value).endswith(f"[{INPUT_NOT_WAV}]")


def test_a_huge_fmt_chunk_size_allocates_nothing(tmp_path: Path) -> None:
    """44 bytes whose ``fmt `` chunk claims 0xFFFFFFFF bytes: a clean truncation error, not
    a 4 GiB read (issue 10, finding 3)."""
    body = b"WAVE" + chunk(b"fmt ", fmt_body(1, 1, 8000, 16), 0xFFFFFFFF) + chunk(b"data", b"")
    p = write(tmp_path, "huge_fmt.wav", b"RIFF" + struct.pack("<I", len(body)) + body)
    # under a 1 GiB address-space limit a read of the declared size is a MemoryError
    code, err = error_code_under_limit("from appliance.audio.wavfile import open_wav as f",
                                       str(p), 1 << 30, timeout_s=60)
    assert code == INPUT_TRUNCATED, err


# -- streams: standard input, pipes, FIFOs ---------------------------------------------------
def _stream(data: bytes) -> Any:
    """What a pipe gives the reader: bytes in order, no seeking back (BytesIO never is)."""
    return io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]


def test_a_stream_is_read_in_order_to_its_end(tmp_path: Path) -> None:
    x = (np.arange(16000) % 200 - 100).astype("<i2")
    body = x.tobytes()
    fmt = fmt_body(1, 2, 8000, 16)
    # a 300 KB chunk before 'fmt ' is skipped in bounded pieces, never read whole
    for size in (0x7FFFF000, 0xFFFFFFFF, 0, len(body)):
        data = (b"RIFF" + struct.pack("<I", 0x7FFFF024) + b"WAVE"
                + b"LIST" + struct.pack("<I", 300_001) + bytes(300_001) + b"\0"
                + b"fmt " + struct.pack("<I", len(fmt)) + fmt
                + b"data" + struct.pack("<I", size) + body)
        r = wavfile._parse_stream(Path("-"), _stream(data))
        assert r.info.stream and r.info.name == "standard input"
        assert r.info.declared_frames == (8000 if size == len(body) else None)
        got = np.concatenate(list(r.read_blocks(333)))
        assert got.shape == (8000, 2)
        np.testing.assert_array_equal((got.reshape(-1) * 32768).astype(np.int16), x)
        with pytest.raises(ValueError, match="read already"):
            list(r.read_blocks(333))


def test_a_stream_stops_at_its_declared_size_and_says_when_it_ends_early(
        caplog: pytest.LogCaptureFixture) -> None:
    fmt = fmt_body(1, 1, 8000, 16)
    head = b"RIFF\0\0\0\0WAVEfmt " + struct.pack("<I", len(fmt)) + fmt
    r = wavfile._parse_stream(Path("p"), _stream(head + b"data" + struct.pack("<I", 200)
                                                 + bytes(1000)))
    assert sum(len(b) for b in r.read_blocks(64)) == 100  # not the trailing bytes
    r = wavfile._parse_stream(Path("p"), _stream(head + b"data" + struct.pack("<I", 2000)
                                                 + bytes(501)))
    assert sum(len(b) for b in r.read_blocks(64)) == 250
    assert "ended 750 frames before" in caplog.text and "partial frame" in caplog.text


def test_bad_streams_are_clean_errors() -> None:
    fmt = fmt_body(1, 1, 8000, 16)
    cases = {
        b"": "input.empty",
        b"RIFF\0\0\0\0WAVE": "input.truncated",
        b"RIFF\0\0\0\0WAVEdata\0\0\0\0" + bytes(100): "input.truncated",  # data before fmt
        b"RIFF\0\0\0\0WAVEfmt \xff\xff\xff\xff": "input.not_wav",  # no 4 GB allocation
        b"RIFF\0\0\0\0WAVEJUNK\xff\xff\xff\x7f" + bytes(10): "input.truncated",
        b"RIFF\0\0\0\0WAVEfmt " + struct.pack("<I", 16) + fmt + b"data\0\0\0\0":
            "input.empty",
        b"riff.\x91\xcf\x11\xa5\xd6\x28\xdb\x04\xc1\x00\x00": "input.not_wav",
    }
    for data, code in cases.items():
        with pytest.raises(ApplianceError) as err:
            r = wavfile._parse_stream(Path("-"), _stream(data))
            list(r.read_blocks(100))
        assert err.value.code == code, data[:24]
    assert "W64" in str(err.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_streamed(tmp_path: Path) -> None:
    x = (np.arange(24000) % 300 - 150).astype("<i2")
    data = wav_bytes(fmt_body(1, 2, 16000, 16), x.tobytes())
    fifo = tmp_path / "call.fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as f:
            for i in range(0, len(data), 4096):  # arrives in pieces, as from a pipe
                f.write(data[i:i + 4096])

    writer = threading.Thread(target=feed)
    writer.start()
    r = open_wav(fifo)
    got = np.concatenate(list(r.read_blocks(1000)))
    writer.join(10)
    assert r.info.stream and got.shape == (12000, 2)


def test_sample_rates_beyond_any_recorder_are_refused(tmp_path: Path) -> None:
    fmt = struct.pack("<HHIIHH", 1, 2, 0xFFFFFFFF, 0xFFFFFFFF, 4, 16)
    p = write(tmp_path, "r.wav", wav_bytes(fmt, bytes(400)))
    with pytest.raises(ApplianceError) as err:
        open_wav(p)
    assert err.value.code == "input.unsupported_format" and "above the supported" in str(err.value)
