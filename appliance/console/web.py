"""The console's web server (aiohttp): the floor now, the trends, export, health, metrics.

Every page and API needs the login token (the pages show many agents' figures): a browser
logs in once at ``/login`` and gets an HttpOnly ``SameSite=Strict`` cookie (a value derived
from the token, never the token itself); a script sends ``Authorization: Bearer <token>``.
Without it a page redirects to ``/login`` and an API answers 401.  A form post from another
origin is refused (403).

Routes: ``/floor`` (and ``/floor/fragment``, the table the page refreshes), ``/trends``
(``by=agent|team``, ``period=day|week``, ``days=N``), ``/api/floor``, ``/api/trends``,
``/export.csv`` and ``/export.jsonl`` (``since``/``until``: ``2026-11-01``), ``/healthz``
(503 when something inside has stopped), ``/metrics`` (Prometheus).  Static files ship in
``static/``; the pages load nothing from anywhere else.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import hmac
import io
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from appliance.console.export import write_csv, write_jsonl
from appliance.console.pages import floor_fragment, floor_page, login_page, trends_page
from appliance.console.store import CentralStore
from appliance.console.trends import floor_view, trends
from appliance.errors import CONSOLE_BIND_FAILED, ApplianceError
from appliance.events import iso_utc

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
COOKIE = "appliance_console"
_STATIC = {"console.css": "text/css; charset=utf-8",
           "console.js": "text/javascript; charset=utf-8"}
_OPEN = frozenset({"/login", "/static/console.css", "/static/console.js", "/favicon.ico"})
"""Paths served without a login (the login form, its style and the script: no data)."""
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
# same-origin, not no-referrer: under no-referrer Chromium sends ``Origin: null`` with a form
# post, and the login form would be refused as cross-origin
_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY",
            "Content-Security-Policy": _CSP}
MAX_DAYS = 3650
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def session_value(token: str) -> str:
    """The cookie's value: an HMAC of the token (the cookie never carries the token)."""
    return hmac.new(token.encode(), b"appliance-console-session", hashlib.sha256).hexdigest()


class ConsoleWeb:
    """``await start()``, ``await stop()``; :attr:`port` is the bound port."""

    def __init__(self, store: CentralStore, *, token: str, host: str = "127.0.0.1",
                 port: int = 8090, silent_after_s: float = 180.0,
                 teams: dict[str, list[str]] | None = None,
                 health: Callable[[], dict[str, Any]] | None = None,
                 registry: CollectorRegistry | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        if not token:
            raise ValueError("the console needs a token")
        self.store = store
        self.host, self.port = host, port
        self._token = token.encode()
        self._session = session_value(token).encode()
        self.silent_after_s = silent_after_s
        self.teams = teams or {}
        self._health = health or (lambda: {"healthy": True})
        self.registry = registry or CollectorRegistry()
        self.clock = clock
        self._runner: web.AppRunner | None = None
        self.requests = 0
        self.refused = 0

    # -- life -------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=4096)
        app.on_response_prepare.append(self._headers)
        app.add_routes([
            web.get("/", self._root), web.get("/login", self._login_form),
            web.post("/login", self._login), web.post("/logout", self._logout),
            web.get("/floor", self._floor), web.get("/floor/fragment", self._floor_fragment),
            web.get("/trends", self._trends), web.get("/api/floor", self._api_floor),
            web.get("/api/trends", self._api_trends),
            web.get("/export.csv", self._export), web.get("/export.jsonl", self._export),
            web.get("/healthz", self._healthz), web.get("/metrics", self._metrics),
            web.get("/static/{name}", self._static), web.get("/favicon.ico", self._no_icon)])
        return app

    async def start(self) -> None:
        runner = web.AppRunner(self.app(), handle_signals=False, access_log=None,
                               shutdown_timeout=1.0, keepalive_timeout=15.0)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host or None, self.port, reuse_address=True).start()
        except OSError as exc:
            await runner.cleanup()
            what = "is already in use" if exc.errno == errno.EADDRINUSE else \
                f"cannot be bound ({exc.strerror or exc})"
            raise ApplianceError(CONSOLE_BIND_FAILED, f"the console's port {self.port} on "
                                 f"{self.host} {what}: check [console] host and port") from exc
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("supervisor console on http://%s:%d/", self.host, self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # -- the guard --------------------------------------------------------------------------
    def _authorised(self, request: web.Request) -> bool:
        auth = request.headers.get(hdrs.AUTHORIZATION, "")
        if auth[:7].lower() == "bearer ":
            return hmac.compare_digest(auth[7:].strip().encode(), self._token)
        return hmac.compare_digest(request.cookies.get(COOKIE, "").encode(), self._session)

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests += 1
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get(hdrs.ORIGIN)
            host = request.headers.get(hdrs.HOST, "").lower()
            if origin is not None and origin.split("://", 1)[-1].lower() != host:
                self.refused += 1
                raise web.HTTPForbidden(text="cross-origin request refused\n")
        if request.path not in _OPEN and not self._authorised(request):
            self.refused += 1
            html = request.method == "GET" and "text/html" in request.headers.get(
                hdrs.ACCEPT, "") and not request.path.startswith(("/api/", "/metrics"))
            if html:
                raise web.HTTPSeeOther("/login?" + _next_query(request.path_qs))
            raise web.HTTPUnauthorized(text="login required\n",
                                       headers={hdrs.WWW_AUTHENTICATE: 'Bearer realm="console"'})
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as exc:  # a bug costs one request, never the server
            log.exception("console request failed: %s", type(exc).__name__)
            return web.Response(status=500, text="internal error\n")

    @staticmethod
    async def _headers(request: web.Request, response: web.StreamResponse) -> None:
        for k, v in _HEADERS.items():
            response.headers.setdefault(k, v)

    # -- login ------------------------------------------------------------------------------
    async def _root(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/floor")

    async def _login_form(self, request: web.Request) -> web.Response:
        return _html(login_page(next_path=_safe_next(request.query.get("next", ""))))

    async def _login(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = str(form.get("token", ""))
        nxt = _safe_next(str(form.get("next", "")))
        if not hmac.compare_digest(token.encode(), self._token):
            self.refused += 1
            return _html(login_page("That token is not right.", nxt), status=401)
        resp = web.HTTPSeeOther(nxt)
        resp.headers.add(hdrs.SET_COOKIE, f"{COOKIE}={self._session.decode()}; Path=/; "
                         "HttpOnly; SameSite=Strict")
        raise resp

    async def _logout(self, request: web.Request) -> web.Response:
        resp = web.HTTPSeeOther("/login")
        resp.headers.add(hdrs.SET_COOKIE, f"{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; "
                         "Max-Age=0")
        raise resp

    # -- pages ------------------------------------------------------------------------------
    async def floor(self) -> dict[str, Any]:
        """The floor now (what ``/api/floor`` answers)."""
        now = self.clock()
        since = iso_utc(now - timedelta(hours=12))
        boxes, calls = await asyncio.to_thread(
            lambda: (self.store.boxes(), self.store.open_calls(since)))
        return floor_view(boxes, calls, now, self.silent_after_s)

    async def _floor(self, request: web.Request) -> web.Response:
        return _html(floor_page(await self.floor()))

    async def _floor_fragment(self, request: web.Request) -> web.Response:
        return _html(floor_fragment(await self.floor()))

    async def _api_floor(self, request: web.Request) -> web.Response:
        return web.json_response(await self.floor())

    def _trend_args(self, request: web.Request) -> tuple[str, str, int]:
        by = request.query.get("by", "agent")
        period = request.query.get("period", "week" if "days" not in request.query else "day")
        try:
            days = int(request.query.get("days", "28"))
        except ValueError:
            raise web.HTTPBadRequest(text="days: a whole number\n") from None
        if by not in ("agent", "team") or period not in ("day", "week") or \
                not 1 <= days <= MAX_DAYS:
            raise web.HTTPBadRequest(text="by=agent|team, period=day|week, days=1..3650\n")
        return by, period, days

    async def _points(self, by: str, period: str, days: int) -> Any:
        since = iso_utc(self.clock() - timedelta(days=days))
        rows = await asyncio.to_thread(self.store.ended_calls, since)
        return trends(rows, by=by, period=period, teams=self.teams)  # type: ignore[arg-type]

    async def _trends(self, request: web.Request) -> web.Response:
        by, period, days = self._trend_args(request)
        points = await self._points(by, period, days)
        return _html(trends_page(points, by=by, period=period, days=days))

    async def _api_trends(self, request: web.Request) -> web.Response:
        by, period, days = self._trend_args(request)
        points = await self._points(by, period, days)
        return web.json_response({"by": by, "period": period, "days": days,
                                  "points": [p.to_json() for p in points]})

    async def _export(self, request: web.Request) -> web.Response:
        since = _day(request.query.get("since"), "since")
        until = _day(request.query.get("until"), "until", end=True)
        csv = request.path.endswith(".csv")

        def render() -> str:
            buf = io.StringIO()
            rows = self.store.export(since, until)
            (write_csv if csv else write_jsonl)(buf, rows)
            return buf.getvalue()
        body = await asyncio.to_thread(render)
        name = f"calls.{'csv' if csv else 'jsonl'}"
        return web.Response(text=body, content_type="text/csv" if csv else
                            "application/x-ndjson", headers={
                                "Content-Disposition": f'attachment; filename="{name}"'})

    async def _healthz(self, request: web.Request) -> web.Response:
        health = await asyncio.to_thread(self._health)
        return web.Response(status=200 if health.get("healthy") else 503,
                            text=json.dumps(health), content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get(hdrs.ACCEPT, ""))
        body = await asyncio.to_thread(encoder, self.registry)
        return web.Response(body=body, headers={hdrs.CONTENT_TYPE: content_type})

    async def _no_icon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC:
            raise web.HTTPNotFound(text="not found\n")
        return web.Response(body=(STATIC_DIR / name).read_bytes(),
                            headers={hdrs.CONTENT_TYPE: _STATIC[name]})


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html")


def _next_query(path: str) -> str:
    from urllib.parse import urlencode

    return urlencode({"next": _safe_next(path)})


def _safe_next(path: str) -> str:
    """Only a path of this server (never ``//other.host`` or a URL)."""
    if not path.startswith("/") or path.startswith("//") or "\\" in path or \
            path.startswith("/login"):
        return "/floor"
    return path[:512]


def _day(text: str | None, what: str, *, end: bool = False) -> str | None:
    if not text:
        return None
    try:
        d = date.fromisoformat(text.strip())
    except ValueError:
        raise web.HTTPBadRequest(text=f"{what}: a date like 2026-11-01\n") from None
    t = datetime(d.year, d.month, d.day, tzinfo=UTC) + timedelta(days=1 if end else 0)
    return iso_utc(t)
