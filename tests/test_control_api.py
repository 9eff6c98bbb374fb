"""The control API over a real loopback socket, on a standalone aiohttp application (the
tap's pool recorded, not run; a hold through the API on a real pool is in test_ws_tap):
announcing calls with their legs, listing, ending, hold and hang-up, and every refusal as one
JSON error with its stable code and status."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import numpy as np
import pytest

from appliance.audio.legs import LegAligner
from appliance.audio.tap import TapCalls
from appliance.errors import ApplianceError
from appliance.service.control_api import MAX_BODY_BYTES, ControlApi
from tests.taputil import RecordingPool, serving

UUID_A = "3f2b8c1e-7d4a-4e5b-9c6d-0a1b2c3d4e5a"
UUID_C = "3f2b8c1e-7d4a-4e5b-9c6d-0a1b2c3d4e5c"


def _t_after_one_second() -> float:
    """The call's audio time after 1 s of both legs at 8 kHz (whole 32 ms blocks, less the
    resampler's delay)."""
    aligner = LegAligner(8000)
    aligner.push("agent", np.zeros(8000, np.int16))
    aligner.push("customer", np.zeros(8000, np.int16))
    return aligner.t_s


T_S = _t_after_one_second()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Listener:
    """An AudioSocket or RTP listener as the API sees it: ``expect`` and ``forget``."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail_on = fail_on

    def expect(self, call_id: str, *args: Any, **kw: Any) -> None:
        if self.fail_on is not None and kw.get("port") == self.fail_on:
            raise ApplianceError("rtp.port_taken", f"port {self.fail_on} is expecting a call")
        self.calls.append(("expect", call_id, *args, *sorted(kw.items())))

    def forget(self, call_id: str) -> None:
        self.calls.append(("forget", call_id))


class Api:
    """A client of the API: ``await api("POST", "/api/calls", {...})`` → (status, JSON)."""

    def __init__(self, http: aiohttp.ClientSession, server: Any) -> None:
        self.http = http
        self.server = server

    async def __call__(self, method: str, path: str, body: object = None, *,
                       data: bytes | None = None,
                       headers: dict[str, str] | None = None) -> tuple[int, Any]:
        async with self.http.request(method, self.server.make_url(path), json=body,
                                     data=data, headers=headers) as r:
            assert r.content_type == "application/json", (r.status, await r.text())
            return r.status, await r.json()


def _run(scenario: Callable[[Api, TapCalls, Clock], Awaitable[None]], *,
         max_plans: int = 100, **listeners: Any) -> RecordingPool:
    pool = RecordingPool()
    clock = Clock()
    tap = TapCalls(pool, plan_ttl_s=60.0, max_plans=max_plans)
    api = ControlApi(tap, clock=clock, **listeners)

    async def go() -> None:
        async with serving(api.routes()) as server, aiohttp.ClientSession() as http:
            await scenario(Api(http, server), tap, clock)

    asyncio.run(go())
    return pool


def _error(answer: tuple[int, Any]) -> tuple[int, str]:
    status, body = answer
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    return status, body["error"]["code"]


def test_a_call_announced_then_streamed_then_held_hung_up_and_ended() -> None:
    async def scenario(api: Api, tap: TapCalls, clock: Clock) -> None:
        status, body = await api("POST", "/api/calls", {
            "call_id": "pbx-42@host", "agent_id": "a-17", "language": "de", "ring_s": 14.5})
        assert status == 201
        assert body["call"] == {"call_id": "pbx-42@host", "agent_id": "a-17",
                                "language": "de", "ring_s": 14.5, "source": None,
                                "state": "announced", "legs": {}}
        clock.t += 3.0
        assert await api("GET", "/api/calls") == (200, {"calls": [{
            "call_id": "pbx-42@host", "agent_id": "a-17", "language": "de", "ring_s": 14.5,
            "source": None, "state": "announced", "waiting_s": 3.0}]})
        assert _error(await api("POST", "/api/calls/pbx-42@host/hold", {"action": "start"})) \
            == (409, "call.not_started")
        # the audio comes (a listener opens the call); the plan fills what it does not say
        tap.open("pbx-42@host", rate_hz=8000, now_s=clock.t, source="websocket")
        tap.audio("pbx-42@host", "agent", np.zeros(8000, np.int16), clock.t)
        tap.audio("pbx-42@host", "customer", np.zeros(8000, np.int16), clock.t)
        clock.t += 2.0
        status, body = await api("GET", "/api/calls/pbx-42@host")
        assert status == 200 and body["call"] == {
            "call_id": "pbx-42@host", "agent_id": "a-17", "source": "websocket",
            "open_s": 2.0, "on_hold": False, "audio_s": round(T_S, 2), "state": "live"}
        assert await api("POST", "/api/calls/pbx-42@host/hold", {"action": "start"}) == (
            200, {"call": {"call_id": "pbx-42@host", "on_hold": True}})
        assert (await api("GET", "/api/calls"))[1]["calls"][0]["on_hold"] is True
        assert await api("POST", "/api/calls/pbx-42@host/hold", {"action": "end"}) == (
            200, {"call": {"call_id": "pbx-42@host", "on_hold": False}})
        assert await api("POST", "/api/calls/pbx-42@host/hangup", {"party": "customer"}) == (
            200, {"call": {"call_id": "pbx-42@host", "hung_up": "customer"}})
        assert await api("DELETE", "/api/calls/pbx-42@host") == (
            200, {"call": {"call_id": "pbx-42@host", "state": "ended"}})
        assert _error(await api("DELETE", "/api/calls/pbx-42@host")) == (404, "call.unknown")
        assert await api("GET", "/api/calls") == (200, {"calls": []})

    pool = _run(scenario)
    assert pool.opened["pbx-42@host"] == {"lang": "de", "agent_id": "a-17",
                                          "source": "websocket"}
    assert pool.log == [
        ("open", "pbx-42@host"), ("signal", "pbx-42@host", "answered", 14.5),
        ("mark", "pbx-42@host", "hold_start", T_S), ("mark", "pbx-42@host", "hold_end", T_S),
        ("signal", "pbx-42@host", "hung_up", "customer"), ("end", "pbx-42@host", "api")]


def test_legs_go_to_their_listener_and_an_announcement_can_be_forgotten() -> None:
    audiosocket, rtp = Listener(), Listener(fail_on=40010)

    async def scenario(api: Api, tap: TapCalls, clock: Clock) -> None:
        status, body = await api("POST", "/api/calls", {"call_id": "as-1", "legs": {
            "agent": {"audiosocket": UUID_A.upper()}, "customer": {"audiosocket": UUID_C}}})
        assert status == 201 and body["call"]["source"] == "audiosocket"
        assert body["call"]["legs"] == {"agent": {"audiosocket": UUID_A},
                                        "customer": {"audiosocket": UUID_C}}
        status, body = await api("POST", "/api/calls", {"call_id": "rtp-1", "legs": {
            "agent": {"rtp": {"port": 40002, "ssrc": 1234}}, "customer": {"rtp": {
                "port": 40002, "ssrc": 99}}}})
        assert status == 201 and body["call"]["source"] == "rtp"
        # the listener refuses the second leg: nothing of the call stays announced
        assert _error(await api("POST", "/api/calls", {"call_id": "rtp-2", "legs": {
            "agent": {"rtp": {"port": 40004}}, "customer": {"rtp": {"port": 40010}}}})) == (
            400, "rtp.port_taken")
        assert sorted(tap.plans) == ["as-1", "rtp-1"]
        assert await api("POST", "/api/calls/as-1/end") == (
            200, {"call": {"call_id": "as-1", "state": "forgotten"}})
        assert sorted(tap.plans) == ["rtp-1"]

    _run(scenario, audiosocket=audiosocket, rtp=rtp)
    assert audiosocket.calls == [
        ("expect", "as-1", ("agent_uuid", UUID_A), ("customer_uuid", UUID_C)),
        ("forget", "rtp-2"), ("forget", "as-1")]
    assert rtp.calls == [
        ("expect", "rtp-1", "agent", ("port", 40002), ("ssrc", 1234)),
        ("expect", "rtp-1", "customer", ("port", 40002), ("ssrc", 99)),
        ("expect", "rtp-2", "agent", ("port", 40004), ("ssrc", None)),
        ("forget", "rtp-2"), ("forget", "as-1")]


@pytest.mark.parametrize(("body", "status", "code"), [
    ({}, 400, "api.bad_request"),  # no call id
    ({"call_id": "has space"}, 400, "api.bad_request"),
    ({"call_id": "x" * 129}, 400, "api.bad_request"),
    ({"call_id": 42}, 400, "api.bad_request"),
    ({"call_id": "c", "agent_id": "a/b"}, 400, "api.bad_request"),
    ({"call_id": "c", "language": "German"}, 400, "api.bad_request"),
    ({"call_id": "c", "ring_s": -1}, 400, "api.bad_request"),
    ({"call_id": "c", "ring_s": 601}, 400, "api.bad_request"),
    ({"call_id": "c", "ring_s": True}, 400, "api.bad_request"),
    ({"call_id": "c", "ring_s": "9"}, 400, "api.bad_request"),
    ({"call_id": "c", "langauge": "de"}, 400, "api.bad_request"),  # a typo is not ignored
    ({"call_id": "c", "legs": []}, 400, "api.bad_request"),
    ({"call_id": "c", "legs": {}}, 400, "api.bad_request"),
    ({"call_id": "c", "legs": {"boss": {"rtp": {"port": 1}}}}, 400, "api.bad_request"),
    ({"call_id": "c", "legs": {"agent": {"sip": "x"}}}, 400, "api.bad_request"),
    ({"call_id": "c", "legs": {"agent": {"audiosocket": "not-a-uuid"}}}, 400,
     "api.bad_request"),
    ({"call_id": "c", "legs": {"agent": {"rtp": {"port": 0}}}}, 400, "api.bad_request"),
    ({"call_id": "c", "legs": {"agent": {"rtp": {"port": 65536}}}}, 400, "api.bad_request"),
    ({"call_id": "c", "legs": {"agent": {"rtp": {"port": 4.0e4}}}}, 400, "api.bad_request"),
    ({"call_id": "c", "legs": {"agent": {"rtp": {"port": 1, "ssrc": 2**32}}}}, 400,
     "api.bad_request"),
    ({"call_id": "c", "legs": {"agent": {"rtp": {"port": 1, "pt": 8}}}}, 400,
     "api.bad_request"),
    ({"call_id": "c", "legs": {"agent": {"rtp": {"port": 1}},
                               "customer": {"rtp": {"port": 1, "ssrc": 5}}}}, 400,
     "api.bad_request"),  # the legs cannot be told apart
    ({"call_id": "c", "legs": {"agent": {"audiosocket": UUID_A},
                               "customer": {"audiosocket": UUID_A}}}, 400, "api.bad_request"),
    ({"call_id": "c", "legs": {"agent": {"audiosocket": UUID_A},
                               "customer": {"rtp": {"port": 1}}}}, 400, "api.bad_request"),
])
def test_a_bad_announcement_is_refused_and_leaves_nothing(body: Any, status: int,
                                                           code: str) -> None:
    audiosocket, rtp = Listener(), Listener()

    async def scenario(api: Api, tap: TapCalls, clock: Clock) -> None:
        assert _error(await api("POST", "/api/calls", body)) == (status, code)
        assert tap.plans == {}

    _run(scenario, audiosocket=audiosocket, rtp=rtp)
    assert audiosocket.calls == rtp.calls == []


def test_legs_of_a_listener_that_is_off_are_refused() -> None:
    async def scenario(api: Api, tap: TapCalls, clock: Clock) -> None:
        for legs in ({"agent": {"audiosocket": UUID_A}}, {"customer": {"rtp": {"port": 1}}}):
            assert _error(await api("POST", "/api/calls", {"call_id": "c", "legs": legs})) \
                == (400, "tap.not_enabled")
        assert tap.plans == {}
        assert (await api("POST", "/api/calls", {"call_id": "c"}))[0] == 201  # a WebSocket call

    _run(scenario)


def test_bodies_are_bounded_typed_and_json() -> None:
    async def scenario(api: Api, tap: TapCalls, clock: Clock) -> None:
        post = "/api/calls"
        big = b'{"call_id": "c", "pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
        json_type = {"Content-Type": "application/json"}
        assert _error(await api("POST", post, data=big, headers=json_type)) == (
            413, "api.too_large")

        async def chunked() -> Any:  # no Content-Length: the bound holds while reading
            for _ in range(40):
                yield b" " * 1024
        async with api.http.post(api.server.make_url(post), data=chunked(),
                                 headers=json_type) as r:
            assert (r.status, (await r.json())["error"]["code"]) == (413, "api.too_large")
        assert _error(await api("POST", post, data=b'{"call_id": "c"}',
                                headers={"Content-Type": "text/plain"})) == (
            415, "api.unsupported_media_type")
        for bad in (b"", b"{", b"[1, 2]", b'"c"', b"\xff\xfe", b"[" * 5000 + b"]" * 5000):
            assert _error(await api("POST", post, data=bad, headers=json_type)) == (
                400, "api.bad_request"), bad[:20]
        assert tap.plans == {}

    _run(scenario)


def test_calls_that_do_not_exist_or_exist_already() -> None:
    async def scenario(api: Api, tap: TapCalls, clock: Clock) -> None:
        for method, path, body in (("GET", "/api/calls/nope", None),
                                   ("DELETE", "/api/calls/nope", None),
                                   ("POST", "/api/calls/nope/end", None),
                                   ("POST", "/api/calls/nope/hold", {"action": "start"}),
                                   ("POST", "/api/calls/nope/hangup", {"party": "agent"})):
            assert _error(await api(method, path, body)) == (404, "call.unknown"), path
        assert _error(await api("GET", "/api/calls/bad%20id")) == (400, "api.bad_request")
        assert (await api("POST", "/api/calls", {"call_id": "c-1"}))[0] == 201
        assert _error(await api("POST", "/api/calls", {"call_id": "c-1"})) == (
            409, "call.exists")
        tap.open("c-1", rate_hz=8000, now_s=clock.t)  # open now: still exists
        assert _error(await api("POST", "/api/calls", {"call_id": "c-1"})) == (
            409, "call.exists")
        assert _error(await api("POST", "/api/calls/c-1/hold", {"action": "pause"})) == (
            400, "api.bad_request")
        assert _error(await api("POST", "/api/calls/c-1/hold", {"action": "start",
                                                                 "t": 3})) == (
            400, "api.bad_request")
        assert _error(await api("POST", "/api/calls/c-1/hangup", {"party": "both"})) == (
            400, "api.bad_request")
        assert (await api("POST", "/api/calls", {"call_id": "c-2"}))[0] == 201
        assert _error(await api("POST", "/api/calls", {"call_id": "c-3"})) == (
            503, "calls.full")
        assert _error(await api("POST", "/api/calls/c-2/hangup", {"party": "agent"})) == (
            409, "call.not_started")

    _run(scenario, max_plans=1)


def test_an_announcement_whose_audio_never_came_expires() -> None:
    async def scenario(api: Api, tap: TapCalls, clock: Clock) -> None:
        assert (await api("POST", "/api/calls", {"call_id": "late"}))[0] == 201
        assert tap.expire(clock.t + 59.0) == [] and "late" in tap.plans
        tap.expire(clock.t + 60.0)
        assert _error(await api("GET", "/api/calls/late")) == (404, "call.unknown")

    _run(scenario)
