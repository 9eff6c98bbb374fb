"""WebSocket audio forks: FreeSWITCH ``mod_audio_fork`` / ``mod_audio_stream`` and jambonz
``listen`` (pure: frames in, metadata and per-party samples out; no socket, no clock).

Framing, the same for the three senders:

1. one **text** frame: JSON metadata.  jambonz ``listen`` (subprotocol ``audio.jambonz.org``)
   sends the call's attributes (``callSid``, ``from``, ``to``, ``direction``, …) plus
   ``sampleRate`` and ``mixType`` and the app's own ``metadata``.  ``mod_audio_fork`` and
   ``mod_audio_stream`` send whatever JSON the ``uuid_audio_fork <uuid> start <url>
   <mix-type> <rate> <metadata>`` command was given: the mix type and rate are command
   arguments, so a route supplies them (``mix_type=``, ``sample_rate_hz=`` of
   :func:`parse_meta`) unless the site puts them in the metadata;
2. **binary** frames: 16-bit signed little-endian linear PCM at 8 or 16 kHz, one channel
   (``mono``: one leg; ``mixed``: both legs summed) or two interleaved (``stereo``: L R L R …,
   one leg per channel); a frame may hold any number of bytes, a sample or a stereo frame may
   straddle two WebSocket frames;
3. the end: the socket closes, or a second **text** frame arrives (``mod_audio_fork``'s stop,
   jambonz's end, any JSON with an ``event``/``type``): the stream ends there and later frames
   are dropped and counted.

Which stereo channel is the agent depends on how the PBX set the fork up (the caller is the
left channel of ``mod_audio_fork``; whether the caller is the agent depends on the call's
direction, and users report the legs swapped), so it is a per-route setting:
:class:`StereoSplitter` takes ``agent_channel`` 0 or 1.

**Mono and mixed streams are refused** (:meth:`StreamMeta.refusal`; WebSocket close code 1003
"unsupported data" with the reason :data:`REASON_MIXED` or :data:`REASON_MONO`, and the
listener logs it): every cue the box gives is per party (who talks over whom, the agent's
pace, pauses, the customer's waiting time), and a sum of the two voices cannot be split back
into parties, nor does one leg alone give the other's timing.  Analysing a mixed stream
anyway would attribute the customer's speech to the agent: a wrong coach is worse than none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from types import MappingProxyType
from typing import Any

import numpy as np

from appliance.audio.pbx.errors import (
    WS_CLOSE_MESSAGE_TOO_BIG,
    WS_CLOSE_PROTOCOL_ERROR,
    WS_CLOSE_UNSUPPORTED_DATA,
    PbxProtocolError,
)
from appliance.errors import PBX_STREAM_REFUSED, shown

MAX_META_BYTES = 64 * 1024
"""Bound on the metadata frame (jambonz sends a few hundred bytes plus the app's metadata)."""
MAX_META_DEPTH = 8
"""Bound on nested objects/arrays in the metadata."""
MAX_META_KEYS = 200
"""Bound on the metadata's top-level fields."""
MAX_ID_CHARS = 256
"""Bound on the call id, caller and callee."""
SAMPLE_RATES_HZ = (8000, 16000)
REASON_MIXED = "mixed stream: the parties cannot be separated; send stereo"
REASON_MONO = "mono stream: one party only; send stereo"
REASON_RATE = "sample rate not 8000 or 16000 Hz"

_CALL_ID_KEYS = ("callSid", "call_sid", "call_id", "callId", "callid", "uuid")
_CALLER_KEYS = ("from", "caller", "caller_id_number")
_CALLEE_KEYS = ("to", "callee", "destination_number")
_RATE_KEYS = ("sampleRate", "sample_rate", "sample_rate_hz", "sampling-rate", "samplingRate")
_MIX_KEYS = ("mixType", "mix_type", "mix-type")
_RATE_WORDS = {"8k": 8000, "16k": 16000}


class MixType(StrEnum):
    MONO = "mono"
    MIXED = "mixed"
    STEREO = "stereo"


@dataclass(frozen=True, slots=True)
class StreamMeta:
    """The first text frame of a stream, read."""

    call_id: str
    caller: str | None
    callee: str | None
    sample_rate_hz: int
    mix_type: MixType
    direction: str | None = None
    custom: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Every other top-level field, as sent (the site's own fields, jambonz's ``metadata``
    and its ``callId``, the SIP Call-ID, when ``callSid`` named the call)."""

    @property
    def channels(self) -> int:
        return 2 if self.mix_type is MixType.STEREO else 1

    def refusal(self) -> PbxProtocolError | None:
        """Why the box will not analyse this stream (close code 1003), or None."""
        if self.mix_type is MixType.STEREO:
            return None
        reason = REASON_MIXED if self.mix_type is MixType.MIXED else REASON_MONO
        return PbxProtocolError(reason, f"call {self.call_id}: {reason}",
                                close_code=WS_CLOSE_UNSUPPORTED_DATA, code=PBX_STREAM_REFUSED)


def _bad(reason: str, message: str, close_code: int = WS_CLOSE_PROTOCOL_ERROR) -> PbxProtocolError:
    return PbxProtocolError(reason, f"stream metadata: {message}", close_code=close_code)


def check_depth(text: str, max_depth: int = MAX_META_DEPTH) -> None:
    """Refuse JSON nested deeper than ``max_depth`` before the parser recurses into it."""
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                raise _bad("metadata_too_deep", f"nested deeper than {max_depth}")
        elif char in "]}":
            depth -= 1


def _text(obj: dict[str, Any], keys: tuple[str, ...], what: str) -> str | None:
    for key in keys:
        if key in obj and obj[key] is not None:
            value = obj[key]
            if isinstance(value, bool) or not isinstance(value, str | int):
                raise _bad(f"bad_{what}", f"{key} is not a string: {shown(value)}")
            value = str(value).strip()
            if not value or len(value) > MAX_ID_CHARS or not value.isprintable():
                raise _bad(f"bad_{what}", f"{key} {shown(value)} is empty, too long or "
                           "not printable")
            return value
    return None


def _rate(obj: dict[str, Any], default: int | None) -> int:
    value: object = default
    for key in _RATE_KEYS:
        if key in obj:
            value = obj[key]
            break
    if isinstance(value, str):
        word = value.strip().lower()
        numeric = word.isascii() and word.isdigit() and len(word) < 7
        value = _RATE_WORDS.get(word, int(word) if numeric else word)
    if value is None:
        raise _bad("no_sample_rate", "no sampleRate in the metadata nor on the route")
    if isinstance(value, bool) or not isinstance(value, int) or value not in SAMPLE_RATES_HZ:
        raise PbxProtocolError(REASON_RATE, f"stream metadata: sample rate {shown(value)} "
                               f"(not {SAMPLE_RATES_HZ})", close_code=WS_CLOSE_UNSUPPORTED_DATA,
                               code=PBX_STREAM_REFUSED)
    return value


def _mix(obj: dict[str, Any], default: MixType | str | None) -> MixType:
    value: object = default
    for key in _MIX_KEYS:
        if key in obj:
            value = obj[key]
            break
    if value is None:
        raise _bad("no_mix_type", "no mixType in the metadata nor on the route")
    if not isinstance(value, str) or value.strip().lower() not in MixType._value2member_map_:
        raise _bad("bad_mix_type", f"mix type {shown(value)} (mono, mixed or stereo)")
    return MixType(value.strip().lower())


def parse_meta(frame: str | bytes, *, mix_type: MixType | str | None = None,
               sample_rate_hz: int | None = None) -> StreamMeta:
    """Read the first text frame.  ``mix_type`` and ``sample_rate_hz`` are the route's, used
    when the metadata does not carry them (``mod_audio_fork`` takes them as command
    arguments); the metadata's own values win.  Every fault is a :class:`PbxProtocolError`:
    too big (1009), too deep, not a JSON object, no call id, a field of the wrong type (1002),
    a rate other than 8/16 kHz (1003).  A mono or mixed stream parses; see
    :meth:`StreamMeta.refusal`."""
    if len(frame) > MAX_META_BYTES:
        raise _bad("metadata_too_big", f"{len(frame)} bytes (at most {MAX_META_BYTES})",
                   WS_CLOSE_MESSAGE_TOO_BIG)
    if isinstance(frame, bytes):
        try:
            frame = frame.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad("metadata_not_utf8", "not UTF-8") from None
    check_depth(frame)
    try:
        obj = json.loads(frame)
    except (ValueError, RecursionError):
        raise _bad("metadata_not_json", f"not JSON: {shown(frame, 60)}") from None
    if not isinstance(obj, dict):
        raise _bad("metadata_not_object", f"not a JSON object: {type(obj).__name__}")
    if len(obj) > MAX_META_KEYS:
        raise _bad("metadata_too_many_fields", f"{len(obj)} fields (at most {MAX_META_KEYS})")
    call_id = _text(obj, _CALL_ID_KEYS, "call_id")
    if call_id is None:
        raise _bad("no_call_id", f"none of {', '.join(_CALL_ID_KEYS)}")
    groups = (_CALL_ID_KEYS, _CALLER_KEYS, _CALLEE_KEYS, _RATE_KEYS, _MIX_KEYS, ("direction",))
    known = {next(k for k in keys if k in obj) for keys in groups if any(k in obj for k in keys)}
    return StreamMeta(
        call_id=call_id, caller=_text(obj, _CALLER_KEYS, "caller"),
        callee=_text(obj, _CALLEE_KEYS, "callee"), sample_rate_hz=_rate(obj, sample_rate_hz),
        mix_type=_mix(obj, mix_type), direction=_text(obj, ("direction",), "direction"),
        custom=MappingProxyType({k: v for k, v in obj.items() if k not in known}))


class StereoSplitter:
    """Binary frames of interleaved 16-bit little-endian stereo in, (agent, customer) int16
    arrays out.  Bytes that do not complete a stereo frame (4 bytes: L then R) wait for the
    next frame; ``agent_channel`` (0 = left, 1 = right) is the route's swap setting."""

    def __init__(self, agent_channel: int = 0) -> None:
        if agent_channel not in (0, 1):
            raise ValueError(f"agent_channel must be 0 or 1: {agent_channel!r}")
        self.agent_channel = agent_channel
        self._carry = b""
        self.frames = 0

    @property
    def pending_bytes(self) -> int:
        return len(self._carry)

    def feed(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        data = self._carry + bytes(data)
        whole = len(data) - len(data) % 4
        self._carry = data[whole:]
        pcm = np.frombuffer(data[:whole], dtype="<i2").astype(np.int16).reshape(-1, 2)
        self.frames += pcm.shape[0]
        agent = np.ascontiguousarray(pcm[:, self.agent_channel])
        customer = np.ascontiguousarray(pcm[:, 1 - self.agent_channel])
        return agent, customer

    def flush(self) -> int:
        """The stream ended: drop (and return the count of) the bytes of an unfinished frame."""
        dropped, self._carry = len(self._carry), b""
        return dropped


class _State(Enum):
    AWAIT_META = "await_meta"
    STREAMING = "streaming"
    ENDED = "ended"


@dataclass(frozen=True, slots=True, eq=False)
class Chunk:
    """Audio of both parties, the same number of samples each, at the stream's rate."""

    agent: np.ndarray
    customer: np.ndarray


@dataclass(frozen=True, slots=True)
class Ended:
    """The stream ended: ``how`` is ``"close"`` or ``"text"``; ``event`` the end frame's
    ``event``/``type`` field when it had one; ``dropped_bytes`` an unfinished frame's bytes."""

    how: str
    event: str | None
    dropped_bytes: int


class WsForkStream:
    """One WebSocket audio fork, frame by frame: :meth:`on_text`, :meth:`on_binary`,
    :meth:`on_close`.  The first text frame must come first (binary before it is
    ``audio_before_metadata``, 1002); a refused stream raises its refusal from the first
    frame.  After the end, frames are counted in ``late_frames`` and dropped."""

    def __init__(self, *, agent_channel: int = 0, mix_type: MixType | str | None = None,
                 sample_rate_hz: int | None = None) -> None:
        self._splitter = StereoSplitter(agent_channel)
        self._route_mix = mix_type
        self._route_rate = sample_rate_hz
        self._state = _State.AWAIT_META
        self.meta: StreamMeta | None = None
        self.late_frames = 0

    @property
    def ended(self) -> bool:
        return self._state is _State.ENDED

    def on_text(self, frame: str | bytes) -> StreamMeta | Ended | None:
        """The metadata (first frame), the end (a later one), or None after the end."""
        if self._state is _State.AWAIT_META:
            meta = parse_meta(frame, mix_type=self._route_mix, sample_rate_hz=self._route_rate)
            refusal = meta.refusal()
            if refusal is not None:
                self._state = _State.ENDED
                raise refusal
            self.meta = meta
            self._state = _State.STREAMING
            return meta
        if self._state is _State.ENDED:
            self.late_frames += 1
            return None
        return self._end("text", _event_of(frame))

    def on_binary(self, frame: bytes) -> Chunk | None:
        """The audio a binary frame completes, or None after the end."""
        if self._state is _State.AWAIT_META:
            self._state = _State.ENDED
            raise PbxProtocolError("audio_before_metadata",
                                   f"a binary frame of {len(frame)} bytes before the metadata")
        if self._state is _State.ENDED:
            self.late_frames += 1
            return None
        agent, customer = self._splitter.feed(frame)
        return Chunk(agent, customer)

    def on_close(self) -> Ended | None:
        """The socket closed: the end, or None if the stream had already ended."""
        if self._state is _State.ENDED:
            return None
        return self._end("close", None)

    def _end(self, how: str, event: str | None) -> Ended:
        self._state = _State.ENDED
        return Ended(how, event, self._splitter.flush())


def _event_of(frame: str | bytes) -> str | None:
    """The ``event``/``type`` of an end frame when it is a small JSON object, else None."""
    if len(frame) > MAX_META_BYTES:
        return None
    try:
        text = frame.decode("utf-8") if isinstance(frame, bytes) else frame
        check_depth(text)
        obj = json.loads(text)
    except (ValueError, RecursionError, PbxProtocolError):
        return None
    if not isinstance(obj, dict):
        return None
    for key in ("event", "type"):
        value = obj.get(key)
        if isinstance(value, str) and value.isprintable() and len(value) <= MAX_ID_CHARS:
            return value
    return None
