"""``appliance run``: live audio → engine → the agent's dashboard, call after call.

The source (headset capture, or a recording replayed at real-time pace) puts
:class:`~appliance.stream.blocks.PartyBlock` objects into the bounded
:class:`~appliance.stream.pipeline.BlockQueue` without ever blocking; the analysis task drives the
call's :class:`~appliance.engine.call_engine.CallEngine`; cues and a state snapshot every
``[dashboard] snapshot_s`` go to the dashboard.  The hold key becomes a hold mark; the end
key closes the call (its summary goes to the page and to the archive) and starts the next
one.  On shutdown the call in progress is finished the same way, so nothing is lost.

A reloaded configuration (SIGHUP) applies from the next call; the call in progress keeps
the thresholds it started with.  The analysis loop ticks the service watchdog on every
block (and while waiting for audio), so a stuck pipeline stops the pings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from appliance.config import Config
from appliance.engine.call_engine import CallEngine
from appliance.engine.marks import Mark
from appliance.engine.vad import SileroModel
from appliance.events import Cue, EndReason, Event, Summary
from appliance.stream.blocks import EndOfCall, PartyBlock
from appliance.stream.bus import EventBus
from appliance.stream.line import LineWatcher
from appliance.stream.pipeline import BlockQueue
from appliance.stream.record import CallRecord, CallRecorder
from appliance.stream.session import LIVE_FINISH_TIMEOUT_S, CallSession

log = logging.getLogger(__name__)

MIN_CALL_S = 1.0
"""A call shorter than this (audio time) is not summarised: at shutdown, or when the End key
is pressed again before the next call had audio."""
STALLED_AFTER_S = 10.0
"""The analysis loop turns at least once a second (a block, or the idle tick); when it has
not turned for this long, health says ``analysis.stalled``."""


class Ticker(Protocol):
    """The service notifier as the runner sees it (``appliance.service.notify``)."""

    def tick(self) -> None: ...


class Archive(Protocol):
    """Where finished calls go (``appliance.sinks.archive.CallArchive``)."""

    @property
    def keeps_transcripts(self) -> bool: ...

    def record(self, rec: CallRecord) -> None: ...

    def health(self) -> dict[str, Any]: ...


class LiveSource(Protocol):
    """What the runner needs of a live source."""

    @property
    def flowing(self) -> bool: ...

    async def run(self, queue: BlockQueue) -> None:
        """Put blocks with ``queue.put_nowait`` until cancelled."""

    def stats(self) -> dict[str, Any]: ...


class LiveRunner:
    """The desk's calls, one after the other, each a :class:`CallSession`."""

    def __init__(
        self,
        cfg: Config,
        source: LiveSource,
        vad: SileroModel,
        *,
        lang: str | None = None,
        make_asr: Callable[[], Any] | None = None,
        publish: Callable[[dict[str, Any]], None] | None = None,
        marks: Iterable[Mark] = (),
        archive: Archive | None = None,
        ticker: Ticker | None = None,
        source_name: str = "headset",
        call_numbers: Callable[[], int] | None = None,
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.vad = vad
        self.lang = lang or cfg.language
        self.make_asr = make_asr
        self.publish = publish or (lambda ev: None)
        self.queue = BlockQueue(max(4, round(cfg.audio.queue_s / cfg.audio.block_s)))
        self.archive = archive
        self.ticker = ticker
        self.source_name = source_name
        self.marks = tuple(marks)
        """Hold marks known in advance (a replayed recording's marks file): every call of
        the run gets them (each pass of a looped replay is the same recording)."""
        self.cue_counts: Counter[str] = Counter()
        self.bus = EventBus()
        """Every event of every call: the page (``publish``), the archive's recorder and
        the metrics subscribe here."""
        self.bus.subscribe(self._count)
        self.bus.subscribe(lambda ev: self.publish(ev.to_json()))
        if archive is not None:
            self.bus.subscribe(CallRecorder(archive.record,
                                            keep_transcripts=archive.keeps_transcripts))
        self.calls = 0
        self.call_numbers = call_numbers
        """Gives each call's number (``call-<n>``); by default 1, 2... in this run (the
        desk's service continues the numbering across restarts)."""
        self.idle_tick_s = 1.0
        """While no audio arrives the analysis loop still ticks the watchdog this often."""
        self.clock: Callable[[], float] = time.monotonic
        """Seconds, monotonic (injected by tests): when the analysis loop last turned."""
        self._loop_at: float | None = None
        self._pending_end: tuple[datetime, EndReason] | None = None
        """When and why the call is to end (closed at the next block)."""
        self._closing: set[asyncio.Task[Any]] = set()
        self._next_cfg: Config | None = None
        self._line: LineWatcher | None = None
        """Between calls: what watches the line for the next one."""
        self.current = self._new_call()

    def _new_call(self) -> CallSession:
        if self._next_cfg is not None:
            self.cfg, self._next_cfg = self._next_cfg, None
            log.info("reloaded configuration in effect from this call")
        self.calls += 1
        keep = self.archive is not None and self.archive.keeps_transcripts
        self.current = CallSession(
            self.cfg, self.vad, self.bus.emit,
            call_id=f"call-{self.call_numbers() if self.call_numbers else self.calls}",
            lang=self.lang,
            marks=self.marks, asr=self.make_asr() if self.make_asr else None,
            transcripts=keep, source=self.source_name, started_at=datetime.now(UTC),
            finish_timeout_s=LIVE_FINISH_TIMEOUT_S)
        return self.current

    def subscribe(self, fn: Callable[[Event], None]) -> None:
        """Subscribe ``fn`` to the bus, handing it first the ``call_started`` of the call in
        progress: the runner's first call starts when the runner is made, before a service
        wires its sinks, and a sink that never saw a call start (the fleet's) ignores the
        call's cues and end."""
        self.bus.subscribe(fn)
        fn(self.current.start_event)

    @property
    def idle(self) -> bool:
        """Between calls: the last call ended by idle time and the line is watched."""
        return self._line is not None

    @property
    def engine(self) -> CallEngine:
        """The engine of the call in progress."""
        return self.current.engine

    @property
    def asr(self) -> Any:
        """The recognizer session of the call in progress (None without a model)."""
        return self.current.asr

    def reload(self, cfg: Config) -> None:
        """Use ``cfg`` from the next call on; the call in progress is not disturbed."""
        self._next_cfg = cfg

    # -- controls from the dashboard ----------------------------------------------------
    def hold_key(self, event: str) -> None:
        """The dashboard's hold key: a hold mark at the current audio time."""
        if self.idle:
            log.info("hold key between calls: ignored")
        elif event in ("hold_start", "hold_end"):
            self.current.add_mark(Mark(self.engine.t_s, event))

    def end_call(self, reason: EndReason = "end_key") -> None:
        """End this call at the next block (the End key, the API); the next one starts."""
        if self.idle:
            log.info("end key between calls: ignored")
            return
        self._pending_end = (datetime.now(UTC), reason)

    # -- the analysis loop ------------------------------------------------------------------
    def _count(self, ev: Event) -> None:
        if isinstance(ev, Cue | Summary):
            self.cue_counts[ev.kind] += 1

    def _in_background(self, job: Any) -> None:
        """A call's end (its recognizer's last words, its summary, which reaches the archive
        through the recorder on the bus) runs beside the next call: waiting for the
        recognizer never stalls new audio."""
        task = asyncio.create_task(job)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _go_idle(self) -> None:
        """The line has been silent for ``[calls] idle_end_s``: the call ends (a call in
        which nobody spoke is dropped, not summarised) and the line is watched."""
        call = self.current
        if call.engine.heard_speech:
            self._in_background(call.finish("idle", datetime.now(UTC)))
        else:
            self._in_background(call.discard("idle"))
        calls = call.engine.cfg.calls
        self._line = LineWatcher(calls.start_margin_db, calls.preroll_s)
        log.info("line idle: waiting for the next call",
                 extra={"fields": {"call": call.call_id, "idle_s": round(call.engine.idle_s())}})

    def _wake(self, block: PartyBlock) -> None:
        """Between calls: a block for the line watcher; a live line starts the next call
        with the blocks that woke it."""
        assert self._line is not None
        start = self._line.push(block)
        if not start:
            return
        self._line = None
        self._new_call()
        for b in start:
            self.current.push(b)

    def _rotate(self, reason: EndReason, ended_at: datetime) -> None:
        """End the call in progress in the background and start the next at once."""
        if self.engine.t_s < MIN_CALL_S:  # e.g. End pressed again before the call had audio
            log.info("call end (%s) on a call with no audio yet: ignored", reason,
                     extra={"fields": {"call": self.current.call_id}})
            return
        self._in_background(self.current.finish(reason, ended_at))
        self._new_call()

    async def finish_call(self, reason: EndReason = "end_key", *,
                          next_call: bool = True) -> Summary:
        """Close the call in progress now; unless the runner is stopping, the next call
        starts at once."""
        call, ended_at = self.current, datetime.now(UTC)
        if next_call:
            self._new_call()
        return await call.finish(reason, ended_at)

    async def analyse(self) -> None:
        """Blocks into the call in progress until the source ends (None): that call ends
        with the source (``source_closed``).  An :class:`EndOfCall` in the stream ends the
        call there and starts the next."""
        while True:
            self._loop_at = self.clock()
            try:  # (not wait_for: on 3.11 it can swallow a cancel when a block is ready)
                async with asyncio.timeout(self.idle_tick_s):
                    block = await self.queue.get()
            except TimeoutError:  # no audio (yet): the loop itself is alive
                if self.ticker is not None:
                    self.ticker.tick()
                continue
            self._loop_at = self.clock()
            if self.ticker is not None:
                self.ticker.tick()
            if block is None:
                if not self.idle and self.engine.t_s >= MIN_CALL_S:
                    await self.finish_call("source_closed", next_call=False)
                return
            if isinstance(block, EndOfCall):
                if not self.idle:
                    self._rotate(block.reason, datetime.now(UTC))
                continue
            if self.idle:
                self._wake(block)
                continue
            if self._pending_end is not None:
                (pressed, reason), self._pending_end = self._pending_end, None
                self._rotate(reason, pressed)
            self.current.push(block)
            idle_end_s = self.engine.cfg.calls.idle_end_s
            if idle_end_s and self.engine.idle_s() >= idle_end_s:
                self._go_idle()
            await asyncio.sleep(0)  # a queue that never empties must not starve the rest

    async def snapshots(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.dashboard.snapshot_s)
            if self.idle:  # nothing of the last call is true any more
                self.publish({"kind": "state", "t": 0.0, "idle": True,
                              "audio": {"flowing": self.source.flowing}})
            else:
                self.publish(self.engine.snapshot(audio_flowing=self.source.flowing))

    async def run(self) -> None:
        """Until the source ends (a replay that is done) or the task is cancelled (the
        service stops); then the call in progress is finished, not lost.  A source that
        fails stops the run with its error."""
        analysis = asyncio.create_task(self.analyse(), name="analysis")
        helpers = [asyncio.create_task(self.source.run(self.queue), name="source"),
                   asyncio.create_task(self.snapshots(), name="snapshots")]

        def stop_helpers(_: asyncio.Task[None]) -> None:
            for h in helpers:
                h.cancel()

        def stop_on_failure(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and t.exception() is not None:
                analysis.cancel()

        analysis.add_done_callback(stop_helpers)
        for h in helpers:
            h.add_done_callback(stop_on_failure)
        try:  # gather: cancelling run() cancels every task at once
            outcomes = await asyncio.gather(analysis, *helpers, return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, Exception):
                    raise outcome
        finally:
            for t in (analysis, *helpers):
                t.cancel()
            await asyncio.gather(analysis, *helpers, return_exceptions=True)
            await self._shutdown()

    async def _shutdown(self) -> None:
        """Stopping: the calls still being closed finish, and the call in progress is
        summarised and archived (``service_stop``), not lost."""
        if self._closing:  # calls ended by the key whose summary is still being made
            for outcome in await asyncio.gather(*self._closing, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    log.error("a call that ended could not be summarised: %s",
                              type(outcome).__name__)
        call = self.current
        if call.end_reason is not None:  # ended already (idle, or the source closed)
            return
        if call.t_s >= MIN_CALL_S:
            try:
                await self.finish_call("service_stop", next_call=False)
            except Exception:
                log.exception("could not summarise the call in progress at shutdown")
        else:
            await call.discard("service_stop")

    # -- health and metrics -----------------------------------------------------------------
    def analysis_age_s(self) -> float | None:
        """Seconds since the analysis loop last turned (None before it started)."""
        return None if self._loop_at is None else max(0.0, self.clock() - self._loop_at)

    def health(self) -> dict[str, Any]:
        """What /healthz shows.  ``healthy`` is False when something inside the box has
        stopped (the analysis loop, the storage of summaries): monitoring must see it even
        while the page still loads.  ``problems`` also names what is outside (no audio)."""
        src = self.source.stats()
        asr = self.asr.stats() if self.asr is not None else None
        age = self.analysis_age_s()
        stalled = age is not None and age > STALLED_AFTER_S
        storage = self.archive.health() if self.archive is not None else None
        inside = (["analysis.stalled"] if stalled else []) + (
            [f"storage.{storage['state']}"] if storage and not storage["ok"] else [])
        problems = inside + ([] if self.source.flowing else ["audio.not_flowing"])
        return {
            "healthy": not inside,
            "problems": problems,
            "audio_flowing": self.source.flowing,
            "model_loaded": self.asr is not None,
            "call": None if self.idle else self.engine.call_id,
            "call_audio_s": 0.0 if self.idle else round(self.engine.t_s, 1),
            "queue_depth": self.queue.qsize(),
            "queue_capacity": self.queue.maxsize,
            "queue_drops": self.queue.dropped,
            "input_overflows": src.get("input_overflows", 0),
            "reconnects": src.get("reconnects", 0),
            "asr_dropped_blocks": 0 if asr is None else asr["dropped_blocks"],
            "analysis_stalled": stalled,
            "analysis_age_s": None if age is None else round(age, 1),
            "storage": storage,
        }
