"""The dashboard server over real loopback sockets, and the page in a real headless Chromium."""

from __future__ import annotations

import asyncio
import copy
import hmac
import json
import logging
import math
import re
import shutil
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from appliance import errors
from appliance.errors import ApplianceError
from appliance.sinks.dashboard import DashboardServer, is_loopback
from appliance.sinks.dashboard.server import STATIC_DIR
from appliance.sinks.dashboard.views import Client
from tests.test_metrics import samples
from tests.waiting import HANG_S, until

BROWSER_DIR = Path(__file__).parent / "browser"
CHROMIUM = Path("/usr/bin/chromium")


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 2 * HANG_S))


async def request(port: int, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read one response (its ``Content-Length``, or up to the close)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HANG_S)
    lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])),
                                      HANG_S)
    else:
        body = await asyncio.wait_for(reader.read(), HANG_S)
    writer.close()
    return int(lines[0].split()[1]), headers, body


async def get(port: int, path: str, headers: str = "") -> tuple[int, dict[str, str], bytes]:
    return await request(port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                               f"{headers}\r\n".encode())


async def post(port: int, path: str, body: bytes, ctype: str = "application/json",
               headers: str = "") -> tuple[int, dict[str, str], bytes]:
    return await request(port, (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                                f"{headers}\r\n").encode() + body)


class Sse:
    """A minimal EventSource on aiohttp's client: ``await next()`` gives (event, data) or
    ("comment"/"retry", ...)."""

    def __init__(self, session: aiohttp.ClientSession, resp: aiohttp.ClientResponse) -> None:
        self.session, self.resp = session, resp
        self.status, self.headers = resp.status, resp.headers

    @classmethod
    async def open(cls, port: int, path: str = "/events",
                   headers: dict[str, str] | None = None) -> Sse:
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        resp = await asyncio.wait_for(session.get(
            f"http://127.0.0.1:{port}{path}",
            headers={"Accept": "text/event-stream", **(headers or {})}), HANG_S)
        return cls(session, resp)

    async def next(self, wait_s: float = HANG_S) -> tuple[str, str]:
        block = await asyncio.wait_for(self.resp.content.readuntil(b"\n\n"), wait_s)
        fields: dict[str, str] = {}
        for line in block.decode().strip("\n").split("\n"):
            if line.startswith(":"):
                return "comment", line[1:].strip()
            k, _, v = line.partition(": ")
            fields[k] = v
        if "retry" in fields:
            return "retry", fields["retry"]
        return fields["event"], fields["data"]

    async def rest(self) -> bytes:
        """What is left of the stream up to its end (a stream cut short raises)."""
        return await asyncio.wait_for(self.resp.content.read(), HANG_S)

    async def close(self) -> None:
        self.resp.close()
        await self.session.close()


def with_server(test: Callable[[DashboardServer], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        srv = DashboardServer("127.0.0.1", 0, **kw)
        await srv.start()
        try:
            await test(srv)
        finally:
            await srv.stop()
    run(main())


def state(**over: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "kind": "state", "t": 12.0, "audio": {"flowing": True},
        "speaking": {"agent": True, "customer": False},
        "rate": {"syllables_per_s": 5.4, "wpm": 182, "band": [3.0, 5.0], "state": "fast"},
        "fillers_last_min": 3, "tone": {"agent": "calm", "customer": "agitated"},
        "hold": {"on": False, "type": None, "start": None, "elapsed_s": 0.0, "open_mic": False,
                 "leak": False, "via": None},
        "dead_air_s": 0.0, "talk_share": 0.58,
        "greeting": {"name": True, "company": None, "offer": False},
        "closing": {"question": False, "thanks": False},
    }
    s.update(over)
    return s


def cue(kind: str, message: str, t: float = 12.5, severity: str = "alert") -> dict[str, Any]:
    return {"t": t, "kind": kind, "party": "agent", "severity": severity, "message": message,
            "data": {}}


# -- static files ---------------------------------------------------------------------------
def test_static_files_and_offline_assets() -> None:
    async def t(srv: DashboardServer) -> None:
        st, h, body = await get(srv.port, "/")
        assert st == 200 and h["content-type"].startswith("text/html")
        assert b'id="hold-key"' in body and b"/static/app.js" in body
        assert "default-src 'self'" in h["content-security-policy"]
        for name, ctype in (("app.js", "text/javascript"), ("style.css", "text/css")):
            st, h, body = await get(srv.port, f"/static/{name}")
            assert st == 200 and h["content-type"].startswith(ctype) and len(body) > 500
        for bad in ("/static/../server.py", "/static/%2e%2e/server.py", "/static/nope.js",
                    "/static/", "/nothing"):
            assert (await get(srv.port, bad))[0] == 404, bad
    with_server(t)
    # offline: no CDN, web font or external script in any asset
    for f in STATIC_DIR.iterdir():
        text = f.read_text(encoding="utf-8")
        assert not re.search(r"https?://|//cdn|@import|url\(", text), f.name


# -- server-sent events ---------------------------------------------------------------------
def test_sse_replays_last_state_and_cues_then_streams() -> None:
    async def t(srv: DashboardServer) -> None:
        srv.publish(state(t=1.0))
        srv.publish(cue("interruption", "Let the caller finish", 1.5))
        srv.publish(state(t=2.0, fillers_last_min=4))
        sse = await Sse.open(srv.port)
        assert sse.status == 200 and "text/event-stream" in sse.headers["Content-Type"]
        assert sse.headers["Cache-Control"] == "no-store"
        assert await sse.next() == ("retry", "1000")
        ev, data = await sse.next()
        assert ev == "state" and json.loads(data)["fillers_last_min"] == 4
        ev, data = await sse.next()
        assert ev == "cue" and json.loads(data)["replay"] is True
        assert srv.clients == 1
        srv.publish(cue("hold_leak", "Caller can hear you", 3.0))
        ev, data = await sse.next()
        assert ev == "cue" and json.loads(data) == cue("hold_leak", "Caller can hear you", 3.0)
        srv.publish({"t": 3.1, "kind": "transcript", "party": "agent", "severity": "info",
                     "message": "transcript", "data": {"text": "secret"}})
        srv.publish(state(t=3.2, dead_air_s=math.nan))
        ev, data = await sse.next()
        assert ev == "state" and json.loads(data)["dead_air_s"] is None  # strict JSON, no NaN
        srv.publish({"t": 9.0, "kind": "summary", "party": None, "severity": "info",
                     "message": "call summary", "data": {"duration_s": 9.0}})
        ev, data = await sse.next()
        assert ev == "summary" and json.loads(data)["data"]["duration_s"] == 9.0
        await sse.close()
        await until(lambda: srv.clients == 0, "the closed page let go")
        # a page connecting after the call gets the summary, not the old cues
        sse2 = await Sse.open(srv.port)
        got = [await sse2.next() for _ in range(3)]
        assert [g[0] for g in got] == ["retry", "state", "summary"]
        await sse2.close()
    with_server(t)


def test_sse_heartbeat() -> None:
    async def main() -> None:
        srv = DashboardServer("127.0.0.1", 0, heartbeat_s=0.02)
        await srv.start()
        sse = await Sse.open(srv.port)
        assert await sse.next() == ("retry", "1000")
        # pings at the configured pace: 50 of them at the default 10 s would take minutes,
        # far beyond the hang guard; at 0.02 s, one second however busy the machine
        async def fifty() -> list[tuple[str, str]]:
            return [await sse.next() for _ in range(50)]

        pings = await asyncio.wait_for(fifty(), HANG_S)
        assert pings == [("comment", "ping")] * 50
        await sse.close()
        await srv.stop()
    run(main())


def test_stop_ends_every_stream_at_once() -> None:
    """With no heartbeat due, stop() itself ends the desk's and an agent's stream: each ends
    with its last chunk (a stream stop() had to cut, after its grace, raises when read)."""
    async def main() -> None:
        srv = DashboardServer("127.0.0.1", 0, heartbeat_s=10 * HANG_S)
        await srv.start()
        pages = [await Sse.open(srv.port), await Sse.open(srv.port, "/agent/a-7/events")]
        for page in pages:
            assert await page.next() == ("retry", "1000")
        await srv.stop()
        for page in pages:
            assert await page.rest() == b""
            await page.close()
        assert srv.clients == 0
    run(main())


def test_slow_client_queue_is_bounded_and_drops_are_counted() -> None:
    async def t(srv: DashboardServer) -> None:
        sse = await Sse.open(srv.port)
        assert await sse.next() == ("retry", "1000")
        for i in range(100):  # no await: the client cannot drain in between
            srv.publish(state(t=float(i)))
        srv.publish(cue("interruption", "x"))
        assert srv.dropped == 101 - 8
        metrics = samples((await get(srv.port, "/metrics"))[2].decode())
        assert metrics["appliance_dashboard_dropped_total"] == 93
        got = [await sse.next() for _ in range(8)]
        assert got[-1][0] == "cue" and json.loads(got[-2][1])["t"] == 99.0  # newest kept
        await sse.close()
    with_server(t, client_queue=8)


def test_a_page_that_stops_reading_is_cut_after_the_write_timeout() -> None:
    async def t(srv: DashboardServer) -> None:
        _reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode())
        await until(lambda: srv.clients == 1, "the page connected")
        big = state(padding="x" * 200_000)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HANG_S
        while srv.clients:  # the page never reads: the buffers fill, a write times out
            assert loop.time() < deadline, "the page that does not read was never cut"
            srv.publish(big)
            await asyncio.sleep(0.01)
        assert (await get(srv.port, "/healthz"))[0] == 200
        writer.close()
    with_server(t, write_timeout_s=0.2, client_queue=4)


def test_client_queue_drops_stale_state_before_cues() -> None:
    c = Client(3)
    c.push("cue", b"c1")
    c.push("state", b"s1")
    c.push("cue", b"c2")
    assert c.push("cue", b"c3") == 1
    assert [f for _, f in c.queue] == [b"c1", b"c2", b"c3"]
    assert c.push("cue", b"c4") == 1 and c.dropped == 2
    assert [f for _, f in c.queue] == [b"c2", b"c3", b"c4"]


# -- hold key, end call, health, metrics ----------------------------------------------------
def test_hold_and_end_call_keys() -> None:
    holds: list[str] = []
    ends: list[int] = []

    async def t(srv: DashboardServer) -> None:
        p = srv.port
        assert (await post(p, "/hold", b'{"action": "start"}'))[0] == 200
        assert (await post(p, "/hold", b'{"action": "end"}'))[0] == 200
        assert holds == ["hold_start", "hold_end"]
        assert (await post(p, "/end", b""))[0] == 200 and ends == [1]
        assert (await post(p, "/hold", b'{"action": "pause"}'))[0] == 400
        assert (await post(p, "/hold", b"[1, 2]"))[0] == 400
        assert (await post(p, "/hold", b"{not json"))[0] == 400
        assert (await post(p, "/hold", b'{"action": "start"}', "text/plain"))[0] == 415
        # a chunked body is read like any other, within the same bound
        chunked = (f"POST /hold HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nContent-Type: "
                   "application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
        assert (await request(p, chunked + b'13\r\n{"action": "start"}\r\n0\r\n\r\n'))[0] == 200
        assert holds == ["hold_start", "hold_end", "hold_start"]
        assert (await request(p, chunked + b"400\r\n" + b" " * 1024 + b"\r\n1\r\n \r\n"
                              b"0\r\n\r\n"))[0] == 413
        del holds[2:]
        st, h, _ = await get(p, "/hold")
        assert st == 405 and h["allow"] == "POST"
        assert (await post(p, "/", b"{}"))[0] == 405
        assert (await post(p, "/healthz", b"{}"))[0] == 405
        # a page of another site may not press the keys
        st, _, _ = await post(p, "/hold", b'{"action": "start"}',
                              headers="Origin: http://evil.example\r\n")
        assert st == 403
        st, _, _ = await post(p, "/hold", b'{"action": "end"}',
                              headers=f"Origin: http://127.0.0.1:{p}\r\n")
        assert st == 200
        assert holds == ["hold_start", "hold_end", "hold_end"]
        # a rebound DNS name pointing at the loopback is refused
        assert (await request(p, b"GET / HTTP/1.1\r\nHost: evil.example:80\r\n\r\n"))[0] == 421
    with_server(t, on_hold=holds.append, on_end_call=lambda: ends.append(1))


def test_keys_without_callbacks_are_unavailable() -> None:
    async def t(srv: DashboardServer) -> None:
        assert (await post(srv.port, "/hold", b'{"action": "start"}'))[0] == 503
        assert (await post(srv.port, "/end", b""))[0] == 503
    with_server(t)


def test_healthz_and_metrics() -> None:
    async def t(srv: DashboardServer) -> None:
        st, h, body = await get(srv.port, "/healthz")
        assert st == 200 and h["content-type"] == "application/json"
        assert json.loads(body) == {"ok": True, "calls": 1}
        st, h, body = await get(srv.port, "/metrics")
        # no Accept header: the classic text format every scraper reads
        assert st == 200 and h["content-type"] == CONTENT_TYPE_PLAIN_0_0_4
        assert samples(body.decode()) == {  # the collectors given, then the dashboard's
            "appliance_frames_total": 42, "appliance_dashboard_clients": 0,
            "appliance_dashboard_dropped_total": 0, "appliance_dashboard_published_total": 0,
            "appliance_dashboard_views": 0, "appliance_dashboard_views_evicted_total": 0}
        assert h["cache-control"] == "no-store" and h["x-content-type-options"] == "nosniff"
        # a scraper that asks for OpenMetrics gets it
        st, h, body = await get(srv.port, "/metrics",
                                "Accept: application/openmetrics-text; version=1.0.0\r\n")
        assert st == 200 and h["content-type"].startswith("application/openmetrics-text")
        assert body.rstrip().endswith(b"# EOF")

    class Frames(Collector):
        def collect(self) -> Iterator[Metric]:
            yield CounterMetricFamily("appliance_frames_total", "Frames.", value=42)

    with_server(t, health=lambda: {"ok": True, "calls": 1}, collectors=[Frames()])


def test_a_failing_callback_costs_one_request_not_the_server(
        caplog: pytest.LogCaptureFixture) -> None:
    def boom() -> dict[str, Any]:
        raise RuntimeError("bug")

    async def t(srv: DashboardServer) -> None:
        assert (await get(srv.port, "/healthz"))[0] == 500
        assert (await get(srv.port, "/"))[0] == 200
    with_server(t, health=boom)
    # the log line itself names the error (a JSON log keeps the message, not the traceback)
    assert "dashboard request failed: RuntimeError" in caplog.messages


# -- bad input ------------------------------------------------------------------------------
def test_bad_requests_are_refused_and_the_server_lives_on() -> None:
    host = b"Host: 127.0.0.1\r\n"

    async def t(srv: DashboardServer) -> None:
        p = srv.port
        for raw, want in (
            (b"GARBAGE\r\n\r\n", 400),
            (b"GET / HTTP/9.9\r\n\r\n", 400),
            (b"get / HTTP/1.1\r\n" + host + b"\r\n", 400),
            (b"GET nothing HTTP/1.1\r\n" + host + b"\r\n", 400),
            (b"GET / HTTP/1.1\r\n" + host + b"no colon here\r\n\r\n", 400),
            (b"GET /healthz HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without a Host
            (b"GET /static/%ff HTTP/1.1\r\n" + host + b"\r\n", 404),
            (b"POST /hold HTTP/1.1\r\n" + host + b"Content-Length: x\r\n\r\n", 400),
            (b"POST /hold HTTP/1.1\r\n" + host + b"Content-Length: 1\r\nContent-Length: 1"
             b"\r\n\r\n{", 400),
            (b"POST /hold HTTP/1.1\r\n" + host + b"Content-Length: 1\r\nTransfer-Encoding: "
             b"chunked\r\n\r\n{", 400),
            (b"DELETE / HTTP/1.1\r\n" + host + b"\r\n", 405),
            (b"GET / HTTP/1.1\r\n" + host + b"Host: evil.example\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n" + host + b"Authorization: Bearer a\r\n"
             b"Authorization: Bearer b\r\n\r\n", 400),
            # the head: one field beyond max_head, too many fields (aiohttp's parser), or
            # fields each within bounds that add up to more than max_head (the guard)
            (b"GET / HTTP/1.1\r\n" + host + b"X: " + b"a" * 10_000 + b"\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\n" + host + b"X: y\r\n" * 100 + b"\r\n", 400),
            (b"GET / HTTP/1.1\r\n" + host + b"".join(b"X-%d: " % i + b"a" * 1000 + b"\r\n"
                                                    for i in range(9)) + b"\r\n", 431),
            (b"POST /hold HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
             b"Content-Length: 100000\r\n\r\n" + b"{" * 2000, 413),
            # issue 10: a digit str.isdigit accepts and int() refuses; JSON 1000 deep
            (b"POST /hold HTTP/1.1\r\n" + host + "Content-Length: \u00b2\r\n\r\n".encode(),
             400),
            (b"POST /hold HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
             b"Content-Length: 1000\r\n\r\n" + b"[" * 1000, 400),
        ):
            st, _, body = await request(p, raw)
            assert st == want, (raw[:40], st, body)
            assert 0 < len(body) < 200
        # a client that connects and says nothing costs nothing
        _, w = await asyncio.open_connection("127.0.0.1", p)
        w.close()
        assert (await get(p, "/healthz"))[0] == 200
    with_server(t)


def test_the_head_bound_counts_every_field() -> None:
    async def t(srv: DashboardServer) -> None:
        fields = "".join(f"X-{i}: {'a' * 90}\r\n" for i in range(8))  # ~800 bytes in all
        assert (await get(srv.port, "/healthz", fields))[0] == 200
        fields = "".join(f"X-{i}: {'a' * 90}\r\n" for i in range(12))  # ~1200 bytes
        st, _, body = await get(srv.port, "/healthz", fields)
        assert st == 431 and body == b"request head too large\n"
    with_server(t, max_head=1024)


def test_a_client_that_dribbles_its_request_is_cut() -> None:
    """aiohttp has no timer for reading a request head; its keep-alive timer, armed from the
    connection's start (set to request_timeout_s), closes a connection that has not sent a
    whole request by then, however steadily it dribbles; a body has request_timeout_s too."""
    async def t(srv: DashboardServer) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nX-Slow: ".encode())
        dribbled = 0

        async def dribble() -> None:
            nonlocal dribbled
            while True:  # a byte every 20 ms, never the end of the head
                writer.write(b"a")
                dribbled += 1
                await asyncio.sleep(0.02)

        task = asyncio.create_task(dribble())
        try:
            # meanwhile the server answers others
            assert (await get(srv.port, "/healthz"))[0] == 200
            assert await asyncio.wait_for(reader.read(), HANG_S) == b""  # cut, unanswered
            assert not task.done()  # the client was still sending when it was cut
        finally:
            task.cancel()
            writer.close()
        assert dribbled > 0
        # a body that stops coming gets 408
        st, _, body = await request(srv.port, (
            f"POST /hold HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nContent-Type: "
            "application/json\r\nContent-Length: 100\r\n\r\n{").encode())
        assert st == 408 and body == b"request took too long\n"
        assert (await get(srv.port, "/healthz"))[0] == 200
    with_server(t, request_timeout_s=0.3)


# -- token ----------------------------------------------------------------------------------
def test_token_is_required_everywhere_and_compared_in_constant_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    holds: list[str] = []

    async def t(srv: DashboardServer) -> None:
        p = srv.port
        for path in ("/", "/static/app.js", "/events", "/healthz", "/metrics", "/nothing"):
            st, h, _ = await get(p, path)
            assert st == 401 and h["www-authenticate"].startswith("Bearer"), path
            assert (await get(p, path, "Authorization: Bearer wrong\r\n"))[0] == 401
        assert (await post(p, "/hold", b'{"action": "start"}'))[0] == 401
        assert (await get(p, "/?token=s3cret-tok"))[0] == 401
        assert holds == []
        st, _, _ = await get(p, "/healthz", "Authorization: Bearer s3cret-token\r\n")
        assert st == 200
        st, _, _ = await post(p, "/hold", b'{"action": "start"}',
                              headers="Authorization: Bearer s3cret-token\r\n")
        assert st == 200 and holds == ["hold_start"]
        st, h, _ = await get(p, "/?token=s3cret-token")
        assert st == 200 and "HttpOnly" in h["set-cookie"]
        cookie = h["set-cookie"].split(";")[0]
        assert (await get(p, "/static/style.css", f"Cookie: {cookie}\r\n"))[0] == 200
        sse = await Sse.open(p, "/events?token=s3cret-token")
        assert sse.status == 200
        await sse.close()
        assert all(b == b"s3cret-token" for _, b in compared) and len(compared) > 10
    with_server(t, token="s3cret-token", on_hold=holds.append)


def test_non_loopback_without_token_is_refused() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("10.0.0.5")

    async def main() -> None:
        for host in ("0.0.0.0", "", "192.168.1.20"):
            with pytest.raises(ApplianceError) as ei:
                await DashboardServer(host, 0).start()
            assert ei.value.code == errors.DASHBOARD_TOKEN_REQUIRED
            assert "[dashboard] token" in ei.value.message
        srv = DashboardServer("0.0.0.0", 0, token="t0ken")
        await srv.start()
        assert (await get(srv.port, "/healthz", "Authorization: Bearer t0ken\r\n"))[0] == 200
        await srv.stop()
    run(main())


def test_port_in_use_names_the_port_and_the_config_key() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]

        async def main() -> None:
            with pytest.raises(ApplianceError) as ei:
                await DashboardServer("127.0.0.1", port).start()
            assert ei.value.code == errors.DASHBOARD_PORT_IN_USE
            assert str(port) in ei.value.message and "[dashboard] port" in ei.value.message
        run(main())


def test_from_config_and_port_zero() -> None:
    from appliance.config import DashboardConfig

    srv = DashboardServer.from_config(DashboardConfig(port=8765, token="x"))
    assert srv.port == 8765 and srv.host == "127.0.0.1"

    async def t(srv: DashboardServer) -> None:
        assert srv.port > 0
    with_server(t)


# -- the page in a real browser -------------------------------------------------------------
def _browser_ready() -> str | None:
    if not CHROMIUM.exists():
        return "no /usr/bin/chromium (apt-get install -y chromium)"
    if shutil.which("node") is None:
        return "no node"
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        return "no playwright-core (npm ci in tests/browser)"
    return None


def _seconds(clock: str) -> int:
    m, s = clock.strip().split(":")
    return int(m) * 60 + int(s)


@pytest.mark.skipif(_browser_ready() is not None, reason=str(_browser_ready()))
def test_page_in_headless_chromium(tmp_path: Path) -> None:
    holds: list[str] = []
    shots = tmp_path / "shots"
    shots.mkdir()

    async def main() -> dict[str, Any]:
        srv = DashboardServer("127.0.0.1", 0, on_hold=holds.append)
        await srv.start()
        proc = await asyncio.create_subprocess_exec(
            "node", str(BROWSER_DIR / "check.mjs"), f"http://127.0.0.1:{srv.port}/", str(shots),
            cwd=BROWSER_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        live = state(t=10.0)
        t0 = time.monotonic()
        hold_t0: list[float] = []

        async def pump() -> None:  # the engine's snapshots, every 0.25 s
            while True:
                live["t"] = round(10.0 + time.monotonic() - t0, 3)
                if hold_t0:
                    live["hold"]["elapsed_s"] = round(time.monotonic() - hold_t0[0], 1)
                srv.publish(copy.deepcopy(live))
                await asyncio.sleep(0.25)

        async def step(name: str) -> dict[str, Any]:
            assert proc.stdout is not None and proc.stderr is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 40)
            if not line:
                err = (await proc.stderr.read()).decode(errors="replace")
                raise AssertionError(f"browser script ended before {name}: {err[-2000:]}")
            msg: dict[str, Any] = json.loads(line)
            assert msg["step"] == name, msg
            return msg

        seen: dict[str, Any] = {}
        pumping = asyncio.create_task(pump())
        try:
            await step("loaded")
            await step("state_seen")
            published = time.time()
            srv.publish(cue("interruption", "Agent interrupted the customer", 14.0))
            seen["flash"] = await step("flash")
            seen["flash_delay"] = seen["flash"]["at"] - published
            seen["flash_hidden"] = await step("flash_hidden")
            hold_t0.append(time.monotonic())
            live["hold"] = {"on": True, "type": "muted", "start": live["t"], "elapsed_s": 0.0,
                            "open_mic": False, "leak": False, "via": "key"}
            seen["timer"] = await step("timer")
            srv.publish(cue("hold_leak", "Speech during hold: the caller may hear it", 20.0))
            seen["leak"] = await step("leak")
            seen["screenshot"] = await step("screenshot")
            hold_t0.clear()
            live["hold"] = state()["hold"]
            await step("hold_clicked")
            seen["holds"] = list(holds)
            live["audio"] = {"flowing": False}
            seen["no_audio"] = await step("no_audio")
            srv.publish({"t": 60.0, "kind": "summary", "party": None, "severity": "info",
                         "message": "call summary",
                         "data": {"duration_s": 60.0, "talk_s": {"agent": 30.1, "customer": 20.4},
                                  "interruptions": {"agent": 1, "customer": 0},
                                  "holds": [{"duration_s": 8.0, "leaks": [[19.0, 20.0]]}]}})
            seen["summary"] = await step("summary")
            seen["done"] = await step("done")
            assert await asyncio.wait_for(proc.wait(), 20) == 0
        finally:
            pumping.cancel()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await srv.stop()
        return seen

    seen = run(main())
    assert seen["flash_delay"] < 1.0, seen["flash_delay"]
    assert "Let the caller finish" in seen["flash"]["text"]
    assert 2.5 <= seen["flash_hidden"]["after_s"] <= 4.5
    secs = [_seconds(v) for v in seen["timer"]["values"]]
    assert secs == sorted(secs) and secs[-1] > secs[0], secs
    assert "muted" in seen["timer"]["type"].lower()
    assert "hear you" in seen["leak"]["text"]
    assert seen["holds"] == ["hold_start"]
    assert "No audio" in seen["no_audio"]["text"]
    assert "call summary" in seen["summary"]["text"].lower() and "30.1" in seen["summary"]["text"]
    assert seen["done"]["external"] == [] and seen["done"]["consoleErrors"] == []
    assert (shots / "dashboard.png").stat().st_size > 10_000
    keep = Path("/tmp/dashboard-shots")  # for a person to look at after a run
    keep.mkdir(exist_ok=True)
    for f in shots.iterdir():
        shutil.copy(f, keep / f.name)


def test_stopping_with_a_page_connected_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    """A connected SSE page must not turn the shutdown into an asyncio error traceback."""

    async def go() -> None:
        server = DashboardServer("127.0.0.1", 0)
        await server.start()
        _, w = await asyncio.open_connection("127.0.0.1", server.port)
        w.write(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        await w.drain()
        await until(lambda: server.clients == 1, "the page connected")
        await server.stop()
        w.close()
        await w.wait_closed()

    with caplog.at_level(logging.ERROR):
        asyncio.run(go())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
