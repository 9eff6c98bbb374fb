"""A recording replayed at real-time pace as if it were live: the demo, tests and the
latency benchmark use it where the desk uses the headset."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from appliance.audio.filesource import FileSource
from appliance.stream.blocks import PIPELINE_RATE_HZ, EndOfCall, PartyBlock
from appliance.stream.pipeline import BlockQueue

AtEnd = Literal["stop", "loop", "silence"]


class ReplaySource:
    """A recording played at ``speed`` × real time, as if it were live.

    At the end of the file (``at_end``): ``stop`` ends the stream, so the call ends with
    the source and the runner stops (``appliance run --replay``); ``loop`` ends the call and
    plays the recording again as the next call (``--loop``); ``silence`` keeps the line open
    with silence (tests that stop the runner themselves).
    """

    def __init__(self, path: Path, *, speed: float = 1.0, block_s: float = 0.032,
                 at_end: AtEnd = "silence", clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.path = path
        self.clock = clock
        """Seconds, monotonic; with :attr:`sleep`, injected by tests (a virtual clock)."""
        self.sleep = sleep
        self._source = FileSource(path, block_s=block_s)
        self.speed = speed
        self.block_s = block_s
        self.at_end = at_end
        self.blocks = 0
        self.passes = 0
        self.started_at: float | None = None
        self.started_wall_s: float | None = None
        """Wall-clock time (time.time()) at which audio time 0 was delivered."""
        self._last = 0.0

    @property
    def flowing(self) -> bool:
        return self.started_at is not None and self.clock() - self._last < 1.0

    def stats(self) -> dict[str, Any]:
        return {"blocks": self.blocks, "input_overflows": 0, "reconnects": 0}

    async def run(self, queue: BlockQueue) -> None:
        self.started_at = self.clock()
        self.started_wall_s = time.time()
        n = 0
        while True:
            t = 0.0
            for block in self._source.blocks():
                await self._pace(n)
                queue.put_nowait(block)
                n += 1
                t = block.t_s + len(block.agent) / PIPELINE_RATE_HZ
            self.passes += 1
            if self.at_end == "stop":
                await queue.put(None)
                return
            if self.at_end == "loop":
                await queue.put(EndOfCall("source_closed"))
                self._source = FileSource(self.path, block_s=self.block_s)
                continue
            zeros = np.zeros(round(self.block_s * PIPELINE_RATE_HZ), np.int16)
            while True:
                await self._pace(n)
                queue.put_nowait(PartyBlock(t, zeros, zeros))
                n += 1
                t += self.block_s

    async def _pace(self, n: int) -> None:
        assert self.started_at is not None
        due = self.started_at + n * self.block_s / self.speed
        delay = due - self.clock()
        if delay > 0:
            await self.sleep(delay)
        self.blocks += 1
        self._last = self.clock()
