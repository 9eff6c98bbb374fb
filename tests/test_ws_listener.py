"""The WebSocket tap's listener over a real loopback socket (the tap's pool recorded, not
run; the cues through a real pool are in test_ws_tap): the routes, what a stream's metadata
gives the call, every refusal with its close code and one log line, the bounds, and how a
stream's end, its call's end elsewhere and the box stopping close each other."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import numpy as np
import pytest

from appliance.audio.pbx.ws_listener import WsTapListener
from appliance.audio.pbx.wsfork import REASON_MIXED, REASON_MONO, REASON_RATE
from appliance.audio.tap import CallPlan, TapCalls
from appliance.config.tap import TapConfig, TapRoute, TapWebSocketConfig
from tests.taputil import BareClient, RecordingPool, serving, stereo
from tests.waiting import until

LOGGER = "appliance.audio.pbx.ws_listener"
SHORT = {REASON_MIXED: "mixed", REASON_MONO: "mono", REASON_RATE: "sample_rate"}
FRAME = stereo(np.full(160, 1000, np.int16), np.full(160, -1000, np.int16))  # 20 ms at 8 kHz


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _cfg(**ws: Any) -> TapConfig:
    return TapConfig(routes=[
        TapRoute(name="fs1", mix_type="stereo", sample_rate_hz=8000, language="fr"),
        TapRoute(name="swap", agent_channel=1, mix_type="stereo"),
        TapRoute(name="mono", mix_type="mono"),
        TapRoute(name="ext", mix_type="stereo", agent_id_field="to")],
        websocket=TapWebSocketConfig(**ws))


Scenario = Callable[[aiohttp.ClientSession, Any, WsTapListener], Awaitable[None]]


def _run(scenario: Scenario, *, cfg: TapConfig | None = None, pool: RecordingPool | None = None,
         **kw: Any) -> tuple[WsTapListener, RecordingPool]:
    pool = pool or RecordingPool()
    listener = WsTapListener(TapCalls(pool), cfg or _cfg(), clock=Clock(), **kw)

    async def go() -> None:
        async with serving(listener.routes()) as server, aiohttp.ClientSession() as http:
            await scenario(http, server, listener)
            await until(lambda: listener.streams_open == 0, "the streams' handlers to end")

    asyncio.run(go())
    return listener, pool


async def _closed(ws: aiohttp.ClientWebSocketResponse) -> tuple[int | None, str]:
    """Wait for the box to close the stream: its close code and reason."""
    msg = await ws.receive()
    assert msg.type is aiohttp.WSMsgType.CLOSE, msg
    return ws.close_code, msg.extra or ""


def _meta(call_id: str = "c-1", **more: Any) -> str:
    return json.dumps({"callid": call_id, **more})


def test_a_stream_opens_its_call_feeds_both_parties_and_ends_it() -> None:
    seen: dict[str, Any] = {}

    async def scenario(http: aiohttp.ClientSession, server: Any, lis: WsTapListener) -> None:
        async with http.ws_connect(server.make_url("/tap/ws/fs1"),
                                   protocols=("audio.drachtio.org",)) as ws:
            seen["protocol"] = ws.protocol
            await ws.send_str(_meta("fs-uuid-1", agent_id="a-17", caller="+4930123"))
            for _ in range(50):  # 1 s
                await ws.send_bytes(FRAME)
            await ws.send_str(json.dumps({"event": "stop"}))  # uuid_audio_fork … stop
            seen["closed"] = await _closed(ws)

    lis, pool = _run(scenario)
    assert seen["protocol"] == "audio.drachtio.org"
    assert seen["closed"] == (1000, "stream ended")
    assert pool.log[0] == ("open", "fs-uuid-1") and pool.log[-1] == (
        "end", "fs-uuid-1", "source_closed")
    assert pool.open == {} and pool.samples["fs-uuid-1"] >= 15872  # ~1 s at 16 kHz, blocks
    stats = lis.stats()
    assert stats["frames"] == 50 and stats["bytes"] == 50 * 640
    assert stats["streams_total"] == 1 and stats["refused"] == {} and stats["malformed"] == 0


def test_the_call_takes_what_the_metadata_the_announcement_and_the_route_say() -> None:
    pool = RecordingPool()
    tap = TapCalls(pool)
    tap.plan(CallPlan("planned", agent_id="a-plan", language="de", source="api"))
    tap.plan(CallPlan("planned-2", agent_id="a-plan"))
    listener = WsTapListener(tap, _cfg(), clock=Clock())
    metas = {  # route, metadata
        "jb-1": ("", {"callSid": "jb-1", "sampleRate": 16000, "mixType": "stereo",
                      "metadata": {"agent_id": "a-3", "language": "de-DE"}}),
        "planned": ("/fs1", {"callid": "planned"}),  # the plan's language beats the route's
        "planned-2": ("/fs1", {"callid": "planned-2", "agentId": "a-9"}),
        "ch2": ("", {"uuid": "ch2", "channels": 2}),  # no mix type: two channels say stereo
        "ext-1": ("/ext", {"callid": "ext-1", "to": "2041"}),
    }

    async def go() -> None:
        async with serving(listener.routes()) as server, aiohttp.ClientSession() as http:
            for call_id, (path, meta) in metas.items():
                async with http.ws_connect(server.make_url("/tap/ws" + path)) as ws:
                    await ws.send_str(json.dumps(meta))
                    await ws.send_bytes(FRAME)
                    await until(lambda c=call_id: c in pool.opened)
            await until(lambda: listener.streams_open == 0)

    asyncio.run(go())
    assert pool.open == {}
    assert pool.opened == {"jb-1": {"lang": "de", "agent_id": "a-3", "source": "websocket"},
                   "planned": {"lang": "de", "agent_id": "a-plan", "source": "websocket"},
                   "planned-2": {"lang": "fr", "agent_id": "a-9", "source": "websocket"},
                   "ch2": {"lang": None, "agent_id": None, "source": "websocket"},
                   "ext-1": {"lang": None, "agent_id": "2041", "source": "websocket"}}
    assert tap.plans == {}
    assert listener.stats()["refused"] == {}


@pytest.mark.parametrize(("path", "first", "code", "reason"), [
    ("/tap/ws", _meta(mixType="mixed", sampleRate=8000), 1003, REASON_MIXED),
    ("/tap/ws/mono", _meta(), 1003, REASON_MONO),
    ("/tap/ws/fs1", _meta(sampleRate=44100), 1003, REASON_RATE),
    ("/tap/ws/fs1", "this is not JSON", 1002, "metadata_not_json"),
    ("/tap/ws/fs1", json.dumps({"from": "123"}), 1002, "no_call_id"),
    ("/tap/ws/fs1", _meta("bad id with spaces"), 1002, "bad_call_id"),
    ("/tap/ws/fs1", _meta(agent_id="a b"), 1002, "bad_agent_id"),
    ("/tap/ws/fs1", _meta(metadata={"language": "deutsch"}), 1002, "bad_language"),
    ("/tap/ws", _meta(), 1002, "no_mix_type"),
    ("/tap/ws/fs1", FRAME, 1002, "audio_before_metadata"),
])
def test_a_refused_stream_is_closed_with_its_code_and_one_log_line(
        path: str, first: str | bytes, code: int, reason: str,
        caplog: pytest.LogCaptureFixture) -> None:
    seen: dict[str, Any] = {}

    async def scenario(http: aiohttp.ClientSession, server: Any, lis: WsTapListener) -> None:
        async with http.ws_connect(server.make_url(path)) as ws:
            await (ws.send_str(first) if isinstance(first, str) else ws.send_bytes(first))
            seen["closed"] = await _closed(ws)

    with caplog.at_level(logging.INFO, LOGGER):
        lis, pool = _run(scenario)
    assert seen["closed"] == (code, reason)
    assert pool.log == []  # no call was opened
    lines = [r for r in caplog.records if r.name == LOGGER]
    assert [r.levelno for r in lines] == [logging.WARNING]
    assert lines[0].getMessage().startswith("tap stream refused")
    assert lines[0].fields["close_code"] == code  # type: ignore[attr-defined]
    assert lis.stats()["refused"] == {SHORT.get(reason, reason): 1}
    assert lis.stats()["malformed"] == (code == 1002)


def test_a_call_id_open_already_and_a_full_box_are_refused() -> None:
    seen: dict[str, Any] = {}

    async def scenario(http: aiohttp.ClientSession, server: Any, lis: WsTapListener) -> None:
        url = server.make_url("/tap/ws/fs1")
        async with http.ws_connect(url) as first:
            await first.send_str(_meta("dup"))
            await until(lambda: lis.tap.is_open("dup"))
            async with http.ws_connect(url) as second:
                await second.send_str(_meta("dup"))
                seen["dup"] = await _closed(second)
            async with http.ws_connect(url) as third:
                await third.send_str(_meta("one-too-many"))
                seen["full"] = await _closed(third)
            assert lis.tap.is_open("dup")  # the first stream's call is untouched
            await first.close()

    lis, pool = _run(scenario, pool=RecordingPool(max_calls=1))
    assert seen["dup"][0] == 1008 and seen["dup"][1] == "call_exists"
    assert seen["full"] == (1013, "calls_full")
    assert lis.stats()["refused"] == {"call_exists": 1, "calls_full": 1}
    assert pool.log == [("open", "dup"), ("end", "dup", "source_closed")]


def test_a_message_over_the_bound_closes_the_stream_and_ends_its_call() -> None:
    seen: dict[str, Any] = {}

    async def scenario(http: aiohttp.ClientSession, server: Any, lis: WsTapListener) -> None:
        async with http.ws_connect(server.make_url("/tap/ws/fs1")) as ws:
            await ws.send_str(_meta("big"))
            await ws.send_bytes(FRAME)
            await ws.send_bytes(bytes(1025))  # one byte over the bound
            seen["closed"] = await _closed(ws)

    lis, pool = _run(scenario, cfg=_cfg(max_frame_bytes=1024))
    assert seen["closed"][0] == 1009
    assert pool.log == [("open", "big"), ("end", "big", "source_closed")]
    assert lis.stats()["refused"] == {"message_too_big": 1}
    assert lis.stats()["malformed"] == 1 and lis.stats()["dropped_connections"] == 0


def test_unknown_routes_and_one_stream_too_many_are_refused_before_the_upgrade() -> None:
    seen: dict[str, Any] = {}

    async def scenario(http: aiohttp.ClientSession, server: Any, lis: WsTapListener) -> None:
        with pytest.raises(aiohttp.WSServerHandshakeError) as nope:
            await http.ws_connect(server.make_url("/tap/ws/nope"))
        seen["unknown"] = nope.value.status
        async with http.ws_connect(server.make_url("/tap/ws/fs1")) as ws:
            with pytest.raises(aiohttp.WSServerHandshakeError) as busy:
                await http.ws_connect(server.make_url("/tap/ws/fs1"))
            seen["busy"] = busy.value.status, busy.value.headers.get("Retry-After")
            await ws.send_str(_meta("only"))
        async with http.get(server.make_url("/tap/ws/fs1")) as plain:
            seen["plain"] = plain.status  # not an upgrade

    lis, _ = _run(scenario, cfg=_cfg(max_streams=1))
    assert seen == {"unknown": 404, "busy": (503, "1"), "plain": 400}
    assert lis.stats()["refused"] == {"unknown_route": 1, "too_many_streams": 1}
    assert lis.stats()["streams_total"] == 1


def test_a_stream_without_metadata_is_closed_after_the_timeout() -> None:
    seen: dict[str, Any] = {}

    async def scenario(http: aiohttp.ClientSession, server: Any, lis: WsTapListener) -> None:
        async with http.ws_connect(server.make_url("/tap/ws/fs1")) as ws:
            seen["closed"] = await _closed(ws)  # the client sends nothing

    _run(scenario, meta_timeout_s=0.05)
    assert seen["closed"] == (1002, "no_metadata")


def test_a_call_ended_elsewhere_closes_its_stream_and_drops_its_frames() -> None:
    seen: dict[str, Any] = {}

    async def scenario(http: aiohttp.ClientSession, server: Any, lis: WsTapListener) -> None:
        async with http.ws_connect(server.make_url("/tap/ws/fs1")) as ws:
            await ws.send_str(_meta("ended-by-api"))
            await ws.send_bytes(FRAME)
            await until(lambda: lis.frames == 1)
            lis.tap.end("ended-by-api", "api")  # what DELETE /api/calls/{id} does
            await ws.send_bytes(FRAME)
            seen["closed"] = await _closed(ws)

    lis, pool = _run(scenario)
    assert seen["closed"] == (1000, "call ended")
    assert pool.log == [("open", "ended-by-api"), ("end", "ended-by-api", "api")]
    assert lis.stats()["dropped_frames"] == 1


def test_the_box_stopping_closes_every_stream_and_ends_its_call() -> None:
    seen: dict[str, Any] = {}

    async def scenario(http: aiohttp.ClientSession, server: Any, lis: WsTapListener) -> None:
        async with http.ws_connect(server.make_url("/tap/ws/fs1")) as ws:
            await ws.send_str(_meta("stopping"))
            await until(lambda: lis.tap.is_open("stopping"))
            closing = asyncio.ensure_future(lis.close_all())
            seen["closed"] = await _closed(ws)
            await closing

    _, pool = _run(scenario)
    assert seen["closed"] == (1001, "the box is stopping")
    assert pool.log == [("open", "stopping"), ("end", "stopping", "service_stop")]


def test_a_vanished_peer_ends_its_call(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(http: aiohttp.ClientSession, server: Any, lis: WsTapListener) -> None:
        client = await BareClient.connect(server.host, server.port, "/tap/ws/fs1")
        client.send(_meta("gone"))
        for _ in range(10):
            client.send(FRAME)
        await client.drain()
        await until(lambda: lis.frames == 10)
        client.vanish()

    with caplog.at_level(logging.WARNING, LOGGER):
        lis, pool = _run(scenario)
    assert pool.log == [("open", "gone"), ("end", "gone", "source_closed")]
    assert lis.stats()["dropped_connections"] == 1
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        "tap stream went away without a close frame; its call ends"]


def test_a_peer_that_stops_answering_pings_is_dropped_and_its_call_ends() -> None:
    async def scenario(http: aiohttp.ClientSession, server: Any, lis: WsTapListener) -> None:
        client = await BareClient.connect(server.host, server.port, "/tap/ws/fs1")
        client.send(_meta("silent-peer"))  # then nothing, and it never reads the pings
        await client.drain()
        await until(lambda: lis.streams_total == 1 and lis.streams_open == 0,
                    "the box to give up on the peer")
        client.vanish()

    lis, pool = _run(scenario, heartbeat_s=0.05)
    assert pool.log == [("open", "silent-peer"), ("end", "silent-peer", "source_closed")]
    assert lis.stats()["dropped_connections"] == 1


def test_no_routes_when_the_websocket_tap_is_off() -> None:
    off = TapConfig(websocket=TapWebSocketConfig(enabled=False))
    assert WsTapListener(TapCalls(RecordingPool()), off).routes() == []
