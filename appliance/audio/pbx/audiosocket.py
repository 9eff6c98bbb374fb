"""Asterisk AudioSocket: an incremental decoder of its TCP framing (no socket, no clock).

Framing (Asterisk documentation, Channel-Drivers/AudioSocket): every message is a 3-byte
header, then the payload::

    +--------+----------------+-----------------------+
    | type   | length         | payload               |
    | 1 byte | 2 bytes, big-  | ``length`` bytes      |
    |        | endian uint16  |                       |
    +--------+----------------+-----------------------+

=========  =====================================================================
type       payload
=========  =====================================================================
``0x00``   hang-up (length 0 in practice; any payload is ignored): the stream ends
``0x01``   the stream's UUID, 16 bytes binary (the 36-character text form is also
           taken); it must be the first message that carries call data
``0x03``   one ASCII DTMF digit (``0-9 * # A-D``)
``0x10``   audio: signed linear 16-bit little-endian PCM, 8 kHz, mono (an even length)
``0xff``   error; the optional first payload byte is the code (Asterisk sends 0x01 the
           calling party hung up, 0x02 frame forwarding failed, 0x04 out of memory)
other      counted, skipped, returned as :class:`Unknown`
=========  =====================================================================

Rules this decoder adds (each a :class:`~appliance.audio.pbx.errors.PbxProtocolError` with a
short ``reason``; the listener closes that socket): a length above ``max_payload_bytes``
(``payload_too_big``, raised as soon as the header arrives), audio or DTMF before the UUID
(``audio_before_uuid``), a second UUID (``uuid_twice``), a UUID that is neither 16 bytes nor a
UUID's text (``bad_uuid``), an odd audio length (``odd_audio_length``), a DTMF payload that is
not one known digit (``bad_dtmf``), bytes after the hang-up (``data_after_hangup``).

One AudioSocket is one direction of one channel; :mod:`.legs` pairs two of them into a call.
"""

from __future__ import annotations

import struct
import uuid as uuidlib
from dataclasses import dataclass

import numpy as np

from appliance.audio.pbx.errors import PbxProtocolError
from appliance.errors import shown

KIND_HANGUP = 0x00
KIND_UUID = 0x01
KIND_DTMF = 0x03
KIND_AUDIO = 0x10
KIND_ERROR = 0xFF

HEADER_BYTES = 3
SAMPLE_RATE_HZ = 8000
"""AudioSocket audio is always 8 kHz (force ``c(slin)`` when dialling the channel driver)."""
MAX_PAYLOAD_BYTES = 16_000
"""Default bound on one payload: a second of 8 kHz audio (Asterisk sends 320 bytes every
20 ms).  The 16-bit length allows 65 535; anything past this bound is refused."""
DTMF_DIGITS = frozenset("0123456789*#ABCD")

_HEADER = struct.Struct(">BH")


@dataclass(frozen=True, slots=True)
class Uuid:
    """The stream's UUID, in the canonical lower-case 36-character form."""

    uuid: str


@dataclass(frozen=True, slots=True, eq=False)
class Audio:
    """8 kHz mono audio: int16 samples (native order, read-only)."""

    samples: np.ndarray


@dataclass(frozen=True, slots=True)
class Dtmf:
    """A keypad digit (``0-9 * # A-D``)."""

    digit: str


@dataclass(frozen=True, slots=True)
class Hangup:
    """The far end ended the stream."""


@dataclass(frozen=True, slots=True)
class Error:
    """The far end reported an error; ``code`` is the first payload byte, or None."""

    code: int | None


@dataclass(frozen=True, slots=True)
class Unknown:
    """A message of a type this decoder does not know, skipped (``length`` payload bytes)."""

    kind: int
    length: int


Message = Uuid | Audio | Dtmf | Hangup | Error | Unknown


class AudioSocketDecoder:
    """Turns the bytes of one AudioSocket connection, in chunks of any size, into messages.

    ``feed`` keeps an incomplete message for the next call; it holds at most one header plus
    ``max_payload_bytes``.  After a :class:`PbxProtocolError` the decoder is spent: every later
    ``feed`` raises the same error (the listener closes the socket anyway).
    """

    def __init__(self, max_payload_bytes: int = MAX_PAYLOAD_BYTES) -> None:
        if not 0 < max_payload_bytes <= 0xFFFF:
            raise ValueError(f"max_payload_bytes must be in 1..65535: {max_payload_bytes}")
        self.max_payload_bytes = max_payload_bytes
        self.uuid: str | None = None
        self.hung_up = False
        self.unknown_messages = 0
        self.audio_samples = 0
        self._buffer = bytearray()
        self._failed: PbxProtocolError | None = None

    @property
    def pending_bytes(self) -> int:
        """Bytes held back waiting for the rest of their message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message]:
        """The complete messages that ``data`` (appended to what is pending) finishes."""
        if self._failed is not None:
            raise self._failed
        try:
            return self._feed(data)
        except PbxProtocolError as exc:
            self._failed = exc
            self._buffer.clear()
            raise

    def _feed(self, data: bytes) -> list[Message]:
        if self.hung_up:
            if data:
                raise PbxProtocolError("data_after_hangup",
                                       f"AudioSocket: {len(data)} bytes after the hang-up")
            return []
        self._buffer += data
        out: list[Message] = []
        start = 0
        buf = self._buffer
        while len(buf) - start >= HEADER_BYTES:
            kind, length = _HEADER.unpack_from(buf, start)
            if length > self.max_payload_bytes:
                raise PbxProtocolError(
                    "payload_too_big", f"AudioSocket: a 0x{kind:02x} message of {length} bytes "
                    f"(at most {self.max_payload_bytes})")
            end = start + HEADER_BYTES + length
            if len(buf) < end:
                break
            payload = bytes(buf[start + HEADER_BYTES:end])
            start = end
            out.append(self._message(kind, payload))
            if self.hung_up:
                if start < len(buf):
                    raise PbxProtocolError(
                        "data_after_hangup",
                        f"AudioSocket: {len(buf) - start} bytes after the hang-up")
                break
        del buf[:start]
        return out

    def _message(self, kind: int, payload: bytes) -> Message:
        if kind == KIND_HANGUP:
            self.hung_up = True
            return Hangup()
        if kind == KIND_ERROR:
            return Error(payload[0] if payload else None)
        if kind == KIND_UUID:
            if self.uuid is not None:
                raise PbxProtocolError("uuid_twice", "AudioSocket: a second UUID message")
            self.uuid = _parse_uuid(payload)
            return Uuid(self.uuid)
        if kind in (KIND_AUDIO, KIND_DTMF) and self.uuid is None:
            raise PbxProtocolError("audio_before_uuid",
                                   f"AudioSocket: a 0x{kind:02x} message before the UUID")
        if kind == KIND_AUDIO:
            if len(payload) % 2:
                raise PbxProtocolError("odd_audio_length",
                                       f"AudioSocket: audio of {len(payload)} bytes (odd)")
            samples = np.frombuffer(payload, dtype="<i2").astype(np.int16)
            samples.flags.writeable = False
            self.audio_samples += samples.size
            return Audio(samples)
        if kind == KIND_DTMF:
            digit = payload.decode("ascii", errors="replace") if len(payload) == 1 else ""
            if digit not in DTMF_DIGITS:
                raise PbxProtocolError("bad_dtmf", f"AudioSocket: DTMF payload {shown(payload)}")
            return Dtmf(digit)
        self.unknown_messages += 1
        return Unknown(kind, len(payload))


def _parse_uuid(payload: bytes) -> str:
    try:
        if len(payload) == 16:
            return str(uuidlib.UUID(bytes=payload))
        if len(payload) == 36:
            return str(uuidlib.UUID(payload.decode("ascii")))
    except (ValueError, UnicodeDecodeError):
        pass
    raise PbxProtocolError("bad_uuid", f"AudioSocket: UUID payload {shown(payload, 60)}")


def encode_frame(kind: int, payload: bytes = b"") -> bytes:
    """One raw message: the header and ``payload`` (for tests and fakes)."""
    if len(payload) > 0xFFFF:
        raise ValueError(f"an AudioSocket payload holds at most 65535 bytes: {len(payload)}")
    return _HEADER.pack(kind, len(payload)) + payload


def encode_message(message: Message) -> bytes:
    """The bytes Asterisk would send for ``message`` (an :class:`Unknown` gets zero bytes)."""
    if isinstance(message, Uuid):
        return encode_frame(KIND_UUID, uuidlib.UUID(message.uuid).bytes)
    if isinstance(message, Audio):
        return encode_frame(KIND_AUDIO, np.asarray(message.samples, dtype="<i2").tobytes())
    if isinstance(message, Dtmf):
        return encode_frame(KIND_DTMF, message.digit.encode("ascii"))
    if isinstance(message, Hangup):
        return encode_frame(KIND_HANGUP)
    if isinstance(message, Error):
        return encode_frame(KIND_ERROR, b"" if message.code is None else bytes([message.code]))
    return encode_frame(message.kind, bytes(message.length))
