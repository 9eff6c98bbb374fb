"""Health tells the truth: a store that cannot be written, a writer thread that died and an
analysis loop that stopped turning show in the archive's health, /healthz (503), /metrics and
the STATUS line, never as a healthy-looking box that stores nothing."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from appliance.cli.run import Service
from appliance.config import config_from_dict
from appliance.engine.vad import SileroModel
from appliance.errors import STORE_UNAVAILABLE, ApplianceError
from appliance.sinks import archive as archive_mod
from appliance.sinks.archive import CallArchive
from appliance.sinks.dashboard.server import DashboardServer
from appliance.sinks.metrics import RunnerCollector
from appliance.sinks.store.summaries import SummaryStore, summaries_path
from appliance.stream.live import STALLED_AFTER_S, LiveRunner
from appliance.stream.record import CallRecord
from tests.test_dashboard import get
from tests.test_metrics import samples, scrape
from tests.waiting import HANG_S, until_sync

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _record(i: int) -> CallRecord:
    return CallRecord(f"call-{i}", "en", T0 + timedelta(minutes=i),
                      T0 + timedelta(minutes=i, seconds=90),
                      {"kind": "summary", "t": 90.0, "data": {"duration_s": 90.0}})


def _archive(state: Path) -> CallArchive:
    cfg = config_from_dict({"storage": {"state_dir": str(state)}})
    return CallArchive(cfg.storage, {})


def _send(archive: CallArchive, rec: CallRecord) -> None:
    archive._n_sent = getattr(archive, "_n_sent", 0) + 1
    archive.record(rec)
    until_sync(lambda: archive.written + archive.failed + archive.dropped >= archive._n_sent,
               "the archive writer took the call")


def test_a_damaged_store_is_failing_until_it_is_moved_aside(tmp_path: Path) -> None:
    db = summaries_path(tmp_path)
    db.write_bytes(b"this is not a database" * 300)
    archive = _archive(tmp_path)
    archive.start()
    try:
        _send(archive, _record(1))
        h = archive.health()
        assert h["state"] == "failing" and h["ok"] is False
        assert h["last_error"] == "store.corrupt" and h["last_write_ok"] is False
        assert archive.written == 0 and archive.failed == 1  # not counted as kept
        db.rename(db.with_suffix(".damaged"))  # what the error message tells the operator
        _send(archive, _record(2))
        h = archive.health()
        assert h["state"] == "ok" and h["last_error"] is None and h["written"] == 1
        assert h["last_write_at"] is not None
    finally:
        archive.close()
    with SummaryStore.open_readonly(db) as store:
        assert [r["call_id"] for r in store.export()] == ["call-2"]


def test_a_failed_write_makes_the_store_failing(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def full(self: SummaryStore, *a: Any, **kw: Any) -> int:
        raise ApplianceError(STORE_UNAVAILABLE, "database or disk is full")

    archive = _archive(tmp_path)
    archive.start()
    try:
        _send(archive, _record(1))
        assert archive.health()["state"] == "ok"
        monkeypatch.setattr(SummaryStore, "add", full)
        _send(archive, _record(2))
        h = archive.health()
        assert (h["state"], h["last_error"], h["written"], h["failed"]) == (
            "failing", STORE_UNAVAILABLE, 1, 1)
    finally:
        archive.close()


def test_a_writer_that_dies_is_restarted_then_reported_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deaths = {"n": 1}
    real_open = CallArchive._open

    def buggy_open(self: CallArchive) -> None:
        if deaths["n"] > 0:
            deaths["n"] -= 1
            raise RuntimeError("a bug in the writer")
        real_open(self)

    monkeypatch.setattr(CallArchive, "_open", buggy_open)
    archive = _archive(tmp_path)
    archive.start()
    assert archive._thread is not None
    archive._thread.join(5)
    _send(archive, _record(1))  # the dead writer is restarted and the call is kept
    assert archive.restarts == 1 and archive.written == 1
    assert archive.health()["state"] == "ok"

    deaths["n"] = 99  # now it dies every time
    archive._store.close()
    archive._store = None
    archive._q.put(None)  # make the live writer leave its loop, as a crash would
    archive._thread.join(HANG_S)
    for _ in range(archive_mod.MAX_RESTARTS):
        h = archive.health()
        archive._thread.join(HANG_S)
    h = archive.health()
    assert h["state"] == "stopped" and h["ok"] is False and h["writer_alive"] is False
    assert h["restarts"] == archive_mod.MAX_RESTARTS
    archive.record(_record(2))
    assert archive.dropped == 1  # counted, not silently ignored
    archive.close(timeout_s=1)


def test_storage_off_is_healthy() -> None:
    cfg = config_from_dict({"storage": {"summaries": False, "transcripts": False}})
    h = CallArchive(cfg.storage, {}).health()
    assert h["state"] == "off" and h["ok"] is True


class StillSource:
    flowing = True

    async def run(self, queue: Any) -> None:
        await asyncio.sleep(3600)

    def stats(self) -> dict[str, Any]:
        return {"blocks": 0}


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_stalled_analysis_loop_is_unhealthy_everywhere(tmp_path: Path) -> None:
    clock = Clock()
    archive = _archive(tmp_path)
    runner = LiveRunner(config_from_dict({}), StillSource(), SileroModel(), archive=archive)
    runner.clock = clock
    h = runner.health()
    assert h["healthy"] and h["analysis_age_s"] is None and h["asr_dropped_blocks"] == 0

    runner._loop_at = clock.t  # the loop turned ...
    clock.t += STALLED_AFTER_S - 1
    assert runner.health()["healthy"]
    clock.t += 2  # ... and then not for longer than STALLED_AFTER_S
    h = runner.health()
    assert not h["healthy"] and h["analysis_stalled"] and h["problems"] == ["analysis.stalled"]
    got = samples(scrape(RunnerCollector(runner)))
    assert got["appliance_healthy"] == 0 and got["appliance_analysis_stalled"] == 1
    assert got["appliance_storage_ok"] == 1

    args = argparse.Namespace(host=None, port=None, replay=None, log_level=None)
    service = Service(args, runner.cfg, None, runner, None, archive)  # type: ignore[arg-type]
    assert service.status_line().startswith("ANALYSIS STALLED (11 s); Coaching call-1")

    async def served() -> tuple[int, dict[str, Any], dict[str, float]]:
        srv = DashboardServer("127.0.0.1", 0, health=runner.health,
                              collectors=[RunnerCollector(runner)])
        await srv.start()
        try:
            st, _, body = await get(srv.port, "/healthz")
            metrics = samples((await get(srv.port, "/metrics"))[2].decode())
        finally:
            await srv.stop()
        return st, json.loads(body), metrics

    st, body, metrics = asyncio.run(served())
    assert st == 503 and body["problems"] == ["analysis.stalled"]
    assert metrics["appliance_healthy"] == 0 and metrics["appliance_analysis_stalled"] == 1
    runner._loop_at = clock.t  # it turns again: healthy again
    assert runner.health()["healthy"]


def test_a_failing_store_shows_in_healthz_metrics_and_status(tmp_path: Path) -> None:
    summaries_path(tmp_path).write_bytes(b"\0garbage" * 1000)
    archive = _archive(tmp_path)
    runner = LiveRunner(config_from_dict({}), StillSource(), SileroModel(), archive=archive)
    archive.start()
    try:
        # the writer tries to open it at start
        until_sync(lambda: archive.last_error is not None, "the writer's first try")
        h = runner.health()
        assert not h["healthy"] and h["problems"] == ["storage.failing"]
        assert h["storage"]["last_error"] == "store.corrupt"
        got = samples(scrape(RunnerCollector(runner)))
        assert got["appliance_storage_ok"] == 0 and got["appliance_healthy"] == 0
        args = argparse.Namespace(host=None, port=None, replay=None, log_level=None)
        service = Service(args, runner.cfg, None, runner, None, archive)  # type: ignore[arg-type]
        assert service.status_line().startswith(
            "STORAGE FAILING: store.corrupt (summaries not kept); ")
    finally:
        archive.close()
