"""The PBX tap's call glue (``audio/tap.py``) over a real ShardPool: the demo call sent as
two 8 kHz legs in 20 ms packets gives the cues of its WAV sent through the telephone band,
within a stated tolerance; one leg stalling is filled and counted, never holds the call
back; legs closing end the call (agent first: ``hung_up_first``); a vanished sender is
ended after the idle timeout with its summary."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soxr

from appliance.audio.filesource import FileSource
from appliance.audio.tap import TapCalls
from appliance.config import config_from_dict
from appliance.stream.blocks import PartyBlock
from appliance.stream.shards import ShardPool
from tests.waiting import until

DEMO = Path(__file__).resolve().parent.parent / "appliance" / "demo" / "demo_call.wav"
CFG = config_from_dict({"asr": {"enabled": False}})
TOLERANCE_S = 0.1  # cue times: the 8 kHz legs against the same audio as one WAV


def _resample(x: np.ndarray, in_hz: int, out_hz: int) -> np.ndarray:
    """int16 in one piece, as a WAV converter does it."""
    y = soxr.resample(x.astype(np.float32) / 32768, in_hz, out_hz)
    return np.clip(np.round(y * 32768), -32768, 32767).astype(np.int16)


def _legs_8k() -> tuple[np.ndarray, np.ndarray]:
    blocks = list(FileSource(DEMO).blocks())
    a = np.concatenate([b.agent for b in blocks])
    c = np.concatenate([b.customer for b in blocks])
    return _resample(a, 16000, 8000), _resample(c, 16000, 8000)


def _cues(lines: list[dict[str, Any]], call_id: str) -> list[tuple[str, str, float]]:
    return [(e["kind"], e["party"], e["t"]) for e in lines if e["call_id"] == call_id
            and e["kind"] not in ("call_started", "call_ended", "summary")]


def test_a_tap_call_gives_the_cues_of_its_wav():
    agent, customer = _legs_8k()
    lines: list[dict[str, Any]] = []

    async def go() -> None:
        pool = ShardPool(CFG, lambda ev: lines.append(ev.to_json()), processes=1)
        await pool.start()
        tap = TapCalls(pool, idle_timeout_s=5.0)
        # the reference: the same 8 kHz audio through the file path's blocks
        ref = LegFree(pool, agent, customer)
        await ref.run("ref")
        tap.open("pbx-1", rate_hz=8000, now_s=0.0, agent_id="a-7", source="test",
                 ring_s=16.0)
        for i in range(0, len(agent), 160):  # 20 ms packets, the customer's a bit late
            tap.audio("pbx-1", "agent", agent[i:i + 160], now_s=i / 8000)
            if i >= 800:
                j = i - 800
                tap.audio("pbx-1", "customer", customer[j:j + 160], now_s=i / 8000)
            if i % 8000 == 0:
                await asyncio.sleep(0)
        tap.audio("pbx-1", "customer", customer[len(agent) - 800:], now_s=len(agent) / 8000)
        tap.hung_up("pbx-1", "agent")  # the signalling: the agent hung up
        tap.leg_ended("pbx-1", "agent")  # then the PBX tears both legs down
        tap.leg_ended("pbx-1", "customer")
        assert "pbx-1" not in tap.calls
        await until(lambda: sum(e["kind"] == "summary" for e in lines) == 2, hang_s=120)
        await pool.stop()

    asyncio.run(go())
    got, want = _cues(lines, "pbx-1"), _cues(lines, "ref")
    control = [c for c in got if c[0] in ("answer_delay", "hung_up_first")]
    assert [c[0] for c in control] == ["answer_delay", "hung_up_first"]
    got = [c for c in got if c not in control]
    assert [c[:2] for c in got] == [c[:2] for c in want] and want, (got, want)
    assert all(abs(g[2] - w[2]) <= TOLERANCE_S for g, w in zip(got, want, strict=True))
    start = next(e for e in lines if e["call_id"] == "pbx-1")
    assert start["kind"] == "call_started" and start["data"]["agent_id"] == "a-7"
    summary = next(e for e in lines if e["call_id"] == "pbx-1" and e["kind"] == "summary")
    assert summary["data"]["call_control"]["hung_up_by"] == "agent"


class LegFree:
    """The same audio as one call of 16 kHz blocks, resampled in one piece (as a WAV)."""

    def __init__(self, pool: ShardPool, agent: np.ndarray, customer: np.ndarray) -> None:
        self.pool = pool
        self.agent, self.customer = (_resample(x, 8000, 16000) for x in (agent, customer))

    async def run(self, call_id: str) -> None:
        self.pool.open_call(call_id, lang="en")
        for i in range(0, len(self.agent) - 511, 512):
            assert self.pool.push(call_id, PartyBlock(i / 16000, self.agent[i:i + 512],
                                                      self.customer[i:i + 512]))
            if i % 16384 == 0:
                await asyncio.sleep(0)
        self.pool.end_call(call_id, "source_closed")


def test_a_stalled_leg_and_a_vanished_sender():
    lines: list[dict[str, Any]] = []
    rng = np.random.default_rng(2)

    async def go() -> TapCalls:
        pool = ShardPool(CFG, lambda ev: lines.append(ev.to_json()), processes=1)
        await pool.start()
        tap = TapCalls(pool, idle_timeout_s=5.0)
        tap.open("gone", rate_hz=16000, now_s=100.0)
        for k in range(100):  # 2 s of the agent; the customer's leg never sends
            tap.audio("gone", "agent", rng.integers(-3000, 3000, 320, dtype=np.int16),
                      now_s=100.0 + k * 0.02)
        assert tap.expire(now_s=104.0) == []  # not idle long enough
        assert tap.expire(now_s=107.1) == ["gone"]
        assert not tap.audio("gone", "agent", np.zeros(160, np.int16), now_s=108.0)
        with pytest.raises(ValueError):
            tap.open("bad", rate_hz=44100, now_s=0.0)
        # (noise, no speech: the call ends without a summary, as at the desk)
        await until(lambda: any(e["kind"] == "call_ended" for e in lines), hang_s=120)
        await pool.stop()
        return tap

    tap = asyncio.run(go())
    ended = next(e for e in lines if e["kind"] == "call_ended")
    assert ended["data"]["reason"] == "source_closed"
    assert ended["data"]["duration_s"] == pytest.approx(2.0, abs=0.04)  # nothing held back
    assert tap.dropped_blocks == 0
