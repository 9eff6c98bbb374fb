"""The WebSocket tap end to end over a real ShardPool: a client speaking mod_audio_fork's
framing (JSON metadata, then 20 ms frames of interleaved stereo PCM) streams the demo call
over a loopback socket, and the call's cues are those of the same audio sent as one WAV
through the telephone band, within :data:`TOLERANCE_S` (same kinds, parties, times): on the
default route, on a route with the channels swapped (the swap key), at 16 kHz.  A hold
marked through the control API while the stream runs gives the hold cues and no dead air,
as the demo's marks file does for the WAV.  A client that vanishes mid-call (TCP closed, no
close frame) ends its call with its summary."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

import aiohttp
import numpy as np

from appliance.audio.filesource import FileSource
from appliance.audio.legs import LegAligner
from appliance.audio.pbx.ws_listener import WsTapListener
from appliance.audio.tap import TapCalls
from appliance.config.tap import TapConfig, TapRoute
from appliance.engine.marks import Mark
from appliance.service.control_api import ControlApi
from appliance.stream.blocks import PartyBlock
from appliance.stream.shards import ShardPool
from tests.taputil import BareClient, frames, serving
from tests.test_tap import CFG, DEMO, _cues, _legs_8k, _resample
from tests.waiting import until

TOLERANCE_S = 0.1
"""Cue times of the stream against the same audio sent as one WAV."""
HOLD = (28.85, 90.85)
"""The demo's hold (appliance/demo/demo_marks.jsonl)."""
ROUTES = [TapRoute(name="fs1", mix_type="stereo", sample_rate_hz=8000),
          TapRoute(name="swapped", agent_channel=1, mix_type="stereo", sample_rate_hz=8000)]
SPREAD: dict[str, float] = {}
"""The largest cue-time difference seen per test (printed with -s, for the README)."""


class Rig:
    """A real pool (one worker process, no recognizer), the tap, the WebSocket listener and
    the control API on one loopback server; every event the pool emits in ``lines``."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []
        self.pool = ShardPool(CFG, lambda ev: self.lines.append(ev.to_json()), processes=1)
        self.tap = TapCalls(self.pool, idle_timeout_s=30.0)
        self.listener = WsTapListener(self.tap, TapConfig(routes=ROUTES))
        self.api = ControlApi(self.tap)

    def summaries(self) -> int:
        return sum(e["kind"] == "summary" for e in self.lines)

    def events(self, call_id: str) -> list[dict[str, Any]]:
        return [e for e in self.lines if e["call_id"] == call_id]

    async def reference(self, call_id: str, agent: np.ndarray, customer: np.ndarray,
                        marks: Iterable[Mark] = ()) -> None:
        """The same audio as one call of 16 kHz blocks (as a WAV through the file path)."""
        self.pool.open_call(call_id, lang="en", marks=marks)
        for i in range(0, len(agent) - 511, 512):
            assert self.pool.push(call_id, PartyBlock(i / 16000, agent[i:i + 512],
                                                      customer[i:i + 512]))
            if i % 16384 == 0:
                await asyncio.sleep(0)
        self.pool.end_call(call_id, "source_closed")


def _serve(scenario: Any, summaries: int) -> Rig:
    rig = Rig()

    async def go() -> None:
        await rig.pool.start()
        try:
            async with serving(rig.listener.routes() + rig.api.routes()) as server, \
                    aiohttp.ClientSession() as http:
                await scenario(rig, server, http)
                await until(lambda: rig.summaries() == summaries, "the summaries", hang_s=120)
        finally:
            await rig.pool.stop()

    asyncio.run(go())
    assert rig.listener.stats()["refused"] == {} and rig.tap.dropped_blocks == 0
    assert all(w["dropped_blocks"] == 0 for w in rig.pool.stats())
    return rig


async def _stream(http: aiohttp.ClientSession, url: Any, meta: dict[str, Any],
                  chunks: list[bytes], pause: Any = None) -> tuple[int | None, str]:
    """mod_audio_fork's framing: the metadata, the frames, the stop text; ``pause(i)`` runs
    before frame ``i`` when given.  Returns the box's close code and reason."""
    async with http.ws_connect(url, protocols=("audio.drachtio.org",)) as ws:
        await ws.send_str(json.dumps(meta))
        for i, chunk in enumerate(chunks):
            if pause is not None:
                await pause(i)
            await ws.send_bytes(chunk)
            if i % 50 == 0:
                await asyncio.sleep(0)
        await ws.send_str(json.dumps({"event": "stop"}))
        msg = await ws.receive()
        assert msg.type is aiohttp.WSMsgType.CLOSE, msg
        return ws.close_code, msg.extra or ""


def _same_cues(rig: Rig, got_id: str, want_id: str, test: str) -> list[tuple[str, str, float]]:
    got, want = _cues(rig.lines, got_id), _cues(rig.lines, want_id)
    assert want and [c[:2] for c in got] == [c[:2] for c in want], (got, want)
    spread = max(abs(g[2] - w[2]) for g, w in zip(got, want, strict=True))
    SPREAD[test] = max(SPREAD.get(test, 0.0), spread)
    print(f"{test}: {got_id} vs {want_id}: {len(got)} cues, largest difference "
          f"{spread:.3f} s")
    assert spread <= TOLERANCE_S, (got, want)
    return got


def test_a_stereo_fork_gives_the_cues_of_its_wav_and_the_swap_key_swaps() -> None:
    agent, customer = _legs_8k()

    async def scenario(rig: Rig, server: Any, http: aiohttp.ClientSession) -> None:
        await rig.reference("ref", *(_resample(x, 8000, 16000) for x in (agent, customer)))
        closed = await asyncio.gather(
            _stream(http, server.make_url("/tap/ws/fs1?token=x"),
                    {"callid": "fs-1", "agent_id": "a-17"}, frames(agent, customer, 160)),
            _stream(http, server.make_url("/tap/ws/swapped"),
                    {"callid": "fs-2", "agent_id": "a-18"}, frames(customer, agent, 160)))
        assert closed == [(1000, "stream ended")] * 2

    rig = _serve(scenario, summaries=3)
    for call_id, agent_id in (("fs-1", "a-17"), ("fs-2", "a-18")):
        got = _same_cues(rig, call_id, "ref", "stereo_8k")
        assert "dead_air" in [c[0] for c in got]  # the demo's hold, unmarked: dead air
        events = rig.events(call_id)
        assert events[0]["kind"] == "call_started"
        assert events[0]["data"]["agent_id"] == agent_id
        assert events[0]["data"]["source"] == "websocket"
        ended = next(e for e in events if e["kind"] == "call_ended")
        assert ended["data"]["reason"] == "source_closed"
        assert abs(ended["data"]["duration_s"] - len(agent) / 8000) < 0.05
        assert events[-1]["kind"] == "summary"
    stats = rig.listener.stats()
    assert stats["streams_total"] == 2 and stats["frames"] == 2 * len(frames(agent, agent, 160))


def test_a_16k_stream_gives_the_cues_of_its_wav() -> None:
    blocks = list(FileSource(DEMO).blocks())
    agent = np.concatenate([b.agent for b in blocks])
    customer = np.concatenate([b.customer for b in blocks])

    async def scenario(rig: Rig, server: Any, http: aiohttp.ClientSession) -> None:
        await rig.reference("ref16", agent, customer)
        closed = await _stream(http, server.make_url("/tap/ws"),  # the default route
                               {"callSid": "jb-16", "sampleRate": 16000, "mixType": "stereo",
                                "metadata": {"agent_id": "a-3"}},
                               frames(agent, customer, 320))
        assert closed == (1000, "stream ended")

    rig = _serve(scenario, summaries=2)
    _same_cues(rig, "jb-16", "ref16", "stereo_16k")


def test_a_hold_through_the_api_is_a_hold_not_dead_air() -> None:
    agent, customer = _legs_8k()
    chunks = frames(agent, customer, 160)
    # where the tap's audio time stands when each hold request is made: the frames before
    # it through a leg aligner (whole 32 ms blocks, less the resampler's delay)
    at = [round(t * 50) for t in HOLD]
    marks_t = []
    for n in at:
        aligner = LegAligner(8000)
        aligner.push("agent", agent[:n * 160])
        aligner.push("customer", customer[:n * 160])
        marks_t.append(aligner.t_s)
    marks = [Mark(marks_t[0], "hold_start"), Mark(marks_t[1], "hold_end")]

    async def scenario(rig: Rig, server: Any, http: aiohttp.ClientSession) -> None:
        await rig.reference("ref-marks", *(_resample(x, 8000, 16000)
                                           for x in (agent, customer)), marks=marks)

        async def pause(i: int) -> None:
            if i not in at:
                return
            # the frames sent so far have reached the call; then the hold key
            await until(lambda: rig.listener.frames == i, "the frames to arrive")
            async with http.get(server.make_url("/api/calls/fs-hold")) as r:
                assert (await r.json())["call"]["audio_s"] == round(marks_t[at.index(i)], 2)
            action = "start" if i == at[0] else "end"
            async with http.post(server.make_url("/api/calls/fs-hold/hold"),
                                 json={"action": action}) as r:
                assert r.status == 200, await r.text()

        await _stream(http, server.make_url("/tap/ws/fs1"), {"callid": "fs-hold"}, chunks,
                      pause)

    rig = _serve(scenario, summaries=2)
    got = _same_cues(rig, "fs-hold", "ref-marks", "hold_api")
    kinds = [c[0] for c in got]
    assert "hold_started" in kinds and "hold_ended" in kinds and "dead_air" not in kinds
    summary = rig.events("fs-hold")[-1]["data"]
    assert summary["dead_air"]["count"] == 0
    [hold] = summary["holds"]
    assert hold["via"] == "marks" and abs(hold["start"] - marks_t[0]) < TOLERANCE_S


def test_a_client_that_vanishes_mid_call_ends_it_with_its_summary() -> None:
    agent, customer = _legs_8k()
    sent_s = 20.0  # the greeting and the first exchanges: someone spoke

    async def scenario(rig: Rig, server: Any, http: aiohttp.ClientSession) -> None:
        client = await BareClient.connect(server.host, server.port, "/tap/ws/fs1")
        client.send(json.dumps({"callid": "vanishing", "agent_id": "a-17"}))
        for i, chunk in enumerate(frames(agent, customer, 160)[:round(sent_s * 50)]):
            client.send(chunk)
            if i % 50 == 0:
                await client.drain()
        await client.drain()
        await until(lambda: rig.listener.frames == round(sent_s * 50), "the frames")
        client.vanish()

    rig = _serve(scenario, summaries=1)
    events = rig.events("vanishing")
    ended = next(e for e in events if e["kind"] == "call_ended")
    assert ended["data"]["reason"] == "source_closed"
    assert abs(ended["data"]["duration_s"] - sent_s) < 0.05  # all of it analysed
    assert events[-1]["kind"] == "summary" and events[-1]["data"]["talk_s"]["agent"] > 0
    assert rig.listener.stats()["dropped_connections"] == 1
