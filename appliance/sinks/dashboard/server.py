"""The agent's dashboard: an aiohttp.web server with Server-Sent Events.

Endpoints: ``/`` and ``/index.html`` (the page), ``/static/<file>``, ``/events`` (SSE:
``state``, ``cue``, ``summary``, ``call``), ``POST /hold`` (``{"action": "start"|"end"}``),
``POST /end``, ``/healthz`` (503 when the health callback says ``"healthy": false``) and
``/metrics`` (Prometheus text, or OpenMetrics when the scraper's ``Accept`` asks for it, from
the server's own registry: the collectors given, and the dashboard's own figures; see
:mod:`appliance.sinks.metrics`).  Every asset ships in ``static/``; the page loads nothing
else.

Per-agent views (a PBX tap where each agent opens their own page): ``/agent/<id>`` serves
the same page, ``/agent/<id>/events`` that agent's stream, ``POST /agent/<id>/hold`` and
``/agent/<id>/end`` call ``on_agent_hold(id, "hold_start"|"hold_end")`` and
``on_agent_end(id)``.  Agent ids are ``[A-Za-z0-9._@-]{1,64}`` (404 otherwise).

Other modules add routes (``routes=`` or :meth:`DashboardServer.add_routes` before
:meth:`~DashboardServer.start`: the PBX tap's ``/api/...`` and ``/tap/ws/...``); every route
goes through the same guard: the access checks of :mod:`appliance.sinks.dashboard.access`,
a bound on the request head, request counting, and a bug in a handler costs that request
(500) and never the server.  :func:`~appliance.sinks.dashboard.access.read_json` reads a
bounded JSON body.  A handler is cancelled when its client goes (aiohttp's
``handler_cancellation``), and at :meth:`~DashboardServer.stop` after a second's grace.

:meth:`DashboardServer.publish` is called from the event loop and never blocks: see
:mod:`appliance.sinks.dashboard.views` for the per-page queues and the replay on connect.

Slow clients: a request head must arrive within ``request_timeout_s`` of the connection (or
of the previous response): aiohttp's keep-alive timer, armed from the connection's start,
closes a connection that has not completed a request by then; a body must arrive within
``request_timeout_s`` too (408, :func:`~appliance.sinks.dashboard.access.read_body`), and a
page that does not take its stream for ``write_timeout_s`` is cut.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from appliance.config import DashboardConfig
from appliance.errors import (
    DASHBOARD_BIND_FAILED,
    DASHBOARD_PORT_IN_USE,
    DASHBOARD_TOKEN_REQUIRED,
    ApplianceError,
)
from appliance.sinks.dashboard.access import (
    API_MAX_BODY,
    REQUEST_TIMEOUT,
    Access,
    is_loopback,
    read_body,
    read_json,
)
from appliance.sinks.dashboard.views import (
    AGENT_ID,
    AGENT_ID_CHARS,
    Client,
    View,
    Views,
    default_json,
)
from appliance.sinks.metrics import DashboardCollector

log = logging.getLogger(__name__)
_aiohttp_log = logging.getLogger(__name__ + ".aiohttp")

STATIC_DIR = Path(__file__).resolve().parent / "static"
_STATIC_NAME = re.compile(r"^[A-Za-z0-9_-]+\.(html|js|css|svg|png|ico|txt)$")
_TYPES = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8",
          "css": "text/css; charset=utf-8", "svg": "image/svg+xml", "png": "image/png",
          "ico": "image/x-icon", "txt": "text/plain; charset=utf-8"}
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'")
_COMMON = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer"}
_AGENT = "/agent/{agent_id:" + AGENT_ID_CHARS + "}"
MAX_HEADERS = 64
_SHUTDOWN_S = 1.0
"""How long :meth:`DashboardServer.stop` lets a handler still running finish (a page's
stream ends at once; another module's WebSocket handler is cancelled after this)."""
_SET_COOKIE = web.RequestKey("set_cookie", str)
_PREPARED = web.RequestKey("prepared", bool)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def asset(name: str, static_dir: Path = STATIC_DIR) -> web.Response:
    """A file of ``static/`` with the pages' headers (``Content-Security-Policy``,
    ``X-Frame-Options: DENY``); 404 for a name that is not a plain asset's, or no file.
    Another module serves its own page with it (the tap's ``/floor``)."""
    if not _STATIC_NAME.match(name):
        raise web.HTTPNotFound(text="not found\n")
    try:
        body = (static_dir / name).read_bytes()
    except OSError as exc:
        raise web.HTTPNotFound(text="not found\n") from exc
    return web.Response(body=body, headers={
        hdrs.CONTENT_TYPE: _TYPES[name.rsplit(".", 1)[1]],
        "Content-Security-Policy": _CSP, "X-Frame-Options": "DENY"})


def _quiet_refusals(record: logging.LogRecord) -> bool:
    """aiohttp logs every malformed request at ERROR with a traceback (and the bytes): one
    debug line instead; anything else it logs passes."""
    if record.getMessage().startswith("Error handling request"):
        exc = record.exc_info[1] if record.exc_info else None
        log.debug("refused a malformed request (%s)", type(exc).__name__)
        return False
    return True


_aiohttp_log.addFilter(_quiet_refusals)


class DashboardServer:
    """The dashboard's HTTP + SSE server.  Create, ``await start()``, ``publish()``..."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, *, token: str = "",
                 on_hold: Callable[[str], None] | None = None,
                 on_end_call: Callable[[], None] | None = None,
                 on_agent_hold: Callable[[str, str], None] | None = None,
                 on_agent_end: Callable[[str], None] | None = None,
                 health: Callable[[], dict[str, Any]] | None = None,
                 collectors: Iterable[Collector] = (),
                 routes: Iterable[web.AbstractRouteDef] = (),
                 heartbeat_s: float = 10.0, client_queue: int = 64, history: int = 20,
                 max_clients: int = 16, max_views: int = 2000, max_head: int = 8192,
                 max_body: int = 1024, request_timeout_s: float = 10.0,
                 write_timeout_s: float = 15.0, static_dir: Path = STATIC_DIR) -> None:
        self.host = host
        self.port = port
        self._access = Access(token, host)
        self._on_hold = on_hold
        self._on_end_call = on_end_call
        self._on_agent_hold = on_agent_hold
        self._on_agent_end = on_agent_end
        self._health = health or (lambda: {"ok": True})
        self._routes: list[web.AbstractRouteDef] = list(routes)
        self._heartbeat_s = heartbeat_s
        self._client_queue = client_queue
        self._max_clients = max_clients
        self._max_head = max_head
        self._max_body = max_body
        self._request_timeout_s = request_timeout_s
        self._write_timeout_s = write_timeout_s
        self._static_dir = static_dir
        self._views = Views(history, max_views)
        self._runner: web.AppRunner | None = None
        self._closing = False
        self._clients = 0
        self.dropped = 0
        """Frames dropped from slow clients' queues, over all clients (and events for a new
        agent's view when every view has a page open and there is no room)."""
        self.published = 0
        self.requests = 0
        self.registry = CollectorRegistry()
        """What ``/metrics`` serves: this server's own (never the library's global
        registry); more sources may be registered on it while the server runs."""
        for collector in (*collectors, DashboardCollector(self)):
            self.registry.register(collector)

    @classmethod
    def from_config(cls, cfg: DashboardConfig, **kwargs: Any) -> DashboardServer:
        """A server for the ``[dashboard]`` section (callbacks as keyword arguments)."""
        return cls(cfg.host, cfg.port, token=cfg.token, **kwargs)

    @property
    def clients(self) -> int:
        """Connected SSE clients (pages), over every view."""
        return self._clients

    @property
    def views(self) -> int:
        """Agents' views held (the desk's view is not counted)."""
        return len(self._views)

    @property
    def views_evicted(self) -> int:
        return self._views.evicted

    def add_routes(self, routes: Iterable[web.AbstractRouteDef]) -> None:
        """More routes (``aiohttp.web.get(...)``, a ``RouteTableDef``), served behind the same
        guard; before :meth:`start`."""
        if self._runner is not None:
            raise RuntimeError("add routes before the dashboard server starts")
        self._routes.extend(routes)

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        if self._runner is not None:
            return
        if not self._access.has_token and not is_loopback(self.host):
            raise ApplianceError(
                DASHBOARD_TOKEN_REQUIRED,
                f"the dashboard binds to {self.host or 'every address'}, beyond this machine, "
                "without a token: set [dashboard] token or bind [dashboard] host = "
                '"127.0.0.1"')
        self._closing = False
        runner = self.make_runner()
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host or None, self.port, reuse_address=True).start()
        except OSError as exc:
            await runner.cleanup()
            if exc.errno == errno.EADDRINUSE:
                raise ApplianceError(
                    DASHBOARD_PORT_IN_USE,
                    f"dashboard port {self.port} on {self.host} is already in use by another "
                    "program: stop it or choose another [dashboard] port") from exc
            raise ApplianceError(
                DASHBOARD_BIND_FAILED,
                f"cannot serve the dashboard on {self.host}:{self.port} ({exc.strerror or exc})"
                ": check [dashboard] host and [dashboard] port") from exc
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("dashboard on http://%s:%d/", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening, end every page's stream at once, give other handlers still
        running a moment, then close every connection."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._closing = True
        for view in self._views.all():
            for client in view.clients:
                client.wake.set()
        await runner.cleanup()

    def make_runner(self) -> web.AppRunner:
        """An ``AppRunner`` for this server's application, with its limits (not yet set up
        nor bound: :meth:`start` binds it; the fuzz tests feed its protocol bytes)."""
        return web.AppRunner(
            self._app(), handle_signals=False, access_log=None, shutdown_timeout=_SHUTDOWN_S,
            handler_cancellation=True, logger=_aiohttp_log,
            keepalive_timeout=self._request_timeout_s,  # also bounds reading a request head
            lingering_time=min(self._request_timeout_s, 2.0), max_line_size=self._max_head,
            max_field_size=self._max_head, max_headers=MAX_HEADERS)

    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard()], client_max_size=API_MAX_BODY)
        app[REQUEST_TIMEOUT] = self._request_timeout_s
        app.on_response_prepare.append(self._on_prepare)
        app.add_routes([
            web.get("/", self._page), web.get("/index.html", self._page),
            web.get("/static/{name}", self._static),
            web.get("/events", self._desk_events, allow_head=False),
            web.post("/hold", self._hold), web.post("/end", self._end),
            web.get("/healthz", self._healthz), web.get("/metrics", self._metrics),
            web.get(_AGENT, self._page),
            web.get(_AGENT + "/events", self._agent_events, allow_head=False),
            web.post(_AGENT + "/hold", self._hold), web.post(_AGENT + "/end", self._end),
        ])
        app.add_routes(self._routes)
        return app

    # -- the guard every route goes through -------------------------------------------------
    def _guard(self) -> Any:
        @web.middleware
        async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
            self.requests += 1
            head = sum(len(k) + len(v) + 4 for k, v in request.raw_headers)
            if head + len(request.raw_path) + len(request.method) + 12 > self._max_head:
                raise web.HTTPRequestHeaderFieldsTooLarge(text="request head too large\n")
            cookie = self._access.check(request)
            if cookie:
                request[_SET_COOKIE] = cookie
            try:
                return await handler(request)
            except web.HTTPException:
                raise
            except Exception as exc:  # a bug must cost one request, never the server
                log.exception("dashboard request failed: %s", type(exc).__name__)
                if request.get(_PREPARED):
                    raise  # the answer has begun: aiohttp closes the connection
                return web.Response(status=500, text="internal error\n")
        return guard

    @staticmethod
    async def _on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        request[_PREPARED] = True
        for k, v in _COMMON.items():
            response.headers.setdefault(k, v)
        if cookie := request.get(_SET_COOKIE):
            response.headers.add(hdrs.SET_COOKIE, cookie)

    # -- publishing -------------------------------------------------------------------------
    def publish(self, event: dict[str, Any], agent_id: str | None = None) -> None:
        """Send ``event`` (a JSONL contract object) to the pages of one view: the desk's
        (``agent_id`` None) or that agent's.  Never blocks.

        Call from the event loop's thread (see :meth:`publish_threadsafe`).  An agent id
        must match ``[A-Za-z0-9._@-]{1,64}`` (ValueError otherwise: no page could show it).
        """
        if agent_id is not None and not AGENT_ID.match(agent_id):
            raise ValueError(f"not an agent id for the dashboard: {agent_id!r}")
        view = self._views.get(agent_id)
        if view is None:  # every agent's view has a page open: no room for another
            self.dropped += 1
            return
        dropped = view.publish(event)
        if dropped is not None:
            self.published += 1
            self.dropped += dropped

    def publish_threadsafe(self, loop: asyncio.AbstractEventLoop, event: dict[str, Any],
                           agent_id: str | None = None) -> None:
        """:meth:`publish` from another thread."""
        loop.call_soon_threadsafe(self.publish, event, agent_id)

    # -- routes -----------------------------------------------------------------------------
    @staticmethod
    def _agent_id(request: web.Request) -> str | None:
        """The agent of an ``/agent/<id>/...`` route (None for the desk's routes)."""
        agent_id = request.match_info.get("agent_id")
        if agent_id is not None and not AGENT_ID.match(agent_id):
            raise web.HTTPNotFound(text="not found\n")
        return agent_id

    async def _page(self, request: web.Request) -> web.Response:
        self._agent_id(request)
        return self._file("index.html")

    async def _static(self, request: web.Request) -> web.Response:
        return self._file(request.match_info["name"])

    def _file(self, name: str) -> web.Response:
        return asset(name, self._static_dir)

    async def _hold(self, request: web.Request) -> web.Response:
        agent_id = self._agent_id(request)
        body = await read_json(request, self._max_body)
        action = body.get("action") if isinstance(body, dict) else None
        if action not in ("start", "end"):
            raise web.HTTPBadRequest(text='expected {"action": "start"} or {"action": "end"}\n')
        mark = "hold_start" if action == "start" else "hold_end"
        if agent_id is None and self._on_hold is not None:
            self._on_hold(mark)
        elif agent_id is not None and self._on_agent_hold is not None:
            self._on_agent_hold(agent_id, mark)
        else:
            raise web.HTTPServiceUnavailable(text="hold marks are not available\n")
        return web.json_response({"ok": True})

    async def _end(self, request: web.Request) -> web.Response:
        agent_id = self._agent_id(request)
        await read_body(request, self._max_body)
        if agent_id is None and self._on_end_call is not None:
            self._on_end_call()
        elif agent_id is not None and self._on_agent_end is not None:
            self._on_agent_end(agent_id)
        else:
            raise web.HTTPServiceUnavailable(text="ending the call is not available\n")
        return web.json_response({"ok": True})

    async def _healthz(self, request: web.Request) -> web.Response:
        health = self._health()  # 503 when the box says something inside it has stopped
        sick = isinstance(health, dict) and health.get("healthy") is False
        return web.Response(status=503 if sick else 200,
                            body=json.dumps(health, default=default_json).encode(),
                            headers={hdrs.CONTENT_TYPE: "application/json"})

    async def _metrics(self, request: web.Request) -> web.Response:
        # the exposition format the scraper asks for (Accept), the classic text format
        # 0.0.4 when it asks for none
        encoder, content_type = choose_encoder(request.headers.get(hdrs.ACCEPT, ""))
        return web.Response(body=encoder(self.registry),
                            headers={hdrs.CONTENT_TYPE: content_type})

    # -- server-sent events -----------------------------------------------------------------
    async def _desk_events(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, self._views.desk)

    async def _agent_events(self, request: web.Request) -> web.StreamResponse:
        view = self._views.get(self._agent_id(request))
        if view is None:
            raise web.HTTPServiceUnavailable(text="too many agents' pages open\n")
        return await self._stream(request, view)

    async def _stream(self, request: web.Request, view: View) -> web.StreamResponse:
        if self._clients >= self._max_clients:
            raise web.HTTPServiceUnavailable(text="too many dashboard pages open\n")
        resp = web.StreamResponse(headers={
            hdrs.CONTENT_TYPE: "text/event-stream; charset=utf-8", "X-Accel-Buffering": "no"})
        client = Client(self._client_queue)
        view.clients.add(client)
        self._clients += 1
        try:
            await resp.prepare(request)
            out = b"retry: 1000\n\n" + view.replay()
            while out:
                async with asyncio.timeout(self._write_timeout_s):
                    await resp.write(out)
                out = await self._next(client)
        except (ConnectionError, TimeoutError):  # the page left, or does not read
            if request.transport is not None:
                request.transport.abort()
        finally:
            view.clients.discard(client)
            self._clients -= 1
        return resp

    async def _next(self, client: Client) -> bytes:
        """The page's next frames, a heartbeat after ``heartbeat_s`` without any, or b""
        when the server stops."""
        while not client.queue and not self._closing:
            client.wake.clear()
            try:
                async with asyncio.timeout(self._heartbeat_s):
                    await client.wake.wait()
            except TimeoutError:
                return b": ping\n\n"
        return b"" if self._closing else client.take()
