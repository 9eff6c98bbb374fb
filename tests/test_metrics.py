"""/metrics is built by prometheus_client from collectors that read the live figures at
scrape time: the names that existed as hand-written text keep their names and meanings, each
has help, a server's registry is its own, and per-worker figures carry a ``worker`` label."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from appliance.sinks.dashboard.server import DashboardServer
from appliance.sinks.metrics import (
    DashboardCollector,
    Figure,
    RunnerCollector,
    WorkerCollector,
)


def samples(text: str) -> dict[str, float]:
    """Every sample of an exposition, keyed ``name`` or ``name{label="v",…}`` (labels
    sorted), parsed by the library's own parser."""
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[s.name + (f"{{{labels}}}" if labels else "")] = s.value
    return out


def scrape(*collectors: Collector) -> str:
    registry = CollectorRegistry()
    for c in collectors:
        registry.register(c)
    return generate_latest(registry).decode()


def helps(text: str) -> dict[str, tuple[str, str]]:
    """Family name -> (type, help)."""
    return {f.name: (f.type, f.documentation) for f in text_string_to_metric_families(text)}


class FakeSource:
    def __init__(self, blocks: int) -> None:
        self.blocks = blocks

    def stats(self) -> dict[str, Any]:
        return {"blocks": self.blocks}


class FakeRunner:
    """The figures a LiveRunner reports, each a different number so a swap shows."""

    def __init__(self, storage: dict[str, Any] | None) -> None:
        self.source = FakeSource(1234)
        self.calls = 7
        self.cue_counts: Counter[str] = Counter({"pace_fast": 2, "interruption": 5})
        self.storage = storage

    def health(self) -> dict[str, Any]:
        return {"healthy": False, "audio_flowing": True, "analysis_stalled": True,
                "queue_depth": 3, "queue_drops": 11, "input_overflows": 13, "reconnects": 2,
                "asr_dropped_blocks": 17, "model_loaded": False, "storage": self.storage}


STORAGE = {"ok": False, "pending": 4, "written": 40, "failed": 6, "dropped": 8, "restarts": 1}
OLD_NAMES = {  # the hand-written exposition's names and values for FakeRunner
    "appliance_healthy": 0, "appliance_audio_flowing": 1, "appliance_analysis_stalled": 1,
    "appliance_audio_blocks_total": 1234, "appliance_queue_depth": 3,
    "appliance_queue_drops_total": 11, "appliance_input_overflows_total": 13,
    "appliance_device_reconnects_total": 2, "appliance_asr_dropped_blocks_total": 17,
    "appliance_model_loaded": 0, "appliance_calls_total": 7,
    'appliance_cues_total{kind="interruption"}': 5, 'appliance_cues_total{kind="pace_fast"}': 2,
}
OLD_STORAGE = {"appliance_storage_ok": 0, "appliance_storage_pending": 4,
               "appliance_storage_written_total": 40, "appliance_storage_failed_total": 6,
               "appliance_storage_dropped_total": 8,
               "appliance_storage_writer_restarts_total": 1}


def test_the_runner_figures_keep_their_names_and_values() -> None:
    assert samples(scrape(RunnerCollector(FakeRunner(STORAGE)))) == OLD_NAMES | OLD_STORAGE
    # without an archive there are no storage figures (not zeros that look like a store)
    assert samples(scrape(RunnerCollector(FakeRunner(None)))) == OLD_NAMES


def test_every_family_has_help_and_its_type() -> None:
    text = scrape(RunnerCollector(FakeRunner(STORAGE)),
                  DashboardCollector(DashboardServer("127.0.0.1", 0)))
    fams = helps(text)
    assert all(doc for _, doc in fams.values()), fams
    assert fams["appliance_healthy"][0] == "gauge"
    assert fams["appliance_queue_drops"][0] == "counter"  # exposed as ..._total
    assert fams["appliance_cues"][0] == "counter"
    assert "10 s" in fams["appliance_analysis_stalled"][1]
    assert "# TYPE appliance_calls_total counter\n" in text  # the names in the text itself
    assert "appliance_calls_total 7.0\n" in text


def test_figures_are_read_at_scrape_time() -> None:
    runner = FakeRunner(None)
    registry = CollectorRegistry()
    registry.register(RunnerCollector(runner))
    assert samples(generate_latest(registry).decode())["appliance_calls_total"] == 7
    runner.calls = 8
    runner.cue_counts["hold_started"] += 1
    got = samples(generate_latest(registry).decode())
    assert got["appliance_calls_total"] == 8
    assert got['appliance_cues_total{kind="hold_started"}'] == 1


def test_the_dashboard_figures() -> None:
    srv = DashboardServer("127.0.0.1", 0)
    srv.publish({"kind": "interruption", "t": 1.0})
    srv.dropped = 3
    assert samples(generate_latest(srv.registry).decode()) == {
        "appliance_dashboard_clients": 0, "appliance_dashboard_dropped_total": 3,
        "appliance_dashboard_published_total": 1, "appliance_dashboard_views": 0,
        "appliance_dashboard_views_evicted_total": 0}


def test_each_server_has_its_own_registry() -> None:
    a = DashboardServer("127.0.0.1", 0, collectors=[RunnerCollector(FakeRunner(None))])
    b = DashboardServer("127.0.0.1", 0)
    a.published, b.published = 5, 9
    assert samples(generate_latest(a.registry).decode())["appliance_dashboard_published_total"] == 5
    got_b = samples(generate_latest(b.registry).decode())
    assert got_b["appliance_dashboard_published_total"] == 9
    assert "appliance_calls_total" not in got_b
    # a second source of the same names is refused, not exposed twice
    with pytest.raises(ValueError, match="Duplicated"):
        a.registry.register(RunnerCollector(FakeRunner(None)))


def test_per_worker_figures_carry_a_worker_label() -> None:
    workers = [{"worker": 0, "calls": 3, "frames": 9000, "dropped_blocks": 2, "restarts": 0},
               {"worker": "1", "calls": 1, "frames": 2500, "dropped_blocks": 0, "restarts": 1,
                "busy": True}]
    srv = DashboardServer("127.0.0.1", 0)
    srv.registry.register(WorkerCollector(lambda: workers))
    text = generate_latest(srv.registry).decode()
    got = {k: v for k, v in samples(text).items() if k.startswith("appliance_worker_")}
    assert got == {
        'appliance_worker_calls{worker="0"}': 3,
        'appliance_worker_calls{worker="1"}': 1,
        'appliance_worker_frames_total{worker="0"}': 9000,
        'appliance_worker_frames_total{worker="1"}': 2500,
        'appliance_worker_dropped_blocks_total{worker="0"}': 2,
        'appliance_worker_dropped_blocks_total{worker="1"}': 0,
        'appliance_worker_restarts_total{worker="0"}': 0,
        'appliance_worker_restarts_total{worker="1"}': 1,
    }
    assert all(doc for _, doc in helps(text).values())
    # read at every scrape: a worker that restarted, one not reporting its frames
    workers[1] = {"worker": "1", "calls": 1, "restarts": 2}
    got = samples(generate_latest(srv.registry).decode())
    assert got['appliance_worker_restarts_total{worker="1"}'] == 2
    assert 'appliance_worker_frames_total{worker="1"}' not in got
    assert got['appliance_worker_frames_total{worker="0"}'] == 9000


def test_no_workers_no_samples() -> None:
    got = samples(scrape(WorkerCollector(lambda: [])))
    assert got == {}


def test_a_counter_figure_is_declared_with_its_exposed_name() -> None:
    with pytest.raises(ValueError, match="_total"):
        Figure("appliance_things", "counter", "Things.")
    with pytest.raises(ValueError, match="help"):
        Figure("appliance_things", "gauge", "")
