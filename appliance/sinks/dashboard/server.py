"""The agent's dashboard: a tiny HTTP server on asyncio streams with Server-Sent Events.

Endpoints: ``/`` (the page), ``/static/<file>``, ``/events`` (SSE: ``cue``, ``state``,
``summary``), ``POST /hold`` (``{"action": "start"|"end"}``), ``POST /end``, ``/healthz``
(503 when the health callback says ``"healthy": false``) and ``/metrics`` (Prometheus
text from the server's own registry: the collectors given, and the dashboard's own figures;
see :mod:`appliance.sinks.metrics`).  Every asset ships in ``static/``; the page loads nothing
else.

:meth:`DashboardServer.publish` is called from the event loop and never blocks: each SSE
client has a bounded queue; when it is full the oldest item (a stale state snapshot first)
is dropped and counted.  A (re)connecting page gets the last state snapshot, the last
cues (flagged ``"replay": true``) and the last summary at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import json
import logging
import re
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

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
from appliance.sinks.dashboard.http import (
    HttpError,
    Request,
    default_json,
    encode,
    error_response,
    hostname,
    is_loopback,
    read_request,
    response,
)
from appliance.sinks.metrics import DashboardCollector

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
_STATIC_NAME = re.compile(r"^[A-Za-z0-9_-]+\.(html|js|css|svg|png|ico|txt)$")
_TYPES = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8",
          "css": "text/css; charset=utf-8", "svg": "image/svg+xml", "png": "image/png",
          "ico": "image/x-icon", "txt": "text/plain; charset=utf-8"}
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'")
_COOKIE = "appliance_dashboard"
_COOKIE_SAFE = re.compile(r"^[A-Za-z0-9._~+/=-]{1,256}$")
_SSE_KINDS = {"state": "state", "summary": "summary", "call_started": "call",
              "call_ended": "call"}
_NOT_FORWARDED = {"transcript", "word"}  # words stay in the engine's memory


def _frame(sse_kind: str, data: str) -> bytes:
    return f"event: {sse_kind}\ndata: {data}\n\n".encode()


class _Client:
    """One SSE connection's bounded queue of encoded frames."""

    __slots__ = ("dropped", "maxlen", "queue", "wake")

    def __init__(self, maxlen: int) -> None:
        self.queue: deque[tuple[str, bytes]] = deque()
        self.maxlen = maxlen
        self.wake = asyncio.Event()
        self.dropped = 0

    def push(self, sse_kind: str, frame: bytes) -> int:
        dropped = 0
        if len(self.queue) >= self.maxlen:
            stale = next((i for i, (k, _) in enumerate(self.queue) if k == "state"), 0)
            del self.queue[stale]
            dropped = 1
        self.queue.append((sse_kind, frame))
        self.wake.set()
        self.dropped += dropped
        return dropped


class DashboardServer:
    """The dashboard's HTTP + SSE server.  Create, ``await start()``, ``publish()``..."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, *, token: str = "",
                 on_hold: Callable[[str], None] | None = None,
                 on_end_call: Callable[[], None] | None = None,
                 health: Callable[[], dict[str, Any]] | None = None,
                 collectors: Iterable[Collector] = (),
                 heartbeat_s: float = 10.0, client_queue: int = 64, history: int = 20,
                 max_clients: int = 16, max_head: int = 8192, max_body: int = 1024,
                 request_timeout_s: float = 10.0, write_timeout_s: float = 15.0,
                 static_dir: Path = STATIC_DIR) -> None:
        self.host = host
        self.port = port
        self._token = token.encode("utf-8")
        self._on_hold = on_hold
        self._on_end_call = on_end_call
        self._health = health or (lambda: {"ok": True})
        self._heartbeat_s = heartbeat_s
        self._client_queue = client_queue
        self._max_clients = max_clients
        self._max_head = max_head
        self._max_body = max_body
        self._request_timeout_s = request_timeout_s
        self._write_timeout_s = write_timeout_s
        self._static_dir = static_dir
        self._server: asyncio.Server | None = None
        self._clients: set[_Client] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_state: str | None = None
        self._cues: deque[dict[str, Any]] = deque(maxlen=history)
        self._last_summary: str | None = None
        self.dropped = 0
        """Frames dropped from slow clients' queues, over all clients."""
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
        """Connected SSE clients."""
        return len(self._clients)

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        if self._server is not None:
            return
        if not self._token and not is_loopback(self.host):
            raise ApplianceError(
                DASHBOARD_TOKEN_REQUIRED,
                f"the dashboard binds to {self.host or 'every address'}, beyond this machine, "
                "without a token: set [dashboard] token or bind [dashboard] host = "
                '"127.0.0.1"')
        try:
            self._server = await asyncio.start_server(
                self._handle, self.host or None, self.port, limit=self._max_head,
                reuse_address=True)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ApplianceError(
                    DASHBOARD_PORT_IN_USE,
                    f"dashboard port {self.port} on {self.host} is already in use by another "
                    "program: stop it or choose another [dashboard] port") from exc
            raise ApplianceError(
                DASHBOARD_BIND_FAILED,
                f"cannot serve the dashboard on {self.host}:{self.port} ({exc.strerror or exc})"
                ": check [dashboard] host and [dashboard] port") from exc
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        log.info("dashboard on http://%s:%d/", self.host, self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await server.wait_closed()

    # -- publishing -------------------------------------------------------------------------
    def publish(self, event: dict[str, Any]) -> None:
        """Send ``event`` (a JSONL contract object) to every page.  Never blocks.

        Call from the event loop's thread (see :meth:`publish_threadsafe`).
        """
        kind = str(event.get("kind", ""))
        if kind in _NOT_FORWARDED:
            return
        sse_kind = _SSE_KINDS.get(kind, "cue")
        data = encode(event)
        if sse_kind == "state":
            self._last_state = data
        elif sse_kind == "summary":
            self._last_summary = data
            self._cues.clear()
        elif kind == "call_started":  # a new call: the last one's cues and summary go
            self._last_summary = None
            self._cues.clear()
        elif sse_kind == "cue":
            self._cues.append(event)
        frame = _frame(sse_kind, data)
        self.published += 1
        for client in self._clients:
            self.dropped += client.push(sse_kind, frame)

    def publish_threadsafe(self, loop: asyncio.AbstractEventLoop, event: dict[str, Any]) -> None:
        """:meth:`publish` from another thread."""
        loop.call_soon_threadsafe(self.publish, event)

    def _replay(self) -> list[bytes]:
        frames: list[bytes] = []
        if self._last_state is not None:
            frames.append(_frame("state", self._last_state))
        for cue in self._cues:
            frames.append(_frame("cue", encode({**cue, "replay": True})))
        if self._last_summary is not None:
            frames.append(_frame("summary", self._last_summary))
        return frames

    # -- connections ------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Stopping the server cancels this connection's task.  This task is the top of
            # its stack, so the cancel ends here: re-raised, Python 3.11's start_server
            # callback logs a spurious "Exception in callback" with a traceback.
            return
        except Exception as exc:  # a bug must cost one request, never the server
            log.exception("dashboard request failed: %s", type(exc).__name__)
            with contextlib.suppress(Exception):
                writer.write(response(500, b"internal error\n"))
        finally:
            if task is not None:
                self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            req = await read_request(reader, max_body=self._max_body,
                                     timeout_s=self._request_timeout_s)
            if req is None:
                return
            self.requests += 1
            set_cookie = self._check_access(req)
            if req.path == "/events" and req.method == "GET":
                await self._sse(reader, writer)
                return
            out = self._route(req)
            if set_cookie:
                out = out.replace(b"\r\n\r\n", b"\r\nSet-Cookie: " + set_cookie + b"\r\n\r\n", 1)
        except HttpError as err:
            out = error_response(err)
        except TimeoutError:
            out = error_response(HttpError(408, "request took too long"))
        writer.write(out)
        await asyncio.wait_for(writer.drain(), self._write_timeout_s)

    def _check_access(self, req: Request) -> bytes:
        """Token and origin checks; returns a Set-Cookie value when the token came by query."""
        cookie = b""
        if self._token:
            given = ""
            auth = req.headers.get("authorization", "")
            if auth[:7].lower() == "bearer ":
                given = auth[7:].strip()
            elif "token" in req.query:
                given = req.query["token"]
                if _COOKIE_SAFE.match(given):
                    cookie = f"{_COOKIE}={given}; Path=/; HttpOnly; SameSite=Strict".encode()
            else:
                given = req.cookies.get(_COOKIE, "")
            if not hmac.compare_digest(given.encode("utf-8"), self._token):
                raise HttpError(401, "token required",
                                {"WWW-Authenticate": 'Bearer realm="dashboard"'})
        else:
            # No token (loopback only): refuse pages of other sites reached via DNS rebinding.
            host = hostname(req.headers.get("host", ""))
            if host and not is_loopback(host) and host != self.host.lower():
                raise HttpError(421, "unexpected Host header")
        origin = req.headers.get("origin")
        if (req.method == "POST" and origin is not None
                and origin.split("://", 1)[-1].lower() != req.headers.get("host", "").lower()):
            raise HttpError(403, "cross-origin request refused")
        return cookie

    def _route(self, req: Request) -> bytes:
        path, method = req.path, req.method
        if path in ("/hold", "/end"):
            if method != "POST":
                raise HttpError(405, "use POST", {"Allow": "POST"})
            return self._hold(req) if path == "/hold" else self._end()
        if method != "GET":
            raise HttpError(405, "use GET", {"Allow": "GET"})
        if path in ("/", "/index.html"):
            return self._static("index.html")
        if path.startswith("/static/"):
            return self._static(path[len("/static/"):])
        if path == "/healthz":  # 503 when the box says something inside it has stopped
            health = self._health()
            body = json.dumps(health, default=default_json).encode()
            sick = isinstance(health, dict) and health.get("healthy") is False
            return response(503 if sick else 200, body, "application/json")
        if path == "/metrics":
            # the exposition format the scraper asks for (Accept), the classic text format
            # 0.0.4 when it asks for none
            encode, content_type = choose_encoder(req.headers.get("accept", ""))
            return response(200, encode(self.registry), content_type)
        if path == "/events":  # pragma: no cover - handled before routing
            raise HttpError(405, "use GET", {"Allow": "GET"})
        raise HttpError(404, "not found")

    def _static(self, name: str) -> bytes:
        if not _STATIC_NAME.match(name):
            raise HttpError(404, "not found")
        try:
            body = (self._static_dir / name).read_bytes()
        except OSError as exc:
            raise HttpError(404, "not found") from exc
        headers = {"Content-Security-Policy": _CSP, "X-Frame-Options": "DENY"}
        return response(200, body, _TYPES[name.rsplit(".", 1)[1]], headers)

    def _hold(self, req: Request) -> bytes:
        if "json" not in req.headers.get("content-type", ""):
            raise HttpError(415, "send application/json")
        body = req.json()
        action = body.get("action") if isinstance(body, dict) else None
        if action not in ("start", "end"):
            raise HttpError(400, 'expected {"action": "start"} or {"action": "end"}')
        if self._on_hold is None:
            raise HttpError(503, "hold marks are not available")
        self._on_hold("hold_start" if action == "start" else "hold_end")
        return response(200, b'{"ok":true}', "application/json")

    def _end(self) -> bytes:
        if self._on_end_call is None:
            raise HttpError(503, "ending the call is not available")
        self._on_end_call()
        return response(200, b'{"ok":true}', "application/json")

    # -- server-sent events -----------------------------------------------------------------
    async def _sse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._clients) >= self._max_clients:
            raise HttpError(503, "too many dashboard pages open")
        head = ("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
                "Cache-Control: no-store\r\nConnection: keep-alive\r\n"
                "X-Accel-Buffering: no\r\nX-Content-Type-Options: nosniff\r\n\r\n")
        client = _Client(self._client_queue)
        self._clients.add(client)
        eof = asyncio.ensure_future(reader.read(1024))  # anything or EOF: the page left
        try:
            writer.write(head.encode("latin-1") + b"retry: 1000\n\n" + b"".join(self._replay()))
            await asyncio.wait_for(writer.drain(), self._write_timeout_s)
            while not eof.done():
                if not client.queue:
                    client.wake.clear()
                    wake = asyncio.ensure_future(client.wake.wait())
                    done, _ = await asyncio.wait({wake, eof}, timeout=self._heartbeat_s,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    wake.cancel()
                    if eof in done:
                        break
                    if not done:
                        writer.write(b": ping\n\n")
                while client.queue:
                    writer.write(client.queue.popleft()[1])
                await asyncio.wait_for(writer.drain(), self._write_timeout_s)
        finally:
            self._clients.discard(client)
            eof.cancel()
