"""One shard: a worker process that analyses its share of the box's calls.

The parent (:mod:`appliance.stream.shards`) sends commands on a bounded queue; the worker
keeps a :class:`~appliance.stream.session.CallSession` per call, steps all of them in a
:class:`~appliance.stream.bank.CallBank` (one Silero run per round for every channel of the
shard), decodes speech on one :class:`~appliance.asr.pool.RecognizerPool` shared by its calls
(agent audio first), and sends back every event, in order per call.

Commands (tuples, cheap to pickle):

* ``("open", call_id, lang, agent_id, source, started_at, marks)``
* ``("audio", [(call_id, PartyBlock), …])`` — the blocks the parent gathered in one turn
  of its event loop, for any of the shard's calls
* ``("mark", call_id, Mark)``
* ``("signal", call_id, event, party, ring_s)`` — the PBX's call control
  (:meth:`~appliance.stream.session.CallSession.signal`)
* ``("end", call_id, reason)``
* ``("ping", token)`` — answered with ``("pong", token, stats)`` once everything sent
  before it has been analysed (how far behind the shard is)
* ``("stop",)``

Messages back: ``("ready", pid)``, ``("event", Event)``, ``("progress", call_id, t_s,
cue_counts)`` every :data:`PROGRESS_S` of a call's audio (so the parent can close the call
with what was analysed if this process dies), ``("stats", dict)`` once a second,
``("states", [(call_id, snapshot), …])`` every ``states_s`` when the parent asked for the
calls' live state (the per-agent pages of a PBX tap), ``("closed", call_id)``, and
``("stopped",)``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from appliance.config import Config
from appliance.errors import CALL_EXISTS, CALL_FINISH_FAILED, ApplianceError
from appliance.events import ErrorEvent, Event
from appliance.stream.bank import CallBank
from appliance.stream.session import LIVE_FINISH_TIMEOUT_S, CallSession

log = logging.getLogger(__name__)

PROGRESS_S = 5.0
"""Seconds of a call's audio between two progress messages to the parent."""
STATS_EVERY_S = 1.0
ROUND_MAX_COMMANDS = 512
"""At most this many commands are taken before the shard analyses what it has."""


class Shard:
    """The calls of one worker process.  Runs in that process's event loop."""

    def __init__(self, index: int, cfg: Config, send: Callable[[tuple[Any, ...]], None], *,
                 vad: Any, make_asr: Callable[[str], Any] | None = None,
                 asr_pool: Any = None,
                 finish_timeout_s: float | None = LIVE_FINISH_TIMEOUT_S,
                 states_s: float = 0.0) -> None:
        self.index = index
        self.states_s = states_s
        """Seconds between two snapshots of every call's live state (0: none)."""
        self.cfg = cfg
        self.send = send
        self.vad = vad
        self.bank = CallBank(vad)
        self.sessions: dict[str, CallSession] = {}
        self._progress_at: dict[str, float] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._make_asr = make_asr
        self.asr_pool = asr_pool
        self.finish_timeout_s = finish_timeout_s
        self.frames_ended = 0
        """Frames analysed in the shard's calls that have ended (open calls count their
        own: ``engine.frames``)."""
        self.calls_opened = 0
        self.unknown_call_blocks = 0

    # -- commands ------------------------------------------------------------------------
    def handle(self, cmd: tuple[Any, ...]) -> bool:
        """Apply one command; False when it was ``stop``."""
        op = cmd[0]
        if op == "audio":
            for call_id, block in cmd[1]:
                s = self.sessions.get(call_id)
                if s is None:
                    self.unknown_call_blocks += 1
                else:
                    s.engine.feed(block.agent, block.customer)
        elif op == "ping":
            self.analyse()
            self.send(("pong", cmd[1], self.stats()))
        elif op == "open":
            self._open(*cmd[1:])
        elif op == "mark":
            s = self.sessions.get(cmd[1])
            if s is not None:
                s.add_mark(cmd[2])
        elif op == "signal":
            s = self.sessions.get(cmd[1])
            if s is not None:
                self.analyse()  # the signal lands at the audio time it was sent
                s.signal(cmd[2], party=cmd[3], ring_s=cmd[4])
        elif op == "end":
            self._end(cmd[1], cmd[2])
        elif op == "stop":
            return False
        return True

    def _open(self, call_id: str, lang: str, agent_id: str | None, source: str,
              started_at: datetime | None, marks: list[Any]) -> None:
        if call_id in self.sessions:
            self.send(("event", ErrorEvent(None, CALL_EXISTS, f"call {call_id} is open "
                                           "already", call_id=call_id)))
            return
        asr = self._make_asr(lang) if self._make_asr is not None else None
        # transcripts travel to the parent only when the site keeps them (the store's
        # transcripts, as at the desk) or asked for them ([words] transcript)
        keep = self.cfg.storage.transcripts or self.cfg.words.transcript
        s = CallSession(self.cfg, self.vad, self._emit, call_id=call_id, lang=lang,
                        marks=marks, asr=asr, transcripts=keep, agent_id=agent_id,
                        source=source,
                        started_at=started_at, finish_timeout_s=self.finish_timeout_s)
        self.sessions[call_id] = s
        self.bank.add(s.engine)
        self._progress_at[call_id] = PROGRESS_S
        self.calls_opened += 1

    def _end(self, call_id: str, reason: Any) -> None:
        if call_id not in self.sessions:
            return
        self.analyse()  # what was fed before the end belongs to the call
        s = self.sessions.pop(call_id)
        self.bank.remove(call_id)
        self.frames_ended += s.engine.frames
        self._progress_at.pop(call_id, None)
        task = asyncio.get_running_loop().create_task(self._finish(s, reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _finish(self, s: CallSession, reason: Any) -> None:
        try:
            if s.engine.heard_speech:
                await s.finish(reason)
            else:
                await s.discard(reason)
        except Exception as exc:  # one call's failure is that call's error event
            log.exception("call %s could not be finished", s.call_id)
            self._emit(ErrorEvent(s.t_s, CALL_FINISH_FAILED, type(exc).__name__,
                                  call_id=s.call_id))
        self.send(("closed", s.call_id))

    def _emit(self, ev: Event) -> None:
        self.send(("event", ev))

    # -- analysis ------------------------------------------------------------------------
    def analyse(self) -> None:
        """Step every call with complete windows (Silero batched over the shard)."""
        got = self.bank.drain()
        for cid, s in self.sessions.items():
            s.deliver(got.get(cid, []))
            if s.t_s >= self._progress_at[cid]:
                self._progress_at[cid] = s.t_s + PROGRESS_S
                self.send(("progress", cid, s.t_s, dict(s.engine.cue_counts)))

    def states(self) -> list[tuple[str, dict[str, Any]]]:
        """Every open call's live state (the dashboard's gauges, timers and checklists)."""
        return [(cid, s.engine.snapshot()) for cid, s in self.sessions.items()]

    def stats(self) -> dict[str, Any]:
        frames = self.frames_ended + sum(s.engine.frames for s in self.sessions.values())
        return {"worker": self.index, "pid": os.getpid(), "calls": len(self.sessions),
                "calls_opened": self.calls_opened, "frames": frames,
                "unknown_call_blocks": self.unknown_call_blocks,
                "cpu_s": time.process_time(),
                "asr_dropped": dict(self.asr_pool.dropped) if self.asr_pool else {},
                "asr_pending": self.asr_pool.pending() if self.asr_pool else 0,
                "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

    async def close_all(self) -> None:
        for cid in list(self.sessions):
            self._end(cid, "service_stop")
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


async def _serve(shard: Shard, inbox: asyncio.Queue[tuple[Any, ...]],
                 clock: Callable[[], float]) -> None:
    next_stats = next_states = clock()
    running = True
    while running:
        if shard.states_s:  # the live states go out even while no audio comes
            try:
                cmd = await asyncio.wait_for(inbox.get(), shard.states_s)
            except TimeoutError:
                cmd = ("tick",)
        else:
            cmd = await inbox.get()
        n = 0
        while True:
            running = shard.handle(cmd)
            n += 1
            if not running or n >= ROUND_MAX_COMMANDS or inbox.empty():
                break
            cmd = inbox.get_nowait()
        shard.analyse()
        if clock() >= next_stats:
            next_stats = clock() + STATS_EVERY_S
            shard.send(("stats", shard.stats()))
        if shard.states_s and clock() >= next_states and shard.sessions:
            next_states = clock() + shard.states_s
            shard.send(("states", shard.states()))
    await shard.close_all()


def worker_main(index: int, cfg: Config, commands: Any, results: Any,
                models_dir: str | None = None, recognizer_threads: int = 1,
                finish_timeout_s: float | None = LIVE_FINISH_TIMEOUT_S,
                states_s: float = 0.0) -> None:
    """The worker process's entry point (``multiprocessing`` target)."""
    logging.basicConfig(level=logging.INFO, format=f"shard {index}: %(levelname)s %(message)s")
    from appliance.engine.vad import SileroModel

    def send(msg: tuple[Any, ...]) -> None:
        results.put(msg)

    pool, make_asr = _asr_factory(cfg, Path(models_dir) if models_dir else None,
                                  recognizer_threads)
    shard = Shard(index, cfg, send, vad=SileroModel(), make_asr=make_asr, asr_pool=pool,
                  finish_timeout_s=finish_timeout_s, states_s=states_s)
    send(("ready", os.getpid()))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

        def read() -> None:  # the only thing this thread does: move commands into the loop
            while True:
                try:
                    cmd = commands.get()
                except (EOFError, OSError):
                    cmd = ("stop",)
                loop.call_soon_threadsafe(inbox.put_nowait, cmd)
                if cmd[0] == "stop":
                    return

        threading.Thread(target=read, name="shard-commands", daemon=True).start()
        await _serve(shard, inbox, time.monotonic)

    asyncio.run(main())
    send(("stopped",))
    results.close()
    results.join_thread()


def _asr_factory(cfg: Config, models_dir: Path | None,
                 threads: int) -> tuple[Any, Callable[[str], Any] | None]:
    """Recognizer sessions on one pool per worker, a model per language loaded once."""
    if not cfg.asr.enabled:
        return None, None
    from appliance.asr.pool import RecognizerPool
    from appliance.asr.session import AsrSession, load_call_model, queue_items
    from appliance.asr.worker import vosk_recognizer_factory

    pool = RecognizerPool(threads, queue_items(cfg.asr) * 4, name="shard-recognizer")
    models: dict[str, Any] = {}

    def make(lang: str) -> Any:
        if lang not in models:
            try:
                models[lang] = load_call_model(lang, models_dir, cfg.asr)
            except ApplianceError as exc:
                log.warning("%s; word cues are off for %s calls", exc.message, lang)
                models[lang] = None
        model = models[lang]
        if model is None:
            return None
        return AsrSession(vosk_recognizer_factory(model), cfg.asr, block_when_full=False,
                          pool=pool)

    # the box's own language is loaded before the worker says it is ready, so its first
    # call does not stall every call of the worker while a model loads (other languages
    # load at their first call)
    make(cfg.language)
    return pool, make

