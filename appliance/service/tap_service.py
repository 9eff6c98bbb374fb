"""``appliance run`` with ``[tap] enabled``: the box attached at the PBX.

One process owns everything but the analysis: the HTTP server (dashboard pages per agent,
the team-lead page, the control API, the WebSocket listener, ``/healthz``, ``/metrics``),
the AudioSocket and RTP listeners, the :class:`~appliance.audio.tap.TapCalls` they feed,
and the :class:`~appliance.stream.shards.ShardPool` whose worker processes analyse every
call on the same per-call path as a file or the desk.  Every event of every call goes out
on one :class:`~appliance.stream.bus.EventBus`: the floor board, the store's recorder, the
cue counts and the agents' pages subscribe.

systemd: READY once the workers have loaded their models and every listener is bound; the
watchdog is pinged only while the workers answer (a stuck pool stops the pings); STATUS
says how many calls are open.  SIGTERM stops the listeners, ends every open call with its
summary, then stops the workers.  SIGHUP re-reads the config: a valid file is logged as
taking effect at the next restart (the workers hold their configuration), an invalid one
is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.audio.tap import TapCalls
from appliance.config import Config, load_config
from appliance.config_env import resolve_state_dir
from appliance.errors import CALL_UNKNOWN, ApplianceError
from appliance.events import CallEnded, CallStarted, Cue, Event, Summary
from appliance.service.notify import Notifier
from appliance.sinks.archive import CallArchive
from appliance.sinks.fleet.sink import FleetSink, open_fleet
from appliance.sinks.floor import FloorBoard
from appliance.stream.bus import EventBus
from appliance.stream.record import CallRecorder
from appliance.stream.shards import ShardPool

log = logging.getLogger(__name__)

TICK_S = 0.25
"""How often idle calls, stale announcements and unpaired legs are looked for."""
PING_EVERY_S = 5.0
"""How often the workers are asked how far behind they are (the watchdog's proof of life)."""
PING_TIMEOUT_S = 30.0
STATES_S = 1.0
"""Seconds between two live states of each call (the agents' pages and the floor)."""
_NOT_PUBLISHED = ("transcript", "word")


class TapService:
    """The PBX tap.  ``await serve()`` until SIGTERM; :meth:`start`/:meth:`stop` for tests."""

    def __init__(self, cfg: Config, *, notifier: Notifier | None = None,
                 archive: CallArchive | None = None, host: str | None = None,
                 port: int | None = None, models_dir: Path | None = None,
                 processes: int | None = None, config_path: Path | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.notifier = notifier or Notifier(None)
        self.archive = archive
        self.host = cfg.dashboard.host if host is None else host
        self.port = cfg.dashboard.port if port is None else port
        self.config_path = config_path
        self.clock = clock
        self.bus = EventBus()
        self.floor = FloorBoard(clock, check_back_s=cfg.hold.check_back_s,
                                too_long_s=cfg.hold.too_long_s)
        self.cue_counts: Counter[str] = Counter()
        self.calls_total = 0
        self._agents: dict[str, str] = {}
        self._ended_agents: OrderedDict[str, str] = OrderedDict()
        self.pool = ShardPool(cfg, self.bus.emit, processes=processes, models_dir=models_dir,
                              on_state=self._on_state, states_s=STATES_S)
        self.tap = TapCalls(self.pool, idle_timeout_s=cfg.tap.idle_timeout_s,
                            max_skew_s=cfg.tap.max_skew_s, plan_ttl_s=cfg.tap.plan_ttl_s)
        self.listeners: dict[str, Any] = {}
        """By name (``websocket``, ``audiosocket``, ``rtp``): each has ``stats()`` and
        ``running``; the socket ones ``start()``/``stop()``."""
        self.ws: Any = None
        self.api: Any = None
        self.server: Any = None
        self.url = ""
        self.stopping = False
        self.last_ping_s: float | None = None
        self.behind_s = 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self.bus.subscribe(self._agent_of)
        self.bus.subscribe(self.floor)
        self.bus.subscribe(self._count)
        if archive is not None:
            self.bus.subscribe(CallRecorder(archive.record,
                                            keep_transcripts=archive.keeps_transcripts))
        self.bus.subscribe(self._publish)
        state_dir = (archive.state_dir if archive is not None
                     else resolve_state_dir(cfg.storage.state_dir, os.environ))
        self.fleet: FleetSink | None = open_fleet(cfg.fleet, state_dir, os.environ,
                                                  figures=self._fleet_figures,
                                                  version=__version__)
        """The site's MQTT broker (``[fleet]``), None when off."""
        if self.fleet is not None:
            self.bus.subscribe(self.fleet)

    # -- events ---------------------------------------------------------------------------
    def _agent_of(self, ev: Event) -> None:
        """Which agent's page a call's events go to (kept until its summary)."""
        if isinstance(ev, CallStarted):
            if ev.agent_id:
                self._agents[ev.call_id] = ev.agent_id
        elif isinstance(ev, CallEnded):
            agent = self._agents.pop(ev.call_id, None)
            if agent is not None:
                self._ended_agents[ev.call_id] = agent
                while len(self._ended_agents) > 256:
                    self._ended_agents.popitem(last=False)

    def _agent(self, call_id: str) -> str | None:
        return self._agents.get(call_id) or self._ended_agents.get(call_id)

    def _count(self, ev: Event) -> None:
        if isinstance(ev, CallStarted):
            self.calls_total += 1
        elif isinstance(ev, Cue):
            self.cue_counts[ev.kind] += 1
        elif isinstance(ev, Summary):
            self.cue_counts["summary"] += 1

    def _publish(self, ev: Event) -> None:
        if self.server is None or ev.kind in _NOT_PUBLISHED:
            return
        agent = self._agent(ev.call_id)
        if agent is not None:  # ids are checked where they come in; a page never fails a call
            with contextlib.suppress(ValueError):
                self.server.publish(ev.to_json(), agent_id=agent)
        if isinstance(ev, Summary):
            self._ended_agents.pop(ev.call_id, None)

    def _on_state(self, call_id: str, snapshot: dict[str, Any]) -> None:
        self.floor.state(call_id, snapshot)
        agent = self._agents.get(call_id)
        if self.server is not None and agent is not None:
            with contextlib.suppress(ValueError):
                self.server.publish({**snapshot, "call_id": call_id}, agent_id=agent)

    # -- control from the agent's page ----------------------------------------------------
    def _agent_call(self, agent_id: str) -> str | None:
        """The agent's open call (the latest, should a PBX have given them two)."""
        mine = [r for r in self.floor.rows.values() if r.agent_id == agent_id]
        return max(mine, key=lambda r: r.opened_s).call_id if mine else None

    def agent_hold(self, agent_id: str, event: str) -> None:
        call_id = self._agent_call(agent_id)
        if call_id is None or not self.tap.mark(call_id, event):
            raise ApplianceError(CALL_UNKNOWN, f"agent {agent_id} has no open call")

    def agent_end(self, agent_id: str) -> None:
        call_id = self._agent_call(agent_id)
        if call_id is None or not self.tap.end(call_id, "end_key"):
            raise ApplianceError(CALL_UNKNOWN, f"agent {agent_id} has no open call")

    # -- the team lead's view -------------------------------------------------------------
    def floor_routes(self) -> list[Any]:
        """``GET /floor``: the team lead's page (``static/floor.html``, which polls)
        and ``GET /api/floor``: the live calls (agent, duration, hold timer, last cue)."""
        from aiohttp import web

        from appliance.sinks.dashboard.server import asset

        async def page(_: web.Request) -> web.Response:
            return asset("floor.html")

        async def floor(_: web.Request) -> web.Response:
            return web.json_response(self.floor.view(),
                                     headers={"Cache-Control": "no-store"})

        return [web.get("/floor", page), web.get("/api/floor", floor, allow_head=False)]

    # -- health and figures ---------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """What ``/healthz`` shows; ``healthy`` is False when something inside has stopped
        (a worker that keeps dying, a listener that stopped, the store, the workers not
        answering)."""
        problems, codes = [], []
        if not self.pool.healthy:
            problems.append("analysis workers failing (restarted too often)")
            codes.append("workers.failing")
        stale = (self.last_ping_s is not None  # real time: the workers' proof of life
                 and time.monotonic() - self.last_ping_s > PING_EVERY_S + PING_TIMEOUT_S)
        if stale:
            problems.append("analysis workers not answering")
            codes.append("workers.not_answering")
        for name, lst in self.listeners.items():
            if not getattr(lst, "running", True):
                problems.append(f"{name} listener stopped")
                codes.append(f"listener.{name}.stopped")
        storage = self.archive.health() if self.archive is not None else None
        if storage is not None and not storage["ok"]:
            problems.append(f"storage {storage['state']}")
            codes.append(f"storage.{storage['state']}")
        fleet = self.fleet.health() if self.fleet is not None else None
        if fleet is not None and not fleet["ok"]:
            problems.append(f"fleet publisher stopped ({fleet['last_error']})")
            codes.append(f"fleet.{fleet['state']}")
        return {"healthy": not problems, "problems": problems, "problem_codes": codes,
                "fleet": fleet, "mode": "tap",
                "calls_open": len(self.tap.calls), "calls_announced": len(self.tap.plans),
                "calls_total": self.calls_total, "workers_behind_s": round(self.behind_s, 3),
                "workers": self.pool.stats(),
                "listeners": {n: lst.stats() for n, lst in self.listeners.items()},
                "dropped_blocks": self.tap.dropped_blocks, "storage": storage}

    def figures(self) -> dict[str, Any]:
        """What the tap's metrics collector reads."""
        h = self.health()
        listeners = {}
        for name, stats in h["listeners"].items():
            opened = next((stats[k] for k in ("open", "streams_open", "connections_open")
                           if k in stats), None)
            listeners[name] = {**stats, "open": opened} if opened is not None else stats
        return {"healthy": h["healthy"], "calls_open": h["calls_open"],
                "calls": self.calls_total, "announced": h["calls_announced"],
                "dropped_blocks": self.tap.dropped_blocks, "cues": dict(self.cue_counts),
                "storage": h["storage"], "listeners": listeners}

    def _fleet_figures(self) -> dict[str, Any]:
        """What the fleet's ``…/stats`` carries of the tap (the fleet's own added there)."""
        h = self.health()
        storage = h["storage"] or {}
        return {"healthy": not [c for c in h["problem_codes"] if not c.startswith("fleet.")],
                "problems": [c for c in h["problem_codes"] if not c.startswith("fleet.")],
                "calls_open": h["calls_open"],
                "drops": {"dropped_blocks": self.tap.dropped_blocks,
                          "storage_dropped": storage.get("dropped", 0)}}

    def status_line(self) -> str:
        h = self.health()
        parts = [*(p.upper() for p in h["problems"]),
                 f"PBX tap: {h['calls_open']} calls open, {self.calls_total} since start",
                 f"workers {self.behind_s:.1f} s behind"]
        if self.url:
            parts.append(f"pages {self.url}")
        return "; ".join(parts)

    # -- lifecycle ------------------------------------------------------------------------
    async def start(self) -> None:
        """Workers first (they take longest: each loads Silero and the speech models), then
        the HTTP server and the listeners."""
        from appliance.service.tap_wiring import make_listeners, make_server

        self.notifier.status("Starting the analysis workers")
        await self.pool.start()
        try:
            sockets = make_listeners(self)  # before the server: the control API names them
            self.listeners.update(sockets)
            self.server = make_server(self)
            await self.server.start()
            self.url = f"http://{self.host}:{self.server.port}/"
            for lst in sockets.values():
                await lst.start()
        except BaseException:  # a port taken, say: nothing is left running behind the error
            await self.stop()
            raise
        self._tasks = [asyncio.create_task(self._ticks(), name="tap-ticks"),
                       asyncio.create_task(self._pings(), name="tap-pings")]
        if self.fleet is not None:
            await self.fleet.start()
        log.warning("PBX tap ready: pages and control API on %s; listeners: %s", self.url,
                    ", ".join(self.listeners) or "none")

    async def stop(self) -> None:
        """No new audio; every open call ended with its summary; the workers stopped."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close_all()
        for name, lst in self.listeners.items():
            if name == "websocket":
                continue
            try:
                await lst.stop()
            except Exception:
                log.exception("the %s listener did not stop cleanly", name)
        for call_id in list(self.tap.calls):
            self.tap.end(call_id, "service_stop")
        await self.pool.stop()
        if self.fleet is not None:  # after the last summary: it goes out (or waits on disk)
            await self.fleet.stop()
        if self.server is not None:
            await self.server.stop()

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = self.clock()
            try:
                self.tap.expire(now)  # the listeners' own tickers expire their streams
            except Exception:  # a bug here must not stop the box's housekeeping
                log.exception("tap housekeeping failed")

    async def _pings(self) -> None:
        while True:
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel that
                # lands as the answer arrives, and this loop then outlives stop() forever
                async with asyncio.timeout(PING_TIMEOUT_S):
                    waits = await self.pool.ping()
            except TimeoutError:
                log.error("analysis workers did not answer within %.0f s", PING_TIMEOUT_S)
            else:
                self.last_ping_s = time.monotonic()
                self.behind_s = max(waits, default=0.0)
                self.notifier.tick()
            self.notifier.status(self.status_line())
            await asyncio.sleep(PING_EVERY_S)

    def reload(self) -> None:
        """SIGHUP: validate the file; the workers keep their configuration until restart."""
        self.notifier.reloading()
        try:
            load_config(self.config_path, os.environ)
        except ApplianceError as exc:
            log.error("config reload refused: %s", exc)
            self.notifier.ready(f"Reload refused ({exc.code}); " + self.status_line())
            return
        log.warning("config file valid; the PBX tap applies it at the next restart "
                    "(systemctl restart appliance)")
        self.notifier.ready(self.status_line())

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()

        def stop() -> None:
            if self.stopping:
                log.warning("already stopping: ending the open calls")
                return
            self.stopping = True
            self.notifier.stopping("Stopping: ending the open calls with their summaries")
            done.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop)
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        try:
            await self.start()
            self.notifier.ready(self.status_line())
            await done.wait()
        finally:
            await self.stop()
