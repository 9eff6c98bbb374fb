"""The one streaming path: a source → a bounded queue → the call engine → an event sink.

Files, live capture and RTP all produce :class:`~appliance.stream.blocks.PartyBlock`
objects into a :class:`BlockQueue`; the analysis task takes them out and drives a
:class:`~appliance.engine.call_engine.CallEngine`.  A live source must never block (it drops
and counts when the queue is full); a file source waits for room, so a file is analysed as
fast as the engine goes and nothing is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from appliance.engine.call_engine import CallEngine
from appliance.errors import ApplianceError
from appliance.events import Cue, Summary, TranscriptEvent
from appliance.stream.blocks import PartyBlock as Block

if TYPE_CHECKING:
    from appliance.asr.session import AsrSession
    from appliance.asr.worker import Result

Event = Cue | Summary | TranscriptEvent

log = logging.getLogger(__name__)


class BlockQueue:
    """A bounded queue of audio blocks that counts what it had to drop."""

    def __init__(self, maxsize: int = 64) -> None:
        self._q: asyncio.Queue[Block | None] = asyncio.Queue(maxsize=maxsize)
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

    async def put(self, block: Block | None) -> None:
        """For file sources: wait for room (backpressure, no drops). None ends the stream."""
        await self._q.put(block)

    async def get(self) -> Block | None:
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


def _apply_words(
    results: list[Result], engine: CallEngine, emit: Callable[[Event], None], transcripts: bool
) -> None:
    for words, transcript in results:
        for cue in engine.add_words(words):
            emit(cue)
        if transcripts and transcript is not None:
            emit(TranscriptEvent(engine.t_s, transcript.party, transcript.text,
                                 transcript.start_s, transcript.end_s))


async def analyse_queue(
    queue: BlockQueue,
    engine: CallEngine,
    emit: Callable[[Event], None],
    *,
    asr: AsrSession | None = None,
    transcripts: bool = False,
) -> Summary:
    """Drive the engine from the queue until the end marker; emits cues, returns summary.

    With ``asr``, the recognizer's words are applied to the engine as they come back (the
    acoustic path never waits for them); at the end the recognizer is drained first.
    """
    while True:
        block = await queue.get()
        if block is None:
            break
        for cue in engine.push(block.agent, block.customer):
            emit(cue)
        if asr is not None:
            _apply_words(asr.poll(), engine, emit, transcripts)
        await asyncio.sleep(0)  # let the producer (and a dashboard) run between blocks
    if asr is not None:
        rest = await asyncio.to_thread(asr.finish)
        _apply_words(rest, engine, emit, transcripts)
        engine.summary_extra["asr"] = asr.stats()
    cues, summary = engine.finish()
    for cue in cues:
        emit(cue)
    return summary


async def analyse_blocks(
    blocks: Iterable[Block],
    engine: CallEngine,
    emit: Callable[[Event], None],
    *,
    queue_blocks: int = 64,
    asr: AsrSession | None = None,
    transcripts: bool = False,
) -> tuple[Summary, ApplianceError | None]:
    """A finite source (a file) through the streaming path.

    A source that fails part-way (an I/O error, a damaged file) ends the stream there: what
    was analysed up to that point is kept and summarised, and the error is returned beside
    the summary so the caller reports both.
    """
    queue = BlockQueue(queue_blocks)
    producer = asyncio.create_task(feed_blocks(blocks, queue))
    try:
        summary = await analyse_queue(queue, engine, emit, asr=asr, transcripts=transcripts)
    finally:
        if not producer.done():
            producer.cancel()
    (outcome,) = await asyncio.gather(producer, return_exceptions=True)
    if isinstance(outcome, ApplianceError):
        return summary, outcome
    if isinstance(outcome, BaseException):
        raise outcome
    return summary, None
