"""A live source for tests that feeds a recording as fast as the runner takes it (no wall
clock) and presses keys at given audio times: what a desk does, whatever the machine's
speed today."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from appliance.audio.filesource import FileSource

DEMO = Path(__file__).resolve().parent.parent / "appliance" / "demo" / "demo_call.wav"


class ScriptedSource:
    """A recording's blocks (the demo's by default) as fast as the runner takes them, with
    key presses at given audio times; then the end of the stream."""

    flowing = True

    def __init__(self, actions: Sequence[tuple[float, Callable[[], None]]] = (),
                 path: Path = DEMO) -> None:
        self.actions = sorted(actions, key=lambda a: a[0])
        self.path = path
        self.blocks = 0

    def stats(self) -> dict[str, Any]:
        return {"blocks": self.blocks, "input_overflows": 0, "reconnects": 0}

    async def run(self, queue: Any) -> None:
        for block in FileSource(self.path, block_s=0.032).blocks():
            if self.actions and block.t_s >= self.actions[0][0]:
                for _ in range(10_000):  # a desk's queue is near empty when a key is pressed
                    if not queue.qsize():
                        break
                    await asyncio.sleep(0)
            while self.actions and block.t_s >= self.actions[0][0]:
                self.actions.pop(0)[1]()
            await queue.put(block)
            self.blocks += 1
        for _, action in self.actions:
            action()
        await queue.put(None)
