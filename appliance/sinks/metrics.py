"""``/metrics``: the service's figures for Prometheus, read when they are scraped.

Each source of figures is a collector (``prometheus_client``'s ``Collector``): its
``collect()`` reads the live values (the runner's health, the source's and the queue's
counters, the archive's storage, the dashboard's pages) and yields metric families; nothing
is copied into the library's own counters between scrapes.  The dashboard server keeps a
:class:`~prometheus_client.CollectorRegistry` of its own, never the library's global one, so
two servers (or two tests) never share figures; more sources are registered on it later
(``server.registry.register(...)``): a pool of analysis workers adds a
:class:`WorkerCollector`, whose figures carry a ``worker`` label.

Every figure is declared once as a :class:`Figure` (its exposed name, type and help); each
collector's ``describe()`` lists its figures, so the registry refuses a second collector
that would expose the same names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from appliance.stream.live import STALLED_AFTER_S


@dataclass(frozen=True, slots=True)
class Figure:
    """One metric family: ``name`` as exposed (a counter's ends in ``_total``: the library
    adds that suffix to counter families, so it is declared here and stripped on the way
    in), its type and its help text."""

    name: str
    kind: Literal["gauge", "counter"]
    help: str

    def __post_init__(self) -> None:
        if self.kind == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter {self.name} must end in _total")
        if not self.help:
            raise ValueError(f"{self.name} needs a help text")

    def family(self, labels: Sequence[str] = ()) -> GaugeMetricFamily | CounterMetricFamily:
        """An empty family of this figure with these label names."""
        if self.kind == "counter":
            return CounterMetricFamily(self.name, self.help, labels=labels)
        return GaugeMetricFamily(self.name, self.help, labels=labels)

    def value(self, v: float) -> GaugeMetricFamily | CounterMetricFamily:
        """The family with its one, unlabelled sample."""
        fam = self.family()
        fam.add_metric([], float(v))
        return fam


def _g(name: str, help_: str) -> Figure:
    return Figure(name, "gauge", help_)


def _c(name: str, help_: str) -> Figure:
    return Figure(name, "counter", help_)


# -- the live runner (the desk's calls) -----------------------------------------------------
HEALTHY = _g("appliance_healthy", "0 when something inside the box has stopped "
             "(the analysis loop, the storage of summaries: see /healthz problems).")
AUDIO_FLOWING = _g("appliance_audio_flowing", "1 while audio arrives from the source.")
ANALYSIS_STALLED = _g("appliance_analysis_stalled", "1 when the analysis loop has not "
                      f"turned for {STALLED_AFTER_S:g} s.")
AUDIO_BLOCKS = _c("appliance_audio_blocks_total", "Audio blocks the source has delivered.")
QUEUE_DEPTH = _g("appliance_queue_depth", "Audio blocks waiting for the analysis loop.")
QUEUE_DROPS = _c("appliance_queue_drops_total",
                 "Audio blocks dropped because the analysis queue was full.")
INPUT_OVERFLOWS = _c("appliance_input_overflows_total",
                     "Input overflows reported by the audio device.")
RECONNECTS = _c("appliance_device_reconnects_total", "Times the audio device was reopened.")
ASR_DROPPED = _c("appliance_asr_dropped_blocks_total", "Audio blocks the speech recognizer "
                 "of the call in progress dropped (it restarts from 0 with each call).")
MODEL_LOADED = _g("appliance_model_loaded", "1 when a speech model recognizes words.")
CALLS = _c("appliance_calls_total",
           "Calls started since the service started, the one in progress included.")
CUES = _c("appliance_cues_total", "Cues and summaries sent, by kind.")
STORAGE_OK = _g("appliance_storage_ok", "0 when call summaries cannot be stored "
                "(see /healthz storage.last_error).")
STORAGE_PENDING = _g("appliance_storage_pending", "Call summaries waiting to be stored.")
STORAGE_WRITTEN = _c("appliance_storage_written_total", "Call summaries stored.")
STORAGE_FAILED = _c("appliance_storage_failed_total",
                    "Call summaries that could not be stored.")
STORAGE_DROPPED = _c("appliance_storage_dropped_total", "Call summaries not kept: the "
                     "storage queue was full or its writer had stopped.")
STORAGE_RESTARTS = _c("appliance_storage_writer_restarts_total",
                      "Times the storage writer thread was restarted after a failure.")
RUNNER_FIGURES = (HEALTHY, AUDIO_FLOWING, ANALYSIS_STALLED, AUDIO_BLOCKS, QUEUE_DEPTH,
                  QUEUE_DROPS, INPUT_OVERFLOWS, RECONNECTS, ASR_DROPPED, MODEL_LOADED, CALLS,
                  STORAGE_OK, STORAGE_PENDING, STORAGE_WRITTEN, STORAGE_FAILED,
                  STORAGE_DROPPED, STORAGE_RESTARTS, CUES)


class _Stats(Protocol):
    def stats(self) -> dict[str, Any]: ...


class Runner(Protocol):
    """What the collector reads of the live runner (``appliance.stream.live.LiveRunner``)."""

    @property
    def source(self) -> _Stats: ...

    @property
    def calls(self) -> int: ...

    @property
    def cue_counts(self) -> Mapping[str, int]: ...

    def health(self) -> dict[str, Any]: ...


class RunnerCollector(Collector):
    """The desk's figures: health, the source, the queue, the recognizer, calls, cues and,
    with an archive, its storage.  One ``health()`` per scrape, so ``appliance_healthy``
    and the storage figures agree with each other (and with /healthz at that moment)."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    def describe(self) -> Iterable[Metric]:
        return [f.family() for f in RUNNER_FIGURES]

    def collect(self) -> Iterator[Metric]:
        r = self._runner
        h = r.health()
        src = r.source.stats()
        yield HEALTHY.value(h["healthy"])
        yield AUDIO_FLOWING.value(h["audio_flowing"])
        yield ANALYSIS_STALLED.value(h["analysis_stalled"])
        yield AUDIO_BLOCKS.value(src.get("blocks", 0))
        yield QUEUE_DEPTH.value(h["queue_depth"])
        yield QUEUE_DROPS.value(h["queue_drops"])
        yield INPUT_OVERFLOWS.value(h["input_overflows"])
        yield RECONNECTS.value(h["reconnects"])
        yield ASR_DROPPED.value(h["asr_dropped_blocks"])
        yield MODEL_LOADED.value(h["model_loaded"])
        yield CALLS.value(r.calls)
        yield from _storage(h["storage"])
        yield _cues(r.cue_counts)


def _storage(st: Mapping[str, Any] | None) -> Iterator[Metric]:
    """The archive's figures; none without an archive (rather than made-up zeros)."""
    if st is None:
        return
    yield STORAGE_OK.value(st["ok"])
    yield STORAGE_PENDING.value(st["pending"])
    yield STORAGE_WRITTEN.value(st["written"])
    yield STORAGE_FAILED.value(st["failed"])
    yield STORAGE_DROPPED.value(st["dropped"])
    yield STORAGE_RESTARTS.value(st["restarts"])


def _cues(counts: Mapping[str, int]) -> Metric:
    cues = CUES.family(["kind"])
    for kind, n in sorted(counts.items()):
        cues.add_metric([kind], float(n))
    return cues


# -- the dashboard ---------------------------------------------------------------------------
DASHBOARD_CLIENTS = _g("appliance_dashboard_clients", "Connected dashboard pages.")
DASHBOARD_DROPPED = _c("appliance_dashboard_dropped_total", "Events dropped for slow pages.")
DASHBOARD_PUBLISHED = _c("appliance_dashboard_published_total", "Events published to pages.")
DASHBOARD_VIEWS = _g("appliance_dashboard_views", "Agents' views held (per-agent pages).")
DASHBOARD_VIEWS_EVICTED = _c("appliance_dashboard_views_evicted_total",
                             "Agents' views evicted, idle and without a page, to make room.")
DASHBOARD_FIGURES = (DASHBOARD_CLIENTS, DASHBOARD_DROPPED, DASHBOARD_PUBLISHED,
                     DASHBOARD_VIEWS, DASHBOARD_VIEWS_EVICTED)


class Dashboard(Protocol):
    """What the collector reads of the dashboard server."""

    @property
    def clients(self) -> int: ...

    @property
    def dropped(self) -> int: ...

    @property
    def published(self) -> int: ...

    @property
    def views(self) -> int: ...

    @property
    def views_evicted(self) -> int: ...


class DashboardCollector(Collector):
    """The dashboard's pages and the events sent to them."""

    def __init__(self, server: Dashboard) -> None:
        self._server = server

    def describe(self) -> Iterable[Metric]:
        return [f.family() for f in DASHBOARD_FIGURES]

    def collect(self) -> Iterator[Metric]:
        s = self._server
        yield DASHBOARD_CLIENTS.value(s.clients)
        yield DASHBOARD_DROPPED.value(s.dropped)
        yield DASHBOARD_PUBLISHED.value(s.published)
        yield DASHBOARD_VIEWS.value(s.views)
        yield DASHBOARD_VIEWS_EVICTED.value(s.views_evicted)


# -- analysis workers -------------------------------------------------------------------------
WORKER_FIGURES: dict[str, Figure] = {
    "alive": _g("appliance_worker_up", "1 while the analysis worker process runs."),
    "calls": _g("appliance_worker_calls", "Calls open on the worker now."),
    "calls_opened": _c("appliance_worker_calls_total", "Calls the worker has taken."),
    "frames": _c("appliance_worker_frames_total", "32 ms frames the worker has analysed."),
    "dropped_blocks": _c("appliance_worker_dropped_blocks_total",
                         "Audio blocks dropped because the worker's queue was full."),
    "restarts": _c("appliance_worker_restarts_total", "Times the worker was started again "
                   "after it died."),
    "queue_depth": _g("appliance_worker_queue_depth", "Messages waiting for the worker."),
    "cpu_s": _c("appliance_worker_cpu_seconds_total", "CPU seconds the worker has used."),
    "rss_peak_mib": _g("appliance_worker_memory_peak_mib", "The worker's peak memory, MiB."),
    "asr_dropped_agent": _c("appliance_worker_asr_dropped_agent_total", "Agent audio blocks "
                            "the worker's recognizer pool dropped (it was behind)."),
    "asr_dropped_customer": _c("appliance_worker_asr_dropped_customer_total", "Customer "
                               "audio blocks the worker's recognizer pool dropped (it was "
                               "behind; customer audio goes first)."),
}
"""A worker's stats key -> its figure (label ``worker``)."""


class WorkerCollector(Collector):
    """Per-worker figures: ``stats()`` returns one mapping per worker, with its ``worker``
    id and the keys of :data:`WORKER_FIGURES` (e.g. ``{"worker": "1", "calls": 3,
    "frames": 9000, "dropped_blocks": 0, "restarts": 1}``: what
    :meth:`appliance.stream.shards.ShardPool.stats` gives).  A figure a worker does not report is
    left out for that worker (absent, not a made-up 0); other keys are ignored."""

    def __init__(self, stats: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        self._stats = stats

    def describe(self) -> Iterable[Metric]:
        return [f.family(["worker"]) for f in WORKER_FIGURES.values()]

    def collect(self) -> Iterator[Metric]:
        workers = list(self._stats())
        for key, fig in WORKER_FIGURES.items():
            fam = fig.family(["worker"])
            for w in workers:
                if key in w:
                    fam.add_metric([str(w["worker"])], float(w[key]))
            yield fam


# -- the PBX tap -----------------------------------------------------------------------------
TAP_CALLS_OPEN = _g("appliance_tap_calls_open", "Tap calls open now.")
TAP_CALLS = _c("appliance_tap_calls_total", "Tap calls started since the service started.")
TAP_ANNOUNCED = _g("appliance_tap_calls_announced", "Calls announced through the control "
                   "API whose audio has not come yet.")
TAP_DROPPED = _c("appliance_tap_dropped_blocks_total", "Tap audio blocks the analysis "
                 "workers could not take (their queues were full).")
TAP_LISTENER = _c("appliance_tap_listener_total", "The listeners' counters (connections, "
                  "packets, frames, bytes, malformed, refused, lost...), by listener and "
                  "counter.")
TAP_LISTENER_OPEN = _g("appliance_tap_listener_open", "Streams or connections open now, "
                       "by listener.")
TAP_FIGURES = (HEALTHY, TAP_CALLS_OPEN, TAP_CALLS, TAP_ANNOUNCED, TAP_DROPPED, TAP_LISTENER,
               TAP_LISTENER_OPEN, CUES, STORAGE_OK, STORAGE_PENDING, STORAGE_WRITTEN,
               STORAGE_FAILED, STORAGE_DROPPED, STORAGE_RESTARTS)


class TapCollector(Collector):
    """The PBX tap's figures.  ``read()`` returns one mapping (what
    :meth:`appliance.service.tap_service.TapService.figures` gives): ``healthy``,
    ``calls_open``, ``calls``, ``announced``, ``dropped_blocks``, ``cues`` (kind → count),
    ``storage`` (the archive's health, or None) and ``listeners`` (name → its ``stats()``:
    numbers; the key ``open`` is the gauge, every other number a counter)."""

    def __init__(self, read: Callable[[], Mapping[str, Any]]) -> None:
        self._read = read

    def describe(self) -> Iterable[Metric]:
        return [f.family() for f in TAP_FIGURES]

    def collect(self) -> Iterator[Metric]:
        f = self._read()
        yield HEALTHY.value(f["healthy"])
        yield TAP_CALLS_OPEN.value(f["calls_open"])
        yield TAP_CALLS.value(f["calls"])
        yield TAP_ANNOUNCED.value(f["announced"])
        yield TAP_DROPPED.value(f["dropped_blocks"])
        counters, opened = TAP_LISTENER.family(["listener", "counter"]), \
            TAP_LISTENER_OPEN.family(["listener"])
        for name, stats in sorted(f["listeners"].items()):
            for key, v in sorted(stats.items()):
                if isinstance(v, bool) or not isinstance(v, int | float):
                    continue
                if key == "open":
                    opened.add_metric([name], float(v))
                else:
                    counters.add_metric([name, key], float(v))
        yield counters
        yield opened
        yield _cues(f["cues"])
        yield from _storage(f.get("storage"))
