"""A bounded pool of recognizer threads shared by every call of a process.

Each party of each call is a :class:`Lane`: its own ``KaldiRecognizer`` state, fed strictly
in order (a lane is never run by two threads at once).  The pool's threads take the next
lane with pending audio, **agent lanes first** (the agent's words drive the coaching cues;
the customer's only a few checks).

The pool holds at most ``max_pending`` audio items in total.  When it is full (recognition is
behind: more calls than the threads decode in real time) a live item is dropped and counted,
customer audio first: an agent item evicts the oldest pending customer item when there is
one.  File analysis (``block=True``) waits for room instead, so a file is recognised
completely.  The acoustic cues never wait for any of this.

Vosk's decoder releases the GIL while it decodes, so a few threads use a few cores.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from appliance.events import PARTIES, Party

log = logging.getLogger(__name__)


class Lane:
    """One recognizer's ordered work (one party of one call)."""

    __slots__ = ("busy", "closed", "done", "error", "items", "party", "process", "queued")

    def __init__(self, party: Party, process: Callable[[Any], None]) -> None:
        self.party = party
        self.process = process
        self.items: deque[Any] = deque()
        self.queued = False
        self.busy = False
        self.closed = False
        self.done = threading.Event()
        """Set when the lane was closed and everything before the close has run."""
        self.error: BaseException | None = None


_CLOSE = object()


class RecognizerPool:
    def __init__(self, threads: int = 1, max_pending: int = 4096, *,
                 name: str = "recognizer") -> None:
        if threads < 1 or max_pending < 1:
            raise ValueError("a recognizer pool needs at least one thread and one item")
        self.threads = threads
        self.max_pending = max_pending
        self._cv = threading.Condition()
        self._ready: dict[Party, deque[Lane]] = {p: deque() for p in PARTIES}
        self._pending = 0
        self._stopping = False
        self.dropped: dict[Party, int] = dict.fromkeys(PARTIES, 0)
        """Audio items dropped because the pool was full, per party."""
        self.evicted: dict[Party, int] = dict.fromkeys(PARTIES, 0)
        """Of those, items already queued that made room for agent audio."""
        self._workers = [threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True)
                         for i in range(threads)]
        for t in self._workers:
            t.start()

    # -- feeding -------------------------------------------------------------------------
    def lane(self, party: Party, process: Callable[[Any], None]) -> Lane:
        return Lane(party, process)

    def submit(self, lane: Lane, item: Any, *, block: bool = False) -> bool:
        """Queue ``item`` on ``lane``; False (and a counted drop) when a live pool is full."""
        with self._cv:
            if lane.closed or lane.error is not None:
                return False
            if self._pending >= self.max_pending:
                if block:
                    self._cv.wait_for(lambda: self._pending < self.max_pending
                                      or self._stopping)
                elif not (lane.party == "agent" and self._evict_customer()):
                    self._count_drop(lane.party)
                    return False
            self._put(lane, item)
            return True

    def close(self, lane: Lane, last: Any = None) -> None:
        """No more items for ``lane`` after ``last`` (queued even when the pool is full: it
        finalises the recognizer); ``lane.done`` is set once everything has run."""
        with self._cv:
            if lane.closed:
                return
            lane.closed = True
            if last is not None:
                self._put(lane, last)
            self._put(lane, _CLOSE, count=False)

    def pending(self) -> int:
        return self._pending

    def stats(self) -> dict[str, Any]:
        return {"threads": self.threads, "pending": self._pending,
                "max_pending": self.max_pending, "dropped": dict(self.dropped),
                "evicted": dict(self.evicted)}

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()

    # -- inside the lock ----------------------------------------------------------------
    def _put(self, lane: Lane, item: Any, *, count: bool = True) -> None:
        lane.items.append(item)
        if count:
            self._pending += 1
        if not lane.queued and not lane.busy:
            self._ready[lane.party].append(lane)
            lane.queued = True
        self._cv.notify()

    def _evict_customer(self) -> bool:
        for lane in self._ready["customer"]:
            for i, it in enumerate(lane.items):
                if it is not _CLOSE:
                    del lane.items[i]
                    self._pending -= 1
                    self.evicted["customer"] += 1
                    self._count_drop("customer")
                    return True
        return False

    def _count_drop(self, party: Party) -> None:
        self.dropped[party] += 1
        n = sum(self.dropped.values())
        if n == 1 or n % 100 == 0:
            log.warning("speech recognition is behind: %d audio blocks dropped (agent %d)",
                        n, self.dropped["agent"])

    def _next(self) -> Lane | None:
        for p in PARTIES:  # agent first
            if self._ready[p]:
                lane = self._ready[p].popleft()
                lane.queued = False
                lane.busy = True
                return lane
        return None

    # -- the threads ---------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cv:
                lane = self._next()
                while lane is None:
                    if self._stopping:
                        return
                    self._cv.wait()
                    lane = self._next()
                items = list(lane.items)
                lane.items.clear()
                self._pending -= sum(1 for it in items if it is not _CLOSE)
                self._cv.notify_all()  # room for blocked submitters
            closed = False
            for it in items:
                if it is _CLOSE:
                    closed = True
                    break
                if lane.error is None:
                    try:
                        lane.process(it)
                    except BaseException as exc:  # a recognizer failure stops its lane only
                        lane.error = exc
                        log.error("speech recognition stopped for a %s channel: %s",
                                  lane.party, type(exc).__name__)
            with self._cv:
                lane.busy = False
                if closed:
                    lane.items.clear()
                    lane.done.set()
                elif lane.items and not lane.queued:
                    self._ready[lane.party].append(lane)
                    lane.queued = True
                    self._cv.notify()
