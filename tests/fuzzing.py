"""Fuzz targets: every parser of untrusted input, a Hypothesis strategy for its input, and
the property it must keep.

The property is the same everywhere: a result, or a clean refusal (an ``ApplianceError``; for
HTTP, answers below 500 from the dashboard server's own protocol, which then answers the
next client) — never another exception, and never more memory than
:data:`MEMORY_BUDGET_BYTES` beyond what the process held before (:func:`memory_budget`
lowers the address-space limit while a target runs, so an allocation that the input merely
declares fails as ``MemoryError``).

Used by ``tests/test_fuzz.py`` (a seeded, bounded run in CI) and ``benchmarks/fuzz.py`` (a
longer run that reports how many cases were tried).  A new parser (packet, frame) adds a
:class:`Target` here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import io
import json
import logging
import math
import resource
import struct
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from appliance.audio.filesource import FileSource
from appliance.audio.marks_file import load_marks
from appliance.audio.wavfile import _parse_stream, open_wav
from appliance.config import Config, load_config
from appliance.config_env import ENV_OVERRIDES
from appliance.engine.marks import parse_marks
from appliance.errors import ApplianceError
from appliance.sinks.dashboard.server import DashboardServer

MEMORY_BUDGET_BYTES = 512 << 20
"""What one case may allocate beyond the process's size when it starts."""


class PropertyBroken(AssertionError):
    """A target answered in a way its property forbids (an HTTP 500, a non-finite config)."""


@contextmanager
def memory_budget(extra_bytes: int = MEMORY_BUDGET_BYTES) -> Iterator[None]:
    """Lower the soft address-space limit to the current size + ``extra_bytes`` while the
    block runs (raised back afterwards: a soft limit may go up to the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    size = _vm_size()
    if size is None:  # not Linux: no bound, the property still holds for exceptions
        yield
        return
    limit = size + extra_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _vm_size() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


# ------------------------------------------------------------------------------ WAV files
def _fmt(tag: int, channels: int, rate: int, bits: int, ext: int | None = None) -> bytes:
    align = channels * bits // 8
    byte_rate = (rate * align) & 0xFFFFFFFF  # what a broken writer would store
    body = struct.pack("<HHIIHH", tag, channels, rate, byte_rate, align & 0xFFFF, bits)
    if ext is not None:
        body += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", ext) + (
            b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71")
    return body


def _chunk(cid: bytes, body: bytes, size: int | None = None) -> bytes:
    n = len(body) if size is None else size
    return cid + struct.pack("<I", n) + body + (b"\0" if len(body) % 2 else b"")


def _riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


WAV_SEEDS: tuple[bytes, ...] = (
    _riff(_chunk(b"fmt ", _fmt(1, 2, 8000, 16)), _chunk(b"data", bytes(range(256)) * 2)),
    _riff(_chunk(b"fmt ", _fmt(3, 2, 16000, 32)), _chunk(b"data", struct.pack("<16f", *(
        [0.5, -0.5, float("nan"), float("inf")] * 4)))),
    _riff(_chunk(b"LIST", b"INFOISFT\x05\0\0\0sox\0\0"), _chunk(b"fmt ", _fmt(7, 2, 8000, 8)),
          _chunk(b"fact", b"\x10\0\0\0"), _chunk(b"data", bytes(range(64)))),
    _riff(_chunk(b"fmt ", _fmt(0xFFFE, 2, 48000, 24, ext=1)), _chunk(b"data", bytes(60))),
    _riff(_chunk(b"fmt ", _fmt(6, 1, 8000, 8)), _chunk(b"data", bytes(33), size=0x7FFFF000)),
)
"""Valid files of each supported kind (PCM, float with NaN, µ-law with LIST/fact, extensible
24-bit, A-law mono written to a pipe): the mutations start from these."""

_SIZES = st.one_of(st.integers(0, 300), st.sampled_from(
    [0, 1, 15, 16, 17, 39, 40, 4095, 4096, 4097, 0x7FFFF000, 0x7FFFFFFF, 0x80000000,
     0xFFFFFFFE, 0xFFFFFFFF]), st.integers(0, 2**32 - 1))
_IDS = st.one_of(st.sampled_from([b"fmt ", b"data", b"LIST", b"fact", b"JUNK", b"RIFF"]),
                 st.binary(min_size=4, max_size=4))


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(WAV_SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "u32", "u16", "cut", "insert", "delete"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "u32" and len(data) >= 4:
            pos = min(pos, len(data) - 4)
            data[pos:pos + 4] = struct.pack("<I", draw(_SIZES))
        elif op == "u16" and len(data) >= 2:
            pos = min(pos, len(data) - 2)
            data[pos:pos + 2] = struct.pack("<H", draw(st.integers(0, 0xFFFF)))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(max_size=24))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
    return bytes(data)


@st.composite
def _structured(draw: st.DrawFn) -> bytes:
    chunks = []
    for _ in range(draw(st.integers(0, 5))):
        cid = draw(_IDS)
        if cid == b"fmt " and draw(st.booleans()):
            body = _fmt(draw(st.sampled_from([1, 3, 6, 7, 0x55, 0xFFFE, 0])),
                        draw(st.integers(0, 9)), draw(_SIZES), draw(st.sampled_from(
                            [0, 1, 8, 12, 16, 24, 32, 64, 65535])),
                        ext=draw(st.none() | st.sampled_from([1, 3, 7, 2])))
        else:
            body = draw(st.binary(max_size=80))
        size = draw(st.none() | _SIZES)
        chunks.append(_chunk(cid, body, size))
    head = draw(st.sampled_from([b"RIFF", b"RIFX", b"RF64", b"riff", b"FORM"]))
    body = draw(st.sampled_from([b"WAVE", b"WAVF", b""])) + b"".join(chunks)
    return head + struct.pack("<I", draw(st.one_of(st.just(len(body)), _SIZES))) + body


WAV_BYTES = st.one_of(_mutated(), _structured(), st.binary(max_size=120))


def wav_target(data: bytes) -> None:
    """The file reader (header, every block, the two-party source with its resampler) and
    the stream reader (standard input) on the same bytes."""
    with tempfile.TemporaryDirectory(prefix="fuzz-wav-") as d:
        p = Path(d) / "call.wav"
        p.write_bytes(data)
        _refusing(lambda: sum(len(b) for b in open_wav(p).read_blocks(4096)))
        _refusing(lambda: sum(len(b.agent) for b in FileSource(p, block_s=0.1).blocks()))
    stream = io.BufferedReader(io.BytesIO(data))  # type: ignore[arg-type]
    _refusing(lambda: sum(len(b) for b in _parse_stream(Path("-"), stream).read_blocks(4096)))


def _refusing(call: Callable[[], Any]) -> None:
    with suppress(ApplianceError):
        call()


# --------------------------------------------------------------------------------- marks
_JSON_ATOMS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
    st.sampled_from([2**1024, -(2**1024)]), st.text(max_size=20),
    st.sampled_from(["hold_start", "hold_end", "HOLD_START", ""]))
_JSON = st.recursive(_JSON_ATOMS, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.sampled_from(["t", "event", "x"]) | st.text(max_size=5),
                                       inner, max_size=3), max_leaves=8)


def _dump(obj: Any) -> str:
    try:
        return json.dumps(obj)
    except (ValueError, TypeError):
        return repr(obj)


_MARK_LINES = st.one_of(
    st.fixed_dictionaries({"t": _JSON_ATOMS, "event": _JSON_ATOMS}).map(_dump),
    _JSON.map(_dump),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 3000).map(lambda n: '{"t": ' + "[" * n),
    st.integers(1, 6000).map(lambda n: '{"t": ' + "9" * n + ', "event": "hold_start"}'),
    st.text(max_size=60),
)
MARKS_BYTES = st.one_of(
    st.lists(_MARK_LINES, max_size=12).map(lambda lines: "\n".join(lines).encode("utf-8",
                                                                                 "surrogatepass")),
    st.binary(max_size=200),
)


def marks_target(data: bytes) -> None:
    """A marks file: bytes (any encoding) through ``load_marks``; the marks found are sane."""
    with tempfile.TemporaryDirectory(prefix="fuzz-marks-") as d:
        p = Path(d) / "m.jsonl"
        p.write_bytes(data)
        try:
            marks = load_marks(p)
        except ApplianceError:
            return
    for m in marks:
        if not (math.isfinite(m.t_s) and m.t_s >= 0 and m.event in ("hold_start", "hold_end")):
            raise PropertyBroken(f"a mark that should have been refused: {m}")
    lines = data.decode("utf-8", "replace").splitlines()
    _refusing(lambda: parse_marks(lines))


# -------------------------------------------------------------------------------- config
def _config_keys() -> dict[str, list[str]]:
    """The real sections and keys: "" holds the top-level ones."""
    defaults = Config()
    out: dict[str, list[str]] = {"": []}
    for f in dataclasses.fields(defaults):
        value = getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = [g.name for g in dataclasses.fields(value)]
        else:
            out[""].append(f.name)
    return out


_KEYS = _config_keys()
_TOML_VALUES = st.one_of(
    st.sampled_from(["nan", "+inf", "-inf", "1e308", "1e400", "0.5", "2.0", "64", "1"]),
    st.integers(-(2**63), 2**63 - 1).map(str), st.floats().map(
        lambda x: "nan" if math.isnan(x) else ("inf" if x == math.inf else
                                                "-inf" if x == -math.inf else repr(x))),
    st.sampled_from(["nan", "+inf", "-inf", "1e308", "1e400", "-0.0", "0", "true", "false",
                     "9" * 5000, "[]", "{}", '"en"', '"../../etc/passwd"', '"\\u0000"']),
    st.text(max_size=30).map(lambda s: json.dumps(s)),
    st.integers(1, 5000).map(lambda n: "[" * n + "]" * n),
)


@st.composite
def _toml(draw: st.DrawFn) -> str:
    """Mostly real keys in their real sections, each with a value of any kind: a config that
    is valid but for one or two values, which is where a missed check hides."""
    lines = []
    sections = draw(st.lists(st.sampled_from([*_KEYS, "nope"]), min_size=1, max_size=3,
                             unique=True))
    for section in sections:
        if section:
            lines.append(f"[{section}]")
        names = _KEYS.get(section) or ["x"]
        keys = st.one_of(st.sampled_from(names), st.sampled_from(names),
                         st.text(alphabet="abcdefghij_.", min_size=1, max_size=12))
        for name in draw(st.lists(keys, min_size=1, max_size=3, unique=True)):
            lines.append(f"{name} = {draw(_TOML_VALUES)}")
    return "\n".join(lines) + "\n"


CONFIG_TEXT = st.one_of(
    _toml(), st.text(max_size=200),
    st.integers(1, 30_000).map(lambda n: ".".join(["a"] * n) + " = 1\n"),
    st.integers(1, 3000).map(lambda n: "a = " + "[" * n + "]" * n + "\n"),
)
CONFIG_ENV = st.dictionaries(st.sampled_from(sorted(ENV_OVERRIDES)), st.text(max_size=40),
                             max_size=3)


def config_target(case: tuple[str, dict[str, str], bool]) -> None:
    """A config file (as UTF-8, or as Latin-1 bytes), with environment overrides: a config
    comes back only when every number in it is finite."""
    text, env, latin = case
    with tempfile.TemporaryDirectory(prefix="fuzz-config-") as d:
        p = Path(d) / "appliance.toml"
        p.write_bytes(text.encode("latin-1", "replace") if latin
                      else text.encode("utf-8", "surrogatepass"))
        try:
            cfg = load_config(p, env)
        except ApplianceError:
            return
    _all_finite(cfg, "config")


def _all_finite(obj: Any, where: str) -> None:
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            _all_finite(v, f"{where}.{f.name}")
        elif isinstance(v, float) and not math.isfinite(v):
            raise PropertyBroken(f"{where}.{f.name} = {v} passed validation")


# ------------------------------------------------------------------ HTTP and control API
# Mostly well-formed request lines (weighted by repetition), so that the headers and the
# body are reached; the rest is noise.
_METHODS = st.sampled_from(["GET", "POST"] * 6 + ["PUT", "HEAD", "get", "", "G\0T", "POST "])
_PATHS = st.one_of(st.sampled_from(["/", "/hold", "/end", "/healthz", "/metrics", "/events",
                                    "/static/app.js", "/static/../x", "/%ff", "/%",
                                    "/?token=t0ken", "/hold?token=t0ken", "*", "",
                                    "/agent/a-7", "/agent/a-7/events", "/agent/..",
                                    "/agent/" + "x" * 65, "/agent/a%2F7/hold"]),
                   st.sampled_from(["/hold", "/end", "/healthz", "/agent/a-7/hold",
                                    "/agent/b@pbx/end"]),
                   st.text(max_size=30).map(lambda s: "/" + s))
_HEADER_NAMES = st.sampled_from(["Host", "Content-Length", "Content-Type", "Origin",
                                 "Authorization", "Cookie", "Transfer-Encoding", "X-Any",
                                 "Upgrade", "Connection", "Accept"])
_HEADER_VALUES = st.one_of(
    st.sampled_from(["127.0.0.1:8765", "localhost", "evil.example", "²", "١٢", "-1", "+3",
                     " 3", "99999999999999", "0", "application/json", "text/plain",
                     "Bearer t0ken", "bearer wrong", "appliance_dashboard=t0ken", "chunked",
                     "Basic YWdlbnQ6dDBrZW4=", "Basic !!", "websocket", "Upgrade",
                     "http://127.0.0.1:8765", "null", "3"]),
    st.text(max_size=20))
_LENGTHS = st.one_of(
    st.sampled_from(["²", "١٢", "-1", "+3", " 3", "3 3", "0x10", "1e3", "", "99999999999999",
                     "1025", "0" * 40]),
    st.integers(0, 2048).map(str))
"""Content-Length values: what ``int()`` or ``str.isdigit`` disagree on, and sizes around
the body bound."""
_NOISE_LINES = st.sampled_from(["Bad Name: x", "NoColon", ": empty", "Host: 127.0.0.1",
                                "Content-Length: 1", "Authorization: Bearer t0ken",
                                " folded: x", "X\0: y"])
_BODIES = st.one_of(
    st.sampled_from([b'{"action": "start"}', b'{"action": "end"}', b'{"action": 1}',
                     b"[" * 1000, b"{" * 5000, b'{"action": ' * 3000, b"\xff\xfe",
                     b"null", b"1e999", b"NaN", b'"start"']),
    st.binary(max_size=64))


@st.composite
def _request(draw: st.DrawFn) -> bytes:
    """A request line, headers (each name once, then a few noise lines), a body whose
    Content-Length is right, absent or whatever was drawn."""
    version = draw(st.sampled_from(["HTTP/1.1"] * 6 + ["HTTP/1.0", "HTTP/2", ""]))
    line = f"{draw(_METHODS)} {draw(_PATHS)} {version}"
    headers = draw(st.dictionaries(_HEADER_NAMES, _HEADER_VALUES, max_size=5))
    body = draw(_BODIES)
    length = draw(st.sampled_from(["right", "absent", "odd"]))
    if length == "right":
        headers["Content-Length"] = str(len(body))
    elif length == "absent":
        headers.pop("Content-Length", None)
    else:
        headers["Content-Length"] = draw(_LENGTHS)
    if draw(st.integers(0, 3)):  # mostly: HTTP/1.1 requires a Host, the keys want JSON
        headers.setdefault("Host", "127.0.0.1:8765")
        headers.setdefault("Content-Type", "application/json")
    lines = [f"{k}: {v}" for k, v in headers.items()]
    lines += draw(st.lists(_NOISE_LINES, max_size=2)) if draw(st.integers(0, 3)) == 0 else []
    head = "\r\n".join([line, *lines]) + "\r\n\r\n"
    # the server reads the head as Latin-1 (one byte a character), mostly sent as such
    if draw(st.sampled_from(["latin-1", "latin-1", "latin-1", "utf-8"])) == "latin-1":
        return head.encode("latin-1", "replace") + body
    return head.encode("utf-8", "surrogatepass") + body


_ROUTES = st.sampled_from(["/", "/index.html", "/static/app.js", "/static/nope.css", "/hold",
                           "/end", "/healthz", "/metrics", "/events", "/agent/a-7",
                           "/agent/a-7/hold", "/agent/b@pbx.example/end", "/agent/a-7/events",
                           "/hold?token=t0ken", "/nothing"])
_CREDENTIALS = st.sampled_from([{"Authorization": "Bearer t0ken"},
                                {"Authorization": "Basic YWdlbnQ6dDBrZW4="},
                                {"Cookie": "appliance_dashboard=t0ken"}, {}])


@st.composite
def _routed(draw: st.DrawFn) -> bytes:
    """A well-formed request to a route (a Host, mostly the right credentials, a body sent
    whole, chunked or not at all): the cases that reach the guard and the handlers."""
    method = draw(st.sampled_from(["GET", "POST", "POST", "POST", "PUT", "HEAD"]))
    path = draw(st.one_of(_ROUTES, _ROUTES, _ROUTES, _PATHS))
    headers = {"Host": draw(st.sampled_from(["127.0.0.1:8765"] * 4 + ["evil.example"]))}
    headers.update(draw(_CREDENTIALS))
    headers.update(draw(st.dictionaries(st.sampled_from(["Origin", "Accept", "Upgrade"]),
                                        _HEADER_VALUES, max_size=1)))
    body = draw(_BODIES)
    if method in ("POST", "PUT"):
        headers["Content-Type"] = draw(st.sampled_from(
            ["application/json", "application/json", "text/plain"]))
        if draw(st.booleans()):
            headers["Content-Length"] = str(len(body))
        else:
            headers["Transfer-Encoding"] = "chunked"
            body = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    else:
        body = b""
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("utf-8", "surrogatepass") + body


HTTP_BYTES = st.one_of(_routed(), _request(), st.binary(max_size=300),
                       st.integers(1, 20_000).map(lambda n: b"GET /" + b"a" * n + b" HTTP/1.1"))


def _server(token: str) -> DashboardServer:
    return DashboardServer("127.0.0.1", 8765, token=token, on_hold=lambda event: None,
                           on_end_call=lambda: None, on_agent_hold=lambda agent, event: None,
                           on_agent_end=lambda agent: None, health=lambda: {"healthy": True})


class _Wire(asyncio.Transport):
    """The server's end of one connection, in memory: what the server writes is kept."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.out += data

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.out += chunk

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8765)}.get(
            name, default)

    def get_write_buffer_size(self) -> int:
        return 0

    def is_reading(self) -> bool:
        return not self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


_QUIET_TURNS = 16
"""Event-loop turns without a byte written after which the server is taken to wait for more
input (a handler with its whole request answers within a few turns; counted in turns, never
in seconds, so a slow machine cannot change a case's outcome)."""


class _Rig:
    """One event loop and the dashboard's real protocol (aiohttp's request parser, the
    server's guard and routes) for a server without and one with a token; a case's bytes
    are fed to a fresh connection of it, as a socket would, and what it answers is kept."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.problems: list[str] = []
        self.loop.set_exception_handler(
            lambda loop, ctx: self.problems.append(str(ctx.get("message"))))
        self.runners = {t: _server(t).make_runner() for t in ("", "t0ken")}
        for runner in self.runners.values():
            self.loop.run_until_complete(runner.setup())
        logging.getLogger("appliance.sinks.dashboard").addHandler(self._Errors(self.problems))

    class _Errors(logging.Handler):
        def __init__(self, problems: list[str]) -> None:
            super().__init__(logging.ERROR)
            self.problems = problems

        def emit(self, record: logging.LogRecord) -> None:
            self.problems.append(record.getMessage())

    def exchange(self, token: str, data: bytes) -> bytes:
        return self.loop.run_until_complete(self._exchange(token, data))

    async def _exchange(self, token: str, data: bytes) -> bytes:
        server = self.runners[token].server
        assert server is not None
        proto = server()
        wire = _Wire()
        proto.connection_made(wire)
        proto.data_received(data)
        quiet, written = 0, 0
        while quiet < _QUIET_TURNS and not wire.closed:
            await asyncio.sleep(0)
            quiet = 0 if len(wire.out) != written else quiet + 1
            written = len(wire.out)
        proto.connection_lost(None)  # the client goes: a handler still waiting is cancelled
        for _ in range(10):
            await asyncio.sleep(0)
        return bytes(wire.out)


_RIG: list[_Rig] = []
_HEALTH = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8765\r\nAuthorization: Bearer t0ken\r\n\r\n"


def _statuses(out: bytes) -> list[int]:
    """The status of every response in ``out`` (the standard library's response reader;
    a stream cut by the client's leaving ends the list)."""
    statuses: list[int] = []

    class _Stream(io.BytesIO):
        def close(self) -> None:  # each response's reader closes it when its body is read
            pass

    stream = _Stream(out)

    class _Sock:
        def makefile(self, *args: Any, **kwargs: Any) -> io.BytesIO:
            return stream

    while stream.tell() < len(out):
        resp = http.client.HTTPResponse(_Sock())  # type: ignore[arg-type]
        try:
            resp.begin()
        except (http.client.HTTPException, ValueError) as exc:
            raise PropertyBroken(f"not an HTTP response: {out[:60]!r}") from exc
        statuses.append(resp.status)
        try:
            resp.read()
        except http.client.IncompleteRead:
            break
        if resp.will_close:
            break
    return statuses


def http_target(case: tuple[bytes, str]) -> None:
    """Raw bytes on a dashboard connection, through the server's own protocol: aiohttp's
    request parser, the guard (token, Host and Origin checks, head bound) and every route
    (the page, static files, hold and end — the desk's and an agent's —, health, metrics,
    the streams).  Every answer is below 500, and the server answers the next client."""
    data, token = case
    if not _RIG:
        _RIG.append(_Rig())
    rig = _RIG[0]
    rig.problems.clear()
    statuses = _statuses(rig.exchange(token, data))
    if rig.problems:
        raise PropertyBroken(f"the server logged: {rig.problems[:3]}")
    if any(s >= 500 for s in statuses):
        raise PropertyBroken(f"HTTP {statuses} for {data[:60]!r}")
    if _statuses(rig.exchange("t0ken", _HEALTH)) != [200]:
        raise PropertyBroken(f"the server no longer answers after {data[:60]!r}")


@dataclass(frozen=True, slots=True)
class Target:
    """One parser of untrusted input."""

    name: str
    strategy: st.SearchStrategy[Any]
    run: Callable[[Any], None]
    examples: int
    """Examples per CI run (seeded: the same cases every run)."""
    known: tuple[Any, ...] = ()
    """Inputs that once broke the property (issue 10): always tried, before the rest."""


_FMT_4GB = b"RIFF\x24\0\0\0WAVEfmt \xff\xff\xff\xff" + bytes(28)
TARGETS: tuple[Target, ...] = (
    Target("wav", WAV_BYTES, wav_target, 300, known=(
        _FMT_4GB, WAV_SEEDS[0][:40], b"riff" + bytes(40),
        _riff(_chunk(b"fmt ", struct.pack("<HHIIHH", 1, 2, 0xFFFFFFFF, 0, 4, 16)),
              _chunk(b"data", bytes(8))))),
    Target("marks", MARKS_BYTES, marks_target, 300, known=(
        b"[" * 1000, b'{"t": ' + b"9" * 5000 + b', "event": "hold_start"}',
        b'{"t": ' + str(2**1024).encode() + b', "event": "hold_end"}',
        b'{"t": NaN, "event": "hold_start"}', b"\xff\xfe{}")),
    Target("config", st.tuples(CONFIG_TEXT, CONFIG_ENV, st.booleans()), config_target, 300,
           known=(("[dashboard]\nsnapshot_s = nan\n", {}, False),
                  ("[storage]\nsummaries_max_mb = inf\n", {}, False),
                  (".".join(["a"] * 20_000) + " = 1\n", {}, False),
                  ("a = " + "[" * 1000 + "]" * 1000 + "\n", {}, False),
                  ('language = "../../etc/passwd"\n', {}, False),
                  ("\ufefflanguage = \"de\"\n", {}, False),
                  ("# Grüße\n", {}, True),
                  ("", {"APPLIANCE_DASHBOARD_PORT": "nan"}, False),
                  # found by benchmarks.fuzz: overrides deep-copied a 900-deep array
                  ("[vad]\non_threshold = " + "[" * 900 + "]" * 900 + "\n",
                   {"APPLIANCE_AUDIO_DEVICE": ""}, False))),
    Target("http", st.tuples(HTTP_BYTES, st.sampled_from(["", "t0ken"])), http_target, 400,
           known=((b"POST /hold HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n", ""),
                  (b"POST /hold HTTP/1.1\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 1000\r\n\r\n" + b"[" * 1000, ""),
                  (b"GET /healthz?token=t0ken HTTP/1.1\r\n\r\n", "t0ken"))),
)
BY_NAME = {t.name: t for t in TARGETS}


def check(target: Target, case: Any) -> None:
    """Run one case under the memory budget and the service's recursion limit; anything
    but a result or a clean refusal propagates (MemoryError, RecursionError included)."""
    with memory_budget(), service_recursion_limit():
        target.run(case)


@contextmanager
def service_recursion_limit(limit: int = 1000) -> Iterator[None]:
    """Python's default recursion limit counted from here: Hypothesis raises the limit while
    it runs a test, which would hide a RecursionError the service meets at depth 1000."""
    depth = 0
    frame = sys._getframe()
    while frame is not None:
        depth += 1
        frame = frame.f_back  # type: ignore[assignment]
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + limit)
    try:
        yield
    finally:
        sys.setrecursionlimit(before)
