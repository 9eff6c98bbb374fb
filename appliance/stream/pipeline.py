"""The one streaming path: a source → a bounded queue → the call's session → its events.

Files, live capture and RTP all produce :class:`~appliance.stream.blocks.PartyBlock`
objects into a :class:`BlockQueue`; the analysis task takes them out and drives the call's
:class:`~appliance.stream.session.CallSession`.  A live source must never block (it drops
and counts when the queue is full); a file source waits for room, so a file is analysed as
fast as the engine goes and nothing is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from appliance.errors import ApplianceError
from appliance.events import ErrorEvent, Summary
from appliance.stream.blocks import EndOfCall
from appliance.stream.blocks import PartyBlock as Block

if TYPE_CHECKING:
    from appliance.stream.session import CallSession

log = logging.getLogger(__name__)


class BlockQueue:
    """A bounded queue of audio blocks that counts what it had to drop."""

    def __init__(self, maxsize: int = 64) -> None:
        self._q: asyncio.Queue[Block | EndOfCall | None] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0

    def put_nowait(self, block: Block) -> bool:
        """For live sources (never blocks): False and a counted drop when full."""
        try:
            self._q.put_nowait(block)
            return True
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("analysis is behind: %d audio blocks dropped", self.dropped)
            return False

    async def put(self, block: Block | EndOfCall | None) -> None:
        """For file sources: wait for room (backpressure, no drops). None ends the stream."""
        await self._q.put(block)

    async def get(self) -> Block | EndOfCall | None:
        return await self._q.get()

    def qsize(self) -> int:
        return self._q.qsize()

    @property
    def maxsize(self) -> int:
        return self._q.maxsize


async def feed_blocks(blocks: Iterable[Block], queue: BlockQueue) -> None:
    """Push a file's blocks into the queue, then the end marker."""
    try:
        for block in blocks:
            await queue.put(block)
    finally:
        await queue.put(None)


async def drive(queue: BlockQueue, session: CallSession) -> None:
    """Feed the call every block of the queue until the end marker."""
    while True:
        block = await queue.get()
        if block is None or isinstance(block, EndOfCall):  # a file is one call
            return
        session.push(block)
        await asyncio.sleep(0)  # let the producer (and a dashboard) run between blocks


async def analyse_blocks(
    blocks: Iterable[Block], session: CallSession, *, queue_blocks: int = 64,
) -> tuple[Summary, ApplianceError | None]:
    """A finite source (a file) through the streaming path, to the call's summary.

    The call ends when the source does (``source_closed``).  A source that fails part-way
    (an I/O error, a damaged file) ends the call there (``error``): what was analysed up to
    that point is kept and summarised, the failure is emitted as an ``error`` event, and
    it is returned beside the summary so the caller reports both.
    """
    queue = BlockQueue(queue_blocks)
    producer = asyncio.create_task(feed_blocks(blocks, queue))
    try:
        await drive(queue, session)
    finally:
        if not producer.done():
            producer.cancel()
    (outcome,) = await asyncio.gather(producer, return_exceptions=True)
    if isinstance(outcome, ApplianceError):
        session.emit(ErrorEvent(session.t_s, outcome.code, outcome.message,
                                call_id=session.call_id))
        return await session.finish("error"), outcome
    if isinstance(outcome, BaseException):
        raise outcome
    return await session.finish("source_closed"), None
