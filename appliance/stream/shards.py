"""Many calls over worker processes: the runner keyed by call id.

A PBX carries dozens to hundreds of calls at once.  :class:`ShardPool` spreads them over
worker processes (default: one per core; :mod:`appliance.stream.shard_worker`), each with
its own Silero session, its own bank (Silero batched over the shard's calls) and its own
recognizer pool.  The parent owns everything else — the event bus and through it the
dashboard, the store and the metrics — and only routes: ``open_call`` places a call on the
least-loaded worker, ``push`` sends its blocks there (a full command queue drops the block
and counts it), ``end_call`` ends it.  Every event of every call comes back in order and is
emitted on the parent's ``emit``.

A worker that dies does not take the box down: its calls are closed at once with what was
analysed (an ``error`` event with code ``worker.crashed``, ``call_ended`` with reason
``error`` and a summary of the cues so far, marked ``incomplete``), and the worker is
started again (at most ``max_restarts`` times; then the pool reports itself unhealthy).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.config import Config
from appliance.engine.marks import Mark
from appliance.errors import (
    CALL_EXISTS,
    CALL_UNKNOWN,
    CALLS_FULL,
    WORKER_CRASHED,
    ApplianceError,
)
from appliance.events import (
    CallEnded,
    EndReason,
    ErrorEvent,
    Event,
    Party,
    Summary,
    iso_utc,
)
from appliance.stream.blocks import PartyBlock
from appliance.stream.session import LIVE_FINISH_TIMEOUT_S
from appliance.stream.shard_worker import worker_main

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 120.0
"""How long a starting worker may take to load its models."""
POLL_S = 0.25
"""How often a worker's result reader looks whether its process is still alive."""


@dataclass
class _Call:
    lang: str
    t_s: float = 0.0
    cues: dict[str, int] = field(default_factory=dict)


@dataclass
class _Worker:
    index: int
    proc: Any
    commands: Any
    results: Any
    ready: asyncio.Event
    calls: dict[str, _Call] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    dropped_blocks: int = 0
    alive: bool = False
    generation: int = 0
    outbox: list[tuple[str, PartyBlock]] = field(default_factory=list)


class ShardPool:
    """The box's calls over worker processes.  Drive it from one event loop."""

    def __init__(self, cfg: Config, emit: Callable[[Event], None], *,
                 processes: int | None = None, recognizer_threads: int | None = None,
                 models_dir: Path | None = None, queue_blocks: int = 4096,
                 max_calls: int | None = None, max_restarts: int | None = None,
                 finish_timeout_s: float | None = LIVE_FINISH_TIMEOUT_S,
                 on_state: Callable[[str, dict[str, Any]], None] | None = None,
                 states_s: float = 1.0, start_method: str = "spawn") -> None:
        w = cfg.workers
        self.cfg = cfg
        self.emit = emit
        self.on_state = on_state
        """Called with (call_id, snapshot) for each open call every ``states_s`` (the
        per-agent pages); None: the workers send no snapshots."""
        self.states_s = states_s if on_state is not None else 0.0
        self.processes = processes or w.processes or os.cpu_count() or 1
        self.recognizer_threads = recognizer_threads or w.recognizer_threads
        self.max_calls = max_calls if max_calls is not None else w.max_calls
        self.max_restarts = max_restarts if max_restarts is not None else w.max_restarts
        self.models_dir = models_dir
        self.queue_blocks = queue_blocks
        self.finish_timeout_s = finish_timeout_s
        """How long the end of a call waits for its recognizer's last words (None: until
        they are all decoded, as for a file)."""
        self._ctx: Any = mp.get_context(start_method)
        self._workers: list[_Worker] = []
        self._where: dict[str, _Worker] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._flush_due = False
        self._start_failed = asyncio.Event()
        self._pings: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ping_seq = 0
        self.restarts = 0
        self.crashes = 0
        self.unknown_call_blocks = 0
        self.refused_calls = 0

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self) -> None:
        """Start every worker and wait until each has loaded its models."""
        self._loop = asyncio.get_running_loop()
        self._workers = [self._spawn(i) for i in range(self.processes)]
        await self._wait_ready(self._workers)

    async def _wait_ready(self, workers: Iterable[_Worker]) -> None:
        ready: asyncio.Future[Any] = asyncio.ensure_future(
            asyncio.gather(*(w.ready.wait() for w in workers)))
        failed: asyncio.Future[Any] = asyncio.ensure_future(self._start_failed.wait())
        done, _ = await asyncio.wait({ready, failed}, timeout=READY_TIMEOUT_S,
                                     return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        failed.cancel()
        if ready not in done:
            self._stopping = True
            for w in self._workers:
                w.proc.kill()
            why = ("stopped while loading its models" if failed in done
                   else f"did not start within {READY_TIMEOUT_S:.0f} s")
            raise ApplianceError(WORKER_CRASHED, f"an analysis worker {why} (see the log "
                                 "above)")

    def _spawn(self, index: int, generation: int = 0) -> _Worker:
        commands = self._ctx.Queue(self.queue_blocks)
        results = self._ctx.Queue(self.queue_blocks)
        proc = self._ctx.Process(
            target=worker_main, name=f"appliance-shard-{index}", daemon=True,
            args=(index, self.cfg, commands, results,
                  str(self.models_dir) if self.models_dir else None, self.recognizer_threads,
                  self.finish_timeout_s, self.states_s))
        proc.start()
        w = _Worker(index, proc, commands, results, asyncio.Event(), generation=generation)
        threading.Thread(target=self._read, args=(w,), name=f"shard-{index}-results",
                         daemon=True).start()
        return w

    async def stop(self) -> None:
        """End every open call (``service_stop``, each with its summary) and stop the
        workers."""
        self._stopping = True
        for w in self._workers:
            for call_id in list(w.calls):
                self.end_call(call_id, "service_stop")
            self._send(w, ("stop",), block=True)
        for w in self._workers:
            await asyncio.to_thread(w.proc.join, READY_TIMEOUT_S)
            if w.proc.is_alive():
                w.proc.kill()
        # events the workers sent last are already queued on the loop
        await asyncio.sleep(0)

    # -- calls ---------------------------------------------------------------------------
    def open_call(self, call_id: str, *, lang: str | None = None, agent_id: str | None = None,
                  source: str = "", started_at: datetime | None = None,
                  marks: Iterable[Mark] = ()) -> int:
        """Start a call on the least-loaded worker; returns the worker's index."""
        if call_id in self._where:
            raise ApplianceError(CALL_EXISTS, f"call {call_id!r} is open already")
        live = [w for w in self._workers if w.alive]
        if self.max_calls:
            live = [w for w in live if len(w.calls) < self.max_calls]
        if not live:
            self.refused_calls += 1
            raise ApplianceError(CALLS_FULL, "no analysis worker can take another call "
                                 f"({len(self._where)} calls open)")
        w = min(live, key=lambda x: (len(x.calls), x.index))
        lang = lang or self.cfg.language
        w.calls[call_id] = _Call(lang)
        self._where[call_id] = w
        self._send(w, ("open", call_id, lang, agent_id, source,
                       started_at or datetime.now(UTC), list(marks)), block=True)
        return w.index

    def push(self, call_id: str, block: PartyBlock) -> bool:
        """Send a block of the call to its worker; False when it was dropped (an unknown
        call, or the worker's queue is full), counted either way.

        Blocks pushed in one turn of the event loop travel to each worker as one message
        (sent at the end of the turn, or before any other command to that worker)."""
        w = self._where.get(call_id)
        if w is None:
            self.unknown_call_blocks += 1
            return False
        if not w.outbox and _full(w.commands):
            w.dropped_blocks += 1
            return False
        w.outbox.append((call_id, block))
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush_all)
        return True

    def _flush_all(self) -> None:
        self._flush_due = False
        for w in self._workers:
            self._flush(w)

    def _flush(self, w: _Worker) -> None:
        if w.outbox:
            batch, w.outbox = w.outbox, []
            if not self._send(w, ("audio", batch)):
                w.dropped_blocks += len(batch) - 1  # _send counted one

    async def ping(self) -> list[float]:
        """Per worker, the seconds until it has analysed everything sent before the ping
        (how far behind real time it runs)."""
        loop = asyncio.get_running_loop()
        waits = []
        for w in self._workers:
            if not w.alive:
                continue
            self._ping_seq += 1
            fut: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._pings[self._ping_seq] = fut
            t0 = loop.time()
            self._send(w, ("ping", self._ping_seq), block=True)
            waits.append((t0, fut))
        out = []
        for t0, fut in waits:
            async with asyncio.timeout(READY_TIMEOUT_S):  # a cancel is never swallowed
                answer = await fut
            out.append(answer["answered_at"] - t0)
        return out

    def add_mark(self, call_id: str, mark: Mark) -> None:
        w = self._where.get(call_id)
        if w is None:
            raise ApplianceError(CALL_UNKNOWN, f"no open call {call_id!r}")
        self._send(w, ("mark", call_id, mark), block=True)

    def signal(self, call_id: str, event: str, *, party: Party | None = None,
               ring_s: float | None = None) -> None:
        """The PBX's call control for the call (``answered`` with ``ring_s``,
        ``leg_ended`` / ``hung_up`` with the party), after the audio pushed before it."""
        w = self._where.get(call_id)
        if w is None:
            raise ApplianceError(CALL_UNKNOWN, f"no open call {call_id!r}")
        if event not in ("answered", "leg_ended", "hung_up") or (
                (event == "answered") == (ring_s is None)) or ((party is None) != (
                event == "answered")):
            raise ValueError(f"call signal {event!r}: answered takes ring_s, the others a "
                             "party")
        self._send(w, ("signal", call_id, event, party, ring_s), block=True)

    def end_call(self, call_id: str, reason: EndReason = "api") -> bool:
        """End the call (its worker emits the closing cues, ``call_ended`` and the
        summary); False when no such call is open."""
        w = self._where.pop(call_id, None)
        if w is None:
            return False
        self._send(w, ("end", call_id, reason), block=True)
        return True

    @property
    def open_calls(self) -> dict[str, int]:
        """Open calls and the index of the worker each runs on."""
        return {cid: w.index for cid, w in self._where.items()}

    def _send(self, w: _Worker, cmd: tuple[Any, ...], *, block: bool = False) -> bool:
        if cmd[0] != "audio":
            self._flush(w)  # the call's blocks go before its other commands
        try:
            if block:
                w.commands.put(cmd, timeout=5.0)
            else:
                w.commands.put_nowait(cmd)
            return True
        except (queue.Full, ValueError, OSError):  # full, or the worker's queue is gone
            w.dropped_blocks += 1
            return False

    # -- results (reader threads hand everything to the loop) ----------------------------
    def _read(self, w: _Worker) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            try:
                msg = w.results.get(timeout=POLL_S)
            except queue.Empty:
                if w.proc.exitcode is not None:
                    loop.call_soon_threadsafe(self._exited, w)
                    return
                continue
            except (EOFError, OSError, ValueError):
                loop.call_soon_threadsafe(self._exited, w)
                return
            loop.call_soon_threadsafe(self._on_message, w, msg)
            if msg[0] == "stopped":
                return

    def _on_message(self, w: _Worker, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "event":
            self.emit(msg[1])
        elif kind == "progress":
            call = w.calls.get(msg[1])
            if call is not None:
                call.t_s, call.cues = msg[2], msg[3]
        elif kind == "states":
            if self.on_state is not None:
                for call_id, snap in msg[1]:
                    if call_id in w.calls:  # not a call that ended meanwhile
                        self.on_state(call_id, snap)
        elif kind == "closed":
            w.calls.pop(msg[1], None)
        elif kind == "stats":
            w.stats = msg[1]
        elif kind == "pong":
            w.stats = msg[2]
            fut = self._pings.pop(msg[1], None)
            if fut is not None and not fut.done():
                fut.set_result({**msg[2], "answered_at": asyncio.get_running_loop().time()})
        elif kind == "ready":
            w.alive = True
            w.ready.set()
            log.info("analysis worker %d ready (pid %d)", w.index, msg[1])

    def _exited(self, w: _Worker) -> None:
        w.alive = False
        w.outbox.clear()
        if self._stopping and w.proc.exitcode == 0:
            return
        if not w.ready.is_set():  # it never started: starting it again would loop
            log.error("analysis worker %d stopped while starting (exit code %s)", w.index,
                      w.proc.exitcode)
            self._start_failed.set()
            return
        self.crashes += 1
        log.error("analysis worker %d stopped (exit code %s) with %d calls",
                  w.index, w.proc.exitcode, len(w.calls))
        for call_id, call in list(w.calls.items()):
            self._close_lost(call_id, call, w.proc.exitcode)
        w.calls.clear()
        if self._stopping:
            return
        if self.restarts >= self.max_restarts:
            log.error("analysis worker %d not restarted: %d restarts already", w.index,
                      self.restarts)
            return
        self.restarts += 1
        fresh = self._spawn(w.index, w.generation + 1)
        self._workers[w.index] = fresh

    def _close_lost(self, call_id: str, call: _Call, exitcode: int | None) -> None:
        """A call whose worker died: closed with what was analysed."""
        if self._where.get(call_id) is not None:
            del self._where[call_id]
        now = iso_utc(datetime.now(UTC))
        self.emit(ErrorEvent(call.t_s, WORKER_CRASHED, "the analysis worker of this call "
                             f"stopped (exit code {exitcode}); the call is closed with what "
                             "was analysed", call_id=call_id))
        self.emit(CallEnded(call_id, call.t_s, "error", now))
        self.emit(Summary(call.t_s, {"duration_s": round(call.t_s, 2), "language": call.lang,
                                     "cues": dict(sorted(call.cues.items())),
                                     "incomplete": True}, call_id=call_id))

    # -- health and figures --------------------------------------------------------------
    @property
    def healthy(self) -> bool:
        return bool(self._workers) and all(w.alive for w in self._workers)

    def stats(self) -> list[dict[str, Any]]:
        """Per worker: its figures (from the worker) and the parent's counters."""
        out = []
        for w in self._workers:
            asr = w.stats.get("asr_dropped") or {}
            out.append({
                "worker": w.index, "alive": int(w.alive), "calls": len(w.calls),
                "calls_opened": w.stats.get("calls_opened", 0), "restarts": w.generation,
                "frames": w.stats.get("frames", 0), "dropped_blocks": w.dropped_blocks,
                "queue_depth": _qsize(w.commands), "cpu_s": w.stats.get("cpu_s", 0.0),
                "rss_peak_mib": w.stats.get("rss_peak_mib", 0.0),
                "asr_dropped_agent": asr.get("agent", 0),
                "asr_dropped_customer": asr.get("customer", 0)})
        return out


def _full(q: Any) -> bool:
    try:
        return bool(q.full())
    except (NotImplementedError, OSError, ValueError):
        return False


def _qsize(q: Any) -> int:
    try:
        return int(q.qsize())
    except (NotImplementedError, OSError, ValueError):
        return 0
