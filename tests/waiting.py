"""Waiting on a condition instead of sleeping for a guessed time: the deadline only bounds a
hang (it is never what makes a test pass), so a slow machine only makes a test slower."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

HANG_S = 60.0
"""How long a condition may take before the test fails as hung."""


async def until(condition: Callable[[], object], what: str = "the condition",
                hang_s: float = HANG_S, poll_s: float = 0.01) -> None:
    """Return as soon as ``condition()`` is true; fail after ``hang_s`` (of the loop's time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + hang_s
    while not condition():
        assert loop.time() < deadline, f"{what}: not within {hang_s:g} s"
        await asyncio.sleep(poll_s)


def until_sync(condition: Callable[[], object], what: str = "the condition",
               hang_s: float = HANG_S, poll_s: float = 0.01) -> None:
    """:func:`until` for a test without an event loop (the wall clock bounds the hang)."""
    deadline = time.monotonic() + hang_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {hang_s:g} s"
        time.sleep(poll_s)
