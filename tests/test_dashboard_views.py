"""Per-agent views (``/agent/<id>``) and the routes other modules add to the dashboard's
server (the PBX tap's control API and WebSocket listeners, here dummies), behind the same
guard: over real loopback sockets, and one agent's page in a real headless Chromium."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import generate_latest

from appliance.sinks.dashboard import DashboardServer, read_json
from appliance.sinks.dashboard.views import Client, Views
from tests.test_dashboard import (
    BROWSER_DIR,
    Sse,
    _browser_ready,
    cue,
    get,
    post,
    run,
    state,
    with_server,
)
from tests.test_metrics import samples
from tests.waiting import HANG_S, until

TOKEN = "t0ken-for-the-tap"


def message(frame: tuple[str, str]) -> str:
    return str(json.loads(frame[1])["message"])


# -- views ----------------------------------------------------------------------------------
def test_each_view_has_its_own_replay_and_pages() -> None:
    async def t(srv: DashboardServer) -> None:
        srv.publish(state(t=1.0), "a-7")
        srv.publish(cue("speaking_rate", "a-7 early", 1.5), "a-7")
        srv.publish(cue("speaking_rate", "b-2 early", 2.0), "b-2")
        srv.publish(state(t=9.0))  # the desk's
        a7 = await Sse.open(srv.port, "/agent/a-7/events")
        got = [await a7.next() for _ in range(3)]
        assert got[0] == ("retry", "1000") and json.loads(got[1][1])["t"] == 1.0
        assert message(got[2]) == "a-7 early" and json.loads(got[2][1])["replay"] is True
        desk = await Sse.open(srv.port)
        assert (await desk.next())[0] == "retry"
        assert json.loads((await desk.next())[1])["t"] == 9.0  # no agent's cue replayed
        # live: each page gets its own view's events, in order, and nothing else
        srv.publish(cue("speaking_rate", "b-2 live"), "b-2")
        srv.publish(cue("speaking_rate", "desk live"))
        srv.publish(cue("speaking_rate", "a-7 live"), "a-7")
        assert message(await a7.next()) == "a-7 live"
        assert message(await desk.next()) == "desk live"
        # a new call clears that agent's replay, not another's
        srv.publish({"t": 0.0, "kind": "call_started", "party": None, "severity": "info",
                     "message": "call started", "data": {}}, "a-7")
        assert (await a7.next())[0] == "call"
        again = await Sse.open(srv.port, "/agent/a-7/events")
        srv.publish(cue("speaking_rate", "a-7 marker"), "a-7")
        assert [g[0] for g in [await again.next() for _ in range(2)]] == ["retry", "state"]
        assert message(await again.next()) == "a-7 marker"  # the old cues were not replayed
        b2 = await Sse.open(srv.port, "/agent/b-2/events")
        got = [await b2.next() for _ in range(3)]
        assert [message(g) for g in got[1:]] == ["b-2 early", "b-2 live"]
        assert srv.views == 2 and srv.clients == 4
        for page in (a7, desk, again, b2):
            await page.close()
        await until(lambda: srv.clients == 0, "the pages let go")
    with_server(t)


def test_agent_ids_outside_the_pattern_are_not_found() -> None:
    async def t(srv: DashboardServer) -> None:
        for path in ("/agent/a-7", "/agent/b@pbx.example", "/agent/" + "x" * 64,
                     "/agent/A.b_c-9"):
            st, h, body = await get(srv.port, path)
            assert st == 200 and b'id="hold-key"' in body, path
            assert h["x-frame-options"] == "DENY"
        for path in ("/agent/" + "x" * 65, "/agent/a%20b", "/agent/a%2F7", "/agent/..",
                     "/agent/.", "/agent/", "/agent/a+7", "/agent/a-7/", "/agent/a-7/x",
                     "/agent/../events", "/agent/%2e%2e/events"):
            assert (await get(srv.port, path))[0] == 404, path
        assert (await post(srv.port, "/agent/a%20b/hold", b'{"action": "start"}'))[0] == 404
        assert (await post(srv.port, "/agent/../end", b""))[0] == 404
        assert srv.views == 0  # a page costs no view; its stream or an event makes one
        with pytest.raises(ValueError, match="agent id"):
            srv.publish(cue("speaking_rate", "x"), "a b")
    with_server(t)


def test_agent_keys_call_the_agent_callbacks() -> None:
    holds: list[tuple[str, str]] = []
    ends: list[str] = []
    desk: list[str] = []

    async def t(srv: DashboardServer) -> None:
        p = srv.port
        assert (await post(p, "/agent/a-7/hold", b'{"action": "start"}'))[0] == 200
        assert (await post(p, "/agent/a-7/hold", b'{"action": "end"}'))[0] == 200
        assert (await post(p, "/agent/b@pbx.example/end", b""))[0] == 200
        assert holds == [("a-7", "hold_start"), ("a-7", "hold_end")]
        assert ends == ["b@pbx.example"] and desk == []
        assert (await post(p, "/agent/a-7/hold", b'{"action": "pause"}'))[0] == 400
        assert (await post(p, "/agent/a-7/hold", b'{"action": "start"}', "text/plain"))[0] == 415
        assert (await post(p, "/agent/a-7/hold", b" " * 1025))[0] == 413
        st, h, _ = await get(p, "/agent/a-7/hold")
        assert st == 405 and h["allow"] == "POST"
        st, _, _ = await post(p, "/agent/a-7/end", b"", headers="Origin: http://evil.example\r\n")
        assert st == 403 and ends == ["b@pbx.example"]
        # the desk's keys have no callback on this server
        assert (await post(p, "/hold", b'{"action": "start"}'))[0] == 503
        assert (await post(p, "/end", b""))[0] == 503
    with_server(t, on_agent_hold=lambda a, m: holds.append((a, m)), on_agent_end=ends.append)

    async def none(srv: DashboardServer) -> None:
        assert (await post(srv.port, "/agent/a-7/hold", b'{"action": "start"}'))[0] == 503
        assert (await post(srv.port, "/agent/a-7/end", b""))[0] == 503
        assert (await post(srv.port, "/hold", b'{"action": "start"}'))[0] == 200
    with_server(none, on_hold=desk.append)
    assert desk == ["hold_start"]


def test_views_are_bounded_and_an_idle_one_goes_first() -> None:
    views = Views(history=5, max_views=2)
    a = views.get("a")
    assert a is not None
    a.clients.add(Client(4))  # a page is open on a's view
    views.get("b")
    assert views.get("c") is not None  # b (idle, no page) makes room, not a
    assert "a" in views and "b" not in views and "c" in views and views.evicted == 1
    assert views.get("a") is a and len(views) == 2
    c = views.get("c")
    assert c is not None
    c.clients.add(Client(4))
    assert views.get("d") is None and len(views) == 2  # every view has a page: no room
    assert views.get(None) is views.desk

    srv = DashboardServer("127.0.0.1", 0, max_views=1)
    srv.publish(cue("speaking_rate", "x"), "a-7")
    srv.publish(cue("speaking_rate", "y"), "b-2")
    got = samples(generate_latest(srv.registry).decode())
    assert got["appliance_dashboard_views"] == 1
    assert got["appliance_dashboard_views_evicted_total"] == 1
    assert got["appliance_dashboard_published_total"] == 2


def test_no_room_for_another_agent_when_every_view_has_a_page() -> None:
    async def t(srv: DashboardServer) -> None:
        page = await Sse.open(srv.port, "/agent/a-7/events")
        assert page.status == 200 and srv.views == 1
        other = await Sse.open(srv.port, "/agent/b-2/events")
        assert other.status == 503 and "agents' pages" in await other.resp.text()
        await other.close()
        srv.publish(cue("speaking_rate", "for b-2"), "b-2")  # nowhere to keep it: counted
        assert srv.dropped == 1 and srv.published == 0 and srv.views == 1
        await page.close()
        await until(lambda: srv.clients == 0, "the page let go")
        srv.publish(cue("speaking_rate", "for b-2"), "b-2")  # a-7's view is idle now: evicted
        assert srv.views == 1 and srv.views_evicted == 1 and srv.published == 1
    with_server(t, max_views=1)


def test_pages_over_every_view_are_bounded() -> None:
    async def t(srv: DashboardServer) -> None:
        pages = [await Sse.open(srv.port), await Sse.open(srv.port, "/agent/a-7/events")]
        assert [p.status for p in pages] == [200, 200] and srv.clients == 2
        for path in ("/events", "/agent/b-2/events"):
            extra = await Sse.open(srv.port, path)
            assert extra.status == 503 and "too many" in await extra.resp.text()
            await extra.close()
        await pages[0].close()
        await until(lambda: srv.clients == 1, "the closed page let go")
        pages[0] = await Sse.open(srv.port, "/agent/b-2/events")
        assert pages[0].status == 200
        for page in pages:
            await page.close()
    with_server(t, max_clients=2)


# -- routes other modules add ---------------------------------------------------------------
async def _echo(request: web.Request) -> web.Response:
    return web.json_response({"got": await read_json(request)})


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("a bug in the control API")


async def _tap(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        await ws.send_str(f"{request.match_info['call']}:{msg.data}")
    return ws


def _with_routes(test: Any) -> None:
    async def main() -> None:
        srv = DashboardServer("127.0.0.1", 0, token=TOKEN, routes=[web.post("/api/echo", _echo)])
        srv.add_routes([web.get("/api/boom", _boom), web.get("/tap/ws/{call}", _tap)])
        await srv.start()
        try:
            with pytest.raises(RuntimeError, match="before"):
                srv.add_routes([web.get("/late", _boom)])
            await test(srv)
        finally:
            await srv.stop()
    run(main())


def test_a_json_api_route_behind_the_guard(caplog: pytest.LogCaptureFixture) -> None:
    bearer = f"Authorization: Bearer {TOKEN}\r\n"

    async def t(srv: DashboardServer) -> None:
        p, before = srv.port, srv.requests
        st, _, body = await post(p, "/api/echo", b'{"call": "c-1"}', headers=bearer)
        assert st == 200 and json.loads(body) == {"got": {"call": "c-1"}}
        big = b'{"pad": "' + b"x" * (16 * 1024 - 11) + b'"}'
        assert len(big) == 16 * 1024 and (await post(p, "/api/echo", big, headers=bearer))[0] == 200
        assert (await post(p, "/api/echo", big + b" ", headers=bearer))[0] == 413
        assert (await post(p, "/api/echo", b"{}", "text/plain", headers=bearer))[0] == 415
        assert (await post(p, "/api/echo", b"{nope", headers=bearer))[0] == 400
        assert (await post(p, "/api/echo", b"{}"))[0] == 401
        st, _, _ = await post(p, "/api/echo", b"{}",
                              headers=bearer + "Origin: http://evil.example\r\n")
        assert st == 403
        st, _, body = await get(p, "/api/boom", bearer)
        assert st == 500 and body == b"internal error\n"
        assert (await get(p, "/healthz", bearer))[0] == 200  # the server lives on
        assert srv.requests - before == 9
    _with_routes(t)
    assert "dashboard request failed: RuntimeError" in caplog.messages


def test_a_websocket_route_takes_the_token_as_the_pbx_can_send_it() -> None:
    async def t(srv: DashboardServer) -> None:
        url = f"http://127.0.0.1:{srv.port}/tap/ws/call-9"
        async with aiohttp.ClientSession() as session:
            # jambonz `listen`: wsAuth username and password (the token)
            basic = {"Authorization": aiohttp.encode_basic_auth("jambonz", TOKEN)}
            async with session.ws_connect(url, headers=basic) as ws:
                await ws.send_str("hello")
                assert await asyncio.wait_for(ws.receive_str(), HANG_S) == "call-9:hello"
            # FreeSWITCH mod_audio_fork: the token in the URL
            async with session.ws_connect(url + f"?token={TOKEN}") as ws:
                await ws.send_str("hi")
                assert await asyncio.wait_for(ws.receive_str(), HANG_S) == "call-9:hi"
            for headers in ({}, {"Authorization": aiohttp.encode_basic_auth("jambonz", "no")},
                            {"Authorization": "Basic !!"}, {"Authorization": "Basic Og=="},
                            {"Authorization": f"Digest {TOKEN}"}):
                with pytest.raises(aiohttp.WSServerHandshakeError) as ei:
                    await session.ws_connect(url, headers=headers)
                assert ei.value.status == 401, headers
            # another site's page may not open the stream, even with the token
            with pytest.raises(aiohttp.WSServerHandshakeError) as ei:
                await session.ws_connect(url + f"?token={TOKEN}", origin="http://evil.example")
            assert ei.value.status == 403
        # no cookie for a WebSocket client that brought the token in the URL
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write((
            f"GET /tap/ws/c?token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HANG_S)).decode()
        writer.close()
        assert head.startswith("HTTP/1.1 101") and "set-cookie" not in head.lower()
        # a browser's page still gets one
        st, h, _ = await get(srv.port, f"/agent/a-7?token={TOKEN}")
        assert st == 200 and "HttpOnly" in h["set-cookie"]
    _with_routes(t)


def test_stop_with_a_websocket_open_ends_it() -> None:
    async def main() -> None:
        srv = DashboardServer("127.0.0.1", 0, routes=[web.get("/tap/ws/{call}", _tap)])
        await srv.start()
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"http://127.0.0.1:{srv.port}/tap/ws/c-1")
            await srv.stop()  # the handler is given a moment, then cancelled
            msg = await asyncio.wait_for(ws.receive(), HANG_S)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR)
            await ws.close()
    run(main())


# -- one agent's page in a real browser -----------------------------------------------------
@pytest.mark.skipif(_browser_ready() is not None, reason=str(_browser_ready()))
def test_an_agents_page_shows_only_that_agents_events() -> None:
    holds: list[tuple[str, str]] = []

    async def main() -> list[dict[str, Any]]:
        srv = DashboardServer("127.0.0.1", 0, on_agent_hold=lambda a, m: holds.append((a, m)))
        await srv.start()
        proc = await asyncio.create_subprocess_exec(
            "node", str(BROWSER_DIR / "agent.mjs"), f"http://127.0.0.1:{srv.port}/agent/a-7",
            cwd=BROWSER_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        steps: list[dict[str, Any]] = []

        async def step(name: str) -> None:
            assert proc.stdout is not None and proc.stderr is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if not line:
                err = (await proc.stderr.read()).decode(errors="replace")
                raise AssertionError(f"browser script ended before {name}: {err[-2000:]}")
            steps.append(json.loads(line))
            assert steps[-1]["step"] == name, steps[-1]

        try:
            await step("loaded")
            # another agent's and the desk's first: on a wrong stream they would show first
            srv.publish(cue("speaking_rate", "for b-2 only"), "b-2")
            srv.publish(cue("speaking_rate", "for the desk only"))
            srv.publish(cue("speaking_rate", "for a-7 only"), "a-7")
            await step("cues")
            await step("held")
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await srv.stop()
        return steps

    loaded, cues, held = run(main())
    assert loaded["title"] == "Call coach · a-7"
    assert len(cues["cues"]) == 1 and "for a-7 only" in cues["cues"][0], cues
    assert holds == [("a-7", "hold_start")]
    assert "GET /agent/a-7/events" in held["requests"]
    assert "POST /agent/a-7/hold" in held["requests"]
    assert held["consoleErrors"] == []
    assert not [r for r in held["requests"] if r.split()[1] in ("/events", "/hold")]
