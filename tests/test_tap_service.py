"""The PBX tap as the service runs it (``service/tap_service.py``): one HTTP server (the
control API, the WebSocket listener, agents' pages, the floor, /healthz, /metrics), the RTP
and AudioSocket listeners, the worker pool and the store, all on loopback.

One service carries three calls at once, one per listener kind, each announced through the
control API with its agent: the WebSocket fork of the demo, the demo as two RTP streams
(µ-law and A-law), and the demo over an AudioSocket pair.  Each call's cues are the same
(kinds and parties; the three paths were each compared with the WAV in their own tests),
the agents' pages get their own call's events only, the floor lists the calls while they
run, the summaries land in the store with the agent id and the source, and /metrics and
/healthz tell the truth.  Stopping the service ends a call still open with its summary.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import numpy as np

from appliance.audio.pbx.audiosocket import KIND_AUDIO, KIND_HANGUP, KIND_UUID, encode_frame
from appliance.audio.rtp.packet import build
from appliance.config import config_from_dict
from appliance.service.tap_service import TapService
from appliance.sinks.archive import CallArchive
from appliance.sinks.store import SummaryStore, summaries_path
from tests.conftest import VirtualClock
from tests.taputil import frames
from tests.test_tap import _legs_8k
from tests.waiting import until

HANG_S = 180.0
RTP_BATCH = 25
"""RTP packets of each leg sent at once (0.5 s of audio), then the clock moves on (the
jitter buffers may hold [tap.rtp] max_depth_s = 5 s here: the listener's ticker may run
late on a busy machine without a packet lost)."""


def _ulaw(x: np.ndarray) -> bytes:
    from benchmarks.bench_tap import _ulaw as enc

    return enc(x)


def _alaw(x: np.ndarray) -> bytes:
    from benchmarks.bench_tap import _alaw as enc

    return enc(x)


def _free_udp_ports(n: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    for so in socks:
        so.bind(("127.0.0.1", 0))
    ports = [so.getsockname()[1] for so in socks]
    for so in socks:
        so.close()
    return ports


RTP_AGENT, RTP_CUSTOMER = _free_udp_ports(2)


def _cfg(state: Path) -> Any:
    return config_from_dict({
        "asr": {"enabled": False},
        "storage": {"state_dir": str(state)},
        "tap": {"enabled": True, "idle_timeout_s": 60.0,
                "routes": [{"name": "fs1", "mix_type": "stereo", "sample_rate_hz": 8000}],
                "audiosocket": {"enabled": True, "port": 0},
                "rtp": {"enabled": True, "ports": [str(RTP_AGENT), str(RTP_CUSTOMER)],
                        "stream_timeout_s": 2.0, "max_depth_s": 5.0}}})


class Box:
    def __init__(self, tmp: Path) -> None:
        cfg = self.cfg = _cfg(tmp / "state")
        self.archive = CallArchive(cfg.storage, {})
        self.archive.start()
        self.clock = VirtualClock()
        self.svc = TapService(cfg, archive=self.archive, processes=2, port=0,
                              clock=self.clock)
        self.events: list[dict[str, Any]] = []
        self.svc.bus.subscribe(lambda ev: self.events.append(ev.to_json()))

    def of(self, call_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["call_id"] == call_id]

    def cues(self, call_id: str) -> list[tuple[str, str]]:
        return [(e["kind"], e["party"]) for e in self.of(call_id)
                if e["kind"] not in ("call_started", "call_ended", "summary",
                                     "hung_up_first", "answer_delay")]


async def _api(http: aiohttp.ClientSession, base: str, method: str, path: str,
               body: Any = None) -> tuple[int, Any]:
    async with http.request(method, base + path, json=body) as r:
        return r.status, await r.json()


async def _ws_call(http: aiohttp.ClientSession, base: str, agent: np.ndarray,
                   customer: np.ndarray) -> None:
    url = base.replace("http", "ws") + "tap/ws/fs1"
    async with http.ws_connect(url) as ws:
        await ws.send_str(json.dumps({"callId": "ws-1", "agent_id": "a-ws"}))
        for i, chunk in enumerate(frames(agent, customer, 160)):
            await ws.send_bytes(chunk)
            if i % 25 == 0:
                await asyncio.sleep(0.002)
        await ws.send_str(json.dumps({"event": "stop"}))
        await ws.receive()


async def _rtp_call(svc: TapService, clock: VirtualClock, agent: np.ndarray,
                    customer: np.ndarray) -> None:
    """Two RTP streams at several times real time.  The service's clock (the listener's
    arrival stamps, playout and timeouts) moves on by a batch's length only once the
    listener has received the batch, as the packets' own pace would have it."""
    loop = asyncio.get_running_loop()
    rtp = svc.listeners["rtp"]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    a, c = _ulaw(agent), _alaw(customer)
    n = len(agent) // 160
    sent = 0
    for k in range(n):
        for pt, data, port, ssrc in ((0, a, RTP_AGENT, 11), (8, c, RTP_CUSTOMER, 22)):
            pkt = build(pt, k, k * 160, ssrc, data[k * 160:(k + 1) * 160])
            await loop.sock_sendto(sock, pkt, ("127.0.0.1", port))
            sent += 1
        if k % RTP_BATCH == RTP_BATCH - 1:
            await until(lambda n=sent: rtp.stats()["packets"] >= n, "the batch received",
                        hang_s=HANG_S)
            clock.t += RTP_BATCH * 0.02
            await asyncio.sleep(0.07)  # the listener's ticker (60 ms) plays the batch out
    sock.close()
    for _ in range(40):  # the sender stopped: its streams end after stream_timeout_s
        clock.t += 0.1
        await asyncio.sleep(0.03)


async def _audiosocket_call(svc: TapService, agent: np.ndarray, customer: np.ndarray,
                            hang_up: bool) -> None:
    """Asterisk's two snoops of one call: both connect and say their UUID, then stream (a
    real PBX streams in real time; here the audio waits until the legs are paired, since a
    burst on the first leg before the second connects would be that much ahead of it)."""
    port = svc.listeners["audiosocket"].port
    legs = []
    for uuid, x in (("5a7e2d9c-0000-4000-8000-00000000000a", agent),
                    ("5a7e2d9c-0000-4000-8000-00000000000c", customer)):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(encode_frame(KIND_UUID, bytes.fromhex(uuid.replace("-", ""))))
        legs.append((r, w, x))
        await w.drain()
    await until(lambda: svc.tap.is_open("as-1"), "the AudioSocket legs paired", hang_s=HANG_S)
    for i in range(0, len(agent), 160):
        for _, w, x in legs:
            w.write(encode_frame(KIND_AUDIO, x[i:i + 160].astype("<i2").tobytes()))
        if i % (160 * 5) == 0:  # 0.1 s at a time: the legs stay within [tap] max_skew_s
            for _, w, _ in legs:
                await w.drain()
            await asyncio.sleep(0.002)
    if hang_up:
        legs[0][1].write(encode_frame(KIND_HANGUP))
    for _, w, _ in legs:
        w.close()


def test_the_ping_loop_ends_when_cancelled_as_an_answer_arrives() -> None:
    """stop() cancels the workers' ping loop and waits for it: a cancel landing just as a
    ping's answer arrives must still end it (asyncio.wait_for on 3.11 swallowed it, and a
    stopping service hung forever: seen in CI)."""

    async def go() -> bool:
        answer: asyncio.Future[float] = asyncio.get_running_loop().create_future()

        class Pool:
            async def ping(self) -> list[float]:
                return [await answer]

        quiet = SimpleNamespace(tick=lambda: None, status=lambda _line: None)
        fake = SimpleNamespace(pool=Pool(), notifier=quiet, status_line=lambda: "",
                               last_ping_s=0.0, behind_s=0.0)
        task = asyncio.create_task(TapService._pings(fake))  # type: ignore[arg-type]
        for _ in range(5):
            await asyncio.sleep(0)  # the loop now waits for the answer
        answer.set_result(0.0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=HANG_S)
        return task in done and task.cancelled()

    assert asyncio.run(go())


def test_one_service_carries_a_call_of_every_listener(tmp_path: Path) -> None:
    agent, customer = _legs_8k()
    box = Box(tmp_path)
    got: dict[str, Any] = {}

    async def go() -> None:
        svc = box.svc
        await svc.start()
        base = svc.url
        try:
            async with aiohttp.ClientSession() as http:
                # the control API announces each call with its agent and language
                for body in ({"call_id": "ws-1", "agent_id": "a-ws", "language": "en"},
                             {"call_id": "rtp-1", "agent_id": "a-rtp", "ring_s": 15.0,
                              "legs": {"agent": {"rtp": {"port": RTP_AGENT, "ssrc": 11}},
                                       "customer": {"rtp": {"port": RTP_CUSTOMER,
                                                            "ssrc": 22}}}},
                             {"call_id": "as-1", "agent_id": "a-as", "legs": {
                                 "agent": {"audiosocket":
                                           "5a7e2d9c-0000-4000-8000-00000000000a"},
                                 "customer": {"audiosocket":
                                              "5a7e2d9c-0000-4000-8000-00000000000c"}}}):
                    status, answer = await _api(http, base, "POST", "api/calls", body)
                    assert status == 201, answer
                status, answer = await _api(http, base, "POST", "api/calls",
                                            {"call_id": "rtp-1"})
                assert status == 409 and answer["error"]["code"] == "call.exists"
                page = await http.get(base + "agent/a-rtp/events", timeout=aiohttp.ClientTimeout(
                    total=None, sock_read=None))
                await asyncio.gather(
                    _ws_call(http, base, agent, customer),
                    _rtp_call(svc, box.clock, agent, customer),
                    _audiosocket_call(svc, agent, customer, hang_up=True),
                    _watch_floor(http, base, got))
                await until(lambda: sum(e["kind"] == "summary" for e in box.events) == 3,
                            "the three summaries", hang_s=HANG_S)
                got["page"] = await _read_sse(page, want="summary")
                async with http.get(base + "metrics") as r:
                    got["metrics"] = await r.text()
                async with http.get(base + "healthz") as r:
                    got["health"] = (r.status, await r.json())
                status, answer = await _api(http, base, "GET", "api/calls")
                got["calls_after"] = answer
        finally:
            await svc.stop()

    asyncio.run(go())
    box.archive.close()
    ref = box.cues("ws-1")
    timed = {c: [(e["kind"], e["party"], e["t"]) for e in box.of(c)]
             for c in ("ws-1", "rtp-1", "as-1")}
    assert ref and box.cues("rtp-1") == ref and box.cues("as-1") == ref, timed
    started = {e["call_id"]: e["data"] for e in box.events if e["kind"] == "call_started"}
    assert {k: (v["agent_id"], v["source"], v["language"]) for k, v in started.items()} == {
        "ws-1": ("a-ws", "websocket", "en"), "rtp-1": ("a-rtp", "rtp", "en"),
        "as-1": ("a-as", "audiosocket", "en")}
    assert [e["data"]["ring_s"] for e in box.of("rtp-1") if e["kind"] == "answer_delay"] \
        == [15.0]
    assert [e["kind"] for e in box.of("as-1")][-3:] == ["hung_up_first", "call_ended",
                                                        "summary"]
    # the agent's page: its own call's events only, words never
    kinds = [(k, d.get("call_id")) for k, d in got["page"]]
    assert {cid for _, cid in kinds} == {"rtp-1"} and ("summary", "rtp-1") in kinds
    assert any(k == "state" for k, _ in kinds)
    # the floor saw the three calls with their agents while they ran
    assert got["floor_agents"] >= {"a-ws", "a-rtp", "a-as"}
    # summaries in the store with the agent and the source
    with SummaryStore.open_readonly(summaries_path(tmp_path / "state")) as store:
        rows = {r["call_id"]: (r["agent_id"], r["source"]) for r in store.export()}
    assert rows == {"ws-1": ("a-ws", "websocket"), "rtp-1": ("a-rtp", "rtp"),
                    "as-1": ("a-as", "audiosocket")}
    status, health = got["health"]
    assert status == 200 and health["healthy"] and health["mode"] == "tap"
    assert health["calls_total"] == 3 and health["calls_open"] == 0
    m = got["metrics"]
    assert "appliance_tap_calls_total 3.0" in m
    assert 'appliance_tap_listener_total{counter="packets",listener="rtp"}' in m
    assert 'appliance_worker_up{worker="0"} 1.0' in m
    assert got["calls_after"]["calls"] == []


async def _watch_floor(http: aiohttp.ClientSession, base: str, got: dict[str, Any]) -> None:
    agents: set[str] = set()
    for _ in range(600):
        async with http.get(base + "api/floor") as r:
            view = await r.json()
        agents |= {c["agent_id"] for c in view["calls"]}
        if len(agents) >= 3:
            break
        await asyncio.sleep(0.1)
    got["floor_agents"] = agents


async def _read_sse(resp: aiohttp.ClientResponse, want: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    kind = ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            out.append((kind, json.loads(line[6:])))
            if kind == want:
                break
    resp.close()
    return out


def test_stopping_the_service_ends_an_open_call_with_its_summary(tmp_path: Path) -> None:
    agent, customer = _legs_8k()
    box = Box(tmp_path)

    async def go() -> None:
        await box.svc.start()
        async with aiohttp.ClientSession() as http:
            url = box.svc.url.replace("http", "ws") + "tap/ws/fs1"
            ws = await http.ws_connect(url)
            await ws.send_str(json.dumps({"callId": "open-1", "agent_id": "a-1"}))
            for chunk in frames(agent[:8000 * 20], customer[:8000 * 20], 160):
                await ws.send_bytes(chunk)
            await until(lambda: box.svc.tap.is_open("open-1"), hang_s=HANG_S)
            await box.svc.stop()
            await ws.close()

    asyncio.run(go())
    box.archive.close()
    own = box.of("open-1")
    assert own[-2]["kind"] == "call_ended" and own[-2]["data"]["reason"] == "service_stop"
    assert own[-1]["kind"] == "summary"
    with SummaryStore.open_readonly(summaries_path(tmp_path / "state")) as store:
        assert [r["call_id"] for r in store.export()] == ["open-1"]


def test_an_agent_page_holds_and_ends_its_call(tmp_path: Path) -> None:
    agent, customer = _legs_8k()
    box = Box(tmp_path)

    async def go() -> None:
        await box.svc.start()
        try:
            async with aiohttp.ClientSession() as http:
                base = box.svc.url
                async with http.post(base + "agent/a-9/hold", json={"action": "start"}) as r:
                    assert r.status >= 400  # no call for a-9 yet
                ws = await http.ws_connect(base.replace("http", "ws") + "tap/ws/fs1")
                await ws.send_str(json.dumps({"callId": "k-1", "agent_id": "a-9"}))
                chunks = frames(agent[:8000 * 30], customer[:8000 * 30], 160)
                for chunk in chunks[:500]:
                    await ws.send_bytes(chunk)
                await until(lambda: box.svc.floor.agent_of("k-1") == "a-9", hang_s=HANG_S)
                async with http.post(base + "agent/a-9/hold", json={"action": "start"}) as r:
                    assert r.status == 200
                for chunk in chunks[500:1000]:
                    await ws.send_bytes(chunk)
                async with http.post(base + "agent/a-9/hold", json={"action": "end"}) as r:
                    assert r.status == 200
                async with http.post(base + "agent/a-9/end") as r:
                    assert r.status == 200
                await until(lambda: any(e["kind"] == "summary" for e in box.of("k-1")),
                            hang_s=HANG_S)
                await ws.close()
        finally:
            await box.svc.stop()

    asyncio.run(go())
    box.archive.close()
    kinds = [e["kind"] for e in box.of("k-1")]
    assert "hold_started" in kinds and "hold_ended" in kinds
    ended = next(e for e in box.of("k-1") if e["kind"] == "call_ended")
    assert ended["data"]["reason"] == "end_key"


def test_appliance_run_tap_is_a_notify_service_that_stops_cleanly(tmp_path: Path) -> None:
    """The real process: READY once the workers and listeners are up (STATUS names the
    open calls and the pages' URL), WATCHDOG while the workers answer, a call streamed in,
    SIGHUP checks the file, SIGTERM ends the open call with its summary, exit 0."""
    import os
    import re
    import signal
    import subprocess
    import sys

    from tests.test_service_run import _recv_until

    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    conf = tmp_path / "appliance.toml"
    conf.write_text("[tap]\nenabled = true\n[workers]\nprocesses = 1\n")
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env.update(NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="2000000",
               STATE_DIRECTORY=str(state), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli.app", "run", "--config",
                             str(conf), "--port", "0", "--no-asr"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    got: list[str] = []
    agent, customer = _legs_8k()
    try:
        ready = _recv_until(sock, "READY=1", HANG_S, got)
        assert "PBX tap: 0 calls open" in ready and f"MAINPID={proc.pid}" in ready
        base = re.search(r"pages (http://127\.0\.0\.1:\d+/)", ready)[1]  # type: ignore[index]
        _recv_until(sock, "WATCHDOG=1", HANG_S, got)

        async def stream() -> None:
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(base.replace("http", "ws") + "tap/ws")
                await ws.send_str(json.dumps({"callId": "run-1", "agent_id": "a-3",
                                              "mixType": "stereo", "sampleRate": 8000}))
                for chunk in frames(agent[:8000 * 20], customer[:8000 * 20], 160):
                    await ws.send_bytes(chunk)

                async def opened() -> bool:
                    async with http.get(base + "api/calls") as r:
                        return any(c["call_id"] == "run-1" for c in (await r.json())["calls"])

                for _ in range(int(HANG_S * 10)):
                    if await opened():
                        break
                    await asyncio.sleep(0.1)
                proc.send_signal(signal.SIGHUP)
                _recv_until(sock, "RELOADING=1", HANG_S, got)
                _recv_until(sock, "READY=1", HANG_S, got)
                proc.send_signal(signal.SIGTERM)
                _recv_until(sock, "STOPPING=1", HANG_S, got)
                await ws.close()

        asyncio.run(stream())
        _, err = proc.communicate(timeout=HANG_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        sock.close()
    assert proc.returncode == 0, err
    assert "applies it at the next restart" in err
    with SummaryStore.open_readonly(summaries_path(state)) as store:
        rows = [(r["call_id"], r["agent_id"], r["source"]) for r in store.export()]
    assert rows == [("run-1", "a-3", "websocket")]
