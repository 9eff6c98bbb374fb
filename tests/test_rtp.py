"""The RTP core: packet parsing, payload decoding and the jitter buffer, on crafted packet
sequences with an injected clock, plus seeded fuzzing of the parser and the buffer."""

from __future__ import annotations

import struct
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.audio.rtp.codecs import (
    ALAW_TO_INT16,
    PT_CN,
    PT_PCMA,
    PT_PCMU,
    ULAW_TO_INT16,
    Codec,
    comfort_noise_level_dbov,
    decode,
)
from appliance.audio.rtp.jitter import Chunk, JitterBuffer, JitterConfig, unwrap
from appliance.audio.rtp.packet import (
    MalformedPacket,
    RtcpPacket,
    RtpPacket,
    build,
    parse,
)
from appliance.errors import ApplianceError

L16 = 96
CODECS = {L16: Codec("L16", 8000)}
N = 160  # samples per 20 ms packet at 8 kHz


# -- packet ----------------------------------------------------------------------------------

def test_a_plain_packet_parses_to_its_fields() -> None:
    p = parse(build(0, 65535, 0xFFFFFFFF, 0xDEADBEEF, b"\xff" * 160, marker=True))
    assert p == RtpPacket(payload_type=0, sequence=65535, timestamp=0xFFFFFFFF,
                          ssrc=0xDEADBEEF, marker=True, payload=b"\xff" * 160)


def test_csrcs_extension_and_padding_are_read_and_stripped() -> None:
    header = bytes((0x80 | 0x20 | 0x10 | 2, 8)) + struct.pack(">HII", 7, 1234, 42)
    csrcs = struct.pack(">II", 11, 22)
    ext = struct.pack(">HH", 0xBEDE, 2) + b"\x01" * 8
    data = header + csrcs + ext + b"abcd" + b"\x00\x00\x03"
    p = parse(data)
    assert isinstance(p, RtpPacket)
    assert (p.payload_type, p.sequence, p.timestamp, p.ssrc) == (8, 7, 1234, 42)
    assert p.csrcs == (11, 22) and p.extension_profile == 0xBEDE
    assert p.payload == b"abcd" and p.padding_bytes == 3 and not p.marker


@pytest.mark.parametrize("second_byte", [200, 201, 202, 203, 204])
def test_rtcp_on_the_rtp_port_is_recognised(second_byte: int) -> None:
    p = parse(bytes((0x80, second_byte)) + struct.pack(">H", 1) + b"\x00" * 4)
    assert p == RtcpPacket(packet_type=second_byte, size_bytes=8)


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "too short"),
    (b"\x80", "too short"),
    (bytes((0x40, 0)) + b"\x00" * 10, "version 1"),
    (bytes((0x80, 0)) + b"\x00" * 9, "shorter than the 12-byte header"),
    (bytes((0xA0, 0)) + b"\x00" * 10 + b"\x00", "pad count is 0"),
    (bytes((0xA0, 0)) + b"\x00" * 10 + b"\x05", "runs into the header"),
    (bytes((0x83, 0)) + b"\x00" * 10 + b"\x00" * 8, "3 CSRCs run past the end"),
    (bytes((0x90, 0)) + b"\x00" * 10 + b"\x00\x00", "extension header runs past"),
    (bytes((0x90, 0)) + b"\x00" * 10 + b"\x00\x00\x00\x02" + b"\x00" * 4, "2 words"),
    (bytes((0x80, 200)) + b"\x00", "RTCP of 3 bytes"),
    (bytes((0x80, 200)) + b"\x00\x05" + b"\x00" * 4, "RTCP length 24"),
])
def test_malformed_packets_raise_the_parser_error_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket) as caught:
        parse(data)
    assert reason in caught.value.reason
    assert caught.value.code == "rtp.malformed"


@settings(max_examples=400, derandomize=True, deadline=None, database=None)
@given(st.binary(max_size=80))
def test_random_bytes_parse_or_raise_only_the_parser_error(data: bytes) -> None:
    try:
        p = parse(data)
    except MalformedPacket as e:
        assert e.reason
        return
    assert isinstance(p, RtcpPacket) or 0 <= p.payload_type <= 127


@settings(max_examples=400, derandomize=True, deadline=None, database=None)
@given(st.integers(0, 255), st.binary(min_size=0, max_size=60))
def test_random_version_2_headers_parse_or_raise_only_the_parser_error(b0: int,
                                                                       rest: bytes) -> None:
    try:
        p = parse(bytes(((b0 & 0x3F) | 0x80,)) + rest)
    except MalformedPacket:
        return
    if isinstance(p, RtpPacket):
        assert 12 + len(p.payload) + p.padding_bytes + 4 * len(p.csrcs) <= 1 + len(rest)


# -- codecs ----------------------------------------------------------------------------------

def test_g711_tables_match_the_itu_reference_values() -> None:
    # the G.711 values at the ends and around zero (as audioop and the ITU tables give)
    assert ULAW_TO_INT16[[0x00, 0x7F, 0x80, 0xFF]].tolist() == [-32124, 0, 32124, 0]
    assert ALAW_TO_INT16[[0x55, 0xD5, 0x2A, 0xAA, 0x00, 0x80]].tolist() == [
        -8, 8, -32256, 32256, -5504, 5504]
    all_bytes = bytes(range(256))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
        ulaw = np.frombuffer(audioop.ulaw2lin(all_bytes, 2), dtype="<i2")
        alaw = np.frombuffer(audioop.alaw2lin(all_bytes, 2), dtype="<i2")
    assert np.array_equal(decode(Codec("PCMU"), all_bytes), ulaw)
    assert np.array_equal(decode(Codec("PCMA"), all_bytes), alaw)
    assert decode(Codec("PCMU"), all_bytes).dtype == np.int16


def test_l16_is_big_endian_and_an_odd_payload_is_malformed() -> None:
    x = decode(Codec("L16", 16000), struct.pack(">3h", 1, -2, 32767))
    assert x.tolist() == [1, -2, 32767] and x.dtype == np.int16
    with pytest.raises(MalformedPacket):
        decode(Codec("L16", 8000), b"\x00\x01\x02")
    with pytest.raises(ValueError):
        Codec("L16", 44100)


def test_comfort_noise_decodes_to_nothing_and_reports_its_level() -> None:
    assert len(decode(Codec("CN"), b"\x28")) == 0
    assert comfort_noise_level_dbov(b"\x28\x01\x02") == -40
    assert comfort_noise_level_dbov(b"") is None and comfort_noise_level_dbov(b"\x80") is None


# -- jitter buffer ---------------------------------------------------------------------------

def l16(seq: int, ts: int | None = None, *, ssrc: int = 1, value: int | None = None,
        n: int = N) -> RtpPacket:
    """An L16 packet whose samples all hold ``value`` (default: the sequence number)."""
    v = seq % 30000 if value is None else value
    return RtpPacket(payload_type=L16, sequence=seq & 0xFFFF,
                     timestamp=(seq * n if ts is None else ts) & 0xFFFFFFFF, ssrc=ssrc,
                     marker=False, payload=struct.pack(f">{n}h", *([v] * n)))


def jb(**config: float) -> JitterBuffer:
    return JitterBuffer(8000, CODECS, JitterConfig(**config))  # type: ignore[arg-type]


def collect(buf: JitterBuffer, chunks: list[Chunk | None]) -> np.ndarray:
    """The samples of ``chunks``, checked contiguous from sample 0."""
    end = 0
    parts = []
    for c in chunks:
        if c is None:
            continue
        assert c.start_sample == end and c.t_s == end / 8000
        end = c.end_sample
        parts.append(c.samples)
    assert end == buf.played_samples
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


def values(x: np.ndarray) -> list[int]:
    """The value of each 160-sample block."""
    return [int(x[i]) for i in range(0, len(x), N)]


def test_in_order_packets_play_after_the_depth_and_in_order() -> None:
    buf = jb(depth_ms=60)
    out = []
    for k in range(5):
        buf.push(l16(100 + k), now_s=10.0 + 0.02 * k)
        out.append(buf.pop_ready(10.0 + 0.02 * k))
    assert out[:3] == [None] * 3  # the first packet is due at 10.06
    first = out[3]
    assert first is not None and first.start_sample == 0 and len(first.samples) >= N
    out.append(buf.pop_ready(10.139))  # up to 103 (due 10.12); 104 is due at 10.14
    assert buf.played_samples == 4 * N
    out.append(buf.drain())
    x = collect(buf, out)
    assert values(x) == [100, 101, 102, 103, 104]
    s = buf.stats
    assert (s["received"], s["played"], s["lost"], s["concealed_ms"], s["reordered"]) == (
        5, 5, 0, 0.0, 0)


def test_reordering_within_the_depth_is_repaired() -> None:
    buf = jb(depth_ms=60)
    for k, seq in enumerate([1, 3, 2, 4]):
        buf.push(l16(seq), now_s=0.02 * k)
    x = collect(buf, [buf.pop_ready(1.0)])
    assert values(x) == [1, 2, 3, 4]
    assert buf.stats["reordered"] == 1 and buf.stats["lost"] == 0


def test_a_lost_packet_is_concealed_by_a_faded_repeat_then_zeros() -> None:
    buf = jb(depth_ms=40)
    for seq in (1, 2, 5):
        buf.push(l16(seq, value=1000), now_s=0.02 * seq)
    assert collect(buf, [buf.pop_ready(0.02 + 0.04 + 0.02 * 3.99)]).size == 2 * N  # 5 not due
    out = buf.pop_ready(0.02 + 0.04 + 0.02 * 4)  # packet 5 due: 3 and 4 concealed
    assert out is not None and out.start_sample == 2 * N
    concealed = out.samples[:2 * N]
    ramp = (1000 * (1.0 - np.arange(N) / N)).astype(np.int16)
    assert np.array_equal(concealed[:N], ramp) and not concealed[N:].any()
    assert (out.samples[2 * N:] == 1000).all()
    s = buf.stats
    assert (s["lost"], s["concealed_ms"], s["played"]) == (2, 40.0, 3)


def test_duplicates_and_late_packets_are_dropped_and_counted() -> None:
    buf = jb(depth_ms=20)
    buf.push(l16(1), 0.0)
    buf.push(l16(1), 0.001)  # duplicate of a buffered packet
    buf.push(l16(2), 0.02)
    buf.push(l16(4), 0.06)
    chunks = [buf.pop_ready(1.0)]  # 3 is concealed
    buf.push(l16(2), 1.0)  # duplicate of a played packet
    buf.push(l16(3), 1.0)  # late: its slot was concealed
    buf.push(l16(3), 1.0)  # a second copy of the late one
    chunks.append(buf.drain())
    x = collect(buf, chunks)
    assert values(x) == [1, 2, 2, 4]  # 3's slot: 2 repeated, fading from its full level
    assert x[2 * N + N - 1] == 0
    s = buf.stats
    assert (s["duplicates"], s["late"], s["lost"], s["played"]) == (3, 1, 1, 3)


def test_sequence_wrap_65535_to_0_is_seamless() -> None:
    buf = jb()
    seqs = [65533, 65534, 65535, 0, 1, 2]
    for k, seq in enumerate(seqs):
        buf.push(l16(seq, ts=1000 + k * N), now_s=0.02 * k)
    x = collect(buf, [buf.drain()])
    assert values(x) == [s % 30000 for s in seqs] and len(x) == 6 * N
    s = buf.stats
    assert (s["lost"], s["restarts"], s["timestamp_jumps"], s["duplicates"]) == (0, 0, 0, 0)


def test_sequence_wrap_with_reordering_across_it() -> None:
    buf = jb()
    for k, seq in enumerate([65534, 0, 65535, 1]):
        buf.push(l16(seq, ts={65534: 0, 65535: N, 0: 2 * N, 1: 3 * N}[seq]), now_s=0.02 * k)
    assert values(collect(buf, [buf.drain()])) == [65534 % 30000, 65535 % 30000, 0, 1]
    assert buf.stats["reordered"] == 1 and buf.stats["lost"] == 0


def test_timestamp_wrap_is_seamless() -> None:
    buf = jb()
    start = 2**32 - 2 * N
    for k in range(5):
        buf.push(l16(10 + k, ts=start + k * N), now_s=0.02 * k)
    x = collect(buf, [buf.drain()])
    assert len(x) == 5 * N and values(x) == [10, 11, 12, 13, 14]
    assert buf.stats["timestamp_jumps"] == 0 and buf.stats["silence_ms"] == 0


def test_comfort_noise_becomes_silence_until_the_next_packet() -> None:
    buf = jb()
    cn = RtpPacket(payload_type=PT_CN, sequence=2, timestamp=2 * N, ssrc=1, marker=False,
                   payload=b"\x28")
    buf.push(l16(1), 0.0)
    buf.push(cn, 0.02)
    buf.push(l16(3, ts=10 * N), 0.2)  # speech resumes 160 ms after the CN packet
    x = collect(buf, [buf.drain()])
    assert len(x) == 11 * N - N  # samples N..11N cover packet 1, silence, packet 3
    assert (x[:N] == 1).all() and not x[N:9 * N].any() and (x[9 * N:] == 3).all()
    s = buf.stats
    assert (s["silence_ms"], s["lost"], s["played"]) == (160.0, 0, 3)


def test_a_new_ssrc_continues_the_timeline_and_old_stragglers_are_late() -> None:
    buf = jb(depth_ms=60)
    for k in range(3):
        buf.push(l16(k, ssrc=1), now_s=0.02 * k)
    chunks = [buf.pop_ready(0.5)]
    # the new sender starts 0.2 s after the first arrival with unrelated seq and timestamp
    buf.push(l16(40000, ts=999_999, ssrc=2, value=7), now_s=0.2)
    buf.push(l16(3, ssrc=1), now_s=0.21)  # straggler from the old SSRC
    buf.push(l16(40001, ts=999_999 + N, ssrc=2, value=8), now_s=0.22)
    chunks.append(buf.drain())
    x = collect(buf, chunks)
    # old: 3 packets (0.06 s), silence up to 0.2 s of the old playout clock, then the new
    assert len(x) == int(0.2 * 8000) + 2 * N
    assert values(x[:3 * N]) == [0, 1, 2] and not x[3 * N:1600].any()
    assert (x[1600:1600 + N] == 7).all() and (x[1600 + N:] == 8).all()
    s = buf.stats
    assert (s["ssrc_changes"], s["late"], s["lost"], s["silence_ms"]) == (1, 1, 0, 140.0)


def test_a_big_sequence_jump_is_a_restart_not_thousands_of_losses() -> None:
    buf = jb()
    buf.push(l16(100), 0.0)
    buf.push(l16(101), 0.02)
    buf.push(l16(9000, ts=5), 0.04)
    buf.push(l16(9001, ts=5 + N), 0.06)
    x = collect(buf, [buf.drain()])
    assert values(x) == [100, 101, 9000, 9001]
    s = buf.stats
    assert (s["restarts"], s["lost"], s["concealed_ms"], s["strays"]) == (1, 0, 0.0, 0)


def test_a_single_packet_with_a_wild_sequence_number_is_a_stray_not_a_restart() -> None:
    buf = jb()
    buf.push(l16(100), 0.0)
    buf.push(l16(30000, ts=5), 0.01)  # stray: the next packet does not follow it
    buf.push(l16(101), 0.02)
    buf.push(l16(20000, ts=7), 0.03)  # a jump still on probation when the stream ends
    buf.push(l16(20002, ts=7), 0.04)  # does not follow it either: both strays
    buf.push(l16(102), 0.05)
    x = collect(buf, [buf.drain()])
    assert values(x) == [100, 101, 102]
    s = buf.stats
    assert (s["strays"], s["restarts"], s["lost"]) == (3, 0, 0)


def test_timestamps_going_backwards_or_far_ahead_are_placed_at_the_end() -> None:
    buf = jb(max_gap_s=1.0)
    buf.push(l16(1, ts=1000), 0.0)
    buf.push(l16(2, ts=500), 0.02)  # backwards
    buf.push(l16(3, ts=500 + N + 8000 * 5), 0.04)  # 5 s ahead
    x = collect(buf, [buf.drain()])
    assert values(x) == [1, 2, 3]
    assert buf.stats["timestamp_jumps"] == 2 and buf.stats["silence_ms"] == 0


def test_the_depth_is_bounded_by_max_packets() -> None:
    buf = jb(depth_ms=1000, max_packets=3)
    for seq in range(1, 7):
        buf.push(l16(seq), 0.0)
    out = buf.pop_ready(0.0)
    assert out is not None and values(out.samples) == [1, 2, 3]
    assert buf.stats["overflows"] == 3


def test_unknown_payload_types_and_bad_payloads_are_counted_and_dropped() -> None:
    buf = jb()
    buf.push(RtpPacket(payload_type=PT_PCMU, sequence=1, timestamp=0, ssrc=1, marker=False,
                       payload=b"\xff" * N), 0.0)  # PCMU is 8 kHz: fits this stream
    buf.push(RtpPacket(payload_type=99, sequence=2, timestamp=N, ssrc=1, marker=False,
                       payload=b"\x00" * 4), 0.02)
    buf.push(RtpPacket(payload_type=L16, sequence=3, timestamp=N, ssrc=1, marker=False,
                       payload=b"\x00" * 3), 0.04)
    buf.note_malformed()
    s = buf.stats
    assert (s["received"], s["unsupported"], s["malformed"]) == (1, 1, 2)
    wide = JitterBuffer(16000, {L16: Codec("L16", 16000)})
    wide.push(RtpPacket(payload_type=PT_PCMA, sequence=1, timestamp=0, ssrc=1, marker=False,
                        payload=b"\xd5" * N), 0.0)
    assert wide.stats["unsupported"] == 1 and wide.stats["received"] == 0


def test_a_stream_that_stops_goes_idle_after_the_timeout() -> None:
    buf = jb()
    assert buf.idle(0.0, 5.0)
    buf.push(l16(1), 100.0)
    assert not buf.idle(104.9, 5.0)
    assert buf.idle(105.0, 5.0)


def test_extended_numbers_unwrap_towards_the_reference() -> None:
    assert unwrap(0, 65535, 16) == 65536 and unwrap(65535, 65536, 16) == 65535
    assert unwrap(5, 2**32 - 5, 32) == 2**32 + 5 and unwrap(3, 3, 16) == 3


@st.composite
def _streams(draw: st.DrawFn) -> list[tuple[float, RtpPacket]]:
    seq = draw(st.integers(0, 65535))
    ts = draw(st.integers(0, 2**32 - 1))
    t = 0.0
    out = []
    for _ in range(draw(st.integers(0, 60))):
        seq += draw(st.sampled_from([1, 1, 1, 1, 2, 0, -1, -3, 5, 3000, -40000]))
        ts += draw(st.sampled_from([N, N, N, 2 * N, 0, -N, 80, 8000 * 100, 2**31]))
        t += draw(st.sampled_from([0.0, 0.02, 0.02, 0.001, 0.1, 2.0]))
        pt = draw(st.sampled_from([L16, L16, PT_PCMU, PT_CN, 99]))
        n = draw(st.sampled_from([0, 1, 80, N, 240, 321]))
        payload = b"\x01" * n  # an odd n is a malformed L16 payload
        ssrc = draw(st.sampled_from([1, 1, 1, 1, 2, 3]))
        out.append((t, RtpPacket(payload_type=pt, sequence=seq & 0xFFFF,
                                 timestamp=ts & 0xFFFFFFFF, ssrc=ssrc, marker=False,
                                 payload=payload)))
    return out


@settings(max_examples=300, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_streams(), st.sampled_from([0.0, 20.0, 60.0]), st.integers(1, 50))
def test_any_packet_stream_gives_one_contiguous_timeline(
        stream: list[tuple[float, RtpPacket]], depth_ms: float, max_packets: int) -> None:
    buf = jb(depth_ms=depth_ms, max_packets=max_packets, max_gap_s=2.0)
    chunks: list[Chunk | None] = []
    for t, packet in stream:
        buf.push(packet, t)
        chunks.append(buf.pop_ready(t))
    chunks.append(buf.drain())
    x = collect(buf, chunks)  # contiguous from 0, and as long as the timeline reached
    s = buf.stats
    assert len(x) == buf.played_samples and x.dtype == np.int16
    assert s["played"] + s["duplicates"] + s["late"] + s["strays"] == s["received"]
    assert s["received"] + s["unsupported"] + s["malformed"] == len(stream)
    assert len(x) * 1000 / 8000 >= s["concealed_ms"] + s["silence_ms"] - 1e-6


def test_the_parser_error_is_a_clean_refusal() -> None:
    assert issubclass(MalformedPacket, ApplianceError)
