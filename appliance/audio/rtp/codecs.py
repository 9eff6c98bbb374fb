"""RTP payload decoding to int16 samples.

* PCMU (static PT 0) and PCMA (PT 8): G.711 µ-law and A-law, 8 kHz, one byte per sample,
  decoded through the ITU-T G.711 expansion tables (the values Python's ``audioop.ulaw2lin``
  and ``alaw2lin`` give);
* L16: 16-bit signed linear PCM in network (big-endian) order (RFC 3551, section 4.5.11),
  mono, 8 or 16 kHz; it has no static payload type that fits (PT 11 is 44.1 kHz), so the
  route names its dynamic PT (Asterisk ExternalMedia ``slin``/``slin16``, an SBC's SDP);
* comfort noise (PT 13, RFC 3389): the payload's first byte is the noise level in -dBov
  (0-127). It decodes to **no samples**: the jitter buffer fills the span up to the next
  packet's timestamp with **plain zeros** (digital silence, not noise at that level: the
  analytics downstream want "nobody speaks", and invented noise would only feed the VAD).
  :func:`comfort_noise_level_dbov` reads the level for whoever wants it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from appliance.audio.rtp.packet import MalformedPacket

PT_PCMU = 0
PT_PCMA = 8
PT_CN = 13

L16_RATES_HZ = (8000, 16000)


@dataclass(frozen=True, slots=True)
class Codec:
    """How a payload type decodes: ``name`` one of ``PCMU``, ``PCMA``, ``L16``, ``CN``."""

    name: str
    sample_rate_hz: int = 8000

    def __post_init__(self) -> None:
        if self.name not in ("PCMU", "PCMA", "L16", "CN"):
            raise ValueError(f"unknown RTP codec {self.name!r}")
        if self.name == "L16" and self.sample_rate_hz not in L16_RATES_HZ:
            raise ValueError(f"L16 at {self.sample_rate_hz} Hz: only 8000 or 16000")
        if self.name in ("PCMU", "PCMA") and self.sample_rate_hz != 8000:
            raise ValueError(f"{self.name} is 8000 Hz, not {self.sample_rate_hz}")


STATIC: dict[int, Codec] = {PT_PCMU: Codec("PCMU"), PT_PCMA: Codec("PCMA"), PT_CN: Codec("CN")}
"""The static payload types understood (RFC 3551)."""


def codec_map(dynamic: Mapping[int, Codec] | None = None) -> dict[int, Codec]:
    """The static payload types plus a route's dynamic ones (96-127), which take precedence."""
    out = dict(STATIC)
    for pt, codec in (dynamic or {}).items():
        if not 0 <= pt <= 127:
            raise ValueError(f"payload type {pt} is not 0-127")
        out[pt] = codec
    return out


def _ulaw_table() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8,
                         ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


ULAW_TO_INT16 = _ulaw_table()
ALAW_TO_INT16 = _alaw_table()


def decode(codec: Codec, payload: bytes) -> np.ndarray:
    """The int16 samples of one payload (empty for comfort noise); :class:`MalformedPacket`
    for an L16 payload of odd length."""
    if codec.name == "PCMU":
        return ULAW_TO_INT16[np.frombuffer(payload, dtype=np.uint8)]
    if codec.name == "PCMA":
        return ALAW_TO_INT16[np.frombuffer(payload, dtype=np.uint8)]
    if codec.name == "L16":
        if len(payload) % 2:
            raise MalformedPacket(f"L16 payload of odd length {len(payload)}")
        return np.frombuffer(payload, dtype=">i2").astype(np.int16)
    return np.zeros(0, dtype=np.int16)


def comfort_noise_level_dbov(payload: bytes) -> int | None:
    """The noise level of a comfort-noise payload in dBov (0 down to -127), ``None`` if the
    payload is empty or the level byte is out of range."""
    if not payload or payload[0] > 127:
        return None
    return -payload[0]
