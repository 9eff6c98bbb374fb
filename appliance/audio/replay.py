"""A recording replayed at real-time pace as if it were live: the demo, tests and the
latency benchmark use it where the desk uses the headset."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np

from appliance.audio.filesource import FileSource
from appliance.stream.blocks import PartyBlock
from appliance.stream.pipeline import BlockQueue


class ReplaySource:
    """A recording played at ``speed`` × real time, as if it were live (demo, tests,
    latency benchmark).  After the end it keeps the clock running with silence."""

    def __init__(self, path: Path, *, speed: float = 1.0, block_s: float = 0.032,
                 loop_silence: bool = True) -> None:
        self._source = FileSource(path, block_s=block_s)
        self.speed = speed
        self.block_s = block_s
        self.loop_silence = loop_silence
        self.blocks = 0
        self.started_at: float | None = None
        self.started_wall_s: float | None = None
        """Wall-clock time (time.time()) at which audio time 0 was delivered."""
        self._last = 0.0

    @property
    def flowing(self) -> bool:
        return self.started_at is not None and time.monotonic() - self._last < 1.0

    def stats(self) -> dict[str, Any]:
        return {"blocks": self.blocks, "input_overflows": 0, "reconnects": 0}

    async def run(self, queue: BlockQueue) -> None:
        self.started_at = time.monotonic()
        self.started_wall_s = time.time()
        n = 0
        t = 0.0
        for block in self._source.blocks():
            await self._pace(n)
            queue.put_nowait(block)
            n += 1
            t = block.t_s + len(block.agent) / 16000
        zeros = np.zeros(round(self.block_s * 16000), np.int16)
        while self.loop_silence:
            await self._pace(n)
            queue.put_nowait(PartyBlock(t, zeros, zeros))
            n += 1
            t += self.block_s

    async def _pace(self, n: int) -> None:
        assert self.started_at is not None
        due = self.started_at + n * self.block_s / self.speed
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self.blocks += 1
        self._last = time.monotonic()
