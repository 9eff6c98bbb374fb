"""An asyncio event loop on virtual time: the clock of every asyncio timer (``sleep``,
``timeout``, ``wait_for``, ``call_later``) without the wall clock.

Time moves only when nothing is ready to run: the loop then jumps to its next timer instead
of waiting for it.  Work in the loop (a block analysed, a callback) takes no virtual time, so
what a test sees does not depend on how fast the machine is today.  While a worker thread of
the loop (``asyncio.to_thread``, ``run_in_executor``) is busy, time stands still until it is
done: threads are instantaneous too.  :meth:`VirtualTimeLoop.advance` moves the clock by hand
(a call that blocks the loop for that long).

Real I/O with another process does not belong on this loop: its latency would not stop the
clock.  Pass ``loop.time`` as the ``clock`` of the code under test (the replay, the runner,
the capture, the service) so that it reads the same virtual seconds.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

HANG_S = 60.0
"""Real seconds the loop may wait with no timer set and nothing arriving: then it is hung."""
_THREAD_POLL_S = 0.01
"""Real seconds to wait for a busy worker thread before looking again."""


class _Selector:
    """The loop's selector, except that an idle wait for a timer takes no time."""

    def __init__(self, loop: VirtualTimeLoop, inner: selectors.BaseSelector) -> None:
        self._loop = loop
        self._inner = inner

    def select(self, timeout: float | None = None) -> list[Any]:
        events = self._inner.select(0)
        if events or timeout == 0:
            return events
        if self._loop.busy_threads:  # a worker thread's result is coming: real time
            return self._inner.select(_THREAD_POLL_S)
        if timeout is None:  # no timer at all: only outside events can wake the loop
            events = self._inner.select(HANG_S)
            if not events:
                raise AssertionError(f"hung: no timer, nothing ready, nothing arrived in "
                                     f"{HANG_S:g} s")
            return events
        self._loop.advance(timeout)
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose :meth:`time` is virtual (see the module docstring)."""

    def __init__(self, start_s: float = 1000.0) -> None:
        super().__init__()
        self._virtual_s = start_s
        self.busy_threads = 0
        self._selector: Any = _Selector(self, self._selector)  # type: ignore[has-type]

    def time(self) -> float:
        return self._virtual_s

    def advance(self, seconds: float) -> None:
        """Move the clock on by ``seconds`` (e.g. a call that blocks the loop that long)."""
        self._virtual_s += max(0.0, seconds)

    def run_in_executor(self, executor: Any, func: Callable[..., T],
                        *args: Any) -> asyncio.Future[T]:
        fut = super().run_in_executor(executor, func, *args)
        self.busy_threads += 1

        def done(_: asyncio.Future[T]) -> None:
            self.busy_threads -= 1

        fut.add_done_callback(done)
        return fut


def run(coro: Coroutine[Any, Any, T], loop: VirtualTimeLoop | None = None) -> T:
    """``asyncio.run`` on a :class:`VirtualTimeLoop` (``loop``, or a new one)."""
    the_loop = loop or VirtualTimeLoop()
    with asyncio.Runner(loop_factory=lambda: the_loop) as runner:
        return runner.run(coro)
