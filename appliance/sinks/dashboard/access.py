"""Who may use the dashboard's server, and reading a request's body within bounds.

:class:`Access` is applied to every request the server answers — the page, its push stream,
its keys, health, metrics, and the routes other modules add (the PBX tap's control API and
WebSocket listeners):

* with a token (required beyond loopback), one of: ``Authorization: Bearer <token>``;
  HTTP Basic auth whose password is the token (jambonz ``listen`` can only send
  ``wsAuth`` user and password); ``?token=<token>`` in the URL (a browser's first visit,
  or FreeSWITCH ``mod_audio_fork``, which can only put it there: a browser gets an HttpOnly
  ``SameSite=Strict`` cookie for the rest); or that cookie.  Compared in constant time;
  401 otherwise.
* without a token (loopback only), the ``Host`` header must name a loopback address or the
  bound host: a page of another site reached through DNS rebinding gets 421.
* a state-changing request (any method but GET and HEAD) or a WebSocket upgrade that
  carries an ``Origin`` of another host is refused (403): another site's page cannot press
  the keys or open a stream.

:func:`read_json` (and :func:`read_body`) read a body of at most ``max_bytes`` (413 beyond,
by ``Content-Length`` or as it arrives), within the server's request timeout (408), as JSON
(415 without a JSON content type, 400 when it does not parse).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import re
from typing import Any

from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError

from appliance.config import is_loopback

__all__ = ["API_MAX_BODY", "COOKIE", "REQUEST_TIMEOUT", "Access", "hostname", "is_loopback",
           "read_body", "read_json"]

COOKIE = "appliance_dashboard"
_COOKIE_SAFE = re.compile(r"^[A-Za-z0-9._~+/=-]{1,256}$")
API_MAX_BODY = 16 * 1024
"""The body bound for a JSON control API (the dashboard's own keys take ``max_body``)."""
REQUEST_TIMEOUT = web.AppKey("request_timeout_s", float)
"""The server's request timeout, read by :func:`read_body`."""
_SAFE_METHODS = frozenset({"GET", "HEAD"})


def hostname(host_header: str) -> str:
    """The host part of a Host header (``[::1]:8765`` → ``::1``)."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1:].split("]", 1)[0]
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def _is_upgrade(request: web.BaseRequest) -> bool:
    return "websocket" in request.headers.get(hdrs.UPGRADE, "").lower()


class Access:
    """The token, Host and Origin checks (see the module's docstring)."""

    def __init__(self, token: str, host: str) -> None:
        self._token = token.encode("utf-8")
        self._host = host.lower()

    @property
    def has_token(self) -> bool:
        return bool(self._token)

    def check(self, request: web.BaseRequest) -> str:
        """Raise the refusal (401, 421, 403); return a ``Set-Cookie`` value when a browser
        brought the token in the URL ("" otherwise)."""
        cookie = ""
        if len(request.headers.getall(hdrs.AUTHORIZATION, ())) > 1:  # which one would count?
            raise web.HTTPBadRequest(text="duplicate authorization header\n")
        if self._token:
            given, by_query = _given_token(request)
            if not hmac.compare_digest(given, self._token):
                raise web.HTTPUnauthorized(
                    text="token required\n",
                    headers={hdrs.WWW_AUTHENTICATE: 'Bearer realm="dashboard"'})
            value = given.decode("utf-8", "replace")
            if by_query and not _is_upgrade(request) and _COOKIE_SAFE.match(value):
                cookie = f"{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict"
        else:
            host = hostname(request.headers.get(hdrs.HOST, ""))
            if host and not is_loopback(host) and host != self._host:
                raise web.HTTPMisdirectedRequest(text="unexpected Host header\n")
        origin = request.headers.get(hdrs.ORIGIN)
        changes = request.method not in _SAFE_METHODS or _is_upgrade(request)
        host = request.headers.get(hdrs.HOST, "").lower()
        if changes and origin is not None and origin.split("://", 1)[-1].lower() != host:
            raise web.HTTPForbidden(text="cross-origin request refused\n")
        return cookie


def _given_token(request: web.BaseRequest) -> tuple[bytes, bool]:
    """The token the client sent (as bytes), and whether it came in the URL."""
    auth = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme = auth[:7].lower()
    if scheme == "bearer ":
        return _bytes(auth[7:].strip()), False
    if scheme.startswith("basic "):
        # RFC 7617: base64 of "user:password"; the password is the token.  (aiohttp's
        # BasicAuth, which could decode it, is deprecated.)
        try:
            decoded = base64.b64decode(auth[6:].strip(), validate=True)
        except (binascii.Error, ValueError):
            return b"", False
        return decoded.partition(b":")[2], False
    if "token" in request.query:
        return _bytes(request.query["token"]), True
    return _bytes(request.cookies.get(COOKIE, "")), False


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The request's body, at most ``max_bytes`` (413), within the server's request
    timeout (408)."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_bytes, length,
                                            text=f"body larger than {max_bytes} bytes\n")
    buf = bytearray()
    try:
        async with asyncio.timeout(request.config_dict.get(REQUEST_TIMEOUT, 10.0)):
            while chunk := await request.content.read(max_bytes + 1 - len(buf)):
                buf += chunk
                if len(buf) > max_bytes:
                    raise web.HTTPRequestEntityTooLarge(
                        max_bytes, len(buf), text=f"body larger than {max_bytes} bytes\n")
    except TimeoutError as exc:
        raise web.HTTPRequestTimeout(text="request took too long\n") from exc
    except (HttpProcessingError, web.RequestPayloadError) as exc:  # a malformed chunked body
        raise web.HTTPBadRequest(text="malformed body\n") from exc
    return bytes(buf)


async def read_json(request: web.Request, max_bytes: int = API_MAX_BODY) -> Any:
    """The request's body as JSON: 413 beyond ``max_bytes``, 415 without a JSON content
    type, 400 when it does not parse, 408 when it takes too long to arrive."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise web.HTTPRequestEntityTooLarge(max_bytes, length,
                                            text=f"body larger than {max_bytes} bytes\n")
    if "json" not in request.headers.get(hdrs.CONTENT_TYPE, ""):
        raise web.HTTPUnsupportedMediaType(text="send application/json\n")
    body = await read_body(request, max_bytes)
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise web.HTTPBadRequest(text="body is not valid JSON\n") from exc
