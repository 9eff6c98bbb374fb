"""When a desk's line comes alive: the start of the next call after an idle end.

Between calls no engine runs; a :class:`LineWatcher` looks at each block's level per party
against a slowly tracked noise floor.  The line is live when either party is
``start_margin_db`` over its floor (and above ``MIN_LEVEL_DBFS``) for ``START_BLOCKS``
blocks in a row.  The blocks of the last ``preroll_s`` are kept, so the new call begins
with the sound that woke the line, not after it.  Pure and cheap: numpy over one block.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from appliance.stream.blocks import PIPELINE_RATE_HZ, PartyBlock

MIN_LEVEL_DBFS = -55.0
"""Nothing quieter than this starts a call, however quiet the line."""
START_BLOCKS = 3
"""Consecutive loud blocks (about 0.1 s) that start a call: a click does not."""
FLOOR_RISE_DB_PER_S = 1.0
"""How fast the floor estimate follows a line that got noisier (it falls at once)."""


def block_level_dbfs(x: np.ndarray) -> float:
    """RMS level of int16 samples in dBFS (-120 for silence)."""
    if len(x) == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(x.astype(np.float64))))) / 32768.0
    return max(-120.0, 20.0 * np.log10(rms)) if rms > 0 else -120.0


class LineWatcher:
    """Feed blocks with :meth:`push`; it returns the blocks that start a call (the pre-roll
    and the waking block) once the line is live, else an empty list."""

    def __init__(self, start_margin_db: float = 15.0, preroll_s: float = 0.5) -> None:
        self.start_margin_db = start_margin_db
        self.preroll_s = preroll_s
        self._floor: dict[str, float | None] = {"agent": None, "customer": None}
        self._loud = 0
        self._kept: deque[PartyBlock] = deque()

    def reset(self) -> None:
        self._loud = 0
        self._kept.clear()

    def push(self, block: PartyBlock) -> list[PartyBlock]:
        self._kept.append(block)
        while sum(len(b.agent) for b in self._kept) > self.preroll_s * PIPELINE_RATE_HZ + len(
                block.agent):
            self._kept.popleft()
        dt = len(block.agent) / PIPELINE_RATE_HZ
        loud = False
        for party, x in (("agent", block.agent), ("customer", block.customer)):
            level = block_level_dbfs(x)
            floor = self._floor[party]
            if floor is None or level < floor:
                floor = level
            else:
                floor = min(level, floor + FLOOR_RISE_DB_PER_S * dt)
            self._floor[party] = floor
            if level >= max(MIN_LEVEL_DBFS, floor + self.start_margin_db):
                loud = True
        self._loud = self._loud + 1 if loud else 0
        if self._loud < START_BLOCKS:
            return []
        out = list(self._kept)
        self.reset()
        return out
