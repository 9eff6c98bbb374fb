"""Parse one UDP datagram as an RTP packet (RFC 3550, section 5.1).

:func:`parse` returns an :class:`RtpPacket`, or an :class:`RtcpPacket` when the datagram is
RTCP multiplexed on the same port (RFC 5761: the second byte, marker bit included, is an RTCP
packet type in 192-223, e.g. 200-204 for SR, RR, SDES, BYE, APP; as RTP those would read as
marker set and payload type 64-95, which RFC 5761 reserves for that reason).  A listener
ignores RTCP.

Anything else that is not a well-formed RTP packet raises :class:`MalformedPacket` (and
nothing else: no ``IndexError`` or ``struct.error``) with a short reason; the caller counts
and drops it.  Checked: version 2; the 12-byte fixed header; the CSRC list, the header
extension (its 4-byte header and declared length are skipped, never interpreted) and the
padding (the last byte is the pad count, at least 1, within the packet after the headers)
all fit in the datagram.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import RTP_MALFORMED, ApplianceError

RTP_VERSION = 2
HEADER_BYTES = 12
RTCP_TYPES = range(192, 224)
"""Second-byte values read as RTCP when multiplexed with RTP (RFC 5761, section 4)."""


class MalformedPacket(ApplianceError):
    """A datagram that is not a well-formed RTP packet; ``reason`` says why, briefly."""

    def __init__(self, reason: str) -> None:
        super().__init__(RTP_MALFORMED, f"malformed RTP packet: {reason}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet: the header fields and the payload (padding and extension removed)."""

    payload_type: int
    """0-127 (0 PCMU, 8 PCMA, 13 comfort noise, 96-127 dynamic)."""
    sequence: int
    """16-bit sequence number as sent (wraps 65535 -> 0)."""
    timestamp: int
    """32-bit media timestamp as sent, in samples of the payload's clock (wraps)."""
    ssrc: int
    marker: bool
    payload: bytes
    csrcs: tuple[int, ...] = ()
    extension_profile: int | None = None
    """The 16-bit profile of the header extension when there is one (its data is skipped)."""
    padding_bytes: int = 0


@dataclass(frozen=True, slots=True)
class RtcpPacket:
    """An RTCP (compound) packet seen on the RTP port; not interpreted further."""

    packet_type: int
    """The first packet's type (200 SR, 201 RR, 202 SDES, 203 BYE, 204 APP, ...)."""
    size_bytes: int


def parse(data: bytes) -> RtpPacket | RtcpPacket:
    """The RTP (or RTCP) packet in one datagram; :class:`MalformedPacket` if it is neither."""
    n = len(data)
    if n < 2:
        raise MalformedPacket(f"{n} bytes, too short for any header")
    b0, b1 = data[0], data[1]
    if b0 >> 6 != RTP_VERSION:
        raise MalformedPacket(f"version {b0 >> 6}, not 2")
    if b1 in RTCP_TYPES:
        return _rtcp(data, b1)
    if n < HEADER_BYTES:
        raise MalformedPacket(f"{n} bytes, shorter than the 12-byte header")
    end = n
    padding = 0
    if b0 & 0x20:
        padding = data[-1]
        if padding == 0:
            raise MalformedPacket("padding flag set but pad count is 0")
        end -= padding
        if end < HEADER_BYTES:
            raise MalformedPacket(f"pad count {padding} runs into the header")
    csrc_count = b0 & 0x0F
    offset = HEADER_BYTES + 4 * csrc_count
    if offset > end:
        raise MalformedPacket(f"{csrc_count} CSRCs run past the end")
    csrcs = tuple(int.from_bytes(data[i:i + 4], "big") for i in range(HEADER_BYTES, offset, 4))
    profile = None
    if b0 & 0x10:
        if offset + 4 > end:
            raise MalformedPacket("extension header runs past the end")
        profile = int.from_bytes(data[offset:offset + 2], "big")
        words = int.from_bytes(data[offset + 2:offset + 4], "big")
        offset += 4 + 4 * words
        if offset > end:
            raise MalformedPacket(f"extension of {words} words runs past the end")
    return RtpPacket(
        payload_type=b1 & 0x7F,
        sequence=int.from_bytes(data[2:4], "big"),
        timestamp=int.from_bytes(data[4:8], "big"),
        ssrc=int.from_bytes(data[8:12], "big"),
        marker=bool(b1 & 0x80),
        payload=bytes(data[offset:end]),
        csrcs=csrcs,
        extension_profile=profile,
        padding_bytes=padding,
    )


def _rtcp(data: bytes, packet_type: int) -> RtcpPacket:
    n = len(data)
    if n < 4:
        raise MalformedPacket(f"RTCP of {n} bytes, shorter than its 4-byte header")
    declared = (int.from_bytes(data[2:4], "big") + 1) * 4
    if declared > n:
        raise MalformedPacket(f"RTCP length {declared} bytes past the datagram's {n}")
    return RtcpPacket(packet_type=packet_type, size_bytes=n)


def build(payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes,
          marker: bool = False) -> bytes:
    """A minimal RTP packet (no CSRC, extension or padding): for tests and tools."""
    b1 = (0x80 if marker else 0) | (payload_type & 0x7F)
    return (bytes((RTP_VERSION << 6, b1)) + (sequence & 0xFFFF).to_bytes(2, "big")
            + (timestamp & 0xFFFFFFFF).to_bytes(4, "big") + (ssrc & 0xFFFFFFFF).to_bytes(4, "big")
            + payload)
