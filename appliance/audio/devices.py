"""Audio inputs: list them, and resolve a configured device (index or name) to one input.

PortAudio (through ``sounddevice``) is imported lazily, so the file analysis never needs it;
when the library itself is missing the error says which Debian package to install.
PortAudio enumerates the devices once, when it is initialised: :func:`refresh` re-reads them
(only safe while no stream is open), so a headset plugged in later can be found.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TextIO

from appliance.errors import (
    AUDIO_DEVICE_AMBIGUOUS,
    AUDIO_DEVICE_CHANNELS,
    AUDIO_DEVICE_NOT_FOUND,
    AUDIO_PORTAUDIO_MISSING,
    ApplianceError,
)

log = logging.getLogger(__name__)

_HINT = "run `appliance devices` to see the inputs"


@dataclass(frozen=True, slots=True)
class InputDevice:
    """One PortAudio input as the box sees it."""

    index: int
    name: str
    max_input_channels: int
    default_sample_rate_hz: int
    hostapi: str
    is_default: bool = False

    def label(self) -> str:
        return f"#{self.index} '{self.name}'"


def sounddevice() -> ModuleType:
    """The ``sounddevice`` module; a clear :class:`ApplianceError` when PortAudio is missing."""
    try:
        import sounddevice as sd
    except OSError as exc:  # sounddevice raises OSError when libportaudio cannot be loaded
        raise ApplianceError(
            AUDIO_PORTAUDIO_MISSING,
            f"the PortAudio library is not installed ({exc}); live capture needs it: "
            "install the Debian package libportaudio2 (apt-get install libportaudio2)",
        ) from exc
    return sd


def refresh() -> None:
    """Re-initialise PortAudio so it enumerates the devices again (no stream may be open)."""
    sd = sounddevice()
    terminate = getattr(sd, "_terminate", None)
    initialize = getattr(sd, "_initialize", None)
    if terminate is None or initialize is None:  # pragma: no cover - other sounddevice builds
        return
    try:
        terminate()
    finally:
        initialize()


def _default_input_index(sd: ModuleType) -> int | None:
    try:
        idx = sd.default.device[0]
        if isinstance(idx, int) and idx >= 0:
            return idx
    except Exception:  # a strange default is the same as no default
        pass
    try:
        info: Any = sd.query_devices(kind="input")
        idx = info.get("index") if hasattr(info, "get") else None
        return idx if isinstance(idx, int) and idx >= 0 else None
    except Exception:  # PortAudio raises when there is no default input
        return None


def list_input_devices() -> list[InputDevice]:
    """Every device with at least one input channel, in PortAudio's order."""
    sd = sounddevice()
    try:
        devices = list(sd.query_devices())
        hostapis = list(sd.query_hostapis())
    except Exception as exc:  # PortAudioError and friends
        log.warning("cannot list audio devices: %s", exc)
        return []
    default = _default_input_index(sd)
    out: list[InputDevice] = []
    for i, d in enumerate(devices):
        channels = int(d.get("max_input_channels", 0))
        if channels < 1:
            continue
        index = int(d.get("index", i))
        api = d.get("hostapi", 0)
        api_name = hostapis[api]["name"] if isinstance(api, int) and api < len(hostapis) else ""
        out.append(InputDevice(index, str(d.get("name", "")), channels,
                               round(float(d.get("default_samplerate", 0) or 0)),
                               str(api_name), index == default))
    return out


def resolve_device(spec: str, min_channels: int = 1, *, purpose: str = "") -> InputDevice:
    """The input that ``spec`` names: "" = the default input, "3" = index 3, else a
    case-insensitive substring of the name (an exact name wins over substrings).

    ``purpose`` (e.g. "the stereo wiring (agent channel 0, customer channel 1)") goes into
    the message when the device has fewer than ``min_channels`` input channels.
    """
    devices = list_input_devices()
    spec = spec.strip()
    if not devices:
        raise ApplianceError(AUDIO_DEVICE_NOT_FOUND,
                             "no audio inputs found (is the headset or splitter plugged in?) "
                             f"— {_HINT}")
    if spec == "":
        chosen = [d for d in devices if d.is_default]
        if not chosen:
            raise ApplianceError(AUDIO_DEVICE_NOT_FOUND,
                                 f"there is no default input device; set [audio] device — {_HINT}")
    elif spec.lstrip("-").isdigit():
        chosen = [d for d in devices if d.index == int(spec)]
        if not chosen:
            raise ApplianceError(AUDIO_DEVICE_NOT_FOUND,
                                 f"there is no input device with index {spec} — {_HINT}")
    else:
        low = spec.casefold()
        chosen = [d for d in devices if d.name.casefold() == low]
        if not chosen:
            chosen = [d for d in devices if low in d.name.casefold()]
        if not chosen:
            raise ApplianceError(AUDIO_DEVICE_NOT_FOUND,
                                 f"no input device matches '{spec}' — {_HINT}")
        if len(chosen) > 1:
            names = ", ".join(d.label() for d in chosen)
            raise ApplianceError(AUDIO_DEVICE_AMBIGUOUS,
                                 f"several input devices match '{spec}': {names}; give more of "
                                 "the name or the index")
    dev = chosen[0]
    if dev.max_input_channels < min_channels:
        what = f" for {purpose}" if purpose else ""
        raise ApplianceError(
            AUDIO_DEVICE_CHANNELS,
            f"input {dev.label()} has {dev.max_input_channels} input channel(s), but "
            f"{min_channels} are needed{what}; pick a stereo input, fix the channel numbers, "
            "or use wiring = \"two_devices\" with one device per party",
        )
    return dev


def format_devices(devices: list[InputDevice]) -> str:
    """The inputs as a plain table (the default input marked with *)."""
    rows = [("index", "channels", "default rate", "host API", "name")]
    rows += [(f"{'*' if d.is_default else ' '}{d.index}", str(d.max_input_channels),
              f"{d.default_sample_rate_hz} Hz", d.hostapi, d.name) for d in devices]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join([*(c.rjust(w) for c, w in zip(r[:4], widths, strict=True)), r[4]])
             for r in rows]
    return "\n".join(lines) + "\n"


def devices_command(out: TextIO | None = None) -> int:
    """``appliance devices``: print the inputs; 1 when there are none."""
    stream = out or sys.stdout
    devices = list_input_devices()
    if not devices:
        stream.write("no audio inputs found (is the headset or splitter plugged in?)\n")
        return 1
    stream.write(format_devices(devices))
    stream.write("* = default input.  Use the index or part of the name as [audio] device.\n")
    return 0
