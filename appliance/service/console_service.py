"""``appliance console``: the supervisor console as a service.

It opens the central store (SQLite, or the site's PostgreSQL), starts the ingest (the
broker subscriber and its writer thread), serves the pages, and expires what is older than
``[console] keep_days`` once an hour.

systemd: READY once the store is open and the pages listen (the broker may still be
connecting: STATUS says so, and ``/healthz`` says why); WATCHDOG pings only while the
writer thread is alive and the event loop turns; STATUS every few seconds (broker, boxes,
messages, queue).  SIGTERM (or SIGINT) stops cleanly: the ingest disconnects (the broker
keeps the session), stores what it holds, and the store is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from appliance.config import Config
from appliance.console.ingest import BrokerSettings, Ingest
from appliance.console.metrics import ConsoleCollector
from appliance.console.settings import Secrets, open_store, resolve_secrets
from appliance.console.store import CentralStore
from appliance.console.web import ConsoleWeb
from appliance.events import iso_utc
from appliance.service.notify import Notifier

log = logging.getLogger(__name__)

TICK_S = 2.0
EXPIRE_EVERY_S = 3600.0


class ConsoleService:
    """The console.  ``await serve()`` until SIGTERM; :meth:`start`/:meth:`stop` for tests.

    ``store``: an open store to use instead of the configured one (a test's); ``secrets``:
    instead of reading the configured files; ``host``/``port`` override ``[console]``."""

    def __init__(self, cfg: Config, *, env: Mapping[str, str] | None = None,
                 notifier: Notifier | None = None, store: CentralStore | None = None,
                 secrets: Secrets | None = None, host: str | None = None,
                 port: int | None = None) -> None:
        self.cfg = cfg
        self.env = dict(os.environ if env is None else env)
        self.notifier = notifier or Notifier(None)
        c = cfg.console
        self.secrets = secrets or resolve_secrets(c, self.env)
        self._own_store = store is None
        self.store = store or open_store(c, self.secrets, cfg.storage.state_dir, self.env)
        self.ingest = Ingest(BrokerSettings.from_config(c, self.secrets.password), self.store,
                             queue_size=c.queue_size, batch_size=c.batch_size)
        self.registry = CollectorRegistry()
        self._box_counts: dict[str, int] = {}
        self.registry.register(ConsoleCollector(self.ingest.stats, self.ingest.latencies_s,
                                                lambda: self._box_counts))
        self.web = ConsoleWeb(self.store, token=self.secrets.token,
                              host=c.host if host is None else host,
                              port=c.port if port is None else port,
                              silent_after_s=c.silent_after_s, teams=c.teams,
                              health=self.health, registry=self.registry)
        self._tasks: list[asyncio.Task[None]] = []
        self._store_ok = True
        self.stopping = False

    @property
    def url(self) -> str:
        return f"http://{self.web.host}:{self.web.port}"

    def health(self) -> dict[str, Any]:
        """``/healthz``: broker connected, store answering, writer alive, queue depth."""
        s = self.ingest.stats()
        self._store_ok = self.store.ping()
        problems = []
        if not s["connected"]:
            problems.append(s["error"]["code"] if s["error"] else "console.broker_unreachable")
        if not self._store_ok or not s["store_ok"]:
            problems.append("store.unavailable")
        if not s["writer_alive"]:
            problems.append("console.writer_stopped")
        return {"healthy": not problems, "problems": problems, "broker": {
            "connected": s["connected"], "error": s["error"]}, "store": {
            "kind": self.store.kind, "ok": self._store_ok}, "ingest": s}

    async def start(self) -> None:
        self.ingest.start()
        await self.web.start()
        self._tasks = [asyncio.create_task(self._tick()), asyncio.create_task(self._expire())]
        self.notifier.ready(self._status())
        log.info("console started: store %s, broker %s", self.store.kind, self.cfg.console.broker)

    async def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        self.notifier.stopping("Stopping: storing what the broker delivered")
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.web.stop()
        await asyncio.to_thread(self.ingest.stop)
        if self._own_store:
            self.store.close()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        await self.start()
        try:
            await done.wait()
        finally:
            await self.stop()

    def _status(self) -> str:
        s = self.ingest.stats()
        broker = "connected" if s["connected"] else (
            f"broker: {s['error']['code']}" if s["error"] else "connecting")
        online = self._box_counts.get("online", 0)
        return (f"Broker {broker}; {online} boxes online; {s['stored']} messages stored, "
                f"{s['duplicates']} duplicates, {s['bad']} bad; queue {s['queue_depth']}")

    async def _tick(self) -> None:
        while True:
            try:
                boxes = await asyncio.to_thread(self.store.boxes)
                now = datetime.now(UTC)
                quiet = iso_utc(now - timedelta(seconds=self.cfg.console.silent_after_s))
                self._box_counts = {
                    "online": sum(b["state"] == "online" for b in boxes),
                    "offline": sum(b["state"] != "online" for b in boxes),
                    "silent": sum((b["last_seen"] or "") < quiet for b in boxes)}
            except Exception as exc:
                log.debug("box counts failed: %s", exc)
            if self.ingest.writer_alive:
                self.notifier.tick()  # the watchdog: only while the writer lives
            self.notifier.status(self._status())
            await asyncio.sleep(TICK_S)

    async def _expire(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.store.expire)
            except Exception as exc:
                log.warning("expiring old calls failed: %s", exc)
            await asyncio.sleep(EXPIRE_EVERY_S)
