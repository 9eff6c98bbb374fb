"""The team lead's page (``/floor``) and an agent's page (``/agent/<id>``) of a real PBX tap
in headless Chromium (``tests/browser/floor.mjs``).

A TapService (one worker process, no speech model, a token) takes two WebSocket streams in
``mod_audio_fork`` framing, the demo call for agents ``a-1`` and ``b-2`` at a few times
real time; ``a-1`` is put on hold through the control API at the demo's hold mark.  The
floor, opened once with the token, must list both calls with their agents and a last cue,
show a-1's hold timer past check-back then past too-long, and drop the rows when the calls
end; a-1's page, on the cookie alone, must show a-1's hold and cues and nothing of b-2's
call; when the service stops, the floor says it is offline.  The streams pause at fixed
points of their audio until the page has shown what is checked there, so what the test sees
never depends on the machine's speed.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from appliance.config import config_from_dict
from appliance.service.tap_service import TapService
from tests.taputil import frames
from tests.test_dashboard import BROWSER_DIR, _browser_ready, _seconds, run
from tests.test_tap import _legs_8k
from tests.waiting import until

HANG_S = 240.0
SPEED = 8.0
"""The streams run at this many times real time (pacing only: every check waits on a
condition)."""
TOKEN = "floor-t0ken"
HOLD_AT_S = 28.85
"""The demo's hold mark (``appliance/demo/demo_marks.jsonl``); the demo never marks its end
here, so a-1 stays on hold to the end of its call."""
FRAME_S = 0.02

Gate = tuple[float, Callable[[], Awaitable[None]]]


class Steps:
    """The browser script's checkpoints, read as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.got: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self._changed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            msg = json.loads(line)
            self.got[msg["step"]] = msg
            self.order.append(msg["step"])
            self._changed.set()
        self._changed.set()

    async def wait(self, name: str) -> dict[str, Any]:
        async with asyncio.timeout(HANG_S):
            while name not in self.got:
                if "error" in self.got or self.task.done():
                    assert self.proc.stderr is not None
                    err = (await self.proc.stderr.read()).decode(errors="replace")
                    raise AssertionError(f"browser script ended before {name}: "
                                         f"{self.got.get('error')} {err[-2000:]}")
                self._changed.clear()
                await self._changed.wait()
        return self.got[name]


async def _stream(http: aiohttp.ClientSession, url: str, call_id: str, agent_id: str,
                  legs: tuple[np.ndarray, np.ndarray], gates: list[Gate]) -> None:
    """The demo call as ``mod_audio_fork`` sends it (JSON metadata, then 20 ms stereo
    frames, then ``stop``), paced at :data:`SPEED`; at each gate's audio time the stream
    waits for the gate."""
    loop = asyncio.get_running_loop()
    async with http.ws_connect(url) as ws:
        await ws.send_str(json.dumps({"callId": call_id, "agent_id": agent_id}))
        t0, i0 = loop.time(), 0
        for i, chunk in enumerate(frames(*legs, 160)):
            while gates and i * FRAME_S >= gates[0][0]:
                await gates.pop(0)[1]()
                t0, i0 = loop.time(), i
            await ws.send_bytes(chunk)
            ahead = (i + 1 - i0) * FRAME_S / SPEED - (loop.time() - t0)
            if ahead > 0.01:
                await asyncio.sleep(ahead)
        await ws.send_str(json.dumps({"event": "stop"}))
        await ws.receive()  # the box closes the stream once the call has ended


def _cfg() -> Any:
    return config_from_dict({
        "asr": {"enabled": False},
        "dashboard": {"token": TOKEN},
        "tap": {"enabled": True, "idle_timeout_s": 3600.0,
                "routes": [{"name": "fs1", "mix_type": "stereo", "sample_rate_hz": 8000}]}})


@pytest.mark.skipif(_browser_ready() is not None, reason=str(_browser_ready()))
def test_the_floor_and_an_agents_page_of_a_running_tap(tmp_path: Path) -> None:
    legs = _legs_8k()
    svc = TapService(_cfg(), processes=1, port=0)
    shots = tmp_path / "shots"
    shots.mkdir()
    holds: list[tuple[int, Any]] = []

    async def main() -> dict[str, dict[str, Any]]:
        await svc.start()
        base = svc.url.rstrip("/")
        proc = await asyncio.create_subprocess_exec(
            "node", str(BROWSER_DIR / "floor.mjs"), base, TOKEN, str(shots), cwd=BROWSER_DIR,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        steps = Steps(proc)
        stopped = False
        try:
            await steps.wait("empty")
            async with aiohttp.ClientSession(
                    headers={"Authorization": f"Bearer {TOKEN}"}) as http:

                async def hold_a1() -> None:  # the hold mark lands at the audio sent so far
                    await until(lambda: "call-a1" in svc.tap.calls and
                                svc.tap.calls["call-a1"].aligner.t_s >= HOLD_AT_S - 0.05,
                                "a-1's audio up to the hold", hang_s=HANG_S)
                    async with http.post(f"{base}/api/calls/call-a1/hold",
                                         json={"action": "start"}) as r:
                        holds.append((r.status, await r.json()))

                async def after(name: str) -> None:
                    await steps.wait(name)

                url = f"{base.replace('http', 'ws')}/tap/ws/fs1?token={TOKEN}"
                await asyncio.gather(
                    _stream(http, url, "call-a1", "a-1", legs, [
                        (HOLD_AT_S, hold_a1),  # 51 s on hold here: past check-back only
                        (HOLD_AT_S + 51.0, lambda: after("check_back")),
                        (HOLD_AT_S + 61.0, lambda: after("agent"))]),  # past too-long
                    _stream(http, url, "call-b2", "b-2", legs, [
                        (20.0, lambda: after("agent"))]))  # after its interruption
            await steps.wait("gone")
            await svc.stop()
            stopped = True
            await steps.wait("offline")
            async with asyncio.timeout(HANG_S):
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            if not stopped:
                await svc.stop()
        return steps.got

    got = run(main())
    assert holds == [(200, {"call": {"call_id": "call-a1", "on_hold": True}})]
    # the floor with no call; the page has the pages' headers
    empty = got["empty"]
    assert empty["empty"] == "No calls right now" and empty["count"] == "No calls"
    assert "script-src 'self'" in empty["headers"]["content-security-policy"]
    assert empty["headers"]["x-frame-options"] == "DENY"
    # both calls, with their agents, line and a last cue (the demo's interruption, or later)
    rows = {r["agent"]: r for r in got["rows"]["rows"]}
    assert set(rows) == {"a-1", "b-2"} and got["rows"]["count"] == "2 calls"
    assert got["rows"]["emptyHidden"] is True
    for r in rows.values():
        assert r["source"] == "WebSocket" and re.fullmatch(r"\d+:\d\d", r["dur"]), r
        assert r["kind"] and r["severity"] in ("info", "warn", "alert") and r["cue"].strip()
    assert rows["b-2"]["kind"] == "interruption" and "Interrupted" in rows["b-2"]["cue"]
    # a-1's hold timer: past check-back (45 s), then past too-long (60 s); b-2 is not held
    # (a-1 waits 51 s, then 61 s into its hold; the page runs a timer on for 5 s at most)
    for step, state, lo, hi, kind in (("check_back", "check", 45, 57, "hold_check_back"),
                                      ("long", "long", 60, 67, "hold_too_long")):
        rows = {r["agent"]: r for r in got[step]["rows"]}
        a1, b2 = rows["a-1"], rows["b-2"]
        assert a1["hold_state"] == state and lo <= _seconds(a1["hold"][2:]) < hi, a1
        assert a1["kind"] == kind, a1
        assert b2["hold_state"] == "off" and b2["hold"] == "–", b2
    a1 = {r["agent"]: r for r in got["check_back"]["rows"]}["a-1"]
    assert a1["hold"].startswith("▲") and "over 45 s" in a1["hold_title"]
    assert a1["severity"] == "warn" and "Check back" in a1["cue"], a1
    a1, b2 = ({r["agent"]: r for r in got["long"]["rows"]}[a] for a in ("a-1", "b-2"))
    assert a1["hold"].startswith("■") and "over 60 s" in a1["hold_title"]
    assert a1["severity"] == "alert" and "Hold too long" in a1["cue"], a1
    assert b2["severity"] == "warn" and a1["sev_color"] != b2["sev_color"]  # by colour too
    # a-1's page, on the cookie: its hold and cues, nothing of b-2's call
    agent = got["agent"]
    assert agent["title"] == "Call coach · a-1"
    assert _seconds(agent["holdTimer"]) >= 60 and "via marks" in agent["holdType"]
    assert {"hold_too_long", "hold_check_back"} & set(agent["cues"]), agent["cues"]
    seen = agent["seen"] + got["gone"]["seen"]
    assert {k for k, _ in seen} >= {"state", "cue"}
    assert {c for _, c in seen} == {"call-a1"}, seen
    assert "GET /agent/a-1/events" in agent["requests"]
    assert not [r for r in agent["requests"] if "token" in r or "b-2" in r], agent["requests"]
    # the rows left with the calls; the floor polled on its cookie, nothing outside the box
    gone = got["gone"]
    assert gone["empty"] == "No calls right now" and gone["count"] == "No calls"
    assert "GET /api/floor" in gone["floorRequests"]
    assert [r for r in gone["floorRequests"] if "token" in r] == [f"GET /floor?token={TOKEN}"]
    assert gone["consoleErrors"] == [] and gone["external"] == []
    # the service stopped: the floor says so
    assert "No connection to the call box" in got["offline"]["banner"]
    assert got["offline"]["conn"] == "Offline"
    assert (shots / "floor.png").stat().st_size > 10_000
    keep = Path("/tmp/dashboard-shots")  # for a person to look at after a run
    keep.mkdir(exist_ok=True)
    for f in shots.iterdir():
        shutil.copy(f, keep / f.name)
