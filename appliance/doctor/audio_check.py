"""Doctor check 2: PortAudio, the configured input(s) for the wiring, and a short listen.

Device resolution is the capture's own: :class:`~appliance.audio.capture.CaptureSource`
is constructed (it resolves every device of the wiring and checks the channel count,
raising the same errors ``appliance run`` would), and the listen runs that source, so the
samples judged are exactly what the engine would get (16 kHz int16 per party).
"""

from __future__ import annotations

import asyncio
import time
from typing import TextIO

import numpy as np

from appliance.audio.capture import CaptureSource
from appliance.audio.devices import InputDevice, format_devices, list_input_devices, resolve_device
from appliance.config import AudioConfig
from appliance.doctor.check import Check, fail, ok
from appliance.doctor.levels import NAME as LEVELS
from appliance.doctor.levels import judge_levels
from appliance.errors import (
    AUDIO_DEVICE_AMBIGUOUS,
    AUDIO_DEVICE_CHANNELS,
    AUDIO_DEVICE_NOT_FOUND,
    AUDIO_PORTAUDIO_MISSING,
    CONFIG_INVALID,
    ApplianceError,
)
from appliance.stream.blocks import PIPELINE_RATE_HZ, PartyBlock
from appliance.stream.pipeline import BlockQueue

NAME = "audio devices"
FLOW_TIMEOUT_S = 5.0
"""How long the listen waits for the first audio before it gives up."""

_FIXES = {
    AUDIO_PORTAUDIO_MISSING: "apt-get install libportaudio2, then run the doctor again",
    AUDIO_DEVICE_NOT_FOUND: "plug in the headset / splitter; run `appliance devices` and set "
                            "[audio] device (or agent_device / customer_device) to an index or "
                            "part of a name from the list",
    AUDIO_DEVICE_AMBIGUOUS: "give more of the name, or the index, in [audio] device "
                            "(see `appliance devices`)",
    AUDIO_DEVICE_CHANNELS: "pick a stereo input for the splitter, fix [audio] agent_channel / "
                           "customer_channel, or use wiring = \"two_devices\"",
    CONFIG_INVALID: "for one device carrying both parties use wiring = \"stereo\" with "
                    "agent_channel / customer_channel; else name two different devices",
}
_NO_INPUTS_FIX = ("plug in the headset / splitter and check it shows in `arecord -l`; the user "
                  "running the appliance must be in the audio group; then `appliance devices`")


def _describe(d: InputDevice) -> str:
    default = ", the default input" if d.is_default else ""
    return (f"{d.label()} ({d.max_input_channels} ch, {d.default_sample_rate_hz} Hz"
            f"{default})")


def _wiring(audio: AudioConfig) -> str:
    if audio.wiring == "two_devices":
        return (f"two devices: agent = {_describe(resolve_device(audio.agent_device))}, "
                f"customer = {_describe(resolve_device(audio.customer_device))}")
    return (f"stereo wiring on {_describe(resolve_device(audio.device))}: agent = channel "
            f"{audio.agent_channel}, customer = channel {audio.customer_channel}")


def check_audio_devices(audio: AudioConfig, listening: bool = True) -> Check:
    """PortAudio present, inputs present, the wiring's device(s) resolve with enough channels."""
    try:
        devices = list_input_devices()
    except ApplianceError as exc:
        return fail(NAME, f"{exc.message} [{exc.code}]", _FIXES[AUDIO_PORTAUDIO_MISSING])
    if not devices:
        return fail(NAME, "no audio inputs found (PortAudio sees no input device)",
                    _NO_INPUTS_FIX)
    table = format_devices(devices).splitlines()
    try:
        CaptureSource(audio)
    except ApplianceError as exc:
        return fail(NAME, f"{exc.message} [{exc.code}]",
                    _FIXES.get(exc.code, "check the [audio] section"), ["inputs:", *table])
    more = "" if listening else " (not listened: --no-audio)"
    return ok(NAME, _wiring(audio) + more)


async def _capture(src: CaptureSource, seconds: float,
                   flow_timeout_s: float) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
    queue = BlockQueue(1_000_000)
    task = asyncio.create_task(src.run(queue))
    try:
        deadline = time.monotonic() + flow_timeout_s
        while not src.flowing and time.monotonic() < deadline:  # noqa: ASYNC110 - a poll
            await asyncio.sleep(0.02)
        if not src.flowing:
            return None
        agent: list[np.ndarray] = []
        customer: list[np.ndarray] = []
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                block = await asyncio.wait_for(queue.get(), timeout=left)
            except TimeoutError:
                break
            if isinstance(block, PartyBlock):
                agent.append(np.asarray(block.agent))
                customer.append(np.asarray(block.customer))
        return agent, customer
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def listen(audio: AudioConfig, seconds: float, progress: TextIO | None = None,
           flow_timeout_s: float = FLOW_TIMEOUT_S) -> Check:
    """Capture ``seconds`` through the capture path and judge the levels."""
    src = CaptureSource(audio)
    tty = progress is not None and progress.isatty()
    if tty and progress is not None:
        progress.write(f"listening {seconds:g} s… (speak into the headset; play something "
                       "on the customer side)")
        progress.flush()
    try:
        got = asyncio.run(_capture(src, seconds, flow_timeout_s))
    finally:
        if tty and progress is not None:
            progress.write("\r\033[K")
            progress.flush()
    if got is None:
        why = f" ({src.last_error})" if src.last_error else ""
        return fail(LEVELS, f"the input(s) delivered no audio within {flow_timeout_s:g} s{why}",
                    "if the appliance service is running it may hold the device: "
                    "`systemctl stop appliance`, run the doctor, then `systemctl start "
                    "appliance`; else re-plug the device and check `appliance devices`")
    agent, customer = got
    a = np.concatenate(agent) if agent else np.zeros(0, np.int16)
    c = np.concatenate(customer) if customer else np.zeros(0, np.int16)
    stats = src.stats()
    filled = stats["filled_s"]
    gaps = ""
    if stats["fills"]:
        gaps = (f"gaps filled with silence: agent {filled['agent']:.2f} s, customer "
                f"{filled['customer']:.2f} s")
    return judge_levels(a, c, len(a) / PIPELINE_RATE_HZ, gaps)
