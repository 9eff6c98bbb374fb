"""The AudioSocket listener on real loopback sockets: two Asterisk-like clients (one per
direction) send the demo call, and a real ShardPool gives the cues of the WAV itself within
a stated tolerance; a hang-up, a vanished client, a malformed frame and a call ended by the
tap's idle timeout each close what they should and nothing else.  The listener's clock is
injected (audio seconds sent), and the clients send as fast as the listener takes the
audio, both legs in step."""

from __future__ import annotations

import asyncio
import uuid as uuidlib
from typing import Any

import numpy as np
import pytest

from appliance.audio.pbx.audiosocket import (
    KIND_AUDIO,
    Audio,
    Dtmf,
    Error,
    Hangup,
    Uuid,
    encode_frame,
    encode_message,
)
from appliance.audio.pbx.audiosocket_listener import AudioSocketListener
from appliance.audio.pbx.errors import PbxProtocolError
from appliance.audio.tap import TapCalls
from appliance.config.tap import TapAudioSocketConfig
from appliance.errors import ApplianceError
from appliance.stream.shards import ShardPool
from tests.conftest import VirtualClock
from tests.pbxsend import CFG, FakePool, compare, cues, demo_legs_8k, event, reference
from tests.waiting import until

TOLERANCE_S = 0.1
"""Cue times: the tap call (two 8 kHz legs, resampled as streams) against the WAV through
the file path."""
STEP_S = 0.2
"""Audio seconds each client sends before the two wait for the listener to take it (less
than the tap's 0.3 s skew bound, so the legs stay in step)."""
LOOP = "127.0.0.1"


def uuids() -> tuple[str, str, str]:
    """A call id and its two leg UUIDs under the last-digit convention."""
    base = str(uuidlib.uuid4())[:-1]
    return base + "0", base + "a", base + "c"


class Client:
    """One Asterisk AudioSocket connection (one direction of a channel)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.sent = 0

    @classmethod
    async def connect(cls, port: int, uuid: str | None = None,
                      source: str | None = None) -> Client:
        r, w = await asyncio.open_connection(
            LOOP, port, local_addr=(source, 0) if source else None)
        c = cls(r, w)
        if uuid is not None:
            await c.send(encode_message(Uuid(uuid)))
        return c

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        self.sent += len(data)
        await self.writer.drain()

    async def audio(self, samples: np.ndarray) -> None:
        await self.send(b"".join(encode_message(Audio(samples[i:i + 160]))
                                 for i in range(0, len(samples), 160)))

    async def closed_by_box(self) -> bool:
        """Whether the box closed this connection (EOF within the hang bound)."""
        try:
            return await asyncio.wait_for(self.reader.read(1), 30) == b""
        except ConnectionError:
            return True

    def close(self) -> None:
        self.writer.close()


async def send_in_step(listener: AudioSocketListener, clock: VirtualClock,
                       legs: list[tuple[Client, np.ndarray]]) -> None:
    """Both legs, STEP_S at a time, each step taken by the listener before the next (what
    the clients sent before is taken already)."""
    n = min(len(x) for _, x in legs)
    step = int(STEP_S * 8000)
    for i in range(0, n, step):
        before = listener.stats()["bytes"]
        for client, x in legs:
            await client.audio(x[i:i + step])
        total = before + sum(len(x[i:i + step]) // 160 * 323 for _, x in legs)
        await until(lambda t=total: listener.stats()["bytes"] >= t, "the audio taken",
                    poll_s=0.002)
        clock.t += STEP_S


def listener_for(tap: TapCalls, clock: VirtualClock, **cfg: Any) -> AudioSocketListener:
    return AudioSocketListener(tap, TapAudioSocketConfig(enabled=True, port=0, **cfg),
                               pair_wait_s=5.0, clock=clock, tick_s=None)


def test_a_call_over_two_audiosockets_gives_the_cues_of_its_wav(
        virtual_clock: VirtualClock) -> None:
    agent, customer = demo_legs_8k()
    lines: list[dict[str, Any]] = []
    clock = virtual_clock
    call_id, a_uuid, c_uuid = uuids()

    async def go() -> dict[str, float]:
        pool = ShardPool(CFG, lambda ev: lines.append(ev.to_json()), processes=1)
        await pool.start()
        tap = TapCalls(pool, idle_timeout_s=10.0)
        listener = listener_for(tap, clock)
        await listener.start()
        await reference(pool, "ref")
        a = await Client.connect(listener.port or 0, a_uuid)
        await until(lambda: listener.stats()["waiting"] == 1)
        assert not tap.is_open(call_id)  # one leg: no call yet
        c = await Client.connect(listener.port or 0, c_uuid)
        await until(lambda: tap.is_open(call_id))
        await a.send(encode_message(Dtmf("5")))  # ignored, counted
        await until(lambda: listener.stats()["dtmf"] == 1)
        await send_in_step(listener, clock, [(a, agent), (c, customer)])
        await a.send(encode_message(Hangup()))  # the agent hangs up first
        assert await a.closed_by_box()
        c.close()  # then the PBX tears the customer's leg down (no hang-up message)
        await until(lambda: not tap.is_open(call_id) and listener.stats()["open"] == 0)
        await until(lambda: sum(e["kind"] == "summary" for e in lines) == 2, hang_s=120)
        await listener.stop()
        await pool.stop()
        return listener.stats()

    stats = asyncio.run(go())
    got, want = cues(lines, call_id), cues(lines, "ref")
    compare(got, want, TOLERANCE_S)  # (measured: the same times to the millisecond)
    assert [c[0] for c in got if c[0] == "hung_up_first"] == ["hung_up_first"]
    start = event(lines, call_id, "call_started")
    assert start["data"]["source"] == "audiosocket"
    summary = event(lines, call_id, "summary")
    assert summary["data"]["call_control"]["hung_up_by"] == "agent"
    ended = event(lines, call_id, "call_ended")
    assert ended["data"]["duration_s"] == pytest.approx(len(agent) / 8000, abs=0.1)
    assert stats["connections"] == 2 and stats["calls"] == 1 and stats["hangups"] == 1
    assert stats["dtmf"] == 1 and stats["malformed"] == 0 and stats["dropped_s"] == 0
    assert stats["bytes"] == 2 * (3 + 16) + (3 + 1) + 2 * (len(agent) // 160) * 323 + 3


def test_a_vanished_client_a_malformed_frame_and_an_idle_call_end_their_calls(
        virtual_clock: VirtualClock) -> None:
    """Call 1: the customer's socket breaks the framing mid-call (only it is closed; the
    agent goes on), then the agent's client vanishes (closes without a hang-up): the call
    ends with its summary.  Call 2 (UUIDs registered by the control API): both clients stay
    connected but fall silent; the tap's idle timeout ends the call and the listener closes
    both connections."""
    agent, customer = demo_legs_8k(0.0, 13.0)  # the greeting and the customer's problem
    lines: list[dict[str, Any]] = []
    clock = virtual_clock
    call_1, a1, c1 = uuids()
    a2, c2 = (str(uuidlib.uuid4())[:-1] + d for d in "12")  # outside the convention

    async def go() -> tuple[dict[str, float], TapCalls]:
        pool = ShardPool(CFG, lambda ev: lines.append(ev.to_json()), processes=1)
        await pool.start()
        tap = TapCalls(pool, idle_timeout_s=3.0)
        listener = listener_for(tap, clock)
        await listener.start()
        port = listener.port or 0
        a, c = await Client.connect(port, a1), await Client.connect(port, c1)
        await until(lambda: tap.is_open(call_1))
        await send_in_step(listener, clock, [(a, agent[:80000]), (c, customer[:80000])])
        await c.send(encode_frame(KIND_AUDIO, b"\x00\x01\x02"))  # odd audio length
        assert await c.closed_by_box()
        await until(lambda: listener.stats()["open"] == 1)
        assert tap.is_open(call_1)  # the agent's leg goes on alone
        await send_in_step(listener, clock, [(a, agent[80000:])])
        a.close()  # vanishes: no hang-up
        await until(lambda: not tap.is_open(call_1))

        listener.expect("api-2", agent_uuid=a2, customer_uuid=c2)
        a, c = await Client.connect(port, a2), await Client.connect(port, c2)
        await until(lambda: tap.is_open("api-2"))
        await a.send(encode_message(Error(0x02)))  # logged, counted, the call goes on
        await until(lambda: listener.stats()["errors"] == 1)
        await send_in_step(listener, clock, [(a, agent[:8000]), (c, customer[:8000])])
        assert tap.expire(clock.t + 2.0) == []
        assert tap.expire(clock.t + 3.0) == ["api-2"]
        listener.tick(clock.t + 3.0)
        assert await a.closed_by_box() and await c.closed_by_box()
        await until(lambda: listener.stats()["open"] == 0)
        with pytest.raises(PbxProtocolError):  # the registration went with the call
            listener.pairer.leg_of(a2)
        await until(lambda: sum(e["kind"] == "call_ended" for e in lines) == 2, hang_s=120)
        await listener.stop()
        await pool.stop()
        return listener.stats(), tap

    stats, tap = asyncio.run(go())
    assert stats["malformed"] == 1 and stats["errors"] == 1 and stats["calls"] == 2
    assert stats["open"] == 0 and not tap.calls
    ended = event(lines, call_1, "call_ended")
    assert ended["data"]["reason"] == "source_closed"
    assert ended["data"]["duration_s"] == pytest.approx(13.0, abs=0.1)
    summary = event(lines, call_1, "summary")
    assert summary["data"]["talk_s"]["customer"] > 3.0  # the customer spoke before the fault
    signals = [(e["kind"], e["party"]) for e in lines if e["call_id"] == call_1
               and e["kind"] == "hung_up_first"]
    assert signals == []  # the customer's leg broke first: no agent-first hang-up
    assert event(lines, "api-2", "call_ended")["data"]["reason"] == "source_closed"


def test_refusals_close_only_the_refused_connection(virtual_clock: VirtualClock) -> None:
    """Peers outside the allow-list, connections beyond the bound, audio before the UUID,
    a UUID of no call, a leg twice, a connection with no UUID and a leg whose partner never
    comes: each is closed and counted; nothing opens a call but the good pair."""
    clock = virtual_clock
    pool = FakePool()

    async def go() -> tuple[dict[str, float], dict[str, float]]:
        tap = TapCalls(pool)
        strict = listener_for(tap, clock, allow=["127.0.0.2"], max_connections=2)
        await strict.start()
        port = strict.port or 0
        refused = await Client.connect(port, source=LOOP)  # 127.0.0.1: not listed
        assert await refused.closed_by_box()
        ok1 = await Client.connect(port, source="127.0.0.2")
        ok2 = await Client.connect(port, source="127.0.0.2")
        await until(lambda: strict.stats()["open"] == 2)
        full = await Client.connect(port, source="127.0.0.2")
        assert await full.closed_by_box()
        for c in (ok1, ok2):
            c.close()
        await until(lambda: strict.stats()["open"] == 0)
        await strict.stop()

        listener = listener_for(tap, clock)
        await listener.start()
        port = listener.port or 0
        early = await Client.connect(port)
        await early.send(encode_message(Audio(np.zeros(160, np.int16))))  # before the UUID
        nobody = await Client.connect(port, str(uuidlib.uuid4())[:-1] + "b")  # no call
        _, a_uuid, c_uuid = uuids()
        lonely = await Client.connect(port, a_uuid)
        twice = await Client.connect(port, a_uuid)  # the same leg again
        for c in (early, nobody, twice):
            assert await c.closed_by_box()
        await lonely.audio(np.ones(8000, np.int16))  # held while it waits
        silent = await Client.connect(port)  # never says who it is
        await until(lambda: listener.stats()["open"] == 2)
        await until(lambda: listener.stats()["bytes"] == 323 + 3 * 19 + 50 * 323)
        listener.tick(clock.t + 4.9)
        assert listener.stats()["open"] == 2  # not waited long enough
        listener.tick(clock.t + 5.1)
        assert await lonely.closed_by_box() and await silent.closed_by_box()
        await until(lambda: listener.stats()["open"] == 0)
        late = await Client.connect(port, c_uuid)  # the partner, too late: waits anew
        await until(lambda: listener.stats()["waiting"] == 1)
        late.close()
        await until(lambda: listener.stats()["open"] == 0)
        await listener.stop()
        return strict.stats(), listener.stats()

    strict, stats = asyncio.run(go())
    assert strict["refused"] == 2 and strict["connections"] == 2
    assert stats["malformed"] == 1 and stats["unknown_leg"] == 2
    assert stats["unpaired"] == 1 and stats["no_uuid"] == 1
    assert stats["calls"] == 0 and stats["dropped_s"] == pytest.approx(1.0)
    assert pool.opened == [] and stats["waiting"] == 0


def test_the_first_legs_audio_waits_for_its_partner(virtual_clock: VirtualClock) -> None:
    """The agent's leg connects and talks 1 s before the customer's connects: the call
    opens with the pair, the agent's held second goes to the tap with a second of silence
    on the customer's leg, and from then on the legs run in step (nothing filled)."""
    clock = virtual_clock
    pool = FakePool()
    tone = (4000 * np.sin(np.arange(8000 * 2) * 0.3)).astype(np.int16)
    call_id, a_uuid, c_uuid = uuids()

    async def go() -> dict[str, dict[str, float]]:
        tap = TapCalls(pool)
        listener = listener_for(tap, clock)
        await listener.start()
        port = listener.port or 0
        a = await Client.connect(port, a_uuid)
        await a.audio(tone[:8000])
        await until(lambda: listener.stats()["bytes"] == 19 + 50 * 323)
        assert pool.opened == []
        clock.t += 1.0
        c = await Client.connect(port, c_uuid)
        await until(lambda: tap.is_open(call_id))
        await send_in_step(listener, clock, [(a, tone[8000:]), (c, tone[8000:])])
        aligner = tap.calls[call_id].aligner.stats()
        a.close()
        c.close()
        await until(lambda: not tap.is_open(call_id))
        await listener.stop()
        return aligner

    aligner = asyncio.run(go())
    assert [c for c, _ in pool.opened] == [call_id]
    assert aligner["agent"]["filled_s"] == 0 and aligner["customer"]["filled_s"] == 0
    blocks = pool.blocks[call_id]
    agent = np.concatenate([b.agent for b in blocks]).astype(float)
    customer = np.concatenate([b.customer for b in blocks]).astype(float)
    assert len(agent) == pytest.approx(2 * 16000, abs=512)

    def level(x: np.ndarray, t0: float, t1: float) -> float:
        return float(np.sqrt(np.mean(x[int(t0 * 16000):int(t1 * 16000)] ** 2)))

    assert level(agent, 0.1, 1.9) > 2000
    assert level(customer, 0.0, 0.95) == 0 and level(customer, 1.05, 1.9) > 2000


def test_a_taken_port_is_a_clean_refusal_and_stop_ends_the_calls() -> None:
    """On the monotonic clock with its ticker (as the service runs it): a port that is
    taken is ``tap.bind_failed``; stopping the listener closes every connection, so their
    calls end."""
    pool = FakePool()
    call_id, a_uuid, c_uuid = uuids()

    async def go() -> tuple[bool, bool]:
        tap = TapCalls(pool)
        listener = AudioSocketListener(tap, TapAudioSocketConfig(enabled=True, port=0))
        await listener.start()
        clash = AudioSocketListener(tap, TapAudioSocketConfig(enabled=True,
                                                              port=listener.port or 0))
        with pytest.raises(ApplianceError) as refused:
            await clash.start()
        assert refused.value.code == "tap.bind_failed"
        a = await Client.connect(listener.port or 0, a_uuid)
        c = await Client.connect(listener.port or 0, c_uuid)
        await until(lambda: tap.is_open(call_id))
        running = listener.running
        await listener.stop()
        assert await a.closed_by_box() and await c.closed_by_box()
        return running, listener.running

    running, after = asyncio.run(go())
    assert running and not after
    assert pool.ended == [(call_id, "source_closed")]
