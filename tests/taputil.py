"""What the WebSocket tap and control API tests share: a pool that records what the tap
asks of it, a loopback server for aiohttp route tables, and a bare RFC 6455 client that can
vanish without a close frame."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import struct
from collections.abc import AsyncIterator, Iterable
from typing import Any

import numpy as np
from aiohttp import web
from aiohttp.test_utils import TestServer

from appliance.errors import CALL_EXISTS, CALL_UNKNOWN, CALLS_FULL, ApplianceError


class RecordingPool:
    """The ShardPool's face towards TapCalls, recording every call on it (no analysis)."""

    def __init__(self, max_calls: int = 100) -> None:
        self.max_calls = max_calls
        self.open: dict[str, dict[str, Any]] = {}
        self.opened: dict[str, dict[str, Any]] = {}
        """Every call opened, with what it was opened with."""
        self.log: list[tuple[Any, ...]] = []
        self.samples: dict[str, int] = {}

    def open_call(self, call_id: str, *, lang: str | None = None,
                  agent_id: str | None = None, source: str = "") -> int:
        if call_id in self.open:
            raise ApplianceError(CALL_EXISTS, f"call {call_id!r} is open already")
        if len(self.open) >= self.max_calls:
            raise ApplianceError(CALLS_FULL, "no worker can take another call")
        self.open[call_id] = self.opened[call_id] = {"lang": lang, "agent_id": agent_id,
                                                     "source": source}
        self.log.append(("open", call_id))
        return 0

    def push(self, call_id: str, block: Any) -> bool:
        self.samples[call_id] = self.samples.get(call_id, 0) + len(block.agent)
        return call_id in self.open

    def signal(self, call_id: str, event: str, *, party: str | None = None,
               ring_s: float | None = None) -> None:
        self._known(call_id)
        self.log.append(("signal", call_id, event, party if ring_s is None else ring_s))

    def add_mark(self, call_id: str, mark: Any) -> None:
        self._known(call_id)
        self.log.append(("mark", call_id, mark.event, mark.t_s))

    def end_call(self, call_id: str, reason: str = "api") -> bool:
        if self.open.pop(call_id, None) is None:
            return False
        self.log.append(("end", call_id, reason))
        return True

    def _known(self, call_id: str) -> None:
        if call_id not in self.open:
            raise ApplianceError(CALL_UNKNOWN, f"no open call {call_id!r}")


@contextlib.asynccontextmanager
async def serving(routes: Iterable[web.RouteDef]) -> AsyncIterator[TestServer]:
    """The routes on a standalone application, on a loopback port."""
    app = web.Application()
    app.add_routes(list(routes))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


def stereo(left: np.ndarray, right: np.ndarray) -> bytes:
    """Two int16 channels as interleaved 16-bit little-endian PCM (L R L R …)."""
    return np.column_stack([left, right]).astype("<i2").tobytes()


def frames(left: np.ndarray, right: np.ndarray, samples: int) -> list[bytes]:
    """The stereo stream cut in frames of ``samples`` per channel (20 ms: 160 at 8 kHz)."""
    return [stereo(left[i:i + samples], right[i:i + samples])
            for i in range(0, min(len(left), len(right)), samples)]


class BareClient:
    """A WebSocket client by hand: the upgrade, masked frames, and :meth:`vanish` (the TCP
    connection closed without a close frame, as when a PBX dies)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, host: str, port: int, path: str) -> BareClient:
        reader, writer = await asyncio.open_connection(host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send(self, payload: bytes | str) -> None:
        opcode, data = (1, payload.encode()) if isinstance(payload, str) else (2, payload)
        n = len(data)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        body = (np.frombuffer(data, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8),
                                                           n)).tobytes()
        self.writer.write(head + mask + body)

    def send_json(self, obj: object) -> None:
        self.send(json.dumps(obj))

    async def drain(self) -> None:
        await self.writer.drain()

    def vanish(self) -> None:
        self.writer.transport.abort()
