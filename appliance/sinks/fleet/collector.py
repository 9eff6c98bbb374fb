"""``/metrics`` of the fleet: ``appliance_fleet_*``, read from the publisher's health at each
scrape (one ``health()`` per scrape, so the figures agree with ``/healthz``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from appliance.sinks.metrics import Figure

FLEET_UP = Figure("appliance_fleet_up", "gauge", "0 when the fleet publisher has stopped inside "
                  "the box (a thread died, the outbox is unusable): see /healthz fleet.")
FLEET_CONNECTED = Figure("appliance_fleet_connected", "gauge",
                         "1 while the box is connected to the site's MQTT broker.")
FLEET_PENDING = Figure("appliance_fleet_pending", "gauge", "Messages in the outbox waiting "
                       "for the broker's acknowledgement.")
FLEET_EVICTED = Figure("appliance_fleet_evicted_total", "counter", "Messages evicted from the "
                       "full outbox (the oldest first), since the outbox was created.")
FLEET_PUBLISHED = Figure("appliance_fleet_published_total", "counter",
                         "Messages sent to the broker (resends after a restart included).")
FLEET_ACKED = Figure("appliance_fleet_acked_total", "counter",
                     "Messages the broker acknowledged (then deleted from the outbox).")
FLEET_DENIED = Figure("appliance_fleet_denied_total", "counter", "Messages the broker refused "
                      "(its ACL; MQTT 5): dropped.")
FLEET_DROPPED = Figure("appliance_fleet_dropped_total", "counter", "Messages never written to "
                       "the outbox (it was unusable, or a payload was refused).")
FLEET_ERRORS = Figure("appliance_fleet_errors_total", "counter", "Fleet troubles by stable "
                      "code (fleet.auth, fleet.tls, fleet.unreachable, fleet.denied...).")
FLEET_FIGURES = (FLEET_UP, FLEET_CONNECTED, FLEET_PENDING, FLEET_EVICTED, FLEET_PUBLISHED,
                 FLEET_ACKED, FLEET_DENIED, FLEET_DROPPED, FLEET_ERRORS)


class FleetCollector(Collector):
    """``read()`` gives :meth:`appliance.sinks.fleet.sink.FleetSink.health`."""

    def __init__(self, read: Callable[[], Mapping[str, Any]]) -> None:
        self._read = read

    def describe(self) -> Iterable[Metric]:
        return [f.family(["code"] if f is FLEET_ERRORS else []) for f in FLEET_FIGURES]

    def collect(self) -> Iterator[Metric]:
        h = self._read()
        yield FLEET_UP.value(h["ok"])
        yield FLEET_CONNECTED.value(h["connected"])
        yield FLEET_PENDING.value(h["pending"])
        yield FLEET_EVICTED.value(h["evicted"])
        yield FLEET_PUBLISHED.value(h["published"])
        yield FLEET_ACKED.value(h["acked"])
        yield FLEET_DENIED.value(h["denied"])
        yield FLEET_DROPPED.value(h["dropped"])
        errors = FLEET_ERRORS.family(["code"])
        for code, n in sorted(h["errors"].items()):
            errors.add_metric([code], float(n))
        yield errors
