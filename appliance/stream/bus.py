"""Where a call's events go: sinks subscribe, the stream emits.

The JSONL writer, the dashboard, the call recorder (for the archive) and the metrics each
subscribe a callable; :meth:`EventBus.emit` hands every event to each of them, in order.  A
subscriber that raises is logged (once) and counted, and the others still get the event: a
broken sink never stops the analysis or the other sinks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from appliance.events import Event

log = logging.getLogger(__name__)

Subscriber = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.failures = 0
        """Events a subscriber failed on (each failure once in the log per subscriber)."""
        self._failed: set[int] = set()

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def emit(self, event: Event) -> None:
        for sub in self._subscribers:
            try:
                sub(event)
            except Exception as exc:  # one sink's bug must not cost the others the event
                self.failures += 1
                if id(sub) not in self._failed:
                    self._failed.add(id(sub))
                    log.exception("an event sink failed (%s); it keeps receiving events",
                                  type(exc).__name__)
