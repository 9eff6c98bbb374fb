"""``/metrics`` of the console: the ingest's counters and the store's state, read when
scraped (see :mod:`appliance.sinks.metrics` for the conventions)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from appliance.sinks.metrics import Figure

RECEIVED = Figure("appliance_console_messages_received_total", "counter",
                  "Messages the broker delivered to the console (duplicates and bad included).")
STORED = Figure("appliance_console_messages_stored_total", "counter",
                "Messages new to the central store.")
DUPLICATES = Figure("appliance_console_duplicates_total", "counter",
                    "Messages already stored (same id: a redelivery or a box's resend).")
BAD = Figure("appliance_console_bad_messages_total", "counter",
             "Messages the fleet contract refused (counted and dropped).")
QUEUE_WAITS = Figure("appliance_console_queue_waits_total", "counter",
                     "Times the receive queue was full and the broker had to wait.")
STORE_ERRORS = Figure("appliance_console_store_errors_total", "counter",
                      "Batches the central store failed to take (retried).")
CONNECTS = Figure("appliance_console_broker_connects_total", "counter",
                  "Successful connections to the broker.")
QUEUE_DEPTH = Figure("appliance_console_queue_depth", "gauge",
                     "Messages received and not yet stored.")
LAG = Figure("appliance_console_ingest_lag_seconds", "gauge",
             "Receive-to-commit seconds of the oldest message of the last batch.")
CONNECTED = Figure("appliance_console_broker_connected", "gauge",
                   "1 while the console is connected to the broker and subscribed.")
STORE_OK = Figure("appliance_console_store_ok", "gauge", "1 while the central store answers.")
BOXES = Figure("appliance_console_boxes", "gauge", "Boxes by state (online, offline, silent).")
LATENCY = Figure("appliance_console_event_latency_seconds", "gauge",
                 "Box clock to central-store commit, quantiles of the last messages stored.")
FIGURES = (RECEIVED, STORED, DUPLICATES, BAD, QUEUE_WAITS, STORE_ERRORS, CONNECTS, QUEUE_DEPTH,
           LAG, CONNECTED, STORE_OK, BOXES, LATENCY)
LATENCY_SAMPLE = 10_000


def quantile(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))] if s else 0.0


class ConsoleCollector(Collector):
    def __init__(self, stats: Callable[[], Mapping[str, Any]],
                 latencies: Callable[[], Sequence[float]],
                 boxes: Callable[[], Mapping[str, int]]) -> None:
        self._stats, self._latencies, self._boxes = stats, latencies, boxes

    def describe(self) -> Iterable[Metric]:
        return [f.family() for f in FIGURES]

    def collect(self) -> Iterator[Metric]:
        s = self._stats()
        for fig, key in ((RECEIVED, "received"), (STORED, "stored"),
                         (DUPLICATES, "duplicates"), (BAD, "bad"), (QUEUE_WAITS, "queue_waits"),
                         (STORE_ERRORS, "store_errors"), (CONNECTS, "connects"),
                         (QUEUE_DEPTH, "queue_depth"), (LAG, "lag_s")):
            yield fig.value(float(s.get(key) or 0))
        yield CONNECTED.value(1.0 if s.get("connected") else 0.0)
        yield STORE_OK.value(1.0 if s.get("store_ok") else 0.0)
        fam = BOXES.family(["state"])
        for state, n in sorted(self._boxes().items()):
            fam.add_metric([state], float(n))
        yield fam
        lat = list(self._latencies())[-LATENCY_SAMPLE:]
        q = GaugeMetricFamily(LATENCY.name, LATENCY.help, labels=["quantile"])
        for p in (0.5, 0.95, 0.99):
            q.add_metric([f"{p:g}"], quantile(lat, p))
        yield q
