"""The live runner as a service: reload between calls, the call in progress kept at
shutdown, watchdog ticks from the analysis loop; and ``appliance run`` end to end under a
real NOTIFY_SOCKET (READY, WATCHDOG, STATUS, RELOADING, STOPPING, SIGHUP, SIGTERM)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from appliance.audio.replay import ReplaySource
from appliance.config import config_from_dict
from appliance.engine.vad import SileroModel
from appliance.stream.live import LiveRunner
from appliance.stream.record import CallRecord
from tests.scripted import ScriptedSource

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "appliance" / "demo" / "demo_call.wav"


class FakeArchive:
    keeps_transcripts = False

    def __init__(self) -> None:
        self.records: list[CallRecord] = []

    def record(self, rec: CallRecord) -> None:
        self.records.append(rec)


class CountingTicker:
    def __init__(self) -> None:
        self.ticks = 0
        self.at: list[float] = []

    def tick(self) -> None:
        self.ticks += 1
        self.at.append(time.monotonic())

    def max_gap_s(self) -> float:
        return max(b - a for a, b in zip(self.at, self.at[1:], strict=False))


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
    archive = FakeArchive()
    runner = LiveRunner(config_from_dict({}), ReplaySource(DEMO, speed=1.0), SileroModel(),
                        archive=archive)  # type: ignore[arg-type]
    asyncio.run(_run_for(runner, 0.3))
    assert archive.records == []


class SilentSource:
    flowing = False

    async def run(self, queue) -> None:
        await asyncio.sleep(3600)

    def stats(self) -> dict[str, Any]:
        return {}


def test_the_watchdog_is_ticked_while_waiting_for_audio_but_not_by_a_stuck_loop() -> None:
    ticker = CountingTicker()
    runner = LiveRunner(config_from_dict({}), SilentSource(), SileroModel(), ticker=ticker)
    runner.idle_tick_s = 0.05
    asyncio.run(_run_for(runner, 0.5))
    assert 5 <= ticker.ticks <= 12 and ticker.max_gap_s() < 0.35

    # an engine stuck in a blocking call stops the ticks for as long as it is stuck (the
    # service watchdog then restarts the process); a healthy one ticks every block
    healthy = CountingTicker()
    runner = LiveRunner(config_from_dict({}), ReplaySource(DEMO, speed=5.0), SileroModel(),
                        ticker=healthy)
    asyncio.run(_run_for(runner, 0.7))
    assert healthy.ticks > 50 and healthy.max_gap_s() < 0.35
    stuck = CountingTicker()
    runner = LiveRunner(config_from_dict({}), ReplaySource(DEMO, speed=5.0), SileroModel(),
                        ticker=stuck)
    runner.idle_tick_s = 0.05

    def hang(*_: Any) -> list[Any]:
        time.sleep(0.6)
        return []

    runner.engine.push = hang  # type: ignore[method-assign]
    asyncio.run(_run_for(runner, 1.5))
    assert stuck.max_gap_s() >= 0.55 and stuck.ticks <= 5


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
        ready = _recv_until(sock, "READY=1", 30, got)
        assert "STATUS=Coaching call-1" in ready and f"MAINPID={proc.pid}" in ready
        _recv_until(sock, "WATCHDOG=1", 3, got)
        # a broken config is refused: the box runs on and says so
        conf.write_text('[rate]\nmax_wpm = "fast"\n')
        proc.send_signal(signal.SIGHUP)
        _recv_until(sock, "RELOADING=1", 5, got)
        refused = _recv_until(sock, "READY=1", 5, got)
        assert "Reload refused (config.invalid)" in refused
        _recv_until(sock, "WATCHDOG=1", 3, got)  # still alive and analysing
        conf.write_text('[rate]\nmax_wpm = 160.0\n[dashboard]\nport = 9999\n')
        proc.send_signal(signal.SIGHUP)
        _recv_until(sock, "RELOADING=1", 5, got)
        ok = _recv_until(sock, "READY=1", 5, got)
        assert "STATUS=Coaching call-1" in ok  # the same call goes on
        time.sleep(3.0)  # > 1 s of call audio at 4x
        proc.send_signal(signal.SIGTERM)
        _recv_until(sock, "STOPPING=1", 10, got)
        _, err = proc.communicate(timeout=30)
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
    # nothing but the summary database under the state directory: no audio
    files = sorted(p.name for p in state.rglob("*") if p.is_file())
    assert all(f.startswith("summaries.sqlite3") for f in files), files


class SlowFinishAsr:
    """A recognizer whose final flush takes a while (a long utterance being decoded)."""

    def tap(self, ctx: Any, window: Any) -> None:
        pass

    def poll(self) -> list[Any]:
        return []

    def finish(self, timeout_s: float | None = None) -> list[Any]:
        time.sleep(1.0)
        return []

    def stats(self) -> dict[str, Any]:
        return {"slow": True}


def test_ending_a_call_never_stalls_the_analysis_of_the_next() -> None:
    archive = FakeArchive()
    runner: LiveRunner
    during_flush: list[float] = []

    class SlowFlush(SlowFinishAsr):
        def finish(self, timeout_s: float | None = None) -> list[Any]:
            at_start = runner.engine.t_s
            out = super().finish(timeout_s)
            during_flush.append(runner.engine.t_s - at_start)  # call 2's audio meanwhile
            return out

    source = ScriptedSource([(8.0, lambda: runner.end_call())])
    runner = LiveRunner(config_from_dict({}), source, SileroModel(), make_asr=SlowFlush,
                        archive=archive)  # type: ignore[arg-type]
    asyncio.run(runner.run())
    # the first call's 1 s flush ran in a thread: the next call was analysed meanwhile
    assert during_flush[0] > 1.0
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


def test_ready_waits_for_audio_then_degrades_instead_of_a_restart_loop() -> None:
    notifier = RecordingNotifier()
    service = _service(SilentSource(), notifier)
    service.no_audio_ready_s = 0.3

    async def go() -> None:
        task = asyncio.create_task(service._readiness())
        await asyncio.sleep(0.2)
        assert [k for k, _ in notifier.sent] == ["status"]  # not READY without audio ...
        await asyncio.sleep(0.3)
        task.cancel()

    asyncio.run(go())
    kind, text = notifier.sent[1]
    assert kind == "ready" and text.startswith("Degraded: Waiting for audio from USB Headset")
    assert "appliance doctor" in text

    flowing = SilentSource()
    flowing.flowing = True
    notifier = RecordingNotifier()
    service = _service(flowing, notifier)

    async def go2() -> None:
        task = asyncio.create_task(service._readiness())
        await asyncio.sleep(0.2)
        task.cancel()

    asyncio.run(go2())
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


def test_a_second_sigterm_does_not_cut_short_the_saving_of_the_call() -> None:
    import argparse

    from appliance.cli.run import Service

    notifier = OrderedNotifier()
    archive = OrderedArchive(notifier)
    cfg = config_from_dict({"dashboard": {"enabled": False}})
    runner = LiveRunner(cfg, ReplaySource(DEMO, speed=10.0), SileroModel(),
                        make_asr=SlowFinishAsr, archive=archive)  # type: ignore[arg-type]
    args = argparse.Namespace(host=None, port=None, replay=DEMO, log_level=None)
    service = Service(args, cfg, None, runner, notifier, archive)  # type: ignore[arg-type]

    async def go() -> None:
        serving = asyncio.create_task(service.serve())
        await asyncio.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.3)  # the recognizer's 1 s flush is under way
        os.kill(os.getpid(), signal.SIGTERM)
        await serving

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
        for _ in range(1000):  # analysed before the next key press
            if not runner.queue.qsize():
                break
            await asyncio.sleep(0.01)

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
