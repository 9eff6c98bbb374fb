"""The RTP listener on real loopback UDP sockets, its tick driven by an injected clock.

A sender written here sends the demo call as two RTP streams (the agent µ-law, the WAV's own
bytes; the customer A-law) in 20 ms packets with loss, reordering, duplicates, late packets,
sequence and timestamp wrap-around and an SSRC change mid-call, plus malformed datagrams and
RTCP; a real ShardPool gives the cues of the WAV within a stated tolerance, the loss is
concealed and counted, and the call ends with its summary ``stream_timeout_s`` after the
sender stops.  Then, on a recording pool: static routes and their next calls (``-2``),
announced routes and ``forget``, peers, unknown streams, a leg at another rate, a stream
that goes quiet."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import numpy as np
import pytest

from appliance.audio.rtp.listener import RtpListener
from appliance.audio.rtp.packet import build
from appliance.audio.tap import TapCalls
from appliance.config.tap import TapRtpConfig, TapRtpStream
from appliance.errors import ApplianceError
from appliance.stream.shards import ShardPool
from tests.conftest import VirtualClock
from tests.pbxsend import (
    CFG,
    FRAME,
    FakePool,
    compare,
    cues,
    demo_legs_8k,
    event,
    reference,
    rtp_packets,
)
from tests.waiting import until

TOLERANCE_S = 0.1
"""Cue times: the RTP call (2 % of packets lost and concealed, the customer A-law) against
the WAV through the file path."""
LOOP = "127.0.0.1"
TICK_S = 0.02
BATCH = 5
"""Packets of each leg sent at once (0.1 s of audio, ahead of their playout time), then
ticked through."""


class Sender:
    """A UDP socket that sends to the box and counts what it sent."""

    def __init__(self, source: str = LOOP) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.sent = 0

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, (LOOP, port))
        self.sent += 1

    def close(self) -> None:
        self.sock.close()


def impair(packets: list[bytes], rng: np.random.Generator,
           keep: set[int]) -> tuple[list[list[bytes]], dict[str, int]]:
    """The packets in batches of BATCH (by their send time) with 2 % lost, 2 % duplicated,
    0.5 % sent 0.3 s late (after their playout time) and 10 % of neighbours swapped; the
    packets in ``keep`` are sent as they are."""
    batches: list[list[bytes]] = [[] for _ in range(len(packets) // BATCH + 4)]
    n = {"lost": 0, "duplicates": 0, "late": 0}
    for k, p in enumerate(packets):
        b = k // BATCH
        r = 1.0 if k in keep else rng.random()
        if r < 0.02:
            n["lost"] += 1
            continue
        if r < 0.04:
            n["duplicates"] += 1
            batches[b].append(p)
        elif r < 0.045:
            n["late"] += 1
            b += 3
        batches[b].append(p)
    for batch in batches:
        for i in range(len(batch) - 1):
            if rng.random() < 0.1:
                batch[i], batch[i + 1] = batch[i + 1], batch[i]
    return batches, n


def rtp_config(**kw: Any) -> TapRtpConfig:
    return TapRtpConfig(**{"enabled": True, "ports": ["40000"], "jitter_s": 0.06,
                           "stream_timeout_s": 5.0, **kw})


async def taken(listener: RtpListener, count: int) -> None:
    await until(lambda: listener.stats()["packets"] >= count, "the datagrams received",
                poll_s=0.002)


def tick_through(listener: RtpListener, clock: VirtualClock, seconds: float) -> None:
    for _ in range(round(seconds / TICK_S)):
        clock.t += TICK_S
        listener.tick(clock.t)


def test_rtp_legs_through_loss_reordering_wrap_and_an_ssrc_change_give_the_wavs_cues(
        virtual_clock: VirtualClock) -> None:
    agent, customer = demo_legs_8k()
    rng = np.random.default_rng(7)
    change = 2500  # the agent's phone changes SSRC at 50 s (a re-INVITE, a transfer)
    a_packets = (rtp_packets(agent[:change * FRAME], "u", ssrc=0xA1, seq0=65536 - 700,
                             ts0=2**32 - 8000 * 30)  # sequence wraps at 14 s, time at 30 s
                 + rtp_packets(agent[change * FRAME:], "u", ssrc=0xA2, seq0=1234, ts0=99))
    c_packets = rtp_packets(customer, "a", ssrc=0xC1, seq0=65536 - 1200, ts0=2**32 - 8000 * 5)
    edges = set(range(5)) | set(range(change - 5, change + 5)) | set(
        range(len(a_packets) - 5, len(a_packets)))
    a_batches, a_n = impair(a_packets, rng, edges)
    c_batches, c_n = impair(c_packets, rng, edges)
    junk = {100: b"\x80", 200: b"not rtp at all", 300: bytes((0x80, 201, 0, 1)) + b"\0" * 4}
    lines: list[dict[str, Any]] = []
    clock = virtual_clock

    async def go() -> tuple[dict[str, float], float]:
        pool = ShardPool(CFG, lambda ev: lines.append(ev.to_json()), processes=1)
        await pool.start()
        tap = TapCalls(pool, idle_timeout_s=30.0)
        listener = RtpListener(tap, rtp_config(), ports=[0, 0], clock=clock, tick_s=None)
        await listener.start()
        pa, pc = listener.ports
        listener.expect("rtp-1", "agent", port=pa)
        listener.expect("rtp-1", "customer", port=pc)
        await reference(pool, "ref")
        sender = Sender()
        last_sent = clock.t
        for b in range(len(a_batches)):
            for p in a_batches[b]:
                sender.send(p, pa)
            for p in c_batches[b]:
                sender.send(p, pc)
            if b in junk:
                sender.send(junk[b], pa)
            if a_batches[b] or c_batches[b]:
                last_sent = clock.t
            await taken(listener, sender.sent)
            tick_through(listener, clock, BATCH * TICK_S)
        while tap.is_open("rtp-1"):
            tick_through(listener, clock, TICK_S)
            assert clock.t - last_sent < 10.0, "the call never ended"
        closed_after = clock.t - last_sent
        await until(lambda: sum(e["kind"] == "summary" for e in lines) == 2, hang_s=120)
        stats = listener.stats()
        await listener.stop()
        await pool.stop()
        sender.close()
        return stats, closed_after

    stats, closed_after = asyncio.run(go())
    compare(cues(lines, "rtp-1"), cues(lines, "ref"), TOLERANCE_S)  # (measured: the same)
    ended = event(lines, "rtp-1", "call_ended")
    assert ended["data"]["reason"] == "source_closed"
    assert ended["data"]["duration_s"] == pytest.approx(len(agent) / 8000, abs=0.1)
    assert event(lines, "rtp-1", "call_started")["data"]["source"] == "rtp"
    assert event(lines, "rtp-1", "summary")["data"]["duration_s"] > 100
    # the sender stopped: its legs end after stream_timeout_s (5 s), not before
    assert 5.0 <= closed_after <= 5.0 + 0.2, closed_after
    n = {k: a_n[k] + c_n[k] for k in a_n}
    assert stats["lost"] == n["lost"] + n["late"]  # a late packet's slot was concealed
    assert stats["late"] == n["late"] and stats["duplicates"] == n["duplicates"]
    assert stats["concealed_ms"] == pytest.approx(20.0 * stats["lost"], abs=1)
    assert stats["reordered"] > 50 and stats["ssrc_changes"] == 1
    assert stats["malformed"] == 2 and stats["rtcp"] == 1
    assert stats["calls"] == 1 and stats["unknown"] == 0 and stats["dropped_s"] == 0
    assert stats["streams"] == 0 and stats["internal_errors"] == 0


def free_udp_ports(n: int) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n)]
    for s in socks:
        s.bind((LOOP, 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def l16(samples: np.ndarray, seq: int, ssrc: int, rate: int = 16000) -> bytes:
    n = rate // 50
    return build(96, seq, seq * n, ssrc, samples[seq * n:(seq + 1) * n].astype(">i2").tobytes())


def test_static_routes_announced_routes_peers_and_unknown_streams(
        virtual_clock: VirtualClock) -> None:
    clock = virtual_clock
    pool = FakePool()
    tone = (3000 * np.sin(np.arange(16000 * 4) * 0.05)).astype(np.int16)

    async def go() -> tuple[dict[str, float], TapCalls]:
        tap = TapCalls(pool, idle_timeout_s=30.0)
        ports = free_udp_ports(3)
        cfg = rtp_config(allow=["127.0.0.1/32"], codecs=["96 L16/16000"], streams=[
            TapRtpStream(port=ports[0], call_id="desk-7", party="agent", agent_id="a-1")])
        listener = RtpListener(tap, cfg, ports=ports, clock=clock, tick_s=None)
        await listener.start()
        assert listener.ports == ports
        sender, stranger = Sender(), Sender("127.0.0.2")

        async def send(port: int, packets: list[bytes], by: Sender = sender) -> None:
            for p in packets:
                by.send(p, port)
            await taken(listener, sender.sent + stranger.sent)

        # a static route: the call opens on the first packet (L16 16 kHz: at 16 kHz)
        for k in range(50):
            await send(ports[0], [l16(tone, k, 0x77)])
            tick_through(listener, clock, TICK_S)
        assert tap.is_open("desk-7") and pool.opened[0][1]["agent_id"] == "a-1"
        await send(ports[1], [l16(tone, 0, 0x88)])  # no route on this port yet
        await send(ports[0], [l16(tone, 50, 0x77)], by=stranger)  # not in allow
        await send(ports[0], [build(18, 51, 0, 0x77, b"\0" * 20)])  # G.729: unsupported
        tick_through(listener, clock, 4.9)
        assert tap.is_open("desk-7")  # not quiet for stream_timeout_s yet
        tick_through(listener, clock, 0.2)
        assert not tap.is_open("desk-7")  # the agent stopped: the call ends (the
        assert pool.ended == [("desk-7", "source_closed")]  # customer never came)
        for k in range(10):  # the stream starts again: the next call
            await send(ports[0], [l16(tone, 100 + k, 0x77)])
            tick_through(listener, clock, TICK_S)
        assert tap.is_open("desk-7-2")

        # announced routes, one SSRC named: other SSRCs on that port are unknown
        listener.expect("api-1", "agent", port=ports[1], ssrc=0x99)
        listener.expect("api-1", "customer", port=ports[2])
        with pytest.raises(ValueError):
            listener.expect("api-1", "customer", port=1)  # not a port of the box
        with pytest.raises(ValueError):
            listener.expect("bad id!", "agent", port=ports[1])
        await send(ports[1], [l16(tone, 0, 0x98)])
        for k in range(20):
            await send(ports[1], [l16(tone, k, 0x99)])
            await send(ports[2], [l16(tone, k, 0x55)])
            tick_through(listener, clock, TICK_S)
        assert tap.is_open("api-1")
        listener.forget("api-1")  # the control API is done with it: its streams end
        assert not tap.is_open("api-1") and ("api-1", "source_closed") in pool.ended
        await send(ports[2], [l16(tone, 21, 0x55)])  # no route any more
        assert listener.stats()["streams"] == 1  # desk-7-2 goes on
        await listener.stop()  # and ends with the listener
        sender.close()
        stranger.close()
        return listener.stats(), tap

    stats, tap = asyncio.run(go())
    assert [c for c, _ in pool.opened] == ["desk-7", "desk-7-2", "api-1"]
    assert [c for c, _ in pool.ended] == ["desk-7", "api-1", "desk-7-2"]
    assert all(kw["source"] == "rtp" for _, kw in pool.opened)
    assert stats["unknown"] == 3 and stats["not_allowed"] == 1 and stats["unsupported"] == 1
    assert stats["calls"] == 3 and stats["streams"] == 0 and not tap.calls
    legs = [(c, p) for c, ev, p in pool.signals if ev == "leg_ended"]
    assert legs[:2] == [("desk-7", "agent"), ("desk-7", "customer")]
    assert pool.samples["desk-7"] == pytest.approx(16000 * 1.0, abs=512)


def test_a_leg_at_another_rate_and_a_stream_that_goes_quiet(
        virtual_clock: VirtualClock) -> None:
    """The agent at 8 kHz (PCMU) opens the call at 8 kHz; the customer at 16 kHz (L16) is
    resampled to it.  The agent's packets stop for 1 s (a burst of loss) and come again:
    meanwhile the listener plays silence on the agent's leg, and drops the jitter buffer's
    fill of the same span, so the legs stay in step and the tap fills nothing."""
    clock = virtual_clock
    pool = FakePool()
    rng = np.random.default_rng(3)
    agent = rng.integers(-3000, 3000, 8000 * 4).astype(np.int16)
    customer = (3000 * np.sin(np.arange(16000 * 4) * 0.05)).astype(np.int16)
    a_packets = rtp_packets(agent, "u", ssrc=1, seq0=0, ts0=0)

    async def go() -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        tap = TapCalls(pool, idle_timeout_s=30.0)
        listener = RtpListener(tap, rtp_config(codecs=["96 L16/16000"]), ports=[0, 0],
                               clock=clock, tick_s=None)
        await listener.start()
        pa, pc = listener.ports
        listener.expect("mix", "agent", port=pa)
        listener.expect("mix", "customer", port=pc)
        sender = Sender()
        for k in range(200):
            if not 50 <= k < 100:  # the agent's packets of 1-2 s are lost
                sender.send(a_packets[k], pa)
            sender.send(l16(customer, k, 2), pc)
            await taken(listener, sender.sent)
            tick_through(listener, clock, TICK_S)
        aligner = tap.calls["mix"].aligner.stats()
        stats = listener.stats()
        await listener.stop()
        sender.close()
        return stats, aligner

    stats, aligner = asyncio.run(go())
    assert pool.opened[0][0] == "mix"
    assert stats["lost"] == 50 and stats["quiet_ms"] > 600
    assert stats["trimmed_ms"] == stats["quiet_ms"]  # the span was played once
    assert aligner["agent"]["filled_s"] == 0 and aligner["customer"]["filled_s"] == 0
    blocks = pool.blocks["mix"]
    assert len(blocks) * 512 == pytest.approx(16000 * 4, abs=2048)
    cust = np.concatenate([b.customer for b in blocks]).astype(float)
    assert np.sqrt(np.mean(cust[8000:40000] ** 2)) > 1000  # the resampled tone came


def test_the_listener_on_its_own_clock_and_ticker_and_a_taken_port() -> None:
    """With its ticker and the monotonic clock (as the service runs it) a burst of 1 s of
    packets plays out at its timestamps and reaches the tap; a port that is taken is a
    clean ``tap.bind_failed`` and leaves no port bound."""
    pool = FakePool()
    tone = (3000 * np.sin(np.arange(16000 * 2) * 0.05)).astype(np.int16)

    async def go() -> tuple[bool, bool]:
        tap = TapCalls(pool)
        listener = RtpListener(tap, rtp_config(codecs=["96 L16/16000"],
                                               stream_timeout_s=0.5), ports=[0])
        await listener.start()
        listener.expect("tick-1", "agent", port=listener.ports[0])
        sender = Sender()
        for k in range(50):
            sender.send(l16(tone, k, 9), listener.ports[0])
        await until(lambda: not tap.is_open("tick-1") and listener.stats()["calls"] == 1,
                    "played out and ended by the ticker")
        running = listener.running
        taken_port = listener.ports[0]
        other = RtpListener(tap, rtp_config(), ports=[0, taken_port])
        with pytest.raises(ApplianceError) as refused:
            await other.start()
        assert refused.value.code == "tap.bind_failed"
        await listener.stop()
        sender.close()
        return running, listener.running or other.running

    running, after = asyncio.run(go())
    assert running and not after
    assert pool.ended == [("tick-1", "source_closed")]
    assert pool.samples["tick-1"] == pytest.approx(16000, abs=512)
