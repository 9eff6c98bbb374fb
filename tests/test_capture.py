"""Live capture with a fake PortAudio (channel map, resampling, two-device alignment,
overflow and drop counting, device loss and reconnect), device resolution, and one test on
a real PortAudio device: a private PulseAudio server playing the demo call.

The fake devices deliver their blocks on the virtual time of the test's event loop
(tests/virtual_time.py), which is also the capture's clock: pacing, gaps, stalls and the
reconnect backoff are exact, whatever the machine's speed."""

from __future__ import annotations

import asyncio
import builtins
import io
import json
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from appliance.audio import capture, devices
from appliance.audio.capture import CaptureSource
from appliance.audio.devices import resolve_device
from appliance.config import AudioConfig
from appliance.errors import (
    AUDIO_DEVICE_AMBIGUOUS,
    AUDIO_DEVICE_CHANNELS,
    AUDIO_DEVICE_NOT_FOUND,
    AUDIO_PORTAUDIO_MISSING,
    CONFIG_INVALID,
    ApplianceError,
)
from appliance.stream.pipeline import BlockQueue
from tests import pulse, virtual_time
from tests.virtual_time import VirtualTimeLoop

Signal = Callable[[int, int, int, int], np.ndarray]  # (start, n, rate, channels) -> (n, ch)


def const(*levels: float) -> Signal:
    def gen(start: int, n: int, rate: int, channels: int) -> np.ndarray:
        return np.tile(np.array(levels[:channels], np.float32), (n, 1))
    return gen


class FakePortAudioError(Exception):
    pass


class FakeFlags:
    def __init__(self, overflow: bool) -> None:
        self.input_overflow = overflow

    def __bool__(self) -> bool:
        return self.input_overflow


class FakeStream:
    """A PortAudio input stream whose blocks are due at ``(pos + n) / rate`` seconds after
    its start on the virtual clock: each is delivered by a timer of the event loop (or at
    once by :func:`stall`, as PortAudio's thread would while the loop is blocked)."""

    def __init__(self, sd: FakeSD, *, device: int, channels: int, samplerate: float,
                 blocksize: int, dtype: str, callback: Any, finished_callback: Any) -> None:
        sd.open_times.append(sd.now())
        if sd.fail_opens > 0:
            sd.fail_opens -= 1
            raise FakePortAudioError("Error opening InputStream: Device unavailable [-9985]")
        assert dtype == "float32"
        self.sd, self.dev = sd, sd.devices[device]
        assert channels <= self.dev["max_input_channels"]
        self.channels, self.rate, self.n = channels, int(samplerate), blocksize
        self.callback, self.finished_callback = callback, finished_callback
        self.active = False
        self.paused = False
        self.stopped = False
        self.pos = self.k = 0
        self.t0 = 0.0
        sd.streams.append(self)

    def start(self) -> None:  # (in the capture's opener thread)
        self.active = True
        self.t0 = self.sd.now()
        if self.sd.loop is None:  # real time: PortAudio's own thread
            threading.Thread(target=self._run_realtime, daemon=True).start()
        else:
            self.sd.loop.call_soon_threadsafe(self._tick)

    def _run_realtime(self) -> None:
        while not self.stopped:
            time.sleep(max(0.0, self.due() - time.monotonic()))
            if not self.stopped:
                self._deliver()

    def due(self) -> float:
        """When the next block is due (never, once stopped)."""
        return math.inf if self.stopped else self.t0 + (self.pos + self.n) / self.rate

    def _deliver(self) -> None:
        gen: Signal = self.dev["signal"]
        data = gen(self.pos, self.n, self.rate, self.channels).astype(np.float32)
        self.pos += self.n
        self.k += 1
        if not self.paused:
            every = self.sd.overflow_every
            self.callback(data, self.n, None, FakeFlags(bool(every) and self.k % every == 0))

    def catch_up(self) -> None:
        """Deliver every block due by now (virtual time)."""
        while self.due() <= self.sd.now() + 1e-9:
            self._deliver()

    def _tick(self) -> None:
        assert self.sd.loop is not None
        self.catch_up()
        if not self.stopped:
            self.sd.loop.call_at(self.due(), self._tick)

    def die(self) -> None:
        """The device went away: no more callbacks, inactive, finished callback runs."""
        self.stopped = True
        self.active = False
        self.finished_callback()

    def abort(self) -> None:
        self.stopped = True
        self.active = False

    def close(self) -> None:
        self.abort()


class FakeSD:
    PortAudioError = FakePortAudioError

    def __init__(self, devs: list[dict[str, Any]], default: int = 0, *,
                 realtime: bool = False) -> None:
        self.loop = None if realtime else VirtualTimeLoop()
        """The test's event loop: its virtual time is the devices' and the capture's clock
        (None: real time, for code that runs its own loop, such as the doctor's listen)."""
        self.devices = [{"index": i, "hostapi": 0, "max_output_channels": 0, **d}
                        for i, d in enumerate(devs)]
        self.default = SimpleNamespace(device=[default, -1])
        self.streams: list[FakeStream] = []
        self.open_times: list[float] = []
        self.fail_opens = 0
        self.overflow_every = 0
        self.reinits = 0

    def now(self) -> float:
        return time.monotonic() if self.loop is None else self.loop.time()

    def query_devices(self, kind: str | None = None) -> Any:
        return list(self.devices)

    def query_hostapis(self) -> Any:
        return ({"name": "ALSA"},)

    def InputStream(self, **kw: Any) -> FakeStream:
        return FakeStream(self, **kw)

    def _terminate(self) -> None:
        self.reinits += 1

    def _initialize(self) -> None:
        pass


def dev(name: str, channels: int, rate: int, signal: Signal) -> dict[str, Any]:
    return {"name": name, "max_input_channels": channels, "default_samplerate": float(rate),
            "signal": signal}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeSD]:
    def install(devs: list[dict[str, Any]], default: int = 0) -> FakeSD:
        sd = FakeSD(devs, default)
        monkeypatch.setattr(devices, "sounddevice", lambda: sd)
        monkeypatch.setattr(capture, "sounddevice", lambda: sd)
        return sd
    return install


def on_fake(sd: FakeSD, cfg: AudioConfig) -> CaptureSource:
    """A capture on the fake devices' virtual clock."""
    return CaptureSource(cfg, clock=sd.now)


def stall(sd: FakeSD, seconds: float) -> None:
    """The event loop is blocked for ``seconds``; PortAudio's callbacks go on meanwhile."""
    assert sd.loop is not None
    end = sd.loop.time() + seconds
    while (due := min((s.due() for s in sd.streams), default=math.inf)) <= end:
        sd.loop.advance(due - sd.loop.time())
        for s in sd.streams:
            s.catch_up()
    sd.loop.advance(end - sd.loop.time())


def capture_for(sd: FakeSD, source: CaptureSource, seconds: float,
                actions: tuple[tuple[float, Callable[[], None]], ...] = ()) -> list[Any]:
    """Run the source for ``seconds`` (virtual); the blocks it delivered."""
    got: list[Any] = []
    loop = sd.loop
    assert loop is not None

    async def main() -> None:
        queue = BlockQueue(100000)
        task = asyncio.create_task(source.run(queue))
        t0 = loop.time()
        for at, fn in actions:
            await asyncio.sleep(max(0.0, t0 + at - loop.time()))
            fn()
        await asyncio.sleep(max(0.0, t0 + seconds - loop.time()))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        while queue.qsize():
            got.append(await queue.get())

    virtual_time.run(main(), loop)
    return got


def joined(blocks: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    for i, b in enumerate(blocks):  # the running clock is exact: samples delivered / 16000
        assert b.t_s == i * 512 / 16000 and len(b.agent) == len(b.customer) == 512
    return (np.concatenate([b.agent for b in blocks]),
            np.concatenate([b.customer for b in blocks]))


@pytest.mark.parametrize(("agent_ch", "customer_ch"), [(2, 0), (0, 1), (1, 0)])
def test_stereo_wiring_picks_the_configured_channels(fake, agent_ch, customer_ch):
    sd = fake([dev("Splitter 4ch", 4, 16000, const(0.01, 0.02, 0.03, 0.04))])
    src = on_fake(sd, AudioConfig(agent_channel=agent_ch, customer_channel=customer_ch))
    a, c = joined(capture_for(sd, src, 0.5))
    assert len(a) >= 0.45 * 16000
    assert np.all(a == round(0.01 * (agent_ch + 1) * 32768))
    assert np.all(c == round(0.01 * (customer_ch + 1) * 32768))
    assert src.fills == 0 and src.stats()["rates_hz"] == [16000]


def test_48k_is_resampled_to_16k(fake):
    def sines(start: int, n: int, rate: int, channels: int) -> np.ndarray:
        t = (start + np.arange(n)) / rate
        return 0.5 * np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 1000 * t)], 1)

    sd = fake([dev("USB stereo", 2, 48000, sines)])
    src = on_fake(sd, AudioConfig())
    a, c = joined(capture_for(sd, src, 1.2))
    assert len(a) >= 1.1 * 16000
    for x, f in ((a, 440), (c, 1000)):
        tail = x[-8000:].astype(np.float64)
        spec = np.abs(np.fft.rfft(tail * np.hanning(len(tail))))
        assert abs(np.argmax(spec) * 16000 / len(tail) - f) <= 2
        assert 0.45 * 32768 < np.max(np.abs(tail)) < 0.55 * 32768
    assert src.fills == 0 and src.stats()["rates_hz"] == [48000]


def test_two_devices_are_aligned_and_a_stalled_side_is_zero_filled(fake):
    sd = fake([dev("Headset Mic", 1, 16000, const(0.1)), dev("Line In", 1, 48000, const(0.2))])
    src = on_fake(sd, AudioConfig(wiring="two_devices", agent_device="headset",
                                  agent_channel=0, customer_channel=0,
                                  customer_device="line in"))

    def line() -> FakeStream:
        return next(s for s in sd.streams if s.dev["name"] == "Line In")

    def pause(on: bool) -> None:
        line().paused = on

    blocks = capture_for(sd, src, 2.6, ((0.6, lambda: pause(True)), (1.6, lambda: pause(False))))
    a, c = joined(blocks)
    assert len(a) >= 2.5 * 16000
    A, C = round(0.1 * 32768), round(0.2 * 32768)
    assert np.all(a[8000:] == A)  # the agent side never stops
    zeros = np.flatnonzero(c[4000:] == 0) + 4000
    assert len(zeros) == pytest.approx(16000, abs=0.05 * 16000)  # the 1 s stall, as zeros
    assert np.all(np.diff(zeros) == 1)  # one run
    assert np.all(c[zeros[-1] + 1 + 400:] == C)  # the customer is back (after the resampler)
    assert src.fills >= 1 and src.stats()["filled_s"]["customer"] >= 0.95
    assert src.reconnects == 0


def test_overflows_and_full_queues_are_counted_not_raised(fake):
    sd = fake([dev("Splitter", 2, 16000, const(0.1, 0.2))])
    sd.overflow_every = 5
    src = on_fake(sd, AudioConfig(queue_s=0.1))
    blocks = capture_for(sd, src, 1.5, ((0.5, lambda: stall(sd, 0.6)),))  # the loop stalls
    callbacks = sd.streams[0].k  # 1.5 s of 32 ms blocks
    assert callbacks == 46 and src.input_overflows == callbacks // 5
    # the callback's deque (4 blocks) was full while the loop was stalled for 0.6 s
    assert src.queue_drops == pytest.approx(0.6 / 0.032 - 4, abs=1)
    assert src.stats()["queue_drops"] == src.queue_drops
    assert len(blocks) + src.queue_drops == callbacks  # every block is delivered or counted
    assert src.flowing is False  # stopped at the end


def test_a_lost_device_is_reopened_with_backoff_and_the_clock_keeps_running(
        fake, monkeypatch, caplog):
    monkeypatch.setattr(capture, "FIRST_RETRY_S", 0.05)
    sd = fake([dev("Splitter", 2, 16000, const(0.1, 0.2))])
    src = on_fake(sd, AudioConfig(reconnect_max_s=0.5))
    seen: dict[str, Any] = {}

    def lose() -> None:
        sd.fail_opens = 3
        sd.streams[0].die()

    def look() -> None:
        seen["flowing"], seen["error"] = src.flowing, src.last_error

    blocks = capture_for(sd, src, 2.6, ((0.5, lambda: None), (0.5, lose), (0.9, look)))
    a, _ = joined(blocks)
    assert seen["flowing"] is False and "audio.device_lost" in seen["error"]
    assert src.reconnects == 1 and len(sd.streams) == 2
    assert sd.reinits == 4  # nothing was open: each attempt re-enumerates the devices
    gaps = np.diff(sd.open_times[1:])  # 4 attempts after the loss: backoff doubles
    assert len(gaps) == 3 and gaps[0] < gaps[1] < gaps[2]
    poll_s = 0.016  # the capture's poll (block_s / 2): a retry is seen within two polls
    for gap, backoff in zip(gaps, (0.1, 0.2, 0.4), strict=True):
        assert backoff <= gap <= backoff + 2 * poll_s + 1e-9, gaps
    assert len(a) / 16000 == pytest.approx(2.6, abs=0.1)  # digital silence filled the gap
    silent = np.flatnonzero(a == 0)  # away from 0.5 s until the 4th try (0.75 s of backoff)
    assert 0.75 <= len(silent) / 16000 <= 0.75 + 0.15
    assert np.all(a[silent[-1] + 1:] == round(0.1 * 32768))
    assert sum("went away" in r.message for r in caplog.records) == 1


def test_a_stalled_stream_counts_as_lost(fake, monkeypatch):
    monkeypatch.setattr(capture, "FIRST_RETRY_S", 0.05)
    monkeypatch.setattr(capture, "STALL_S", 0.3)
    sd = fake([dev("Splitter", 2, 16000, const(0.1, 0.2))])
    src = on_fake(sd, AudioConfig())

    def pause() -> None:
        sd.streams[0].paused = True

    capture_for(sd, src, 1.2, ((0.3, pause),))
    assert src.reconnects == 1 and "no audio" in (src.last_error or "")


# -- device resolution -----------------------------------------------------------------------
DEVS = [dev("Jabra Link 380: USB Audio (hw:1,0)", 1, 48000, const(0)),
        dev("USB Splitter (hw:2,0)", 2, 44100, const(0)),
        dev("pulse", 32, 44100, const(0)),
        dev("pulse monitor", 2, 44100, const(0))]


def test_resolve_by_default_index_and_name(fake):
    fake(DEVS, default=2)
    assert resolve_device("", 2).name == "pulse"
    assert resolve_device("1", 2).name.startswith("USB Splitter")
    assert resolve_device("jabra", 1).index == 0
    assert resolve_device("PULSE", 2).index == 2  # an exact name wins over substrings


def test_resolve_errors_say_what_to_do(fake):
    fake(DEVS, default=-1)
    with pytest.raises(ApplianceError) as e:
        resolve_device("Polycom", 1)
    assert e.value.code == AUDIO_DEVICE_NOT_FOUND
    assert "no input device matches 'Polycom'" in e.value.message
    assert "appliance devices" in e.value.message
    with pytest.raises(ApplianceError) as e:
        resolve_device("usb", 1)
    assert e.value.code == AUDIO_DEVICE_AMBIGUOUS and "#0" in e.value.message
    with pytest.raises(ApplianceError) as e:
        resolve_device("", 1)
    assert e.value.code == AUDIO_DEVICE_NOT_FOUND
    with pytest.raises(ApplianceError) as e:
        CaptureSource(AudioConfig(device="jabra"))
    assert e.value.code == AUDIO_DEVICE_CHANNELS and "stereo wiring" in e.value.message
    with pytest.raises(ApplianceError) as e:
        CaptureSource(AudioConfig(wiring="two_devices", agent_device="splitter",
                                  customer_device="1"))
    assert e.value.code == CONFIG_INVALID


def test_missing_portaudio_says_which_package(monkeypatch):
    real = builtins.__import__

    def imp(name: str, *a: Any, **k: Any) -> Any:
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", imp)
    with pytest.raises(ApplianceError) as e:
        devices.list_input_devices()
    assert e.value.code == AUDIO_PORTAUDIO_MISSING and "libportaudio2" in e.value.message


def test_devices_command_prints_a_table(fake):
    fake(DEVS, default=2)
    out = io.StringIO()
    assert devices.devices_command(out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:2] == ["index", "channels"]
    assert "*2" in lines[3] and "44100 Hz" in lines[3] and lines[3].endswith("pulse")
    fake([])
    assert devices.devices_command(io.StringIO()) == 1


# -- a real PortAudio device: the demo call through a private PulseAudio server ---------------
def _first_sound(x: np.ndarray, threshold: int = 300) -> int:
    return int(np.flatnonzero(np.abs(x.astype(np.int32)) > threshold)[0])


def _interruptions(agent: np.ndarray, customer: np.ndarray) -> list[Any]:
    from appliance.config import Config
    from appliance.engine.call_engine import CallEngine
    from appliance.engine.vad import SileroModel

    engine = CallEngine(Config(), SileroModel())
    cues = []
    for i in range(0, len(agent), 512):
        cues += engine.push(agent[i:i + 512], customer[i:i + 512])
    return [c for c in cues if c.kind == "interruption"]


@pytest.mark.skipif(pulse.missing() is not None, reason=str(pulse.missing()))
def test_real_device_capture_gives_the_same_interruption_cue_as_the_file(tmp_path):
    import subprocess
    import sys
    import wave

    demo = Path(__file__).resolve().parent.parent / "appliance" / "demo" / "demo_call.wav"
    wav = tmp_path / "demo16k.wav"
    subprocess.run(["sox", str(demo), "-e", "signed-integer", "-b", "16", "-r", "16000",
                    str(wav), "trim", "0", "20"], check=True, timeout=60)
    with wave.open(str(wav)) as w:
        ref = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, 2)
    server = pulse.PulseServer()
    try:
        server.start()
        out = tmp_path / "captured.npz"
        proc = subprocess.Popen([sys.executable, "-m", "tests.pulse", str(out), "21.5"],
                                env=server.env, cwd=Path(__file__).resolve().parent.parent,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "flowing", proc.stderr
            player = server.play(wav)
            player.wait(40)
            assert player.returncode == 0
            assert proc.wait(40) == 0, proc.stderr.read() if proc.stderr else ""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    finally:
        server.stop()
    got = np.load(out)
    stats = json.loads(str(got["stats"]))
    assert stats["reconnects"] == 0 and stats["queue_drops"] == 0 and stats["fills"] == 0
    t = got["t"]
    assert np.allclose(t, np.arange(len(t)) * 512 / 16000)  # the exact running clock
    agent, customer = got["agent"], got["customer"]
    offset = _first_sound(agent) - _first_sound(ref[:, 0])
    assert 0 <= offset < 3 * 16000  # playback started within 3 s of capture
    a = agent[offset:offset + len(ref)]
    assert np.corrcoef(a[:len(ref)].astype(float), ref[:len(a), 0].astype(float))[0, 1] > 0.95
    cap, ref_cues = _interruptions(agent, customer), _interruptions(ref[:, 0], ref[:, 1])
    assert len(ref_cues) == 1 and ref_cues[0].party == "agent"
    assert len(cap) == 1 and cap[0].party == "agent"
    assert cap[0].t_s - offset / 16000 == pytest.approx(ref_cues[0].t_s, abs=0.1)
    assert 14.5 < cap[0].t_s - offset / 16000 < 16.0


@pytest.mark.skipif(pulse.missing() is not None, reason=str(pulse.missing()))
def test_real_device_comes_back_after_the_sound_server_restarts(tmp_path):
    import subprocess
    import sys

    server = pulse.PulseServer()
    out = tmp_path / "captured.npz"
    try:
        server.start()
        proc = subprocess.Popen([sys.executable, "-m", "tests.pulse", str(out), "7"],
                                env=server.env, cwd=Path(__file__).resolve().parent.parent,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "flowing"
            time.sleep(1.5)
            assert server.proc is not None
            server.proc.kill()  # the device goes away
            server.proc.wait(5)
            time.sleep(1.5)
            server.start()  # and comes back
            _, err = proc.communicate(timeout=40)
            assert proc.returncode == 0, err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    finally:
        server.stop()
    assert "went away" in err and "is back" in err
    got = np.load(out)
    stats = json.loads(str(got["stats"]))
    assert stats["reconnects"] == 1 and stats["fills"] >= 1
    assert 1.0 < stats["filled_s"]["agent"] < 5.0  # 1.5 s away, plus the backoff's next try
    assert len(got["agent"]) / 16000 == pytest.approx(7, abs=1.0)  # the clock kept running
