"""A deliberately small HTTP/1.1 request reader and response writer on asyncio streams.

Only what the dashboard needs: one request per connection (``Connection: close``), a
request line and headers bounded by the stream's ``limit``, an optional body bounded by
``max_body`` and given by ``Content-Length`` (no chunked uploads).  Every malformed
request becomes an :class:`HttpError` with a status and a short plain-text reason; nothing
here ever raises anything else for bad input.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from appliance.config import is_loopback  # noqa: F401  (re-exported for the server)

REASONS: dict[int, str] = {
    200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    411: "Length Required", 413: "Content Too Large", 415: "Unsupported Media Type",
    421: "Misdirected Request", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
}

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_METHOD = re.compile(r"^[A-Z]{1,16}$")
MAX_HEADERS = 64


class HttpError(Exception):
    """A request the server refuses: ``status`` and a short reason for the body."""

    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


@dataclass(slots=True)
class Request:
    """One parsed request.  Header names are lower case; ``query`` keeps the first value."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    cookies: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body as JSON (400 when it is not)."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise HttpError(400, "body is not valid JSON") from exc


def _parse_cookies(value: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in value.split(";"):
        name, sep, val = part.strip().partition("=")
        if sep and name and name not in out:
            out[name] = val.strip()
    return out


def parse_head(head: bytes) -> Request:
    """Parse the request line and headers (``head`` ends with the blank line)."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes every byte
        raise HttpError(400, "undecodable request") from exc
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if not _METHOD.match(method):
        raise HttpError(400, "malformed method")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise HttpError(400, "unsupported HTTP version")
    if not target.startswith("/") or any(ord(c) < 0x21 or ord(c) > 0x7E for c in target):
        raise HttpError(400, "malformed request target")
    headers: dict[str, str] = {}
    for n, line in enumerate(lines[1:]):
        if line == "":
            continue
        if n >= MAX_HEADERS:
            raise HttpError(431, "too many header fields")
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.match(name):
            raise HttpError(400, "malformed header field")
        key = name.lower()
        value = value.strip(" \t")
        if key in headers:
            if key in ("content-length", "host", "authorization"):
                raise HttpError(400, f"duplicate {key} header")
            headers[key] = headers[key] + ", " + value
        else:
            headers[key] = value
    split = urlsplit(target)
    path = unquote(split.path, errors="strict") if "%" in split.path else split.path
    query = {k: v[0] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
    cookies = _parse_cookies(headers.get("cookie", ""))
    return Request(method, path, query, headers, b"", cookies)


async def read_request(reader: asyncio.StreamReader, *, max_body: int,
                       timeout_s: float) -> Request | None:
    """Read one request.  ``None`` when the peer closed before sending anything.

    The head is bounded by the reader's ``limit`` (431 beyond it), the body by ``max_body``
    (413), and the whole read by ``timeout_s`` (408).
    """
    async with asyncio.timeout(timeout_s):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial.strip():
                return None
            raise HttpError(400, "incomplete request head") from exc
        except asyncio.LimitOverrunError as exc:
            raise HttpError(431, "request head too large") from exc
        except ValueError as exc:  # the stream's limit was exceeded inside readuntil
            raise HttpError(431, "request head too large") from exc
        try:
            req = parse_head(head)
        except UnicodeDecodeError as exc:
            raise HttpError(400, "malformed percent-encoding") from exc
        if "transfer-encoding" in req.headers:
            raise HttpError(501, "transfer-encoding is not supported")
        raw_len = req.headers.get("content-length")
        if raw_len is not None:
            # str.isdigit accepts "²" and other digits int() refuses: ASCII only
            if not (raw_len.isascii() and raw_len.isdigit()) or len(raw_len) > 12:
                raise HttpError(400, "bad content-length")
            length = int(raw_len)
            if length > max_body:
                raise HttpError(413, f"body larger than {max_body} bytes")
            if length:
                try:
                    req.body = await reader.readexactly(length)
                except asyncio.IncompleteReadError as exc:
                    raise HttpError(400, "body shorter than content-length") from exc
        return req


def response(status: int, body: bytes = b"", content_type: str = "text/plain; charset=utf-8",
             headers: dict[str, str] | None = None) -> bytes:
    """A complete ``Connection: close`` response."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}",
             f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}",
             "Connection: close",
             "Cache-Control: no-store",
             "X-Content-Type-Options: nosniff",
             "Referrer-Policy: no-referrer"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def error_response(err: HttpError) -> bytes:
    return response(err.status, (err.reason + "\n").encode("utf-8"), headers=err.headers)


def hostname(host_header: str) -> str:
    """The host part of a Host header (``[::1]:8765`` → ``::1``)."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1:].split("]", 1)[0]
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def _finite(obj: Any) -> Any:
    """NaN and infinities become null: the page parses strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def default_json(obj: Any) -> Any:
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item):
        return item()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    return str(obj)


def encode(event: dict[str, Any]) -> str:
    """``event`` as strict one-line JSON."""
    try:
        return json.dumps(event, separators=(",", ":"), allow_nan=False, default=default_json)
    except ValueError:
        return json.dumps(_finite(event), separators=(",", ":"), allow_nan=False,
                          default=default_json)
