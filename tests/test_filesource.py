"""Tests of the file source (appliance.audio.filesource) and the resampler."""

from __future__ import annotations

import logging
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.audio.filesource import FileSource
from appliance.audio.resample import StreamResampler, expected_length, to_int16
from appliance.errors import (
    INPUT_BAD_CHANNEL,
    INPUT_MISMATCH,
    INPUT_NOT_FOUND,
    INPUT_NOT_WAV,
    ApplianceError,
)
from appliance.stream.blocks import PartyBlock

needs_sox = pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")


def write_wav(path: Path, x: np.ndarray, rate: int, kind: str = "f32") -> Path:
    """Write (n,) or (n, channels) float audio as a float32 or 16-bit PCM WAV file."""
    x2 = x.reshape(len(x), -1)
    channels = x2.shape[1]
    if kind == "f32":
        tag, bits, data = 3, 32, x2.astype("<f4").tobytes()
    else:
        tag, bits = 1, 16
        data = np.clip(np.round(x2 * 32768), -32768, 32767).astype("<i2").tobytes()
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data))
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body) + len(data)) + body + data)
    return path


def tone(freq_hz: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq_hz * np.arange(round(rate * seconds)) / rate)


def collect(src: FileSource) -> tuple[list[PartyBlock], np.ndarray, np.ndarray]:
    blocks = list(src.blocks())
    agent = np.concatenate([b.agent for b in blocks])
    customer = np.concatenate([b.customer for b in blocks])
    return blocks, agent, customer


def peak_hz(x: np.ndarray, rate: int = 16000) -> float:
    x = x.astype(np.float64)[400:-400]  # skip the edges
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


@pytest.mark.parametrize("rate", [8000, 11025, 16000, 22050, 44100, 48000])
def test_resamples_to_16k(tmp_path: Path, rate: int) -> None:
    seconds = 1.2345
    x = np.stack([tone(1000, rate, seconds), tone(3000, rate, seconds, 0.25)], axis=1)
    src = FileSource(write_wav(tmp_path / "c.wav", x, rate))
    assert src.sample_rate_hz == rate
    assert src.duration_s == pytest.approx(len(x) / rate)
    _, agent, customer = collect(src)
    assert abs(len(agent) - round(src.duration_s * 16000)) <= 2
    assert len(agent) == src.n_samples
    assert peak_hz(agent) == pytest.approx(1000, abs=2)
    assert peak_hz(customer) == pytest.approx(3000, abs=2)
    mid = slice(800, -800)
    assert rms(agent[mid]) / 32768 == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
    assert rms(customer[mid]) / 32768 == pytest.approx(0.25 / np.sqrt(2), rel=0.01)
    # timing: the 1 kHz sine keeps its phase, i.e. sample k is at k / 16000 s
    expected = 0.5 * 32768 * np.sin(2 * np.pi * 1000 * np.arange(len(agent)) / 16000)
    assert np.abs(agent[mid] - expected[mid]).max() < 0.01 * 32768


def test_blocks_have_exact_times_and_sizes(tmp_path: Path) -> None:
    x = np.stack([tone(500, 44100, 1.03), tone(700, 44100, 1.03)], axis=1)
    src = FileSource(write_wav(tmp_path / "c.wav", x, 44100), block_s=0.1)
    blocks, _, _ = collect(src)
    n = 0
    for b in blocks:
        assert b.t_s == n / 16000
        assert b.agent.dtype == np.int16 and b.customer.dtype == np.int16
        assert b.agent.shape == b.customer.shape == (len(b.agent),)
        n += len(b.agent)
    assert [len(b.agent) for b in blocks[:-1]] == [1600] * (len(blocks) - 1)
    assert 0 < len(blocks[-1].agent) <= 1600
    assert n == expected_length(len(x), 44100, 16000) == round(1.03 * 16000)


@pytest.mark.parametrize("rate", [16000, 44100])
def test_block_size_does_not_change_the_samples(tmp_path: Path, rate: int) -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(-0.5, 0.5, size=(round(rate * 0.77), 2))
    p = write_wav(tmp_path / "c.wav", x, rate)
    _, a1, c1 = collect(FileSource(p, block_s=0.01))
    _, a2, c2 = collect(FileSource(p, block_s=0.1))
    _, a3, c3 = collect(FileSource(p, block_s=0.333))
    assert np.array_equal(a1, a2) and np.array_equal(c1, c2)
    assert np.array_equal(a1, a3) and np.array_equal(c1, c3)


def test_16k_pcm_is_passed_through_bit_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    ints = rng.integers(-32768, 32768, size=(5000, 2))
    p = write_wav(tmp_path / "c.wav", ints / 32768, 16000, kind="s16")
    _, agent, customer = collect(FileSource(p))
    assert np.array_equal(agent, ints[:, 0]) and np.array_equal(customer, ints[:, 1])


def test_full_scale_float_clips_instead_of_wrapping(tmp_path: Path) -> None:
    x = np.tile([[1.0, -1.0], [1.5, -1.5]], (100, 1))
    _, agent, customer = collect(FileSource(write_wav(tmp_path / "c.wav", x, 16000)))
    assert agent.min() == 32767 and customer.max() == -32768


def test_7khz_at_48k_passes_and_above_8khz_is_removed_not_aliased(tmp_path: Path) -> None:
    seconds = 1.0
    x = np.stack([tone(7000, 48000, seconds), tone(10000, 48000, seconds)], axis=1)
    _, agent, customer = collect(FileSource(write_wav(tmp_path / "c.wav", x, 48000)))
    assert peak_hz(agent) == pytest.approx(7000, abs=2)  # below 8 kHz Nyquist: kept, in place
    # 10 kHz would alias to 6 kHz; it must be filtered out instead (> 60 dB down)
    assert rms(customer[800:-800]) < 0.5 / np.sqrt(2) * 32768 * 1e-3


@pytest.mark.parametrize(("agent_ch", "customer_ch"), [(0, 1), (1, 0), (2, 0)])
def test_channel_map(tmp_path: Path, agent_ch: int, customer_ch: int) -> None:
    freqs = (500, 1500, 2500)
    x = np.stack([tone(f, 8000, 0.5) for f in freqs], axis=1)
    p = write_wav(tmp_path / "c.wav", x, 8000)
    _, agent, customer = collect(
        FileSource(p, agent_channel=agent_ch, customer_channel=customer_ch)
    )
    assert peak_hz(agent) == pytest.approx(freqs[agent_ch], abs=3)
    assert peak_hz(customer) == pytest.approx(freqs[customer_ch], abs=3)


def test_two_files_with_different_rates(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    a = write_wav(tmp_path / "a.wav", tone(600, 8000, 2.0), 8000, kind="s16")
    c = write_wav(tmp_path / "c.wav", tone(1800, 44100, 1.25), 44100)
    with caplog.at_level(logging.WARNING):
        src = FileSource(agent_path=a, customer_path=c)
    assert "padded" in caplog.text  # 0.75 s difference
    assert src.input_rates_hz == (8000, 44100)
    assert src.duration_s == pytest.approx(2.0)
    blocks, agent, customer = collect(src)
    assert len(agent) == len(customer) == 32000 == src.n_samples
    assert peak_hz(agent) == pytest.approx(600, abs=2)
    assert peak_hz(customer[:19000]) == pytest.approx(1800, abs=2)
    assert rms(customer[20100:]) == 0  # padded with silence after 1.25 s
    assert rms(customer[100:19900]) > 5000
    assert all(len(b.agent) == len(b.customer) for b in blocks)


def test_two_files_shorter_agent_and_small_difference(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a = write_wav(tmp_path / "a.wav", tone(600, 22050, 1.0), 22050)
    c = write_wav(tmp_path / "c.wav", tone(1800, 16000, 1.3), 16000, kind="s16")
    with caplog.at_level(logging.WARNING):
        src = FileSource(agent_path=a, customer_path=c, block_s=0.05)
    assert caplog.text == ""  # 0.3 s: no warning
    _, agent, customer = collect(src)
    assert len(agent) == len(customer) == 20800
    assert rms(agent[16100:]) == 0 and rms(agent[:15900]) > 5000


def test_two_files_block_size_independent(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    a = write_wav(tmp_path / "a.wav", rng.uniform(-0.5, 0.5, 11025), 11025)
    c = write_wav(tmp_path / "c.wav", rng.uniform(-0.5, 0.5, 50000), 48000)
    _, a1, c1 = collect(FileSource(agent_path=a, customer_path=c, block_s=0.01))
    _, a2, c2 = collect(FileSource(agent_path=a, customer_path=c, block_s=0.1))
    assert np.array_equal(a1, a2) and np.array_equal(c1, c2)
    assert len(a1) == expected_length(50000, 48000, 16000)


def test_two_files_multichannel_takes_channel_0(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a = write_wav(tmp_path / "a.wav", np.stack([tone(700, 8000, 1), tone(2100, 8000, 1)], 1), 8000)
    c = write_wav(tmp_path / "c.wav", tone(1100, 8000, 1), 8000)
    with caplog.at_level(logging.WARNING):
        src = FileSource(agent_path=a, customer_path=c)
    assert "channel 0" in caplog.text and "a.wav" in caplog.text
    _, agent, customer = collect(src)
    assert peak_hz(agent) == pytest.approx(700, abs=3)
    assert peak_hz(customer) == pytest.approx(1100, abs=3)


@needs_sox
def test_sox_made_files(tmp_path: Path) -> None:
    stereo = tmp_path / "call.wav"
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            "44100",
            "-c",
            "2",
            "-e",
            "floating-point",
            "-b",
            "32",
            str(stereo),
            "synth",
            "1",
            "sine",
            "440",
            "sine",
            "1000",
        ],
        check=True,
    )
    _, agent, customer = collect(FileSource(stereo))
    assert len(agent) == 16000
    assert peak_hz(agent) == pytest.approx(440, abs=2)
    assert peak_hz(customer) == pytest.approx(1000, abs=2)
    ulaw = tmp_path / "agent.wav"
    subprocess.run(
        [
            "sox",
            "-n",
            "-r",
            "8000",
            "-c",
            "1",
            "-e",
            "u-law",
            str(ulaw),
            "synth",
            "1.5",
            "sine",
            "300",
            "vol",
            "0.5",
        ],
        check=True,
    )
    _, agent, customer = collect(FileSource(agent_path=ulaw, customer_path=stereo))
    assert len(agent) == len(customer) == 24000
    assert peak_hz(agent) == pytest.approx(300, abs=2)
    assert peak_hz(customer[:16000]) == pytest.approx(440, abs=2)


def test_truncated_data_delivers_what_is_there(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    x = np.stack([tone(1000, 8000, 2.0), tone(2000, 8000, 2.0)], axis=1)
    p = write_wav(tmp_path / "cut.wav", x, 8000, kind="s16")
    p.write_bytes(p.read_bytes()[: 44 + 8000 * 4])  # power cut after 1 s of 2
    with caplog.at_level(logging.WARNING):
        src = FileSource(p)
    assert "cut.wav" in caplog.text
    assert src.duration_s == pytest.approx(1.0)
    _, agent, customer = collect(src)
    assert len(agent) == len(customer) == 16000
    assert peak_hz(agent) == pytest.approx(1000, abs=2)


def make_stereo(tmp_path: Path, channels: int = 2, name: str = "call.wav") -> Path:
    return write_wav(tmp_path / name, np.zeros((800, channels)) + 0.1, 8000)


@pytest.mark.parametrize(
    ("agent_ch", "customer_ch", "needle"),
    [
        (0, 2, "has 2 channels"),
        (5, 1, "has 2 channels"),
        (-1, 1, "has 2 channels"),
        (1, 1, "both mapped to channel 1"),
    ],
)
def test_bad_channel_map(tmp_path: Path, agent_ch: int, customer_ch: int, needle: str) -> None:
    p = make_stereo(tmp_path)
    with pytest.raises(ApplianceError) as err:
        FileSource(p, agent_channel=agent_ch, customer_channel=customer_ch)
    assert err.value.code == INPUT_BAD_CHANNEL
    assert needle in err.value.message and "call.wav" in err.value.message


def test_mono_single_file_is_an_error(tmp_path: Path) -> None:
    p = write_wav(tmp_path / "mono.wav", tone(440, 8000, 0.5), 8000)
    with pytest.raises(ApplianceError) as err:
        FileSource(p)
    assert err.value.code == INPUT_BAD_CHANNEL
    assert "mono" in err.value.message and "--agent" in err.value.message


def test_input_combinations(tmp_path: Path) -> None:
    p = make_stereo(tmp_path)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"path": p, "agent_path": p, "customer_path": p}, "not both"),
        ({}, "no input"),
        ({"agent_path": p}, "--agent was given without --customer"),
        ({"customer_path": p}, "--customer was given without --agent"),
    ]
    for kwargs, needle in cases:
        with pytest.raises(ApplianceError) as err:
            FileSource(**kwargs)
        assert err.value.code == INPUT_MISMATCH and needle in err.value.message


def test_errors_come_at_construction(tmp_path: Path) -> None:
    good = make_stereo(tmp_path)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ApplianceError) as err:
        FileSource(agent_path=good, customer_path=tmp_path / "missing.wav")
    assert err.value.code == INPUT_NOT_FOUND and "missing.wav" in err.value.message
    with pytest.raises(ApplianceError) as err:
        FileSource(agent_path=tmp_path / "notes.txt", customer_path=good)
    assert err.value.code == INPUT_NOT_WAV and "notes.txt" in err.value.message


def test_bad_block_s(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="block_s"):
        FileSource(make_stereo(tmp_path), block_s=0)


# --- the resampler on its own -------------------------------------------------------------


def test_resampler_passthrough_and_shapes() -> None:
    r = StreamResampler(16000, 16000, channels=2)
    x = np.arange(20, dtype=np.float32).reshape(10, 2) / 100
    assert np.array_equal(r.process(x), x)
    assert r.process(np.zeros((0, 2), np.float32), last=True).shape == (0, 2)
    mono = StreamResampler(8000)
    y = mono.process(np.zeros(800, np.float32))
    assert y.ndim == 1
    with pytest.raises(ValueError):
        StreamResampler(8000, channels=2).process(np.zeros((10, 3), np.float32))


@pytest.mark.parametrize(("rate", "n"), [(44100, 44100 * 3 + 7), (8000, 8001), (22050, 5)])
def test_resampler_flushes_everything(rate: int, n: int) -> None:
    r = StreamResampler(rate)
    x = np.sin(np.arange(n) * 0.05).astype(np.float32)
    out = [r.process(x[i : i + 1000]) for i in range(0, n, 1000)]
    out.append(r.process(np.zeros(0, np.float32), last=True))
    total = sum(len(o) for o in out)
    assert total == expected_length(n, rate, 16000)
    assert abs(total - n * 16000 / rate) <= 0.5


def test_to_int16_clips_and_rounds() -> None:
    x = np.array([-2.0, -1.0, -0.5, 0.0, 1 / 65536, 0.999, 1.0, 3.0], np.float32)
    assert to_int16(x).tolist() == [-32768, -32768, -16384, 0, 0, 32735, 32767, 32767]
    assert to_int16(x).dtype == np.int16
