"""The PBX protocol cores: Asterisk AudioSocket framing and leg pairing, and the WebSocket
audio forks of FreeSWITCH mod_audio_fork / mod_audio_stream and jambonz listen."""

from __future__ import annotations

import json
import uuid as uuidlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.audio.pbx import audiosocket as asock
from appliance.audio.pbx.audiosocket import (
    Audio,
    AudioSocketDecoder,
    Dtmf,
    Error,
    Hangup,
    Unknown,
    Uuid,
    encode_frame,
    encode_message,
)
from appliance.audio.pbx.errors import PbxProtocolError
from appliance.audio.pbx.legs import Leg, LegOf, LegPairer, Paired, by_convention
from appliance.audio.pbx.wsfork import (
    REASON_MIXED,
    REASON_MONO,
    Chunk,
    Ended,
    MixType,
    StereoSplitter,
    StreamMeta,
    WsForkStream,
    parse_meta,
)
from appliance.audio.peers import PeerFilter
from appliance.errors import PBX_PROTOCOL, PBX_STREAM_REFUSED, ApplianceError

CALL_UUID = "3f2b8c1e-7d4a-4e5b-9c6d-0a1b2c3d4e5f"
FUZZ = settings(max_examples=300, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --- AudioSocket framing ---------------------------------------------------------------

def _session() -> tuple[bytes, list[object]]:
    """A whole AudioSocket session as bytes, and what decoding it must give (audio as
    lists, the other messages as themselves)."""
    audio1 = np.array([0, 1, -1, 32767, -32768, 1234, -4321, 7], dtype=np.int16)
    audio2 = np.arange(-80, 80, dtype=np.int16) * 200
    messages = [Uuid(CALL_UUID), Audio(audio1), Dtmf("7"), Unknown(0x02, 6), Audio(audio2),
                Error(0x02), Dtmf("#"), Error(None), Hangup()]
    data = b"".join(encode_message(m) for m in messages)
    expected = [m.samples.tolist() if isinstance(m, Audio) else m for m in messages]
    return data, expected


def _decode_chunks(chunks: list[bytes]) -> list[object]:
    decoder = AudioSocketDecoder()
    out: list[object] = []
    for chunk in chunks:
        out += decoder.feed(chunk)
    return [m.samples.tolist() if isinstance(m, Audio) else m for m in out]


def test_the_header_is_type_then_big_endian_length() -> None:
    assert encode_frame(0x10, b"\x01\x00\x02\x00") == b"\x10\x00\x04\x01\x00\x02\x00"
    assert encode_message(Hangup()) == b"\x00\x00\x00"  # the Asterisk doc's own example
    decoder = AudioSocketDecoder()
    decoder.feed(encode_message(Uuid(CALL_UUID)))
    [audio] = decoder.feed(b"\x10\x00\x04\x01\x00\xff\xff")
    assert isinstance(audio, Audio)
    assert audio.samples.dtype == np.int16 and audio.samples.tolist() == [1, -1]
    assert not audio.samples.flags.writeable
    assert decoder.audio_samples == 2


def test_decoding_is_the_same_under_every_chunking() -> None:
    data, expected = _session()
    assert _decode_chunks([data]) == expected
    assert _decode_chunks([data[i:i + 1] for i in range(len(data))]) == expected
    for cut in range(len(data) + 1):
        assert _decode_chunks([data[:cut], data[cut:]]) == expected, cut
    for a in range(0, len(data), 7):
        for b in range(a, len(data), 11):
            assert _decode_chunks([data[:a], data[a:b], b"", data[b:]]) == expected, (a, b)


def test_an_incomplete_message_waits_and_unknown_types_are_counted() -> None:
    decoder = AudioSocketDecoder()
    assert decoder.feed(encode_message(Uuid(CALL_UUID))[:5]) == []
    assert decoder.pending_bytes == 5 and decoder.uuid is None
    assert decoder.feed(encode_message(Uuid(CALL_UUID))[5:]) == [Uuid(CALL_UUID)]
    assert decoder.uuid == CALL_UUID and decoder.pending_bytes == 0
    assert decoder.feed(encode_frame(0x42, b"xyz") + encode_frame(0x02)) == [
        Unknown(0x42, 3), Unknown(0x02, 0)]
    assert decoder.unknown_messages == 2


def test_the_uuid_may_come_as_text_and_hangup_or_error_may_precede_it() -> None:
    decoder = AudioSocketDecoder()
    assert decoder.feed(encode_frame(0x01, CALL_UUID.upper().encode())) == [Uuid(CALL_UUID)]
    assert AudioSocketDecoder().feed(encode_frame(0xFF, b"\x04\x00")) == [Error(4)]
    assert AudioSocketDecoder().feed(b"\x00\x00\x00") == [Hangup()]


@pytest.mark.parametrize(("data", "reason"), [
    (encode_frame(0x10, b"\x00\x00"), "audio_before_uuid"),
    (encode_frame(0x03, b"5"), "audio_before_uuid"),
    (encode_message(Uuid(CALL_UUID)) + encode_frame(0x10, b"\x00\x00\x00"), "odd_audio_length"),
    (encode_message(Uuid(CALL_UUID)) + encode_frame(0x03, b"x"), "bad_dtmf"),
    (encode_message(Uuid(CALL_UUID)) + encode_frame(0x03, b"12"), "bad_dtmf"),
    (encode_message(Uuid(CALL_UUID)) + encode_frame(0x03, b""), "bad_dtmf"),
    (encode_frame(0x01, b"\x01" * 15), "bad_uuid"),
    (encode_frame(0x01, b"z" * 36), "bad_uuid"),
    (encode_message(Uuid(CALL_UUID)) * 2, "uuid_twice"),
    (b"\x00\x00\x00\x10", "data_after_hangup"),
    (b"\x10\x3e\x81", "payload_too_big"),  # 16 001 bytes declared: refused at the header
    (b"\x10\xff\xff", "payload_too_big"),
])
def test_protocol_faults_are_one_error_with_a_reason(data: bytes, reason: str) -> None:
    decoder = AudioSocketDecoder()
    with pytest.raises(PbxProtocolError) as caught:
        decoder.feed(data)
    assert caught.value.reason == reason and caught.value.code == PBX_PROTOCOL
    with pytest.raises(PbxProtocolError) as again:  # the decoder is spent
        decoder.feed(b"")
    assert again.value is caught.value


def test_bytes_after_the_hangup_in_a_later_read_are_refused() -> None:
    decoder = AudioSocketDecoder()
    assert decoder.feed(b"\x00\x00\x00") == [Hangup()]
    assert decoder.hung_up and decoder.feed(b"") == []
    with pytest.raises(PbxProtocolError, match="after the hang-up"):
        decoder.feed(b"\x10")


def test_the_payload_bound_is_configurable_and_checked() -> None:
    decoder = AudioSocketDecoder(max_payload_bytes=320)
    decoder.feed(encode_message(Uuid(CALL_UUID)))
    assert len(decoder.feed(encode_frame(0x10, bytes(320)))) == 1
    with pytest.raises(PbxProtocolError, match="322 bytes"):
        decoder.feed(encode_frame(0x10, bytes(322))[:3])
    for bad in (0, 70_000):
        with pytest.raises(ValueError):
            AudioSocketDecoder(max_payload_bytes=bad)
    with pytest.raises(ValueError):
        encode_frame(0x10, bytes(65_536))


# --- pairing the two AudioSockets of a call --------------------------------------------

AGENT = "3f2b8c1e-7d4a-4e5b-9c6d-0a1b2c3d4e5a"
CUSTOMER = "3f2b8c1e-7d4a-4e5b-9c6d-0a1b2c3d4e5c"
CALL = "3f2b8c1e-7d4a-4e5b-9c6d-0a1b2c3d4e50"


@pytest.mark.parametrize(("allow", "peer", "allowed"), [
    ([], "127.0.0.1", True), ([], "127.9.9.9", True), ([], "::1", True),
    ([], "::ffff:127.0.0.1", True), ([], "10.1.2.3", False), ([], "not an address", False),
    (["10.1.2.0/24"], "10.1.2.3", True), (["10.1.2.0/24"], "::ffff:10.1.2.3", True),
    (["10.1.2.0/24"], "10.1.3.3", False), (["10.1.2.0/24"], "127.0.0.1", False),
    (["fd00::/8"], "fd00::7", True), (["fd00::/8"], "10.1.2.3", False),
    (["10.1.2.3"], "fe80::1%eth0", False),
])
def test_the_listeners_peer_filter(allow: list[str], peer: str, allowed: bool) -> None:
    """Loopback only without an allow-list; with one, exactly its networks (an IPv4 peer
    seen on a dual-stack socket is checked as IPv4)."""
    assert PeerFilter(allow).allows(peer) is allowed


def test_the_last_digit_convention_names_call_and_leg() -> None:
    assert by_convention(AGENT) == LegOf(CALL, Leg.AGENT)
    assert by_convention(CUSTOMER.upper()) == LegOf(CALL, Leg.CUSTOMER)
    assert by_convention(CALL_UUID) is None  # ends in f
    assert by_convention("not-a-uuid") is None


@pytest.mark.parametrize("order", [(AGENT, CUSTOMER), (CUSTOMER, AGENT)])
def test_two_sockets_pair_into_one_call_in_either_order(order: tuple[str, str]) -> None:
    pairer = LegPairer()
    leg, paired = pairer.arrive(order[0], now_s=100.0)
    assert paired is None and leg.call_id == CALL and pairer.waiting == 1
    leg2, paired = pairer.arrive(order[1], now_s=100.5)
    assert leg2.leg is not leg.leg
    assert paired == Paired(CALL, AGENT, CUSTOMER) and pairer.waiting == 0


def test_registered_uuids_win_over_the_convention() -> None:
    pairer = LegPairer()
    swapped_a, swapped_c = CUSTOMER, AGENT  # the site's ARI app names them the other way
    pairer.expect("call-7", agent_uuid=swapped_a, customer_uuid=swapped_c)
    assert pairer.leg_of(swapped_a) == LegOf("call-7", Leg.AGENT)
    assert pairer.arrive(swapped_c, 1.0)[1] is None
    assert pairer.arrive(swapped_a, 2.0)[1] == Paired("call-7", swapped_a, swapped_c)
    other = str(uuidlib.UUID(int=5))
    pairer.expect("call-8", agent_uuid=other, customer_uuid=str(uuidlib.UUID(int=6)))
    pairer.forget("call-8")
    with pytest.raises(PbxProtocolError, match="neither registered") as caught:
        pairer.leg_of(other)
    assert caught.value.reason == "unknown_leg"


def test_without_the_convention_only_registered_uuids_are_taken() -> None:
    pairer = LegPairer(convention=False)
    with pytest.raises(PbxProtocolError, match="neither registered"):
        pairer.arrive(AGENT, 0.0)
    with pytest.raises(PbxProtocolError, match="one UUID"):
        pairer.expect("x", agent_uuid=AGENT, customer_uuid=AGENT.upper())
    with pytest.raises(PbxProtocolError) as caught:
        pairer.expect("x", agent_uuid="nope", customer_uuid=AGENT)
    assert caught.value.reason == "bad_uuid"


def test_a_leg_twice_is_refused_and_leaving_frees_it() -> None:
    pairer = LegPairer()
    pairer.arrive(AGENT, 0.0)
    with pytest.raises(PbxProtocolError) as caught:
        pairer.arrive(AGENT.upper(), 1.0)
    assert caught.value.reason == "leg_twice"
    assert pairer.leave(AGENT) == LegOf(CALL, Leg.AGENT)
    assert pairer.waiting == 0 and pairer.leave(AGENT) is None and pairer.leave("x") is None
    assert pairer.arrive(AGENT, 2.0)[1] is None
    assert pairer.arrive(CUSTOMER, 3.0)[1] is not None
    with pytest.raises(PbxProtocolError, match="already connected"):
        pairer.arrive(CUSTOMER, 4.0)


def test_a_lonely_leg_expires_on_the_given_clock_and_pending_is_bounded() -> None:
    pairer = LegPairer(max_wait_s=10.0, max_pending=2)
    pairer.arrive(AGENT, 100.0)
    other = str(uuidlib.UUID(int=0xA))  # ...000a: an agent leg of another call
    pairer.arrive(other, 105.0)
    with pytest.raises(PbxProtocolError) as caught:
        pairer.arrive(str(uuidlib.UUID(int=0x1A)), 105.0)
    assert caught.value.reason == "too_many_pending"
    assert pairer.expire(110.0) == []
    assert pairer.expire(110.5) == [AGENT]
    assert pairer.waiting == 1 and pairer.expire(116.0) == [other]
    assert pairer.arrive(AGENT, 200.0)[1] is None  # forgotten, so it may come again


# --- WebSocket forks: metadata --------------------------------------------------------

# The first text frame of jambonz `listen`: "all of the call attributes normally sent on an
# HTTP request (e.g. callSid, etc), plus sampleRate and mixType", and the verb's `metadata`
# (docs.jambonz.org/docs/webhooks/listen/ and /verbs/verbs/listen; the attribute names and
# values are those of the call in the docs' call:status example).
JAMBONZ_FIRST_FRAME = {
    "callSid": "b5e39996-bd2f-4bda-b928-355147186a2a", "direction": "inbound",
    "from": "+441173185201", "to": "+441303763875",
    "callId": "7ade3efb-7163-123b-e6ba-023fd61c5256", "sipStatus": 200, "sipReason": "OK",
    "callStatus": "in-progress", "accountSid": "300be250-5a79-46bd-8393-45e7d26c2e34",
    "traceId": "654c5323d6f907233a1069136b8a330e", "sampleRate": 8000, "mixType": "stereo",
    "metadata": {"queue": "billing", "agentId": 42},
}
# mod_audio_fork: the JSON given to `uuid_audio_fork <uuid> start <url> <metadata>`, as in
# the module's README usage example (drachtio/drachtio-freeswitch-modules,
# modules/mod_audio_fork/README.md): {to, from, callid}; mix type and rate are command args.
AUDIO_FORK_METADATA = {"to": "6173333456", "from": "2061236666",
                       "callid": "a84b4c76e66710@pc33.example.com"}


def test_jambonz_listen_metadata() -> None:
    meta = parse_meta(json.dumps(JAMBONZ_FIRST_FRAME))
    assert meta.call_id == "b5e39996-bd2f-4bda-b928-355147186a2a"
    assert (meta.caller, meta.callee, meta.direction) == ("+441173185201", "+441303763875",
                                                          "inbound")
    assert meta.sample_rate_hz == 8000 and meta.mix_type is MixType.STEREO
    assert meta.channels == 2 and meta.refusal() is None
    assert meta.custom["metadata"] == {"queue": "billing", "agentId": 42}
    assert meta.custom["callId"] == "7ade3efb-7163-123b-e6ba-023fd61c5256"
    assert "callSid" not in meta.custom and "sampleRate" not in meta.custom
    with pytest.raises(TypeError):
        meta.custom["x"] = 1  # type: ignore[index]


def test_mod_audio_fork_metadata_takes_rate_and_mix_from_the_route() -> None:
    frame = json.dumps(AUDIO_FORK_METADATA).encode()
    meta = parse_meta(frame, mix_type="stereo", sample_rate_hz=16000)
    assert meta == StreamMeta(call_id="a84b4c76e66710@pc33.example.com", caller="2061236666",
                              callee="6173333456", sample_rate_hz=16000,
                              mix_type=MixType.STEREO, custom=meta.custom)
    assert dict(meta.custom) == {}
    # the site may put them in the metadata instead, in the command's own words
    meta = parse_meta(json.dumps({**AUDIO_FORK_METADATA, "mix-type": "Stereo",
                                  "sampling-rate": "16k"}), sample_rate_hz=8000)
    assert meta.sample_rate_hz == 16000 and meta.mix_type is MixType.STEREO
    assert parse_meta('{"uuid": "u1", "sample_rate": "8000"}', mix_type="stereo").channels == 2


@pytest.mark.parametrize(("frame", "reason", "close"), [
    ("x" * (64 * 1024 + 1), "metadata_too_big", 1009),
    ("[" * 100_00 + "]" * 100_00, "metadata_too_deep", 1002),
    ('{"a": "[[[[[[[[[[[[[["}'.replace('"a"', '"callSid": "c", "a"'), "no_sample_rate", 1002),
    ("{not json", "metadata_not_json", 1002),
    (b"\xff\xfe{}", "metadata_not_utf8", 1002),
    ("[1, 2]", "metadata_not_object", 1002),
    ('{"from": "1"}', "no_call_id", 1002),
    ('{"callSid": true}', "bad_call_id", 1002),
    ('{"callSid": ""}', "bad_call_id", 1002),
    ('{"callSid": "a\\nb"}', "bad_call_id", 1002),
    ('{"callSid": "c", "from": {"x": 1}}', "bad_caller", 1002),
    ('{"callSid": "c", "mixType": "stereo"}', "no_sample_rate", 1002),
    ('{"callSid": "c", "sampleRate": 44100, "mixType": "stereo"}', "sample rate", 1003),
    ('{"callSid": "c", "sampleRate": true, "mixType": "stereo"}', "sample rate", 1003),
    ('{"callSid": "c", "sampleRate": "8\u00b2", "mixType": "stereo"}', "sample rate", 1003),
    ('{"callSid": "c", "sampleRate": 8000}', "no_mix_type", 1002),
    ('{"callSid": "c", "sampleRate": 8000, "mixType": "quad"}', "bad_mix_type", 1002),
    (json.dumps({"callSid": "c", **{f"k{i}": i for i in range(300)}}),
     "metadata_too_many_fields", 1002),
])
def test_bad_metadata_is_one_error_with_a_reason_and_close_code(frame: str | bytes,
                                                                 reason: str,
                                                                 close: int) -> None:
    with pytest.raises(PbxProtocolError) as caught:
        parse_meta(frame)
    assert caught.value.reason.startswith(reason) and caught.value.close_code == close


@pytest.mark.parametrize(("mix", "reason"), [("mixed", REASON_MIXED), ("mono", REASON_MONO)])
def test_mono_and_mixed_streams_are_refused_with_close_1003(mix: str, reason: str) -> None:
    frame = json.dumps({**JAMBONZ_FIRST_FRAME, "mixType": mix})
    refusal = parse_meta(frame).refusal()
    assert refusal is not None and refusal.close_code == 1003
    assert refusal.reason == reason and refusal.code == PBX_STREAM_REFUSED
    assert len(refusal.reason.encode()) <= 123  # fits a WebSocket close frame
    stream = WsForkStream()
    with pytest.raises(PbxProtocolError) as caught:
        stream.on_text(frame)
    assert caught.value.reason == reason and stream.ended
    assert stream.on_binary(b"\x00\x00") is None and stream.late_frames == 1


# --- WebSocket forks: stereo audio ----------------------------------------------------

def _interleave(left: list[int], right: list[int]) -> bytes:
    return np.column_stack([left, right]).astype("<i2").tobytes()


@pytest.mark.parametrize("agent_channel", [0, 1])
def test_stereo_splits_into_agent_and_customer_with_the_swap(agent_channel: int) -> None:
    left, right = [1, -2, 300, -32768], [10, 20, -30, 32767]
    agent, customer = StereoSplitter(agent_channel).feed(_interleave(left, right))
    assert agent.dtype == np.int16 and customer.dtype == np.int16
    want_agent, want_customer = (left, right) if agent_channel == 0 else (right, left)
    assert agent.tolist() == want_agent and customer.tolist() == want_customer


def test_stereo_frames_split_anywhere_give_the_same_samples() -> None:
    left = list(range(-500, 500, 7))
    right = [v * 3 for v in left]
    data = _interleave(left, right)
    for cut in range(len(data) + 1):
        for cut2 in (cut, min(len(data), cut + 1), min(len(data), cut + 3)):
            splitter = StereoSplitter(1)
            parts = [splitter.feed(data[:cut]), splitter.feed(data[cut:cut2]),
                     splitter.feed(data[cut2:])]
            assert np.concatenate([p[0] for p in parts]).tolist() == right
            assert np.concatenate([p[1] for p in parts]).tolist() == left
            assert splitter.pending_bytes == 0 and splitter.frames == len(left)
    splitter = StereoSplitter()
    agent, _ = splitter.feed(data[:7])
    assert agent.tolist() == [left[0]] and splitter.pending_bytes == 3
    assert splitter.flush() == 3 and splitter.pending_bytes == 0
    with pytest.raises(ValueError):
        StereoSplitter(2)


def test_a_stream_runs_metadata_audio_then_ends_on_a_text_frame() -> None:
    stream = WsForkStream(agent_channel=1, mix_type="stereo", sample_rate_hz=8000)
    with pytest.raises(PbxProtocolError) as caught:
        WsForkStream().on_binary(b"\x00\x00\x00\x00")
    assert caught.value.reason == "audio_before_metadata" and caught.value.close_code == 1002
    meta = stream.on_text(json.dumps(AUDIO_FORK_METADATA))
    assert isinstance(meta, StreamMeta) and stream.meta == meta
    data = _interleave([1, 2, 3], [4, 5, 6])
    chunk = stream.on_binary(data[:5])
    assert isinstance(chunk, Chunk)
    assert chunk.agent.tolist() == [4] and chunk.customer.tolist() == [1]
    chunk = stream.on_binary(data[5:])
    assert isinstance(chunk, Chunk) and chunk.agent.tolist() == [5, 6]
    stream.on_binary(b"\x07\x00\x08")
    assert stream.on_text('{"event": "stop", "uuid": "u"}') == Ended("text", "stop", 3)
    assert stream.ended and stream.on_binary(data) is None and stream.on_text("{}") is None
    assert stream.late_frames == 2 and stream.on_close() is None


@pytest.mark.parametrize(("frame", "event"), [
    ('{"type": "end"}', "end"), ("bye", None), ("[1]", None), (b"\xff", None),
    ('{"event": 5}', None), ("[" * 5000, None)])
def test_any_later_text_frame_ends_the_stream(frame: str | bytes, event: str | None) -> None:
    stream = WsForkStream()
    stream.on_text(json.dumps(JAMBONZ_FIRST_FRAME))
    assert stream.on_text(frame) == Ended("text", event, 0)


def test_a_close_ends_the_stream_and_drops_an_unfinished_frame() -> None:
    stream = WsForkStream()
    assert stream.on_close() == Ended("close", None, 0)  # closed before the metadata
    stream = WsForkStream()
    stream.on_text(json.dumps(JAMBONZ_FIRST_FRAME))
    stream.on_binary(b"\x01\x00")
    assert stream.on_close() == Ended("close", None, 2) and stream.ended


# --- fuzz: random input never raises anything but the protocol error -------------------

_frames = st.builds(encode_frame, st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x10, 0xFF, 0x42]),
                    st.binary(max_size=70))


@pytest.mark.fuzz
@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=64), _frames), max_size=12), st.booleans())
def test_fuzz_audiosocket_decoder(chunks: list[bytes], with_uuid: bool) -> None:
    decoder = AudioSocketDecoder(max_payload_bytes=64)
    if with_uuid:
        decoder.feed(encode_message(Uuid(CALL_UUID)))
    try:
        for chunk in chunks:
            for message in decoder.feed(chunk):
                assert isinstance(message, Uuid | Audio | Dtmf | Hangup | Error | Unknown)
    except PbxProtocolError:
        pass
    assert decoder.pending_bytes <= asock.HEADER_BYTES + 64


@pytest.mark.fuzz
@FUZZ
@given(st.data())
def test_fuzz_audiosocket_valid_sessions_decode_under_random_chunking(data: st.DataObject) -> None:
    session, expected = _session()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(session)), max_size=10)))
    chunks = [session[a:b] for a, b in zip([0, *cuts], [*cuts, len(session)], strict=True)]
    assert _decode_chunks(chunks) == expected


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                  max_size=4),
    max_leaves=20)
_meta_keys = st.sampled_from(["callSid", "uuid", "from", "to", "sampleRate", "mixType",
                              "mix-type", "sampling-rate", "direction", "event", "other"])


@pytest.mark.fuzz
@FUZZ
@given(st.one_of(st.text(max_size=200), st.binary(max_size=200),
                 st.dictionaries(_meta_keys, _json, max_size=8).map(json.dumps)),
       st.lists(st.one_of(st.binary(max_size=40), st.text(max_size=40)), max_size=8),
       st.sampled_from([None, "stereo", "mixed", "bogus"]), st.sampled_from([None, 8000, 7]))
def test_fuzz_ws_stream(first: str | bytes, frames: list[bytes | str], mix: str | None,
                        rate: int | None) -> None:
    stream = WsForkStream(mix_type=mix, sample_rate_hz=rate)
    try:
        stream.on_text(first)
        for frame in frames:
            if isinstance(frame, bytes):
                result = stream.on_binary(frame)
                assert result is None or len(result.agent) == len(result.customer)
            else:
                stream.on_text(frame)
        stream.on_close()
    except PbxProtocolError as exc:
        assert isinstance(exc, ApplianceError) and exc.reason
        assert len(exc.reason.encode()) <= 123


@pytest.mark.fuzz
@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["arrive", "leave", "expire"]),
                          st.sampled_from([AGENT, CUSTOMER, CALL_UUID, "junk",
                                           str(uuidlib.UUID(int=0xC))]),
                          st.floats(0, 100)), max_size=20))
def test_fuzz_leg_pairer(ops: list[tuple[str, str, float]]) -> None:
    pairer = LegPairer(max_pending=1, max_wait_s=5.0)
    for op, uuid, now_s in ops:
        try:
            if op == "arrive":
                pairer.arrive(uuid, now_s)
            elif op == "leave":
                pairer.leave(uuid)
            else:
                pairer.expire(now_s)
        except PbxProtocolError:
            pass
        assert pairer.waiting <= 1
