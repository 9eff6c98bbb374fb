"""The live runner as a service: reload between calls, the call in progress kept at
shutdown, watchdog ticks from the analysis loop; and ``appliance run`` end to end under a
real NOTIFY_SOCKET (READY, WATCHDOG, STATUS, RELOADING, STOPPING, SIGHUP, SIGTERM).

Timings are checked on virtual time (tests/virtual_time.py) and everything else waits on
conditions (tests/waiting.py): nothing here depends on how fast the machine is."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from appliance.audio.replay import ReplaySource
from appliance.cli.run import NO_AUDIO_READY_S
from appliance.config import config_from_dict
from appliance.engine.vad import SileroModel
from appliance.service.notify import Notifier
from appliance.stream.live import MIN_CALL_S, LiveRunner
from appliance.stream.record import CallRecord
from tests import virtual_time
from tests.scripted import ScriptedSource
from tests.virtual_time import VirtualTimeLoop
from tests.waiting import HANG_S, until, until_sync

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "appliance" / "demo" / "demo_call.wav"


class FakeArchive:
    keeps_transcripts = False

    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    def record(self, rec: CallRecord) -> None:
        self.records.append(rec)


class CountingTicker:
    """Counts the watchdog ticks, each at the event loop's time (virtual in timing tests)."""

    def __init__(self) -> None:
        self.ticks = 0
        self.at: list[float] = []

    def tick(self) -> None:
        self.ticks += 1
        self.at.append(asyncio.get_running_loop().time())

    def gaps_s(self) -> list[float]:
        return [b - a for a, b in itertools.pairwise(self.at)]

    def max_gap_s(self) -> float:
        return max(self.gaps_s())


async def _run_for(runner: LiveRunner, seconds: float, actions=()) -> None:
    task = asyncio.create_task(runner.run())
    t0 = asyncio.get_running_loop().time()
    for at, fn in actions:
        await asyncio.sleep(max(0.0, t0 + at - asyncio.get_running_loop().time()))
        fn()
    await asyncio.sleep(max(0.0, t0 + seconds - asyncio.get_running_loop().time()))
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_reload_applies_from_the_next_call_and_every_call_is_archived() -> None:
    cfg = config_from_dict({})
    new = config_from_dict({"interruption": {"min_overlap_s": 2.5}})
    archive = FakeArchive()
    ticker = CountingTicker()
    engines: list[Any] = []
    runner: LiveRunner

    def reload_now() -> None:
        engines.append(runner.engine)
        runner.reload(new)

    # keys at audio times (not wall-clock times): reload at 3 s, End at 24 s (after the
    # demo's interruption at ~15 s); the recording's end ends the second call
    source = ScriptedSource([(3.0, reload_now), (24.0, lambda: runner.end_call())])
    runner = LiveRunner(cfg, source, SileroModel(), archive=archive,  # type: ignore[arg-type]
                        ticker=ticker)
    asyncio.run(runner.run())
    first, = engines
    assert first.cfg.interruption.min_overlap_s == 0.6  # the call in progress kept its cfg
    assert runner.engine is not first and runner.engine.cfg is new
    assert runner.calls == 2
    # the first call ended by the key, the second with the recording: both archived
    assert [r.call_id for r in archive.records] == ["call-1", "call-2"]
    one, two = archive.records
    assert one.summary["kind"] == "summary" and one.summary["data"]["language"] == "en"
    assert one.summary["data"]["cues"].get("interruption") == 1  # the demo's at ~15 s
    assert two.ended_at >= two.started_at >= one.ended_at
    assert one.utterances == [] and ticker.ticks > 100


def test_a_call_too_short_at_shutdown_is_not_summarised() -> None:
    loop = VirtualTimeLoop()
    archive = FakeArchive()
    runner = LiveRunner(config_from_dict({}), ReplaySource(DEMO, speed=1.0, clock=loop.time),
                        SileroModel(), archive=archive)  # type: ignore[arg-type]
    virtual_time.run(_run_for(runner, 0.3), loop)  # 0.3 s of call audio, then the stop
    assert 0.25 < runner.engine.t_s < MIN_CALL_S
    assert archive.records == []


class SilentSource:
    flowing = False

    async def run(self, queue) -> None:
        await asyncio.sleep(3600)

    def stats(self) -> dict[str, Any]:
        return {}


def test_the_watchdog_is_ticked_while_waiting_for_audio_but_not_by_a_stuck_loop() -> None:
    # on virtual time: the gaps are the loop's, not the machine's
    ticker = CountingTicker()
    runner = LiveRunner(config_from_dict({}), SilentSource(), SileroModel(), ticker=ticker)
    runner.idle_tick_s = 0.05
    virtual_time.run(_run_for(runner, 0.5))
    assert 9 <= ticker.ticks <= 10
    assert ticker.gaps_s() == pytest.approx([0.05] * (ticker.ticks - 1))

    # a healthy engine ticks on every block (5x real time: a block every 6.4 ms) ...
    loop = VirtualTimeLoop()
    healthy = CountingTicker()
    runner = LiveRunner(config_from_dict({}), ReplaySource(DEMO, speed=5.0, clock=loop.time),
                        SileroModel(), ticker=healthy)
    virtual_time.run(_run_for(runner, 0.7), loop)
    assert healthy.ticks >= 100 and healthy.max_gap_s() == pytest.approx(0.032 / 5.0)

    # ... and one stuck in a blocking call stops the ticks for as long as it is stuck (the
    # service watchdog then restarts the process)
    loop = VirtualTimeLoop()
    stuck = CountingTicker()
    runner = LiveRunner(config_from_dict({}), ReplaySource(DEMO, speed=5.0, clock=loop.time),
                        SileroModel(), ticker=stuck)
    runner.idle_tick_s = 0.05

    def hang(*_: Any) -> list[Any]:
        loop.advance(0.6)  # the loop is blocked for 0.6 s
        return []

    runner.engine.push = hang  # type: ignore[method-assign]
    virtual_time.run(_run_for(runner, 1.5), loop)
    assert 2 <= stuck.ticks <= 5
    assert min(stuck.gaps_s()) == pytest.approx(0.6)  # no tick while the loop was stuck


def test_the_service_watchdog_is_pinged_every_half_period_while_idle(tmp_path: Path) -> None:
    """WatchdogSec=30 (the unit): WATCHDOG=1 at least every 15 s plus one idle tick, over
    two minutes without audio, on virtual time, through a real notify socket."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify.sock"))
    loop = VirtualTimeLoop()
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
                                  "WATCHDOG_USEC": "30000000"}, clock=loop.time)
    pings: list[float] = []

    def received() -> None:  # a datagram is there as soon as it is sent: no time passes
        assert listener.recv(4096) == b"WATCHDOG=1"
        pings.append(loop.time())

    runner = LiveRunner(config_from_dict({}), SilentSource(), SileroModel(), ticker=notifier)
    runner.clock = loop.time

    async def main() -> None:
        loop.add_reader(listener.fileno(), received)
        await _run_for(runner, 120.0)
        loop.remove_reader(listener.fileno())

    try:
        virtual_time.run(main(), loop)
    finally:
        notifier.close()
        listener.close()
    assert notifier.sent == len(pings)
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert len(pings) >= 8 and all(15.0 <= g <= 15.0 + runner.idle_tick_s for g in gaps), gaps
    assert runner.analysis_age_s() is not None and runner.analysis_age_s() <= 1.0


# -- end to end: the real process under a real NOTIFY_SOCKET --------------------------------
def _recv_until(sock: socket.socket, needle: str, timeout_s: float, got: list[str]) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            msg = sock.recv(4096).decode()
        except TimeoutError:
            break
        got.append(msg)
        if needle in msg:
            return msg
    raise AssertionError(f"no {needle!r} within {timeout_s} s; got {got[-5:]}")


def _call_audio_s(port: int) -> float:
    """The call in progress's audio seconds, from the service's /healthz."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=HANG_S) as r:
            body = r.read()
    except urllib.error.HTTPError as exc:  # 503: unhealthy, the body says the same
        body = exc.read()
    return float(json.loads(body)["call_audio_s"])


def test_appliance_run_speaks_sd_notify_reloads_and_stops_cleanly(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    conf = tmp_path / "appliance.toml"
    conf.write_text('[dashboard]\nsnapshot_s = 0.5\n')
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env.update(NOTIFY_SOCKET=str(sock_path), WATCHDOG_USEC="1000000",
               STATE_DIRECTORY=str(state), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli.app", "run", "--config", str(conf), "--replay",
         str(DEMO), "--speed", "4", "--port", "0", "--no-asr"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    got: list[str] = []
    try:
        # each wait only bounds a hang (HANG_S): a slow machine makes the test slower
        ready = _recv_until(sock, "READY=1", HANG_S, got)
        assert "STATUS=Coaching call-1" in ready and f"MAINPID={proc.pid}" in ready
        port = int(re.search(r"dashboard http://127\.0\.0\.1:(\d+)/", ready)[1])  # type: ignore[index]
        _recv_until(sock, "WATCHDOG=1", HANG_S, got)
        # a broken config is refused: the box runs on and says so
        conf.write_text('[rate]\nmax_wpm = "fast"\n')
        proc.send_signal(signal.SIGHUP)
        _recv_until(sock, "RELOADING=1", HANG_S, got)
        refused = _recv_until(sock, "READY=1", HANG_S, got)
        assert "Reload refused (config.invalid)" in refused
        _recv_until(sock, "WATCHDOG=1", HANG_S, got)  # still alive and analysing
        conf.write_text('[rate]\nmax_wpm = 160.0\n[dashboard]\nport = 9999\n')
        proc.send_signal(signal.SIGHUP)
        _recv_until(sock, "RELOADING=1", HANG_S, got)
        ok = _recv_until(sock, "READY=1", HANG_S, got)
        assert "STATUS=Coaching call-1" in ok  # the same call goes on
        until_sync(lambda: _call_audio_s(port) > MIN_CALL_S + 0.5,
                   "a call long enough to be summarised")
        proc.send_signal(signal.SIGTERM)
        _recv_until(sock, "STOPPING=1", HANG_S, got)
        _, err = proc.communicate(timeout=HANG_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        sock.close()
    assert proc.returncode == 0, err
    assert "config reload refused" in err and "[rate] max_wpm" in err
    assert "apply only after a restart (systemctl restart appliance): dashboard.port" in err
    # the call in progress at SIGTERM was summarised into the state directory
    db = state / "summaries.sqlite3"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        rows = con.execute("SELECT call_id, duration_s, language FROM calls").fetchall()
    assert len(rows) == 1 and rows[0][0] == "call-1" and rows[0][2] == "en"
    # nothing but the summary database and the call number under the state directory
    files = sorted(p.name for p in state.rglob("*") if p.is_file())
    assert all(f.startswith("summaries.sqlite3") or f == "desk-call-number"
               for f in files), files
    assert (state / "desk-call-number").read_text(encoding="ascii") == "1\n"


class SlowFinishAsr:
    """A recognizer whose final flush takes a while (a long utterance being decoded): it
    returns once :meth:`done` says so (by default at once)."""

    def tap(self, ctx: Any, window: Any) -> None:
        pass

    def poll(self) -> list[Any]:
        return []

    def done(self) -> bool:
        return True

    def finish(self, timeout_s: float | None = None) -> list[Any]:
        until_sync(self.done, "the end of the recognizer's flush")
        return []

    def stats(self) -> dict[str, Any]:
        return {"slow": True}


def test_ending_a_call_never_stalls_the_analysis_of_the_next() -> None:
    archive = FakeArchive()
    runner: LiveRunner
    during_flush: list[float] = []
    at_start: list[float] = []

    class SlowFlush(SlowFinishAsr):
        """The first call's flush lasts until the next call has 2 s of audio analysed: it
        never ends (the test fails as hung) if the flush stalls the analysis."""

        def done(self) -> bool:
            return runner.engine.t_s >= at_start[0] + 2.0

        def finish(self, timeout_s: float | None = None) -> list[Any]:
            at_start.append(runner.engine.t_s)
            out = super().finish(timeout_s)
            during_flush.append(runner.engine.t_s - at_start[0])  # call 2's audio meanwhile
            return out

    source = ScriptedSource([(8.0, lambda: runner.end_call())])
    runner = LiveRunner(config_from_dict({}), source, SileroModel(), make_asr=SlowFlush,
                        archive=archive)  # type: ignore[arg-type]
    asyncio.run(runner.run())
    # the first call's flush ran in a thread: the next call was analysed meanwhile
    assert during_flush[0] >= 2.0
    assert [r.call_id for r in archive.records] == ["call-1", "call-2"]
    assert archive.records[0].summary["data"]["asr"] == {"slow": True}
    assert archive.records[0].ended_at <= archive.records[1].started_at


class RecordingNotifier:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def ready(self, status: str) -> bool:
        self.sent.append(("ready", status))
        return True

    def status(self, text: str) -> bool:
        self.sent.append(("status", text))
        return True

    def tick(self) -> None:
        pass


def _service(source: Any, notifier: RecordingNotifier) -> Any:
    import argparse

    from appliance.cli.run import Service

    cfg = config_from_dict({"audio": {"device": "USB Headset"}})
    args = argparse.Namespace(host=None, port=None, replay=None, log_level=None)
    runner = LiveRunner(cfg, source, SileroModel())
    return Service(args, cfg, None, runner, notifier, FakeArchive())  # type: ignore[arg-type]


def _on_virtual_time(service: Any, loop: VirtualTimeLoop) -> None:
    service.clock = loop.time
    service.started_s = loop.time()


def test_ready_waits_for_audio_then_degrades_instead_of_a_restart_loop() -> None:
    notifier = RecordingNotifier()
    service = _service(SilentSource(), notifier)
    loop = VirtualTimeLoop()
    _on_virtual_time(service, loop)

    async def go() -> None:
        task = asyncio.create_task(service._readiness())
        await asyncio.sleep(NO_AUDIO_READY_S - 0.2)
        assert [k for k, _ in notifier.sent] == ["status"]  # not READY without audio ...
        await asyncio.sleep(0.4)
        task.cancel()

    virtual_time.run(go(), loop)
    kind, text = notifier.sent[1]
    assert kind == "ready" and text.startswith("Degraded: Waiting for audio from USB Headset")
    assert "appliance doctor" in text

    flowing = SilentSource()
    flowing.flowing = True
    notifier = RecordingNotifier()
    service = _service(flowing, notifier)
    loop = VirtualTimeLoop()
    _on_virtual_time(service, loop)

    async def go2() -> None:
        task = asyncio.create_task(service._readiness())
        await asyncio.sleep(0.2)
        task.cancel()

    virtual_time.run(go2(), loop)
    assert notifier.sent[1][0] == "ready" and notifier.sent[1][1].startswith("Coaching call-1")


class OrderedNotifier(RecordingNotifier):
    def stopping(self, status: str) -> bool:
        self.sent.append(("stopping", status))
        return True

    def reloading(self) -> bool:
        self.sent.append(("reloading", ""))
        return True


class OrderedArchive(FakeArchive):
    def __init__(self, notifier: OrderedNotifier) -> None:
        super().__init__()
        self.notifier = notifier

    def record(self, rec: CallRecord) -> None:
        self.notifier.sent.append(("archived", rec.call_id))
        super().record(rec)


def test_a_second_sigterm_does_not_cut_short_the_saving_of_the_call(
        caplog: pytest.LogCaptureFixture) -> None:
    import argparse

    from appliance.cli.run import Service

    notifier = OrderedNotifier()
    archive = OrderedArchive(notifier)
    flushing, second_seen = threading.Event(), threading.Event()

    class HeldFlush(SlowFinishAsr):
        def done(self) -> bool:  # the flush goes on until the second SIGTERM was handled
            flushing.set()
            return second_seen.is_set()

    cfg = config_from_dict({"dashboard": {"enabled": False}})
    runner = LiveRunner(cfg, ReplaySource(DEMO, speed=10.0), SileroModel(),
                        make_asr=HeldFlush, archive=archive)  # type: ignore[arg-type]
    args = argparse.Namespace(host=None, port=None, replay=DEMO, log_level=None)
    service = Service(args, cfg, None, runner, notifier, archive)  # type: ignore[arg-type]

    async def go() -> None:
        serving = asyncio.create_task(service.serve())
        await until(lambda: runner.engine.t_s > MIN_CALL_S + 0.5, "a call worth saving")
        os.kill(os.getpid(), signal.SIGTERM)
        await until(flushing.is_set, "the recognizer's flush")
        os.kill(os.getpid(), signal.SIGTERM)
        await until(lambda: "already stopping" in caplog.text, "the second SIGTERM")
        second_seen.set()
        await serving

    with caplog.at_level(logging.WARNING, logger="appliance.cli.run"):
        asyncio.run(go())
    kinds = [k for k, _ in notifier.sent]
    assert kinds.count("stopping") == 1
    assert kinds.index("stopping") < kinds.index("archived")  # STOPPING while it saves
    assert [r.call_id for r in archive.records] == ["call-1"]


def test_a_reload_that_breaks_unexpectedly_still_says_ready(monkeypatch) -> None:
    notifier = OrderedNotifier()
    service = _service(SilentSource(), notifier)

    def boom(*_: Any, **__: Any) -> Any:
        raise RuntimeError("unexpected")

    monkeypatch.setattr("appliance.cli.run.load_config", boom)
    assert service.reload() is False
    assert [k for k, _ in notifier.sent] == ["reloading", "ready"]
    assert "previous configuration" in notifier.sent[-1][1]


def test_pressing_end_again_before_the_next_call_has_audio_stores_no_empty_call() -> None:
    import numpy as np

    from appliance.stream.blocks import PartyBlock

    archive = FakeArchive()
    runner = LiveRunner(config_from_dict({}), SilentSource(), SileroModel(),
                        archive=archive)  # type: ignore[arg-type]
    zeros = np.zeros(512, np.int16)

    async def blocks(n: int) -> None:
        for _ in range(n):
            await runner.queue.put(PartyBlock(0.0, zeros, zeros))
        await until(lambda: not runner.queue.qsize(), "analysed before the next key press")

    async def go() -> None:
        task = asyncio.create_task(runner.analyse())
        await blocks(100)  # 3.2 s of call 1
        for _ in range(3):  # End, End, End: each with one block in between
            runner.end_call()
            runner.hold_key("hold_start")
            await blocks(1)
        await runner.queue.put(None)
        await task
        await asyncio.gather(*runner._closing)

    asyncio.run(go())
    assert [r.call_id for r in archive.records] == ["call-1"]
    assert runner.calls == 2 and runner.queue.dropped == 0
