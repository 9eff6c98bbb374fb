"""The WebSocket tap: FreeSWITCH ``mod_audio_fork`` / ``mod_audio_stream`` and jambonz
``listen`` stream each call to the box over one WebSocket; this module serves them as
``aiohttp.web`` routes (:meth:`WsTapListener.routes`, mounted on the dashboard's HTTP server
behind its token check) and hands the audio to :class:`~appliance.audio.tap.TapCalls`.

**URL.** ``ws://<box>:8765/tap/ws`` (the route named ``default``) or
``ws://<box>:8765/tap/ws/<route>`` for a ``[[tap.routes]]`` entry; an unknown route is
HTTP 404, and one stream more than ``[tap.websocket] max_streams`` is HTTP 503 (with
``Retry-After``), both before the upgrade.  The dashboard's token goes in the URL
(``?token=…``) or an ``Authorization: Bearer`` header.  The subprotocols ``audio.jambonz.org``
(jambonz), ``audio.drachtio.org`` and ``audiostream.drachtio.org`` (``mod_audio_fork``'s
defaults) are accepted when offered.

**Framing** (:mod:`appliance.audio.pbx.wsfork`):

1. one **text** frame of JSON metadata, within ``meta_timeout_s`` (10 s) of the upgrade.  The
   call id is the first of ``callSid``, ``call_sid``, ``call_id``, ``callId``, ``callid``,
   ``uuid`` (it must match :data:`~appliance.config.tap.CALL_ID`).  The sample rate
   (``sampleRate``, 8000 or 16000) and the mix type (``mixType``) come from the metadata,
   else from the route (``sample_rate_hz``, default 8000; ``mix_type``), else a
   ``channels`` field (2: stereo).  The agent's id is the route's ``agent_id_field``
   (default ``agent_id``), else ``agent_id`` / ``agentId``, read at the top level or inside
   jambonz's ``metadata`` object (``[A-Za-z0-9._@-]``, at most 64); the language
   ``language`` / ``lang`` the same way (``de``, ``de-DE``), else what the control API
   announced for the call, else the route's ``language``, else the box's;
2. **binary** frames: 16-bit signed little-endian PCM, two channels interleaved
   (L R L R …), any number of bytes per frame (jambonz and ``mod_audio_fork`` send 20 ms).
   **The swap key**: which channel is the agent is the route's ``agent_channel`` (0 = left,
   ``mod_audio_fork``'s caller leg; set 1 on the route when the agent arrives on the right);
3. the end: the peer closes the socket, or sends a second text frame (``uuid_audio_fork
   <uuid> stop``'s text, jambonz's end); the call then ends (``call_ended`` with reason
   ``source_closed``, then its summary) and the box closes the socket with 1000.  A
   connection that drops without a close frame (the PBX died, the network went) ends its
   call the same way, counted in ``dropped_connections``; a peer that stops answering the
   box's pings (every ``heartbeat_s``) is dropped.  A call ended elsewhere (the control API,
   the idle timeout) closes its socket with 1000 at the next frame.

**Close codes** of a refused stream (one warning log line each, with the reason; counted by
reason in :meth:`WsTapListener.stats`): **1003** a mono or mixed stream (the parties cannot be
told apart; ``pbx.stream_refused``) or a rate other than 8/16 kHz; **1002** metadata that is
not a JSON object, has no usable call id, a bad agent id or language, no mix type, or audio
before the metadata (``pbx.protocol``); **1009** a message over ``[tap.websocket]
max_frame_bytes`` (or metadata over 64 KiB); **1008** a call id that is open already
(``call.exists``); **1013** no analysis worker can take the call (``calls.full``); **1001**
the box is stopping.

FreeSWITCH (route ``fs1`` with ``mix_type = "stereo"``, ``sample_rate_hz = 8000``)::

    uuid_audio_fork <uuid> start ws://127.0.0.1:8765/tap/ws/fs1?token=… stereo 8k
        {"callid":"<uuid>","agent_id":"a-17","language":"de"}

jambonz, nested in the ``dial`` verb so both legs of the bridge are sent (``wsAuth`` sends
HTTP Basic; put the token in the URL as well unless the server takes Basic)::

    {"verb": "listen", "url": "wss://box.example:8765/tap/ws/jb?token=…",
     "mixType": "stereo", "sampleRate": 8000,
     "metadata": {"agent_id": "a-17", "language": "de"},
     "wsAuth": {"username": "pbx", "password": "…"}}

The socket reader only copies each frame into the call's bounded leg aligner; no audio is
kept here, nothing is logged of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import WebSocketError, WSMsgType, web

from appliance.audio.pbx.errors import (
    WS_CLOSE_GOING_AWAY,
    WS_CLOSE_MESSAGE_TOO_BIG,
    WS_CLOSE_NORMAL,
    WS_CLOSE_POLICY_VIOLATION,
    WS_CLOSE_PROTOCOL_ERROR,
    WS_CLOSE_TRY_AGAIN_LATER,
    PbxProtocolError,
)
from appliance.audio.pbx.wsfork import (
    _CALLEE_KEYS,
    _CALLER_KEYS,
    REASON_MIXED,
    REASON_MONO,
    REASON_RATE,
    Chunk,
    Ended,
    MixType,
    StreamMeta,
    WsForkStream,
)
from appliance.audio.tap import TapCalls
from appliance.config.tap import AGENT_ID, CALL_ID, LANGUAGE, TapConfig, TapRoute
from appliance.errors import CALL_EXISTS, CALLS_FULL, ApplianceError, shown
from appliance.events import EndReason

log = logging.getLogger(__name__)

CLOSE_WAIT_S = 2.0
"""How long stopping the box waits for each stream's close to complete."""

PATH = "/tap/ws"
SUBPROTOCOLS = ("audio.jambonz.org", "audio.drachtio.org", "audiostream.drachtio.org")
DEFAULT_RATE_HZ = 8000
"""A stream's rate when neither its metadata nor its route names one."""
HEARTBEAT_S = 20.0
"""The box pings every stream this often; no pong within half of it drops the stream."""
META_TIMEOUT_S = 10.0
"""A stream must send its metadata this soon after the upgrade."""
_AGENT_KEYS = ("agent_id", "agentId")
_LANGUAGE_KEYS = ("language", "lang")
_CHANNEL_KEYS = ("channels", "numChannels", "num_channels")
_SHORT = {REASON_MIXED: "mixed", REASON_MONO: "mono", REASON_RATE: "sample_rate"}
"""Stats keys for the refusals whose reason is a sentence."""
_MALFORMED_CODES = (WS_CLOSE_PROTOCOL_ERROR, WS_CLOSE_MESSAGE_TOO_BIG)


class WsTapListener:
    """The ``/tap/ws`` routes over one :class:`TapCalls`.  ``clock`` gives the monotonic
    seconds the tap's idle timeout is measured in."""

    def __init__(self, tap: TapCalls, cfg: TapConfig, *,
                 clock: Callable[[], float] = time.monotonic,
                 heartbeat_s: float | None = HEARTBEAT_S,
                 meta_timeout_s: float = META_TIMEOUT_S) -> None:
        self.tap = tap
        self.cfg = cfg
        self.clock = clock
        self.heartbeat_s = heartbeat_s
        self.meta_timeout_s = meta_timeout_s
        self.streams_open = 0
        self.streams_total = 0
        self.frames = 0
        self.bytes = 0
        self.malformed = 0
        """Streams closed for breaking the framing (close codes 1002 and 1009)."""
        self.dropped_frames = 0
        """Audio frames for a call that had been ended elsewhere."""
        self.dropped_connections = 0
        """Streams that went away mid-call without a close frame."""
        self.refused: Counter[str] = Counter()
        self._streams: set[_Stream] = set()

    def routes(self) -> list[web.RouteDef]:
        """The routes to mount (none when ``[tap.websocket] enabled`` is false)."""
        if not self.cfg.websocket.enabled:
            return []
        return [web.get(PATH, self.handle, allow_head=False),
                web.get(PATH + "/{route}", self.handle, allow_head=False)]

    def stats(self) -> dict[str, Any]:
        """Counters for the metrics page."""
        return {"streams_open": self.streams_open, "streams_total": self.streams_total,
                "refused": dict(self.refused), "frames": self.frames, "bytes": self.bytes,
                "malformed": self.malformed, "dropped_frames": self.dropped_frames,
                "dropped_connections": self.dropped_connections}

    async def close_all(self) -> None:
        """The box is stopping: end every stream's call (``service_stop``) and close its
        socket (1001)."""
        closing: list[asyncio.Task[Any]] = []
        for stream in list(self._streams):
            stream.end("service_stop")
            if stream.ws.prepared and not stream.ws.closed:
                closing.append(asyncio.ensure_future(stream.ws.close(
                    code=WS_CLOSE_GOING_AWAY, message=b"the box is stopping")))
        if closing:
            # A close waits for its handler to read the peer's answer; a handler that ended
            # on its own meanwhile never does, so the wait is bounded (the server's stop then
            # cancels what is left).
            _, late = await asyncio.wait(closing, timeout=CLOSE_WAIT_S)
            for task in late:
                task.cancel()
            if late:
                log.info("%d WebSocket streams did not finish closing within %.0f s",
                         len(late), CLOSE_WAIT_S)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("route", "default")
        route = self.cfg.route(name)
        if route is None:
            self.refused["unknown_route"] += 1
            raise web.HTTPNotFound(text=f"no tap route {shown(name, 40)}\n")
        ws = web.WebSocketResponse(protocols=SUBPROTOCOLS, heartbeat=self.heartbeat_s,
                                   max_msg_size=self.cfg.websocket.max_frame_bytes,
                                   compress=False)
        if not ws.can_prepare(request).ok:
            raise web.HTTPBadRequest(text="a WebSocket upgrade is expected here\n")
        if self.streams_open >= self.cfg.websocket.max_streams:
            self.refused["too_many_streams"] += 1
            log.warning("tap stream refused: %d streams open already",
                        self.streams_open, extra={"fields": {"route": name}})
            raise web.HTTPServiceUnavailable(
                text=f"{self.streams_open} streams open: try again later\n",
                headers={"Retry-After": "1"})
        stream = _Stream(self, ws, route)
        self.streams_open += 1
        self.streams_total += 1
        self._streams.add(stream)
        try:
            await ws.prepare(request)
            await stream.run()
        finally:
            self.streams_open -= 1
            self._streams.discard(stream)
        return ws

    def count_refusal(self, route: str, reason: str, close_code: int, message: str) -> None:
        self.refused[_SHORT.get(reason, reason)] += 1
        if close_code in _MALFORMED_CODES:
            self.malformed += 1
        log.warning("tap stream refused: %s", message, extra={"fields": {
            "route": route, "reason": _SHORT.get(reason, reason), "close_code": close_code}})


class _Stream:
    """One WebSocket stream: its metadata, its call, its frames."""

    def __init__(self, owner: WsTapListener, ws: web.WebSocketResponse, route: TapRoute) -> None:
        self.owner = owner
        self.ws = ws
        self.route = route
        self.core = self._core(route.mix_type or None)
        self.call_id = ""
        self.call: object | None = None  # the tap's record of this stream's call
        self.closed_cleanly = False
        self.ended = False

    def _core(self, mix_type: str | None) -> WsForkStream:
        return WsForkStream(agent_channel=self.route.agent_channel, mix_type=mix_type,
                            sample_rate_hz=self.route.sample_rate_hz or DEFAULT_RATE_HZ)

    async def run(self) -> None:
        try:
            await self._receive()
        except PbxProtocolError as err:
            self.owner.count_refusal(self.route.name, err.reason, err.close_code, str(err))
            if not self.ws.closed:
                await self.ws.close(code=err.close_code,
                                    message=err.reason.encode("utf-8")[:123])
        finally:
            self._finish()

    async def _receive(self) -> None:
        owner, ws = self.owner, self.ws
        while True:
            try:
                msg = await ws.receive(timeout=owner.meta_timeout_s if self.call is None
                                       else None)
            except TimeoutError:
                raise PbxProtocolError("no_metadata", f"no metadata within "
                                       f"{owner.meta_timeout_s:g} s of the upgrade") from None
            if msg.type is WSMsgType.TEXT:
                if self.call is None:
                    self._open(msg.data)
                elif isinstance(self.core.on_text(msg.data), Ended):
                    self.end("source_closed")
                    await ws.close(code=WS_CLOSE_NORMAL, message=b"stream ended")
                    return
            elif msg.type is WSMsgType.BINARY:
                owner.frames += 1
                owner.bytes += len(msg.data)
                chunk = self.core.on_binary(msg.data)
                if chunk is not None and not self._feed(chunk):
                    owner.dropped_frames += 1
                    await ws.close(code=WS_CLOSE_NORMAL, message=b"call ended")
                    return
            elif msg.type is WSMsgType.ERROR and isinstance(msg.data, WebSocketError):
                # a frame over max_msg_size or against RFC 6455: aiohttp has closed the
                # socket with the code already
                code = int(msg.data.code)
                reason = "message_too_big" if code == WS_CLOSE_MESSAGE_TOO_BIG else "bad_frame"
                owner.count_refusal(self.route.name, reason, code,
                                    f"call {self.call_id or '?'}: {shown(str(msg.data), 120)}")
                self.closed_cleanly = True
                return
            else:  # CLOSE (the peer's close frame), CLOSING (ours), or the connection went
                self.closed_cleanly = msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING)
                return

    def _open(self, text: str) -> None:
        meta = self._meta(text)
        if not CALL_ID.fullmatch(meta.call_id):
            raise PbxProtocolError("bad_call_id", f"stream metadata: call id "
                                   f"{shown(meta.call_id, 60)}: letters, digits and ._:@- "
                                   "(at most 128)")
        agent_id = self._agent_id(meta)
        lang = self._language(meta)
        tap = self.owner.tap
        plan = tap.plans.get(meta.call_id)
        if lang is None and (plan is None or plan.language is None):
            lang = self.route.language or None
        try:
            tap.open(meta.call_id, rate_hz=meta.sample_rate_hz, now_s=self.owner.clock(),
                     lang=lang, agent_id=agent_id, source="websocket")
        except ApplianceError as err:
            if err.code == CALL_EXISTS:
                raise PbxProtocolError("call_exists", err.message, code=CALL_EXISTS,
                                       close_code=WS_CLOSE_POLICY_VIOLATION) from None
            if err.code == CALLS_FULL:
                raise PbxProtocolError("calls_full", err.message, code=CALLS_FULL,
                                       close_code=WS_CLOSE_TRY_AGAIN_LATER) from None
            raise
        self.call_id, self.call = meta.call_id, tap.calls[meta.call_id]
        log.info("tap stream opened", extra={"fields": {
            "call": self.call_id, "route": self.route.name, "rate_hz": meta.sample_rate_hz}})

    def _meta(self, text: str) -> StreamMeta:
        try:
            meta = self.core.on_text(text)
        except PbxProtocolError as err:
            channels = _channels(text) if err.reason == "no_mix_type" else None
            if channels is None:
                raise
            self.core = self._core(MixType.STEREO if channels == 2 else MixType.MONO)
            meta = self.core.on_text(text)
        assert isinstance(meta, StreamMeta)
        return meta

    def _agent_id(self, meta: StreamMeta) -> str | None:
        key = self.route.agent_id_field
        if key in _CALLER_KEYS or key in _CALLEE_KEYS:  # read by the core already
            value: object = meta.caller if key in _CALLER_KEYS else meta.callee
        else:
            value = _lookup(meta.custom, (key, *(k for k in _AGENT_KEYS if k != key)))
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not AGENT_ID.fullmatch(value):
            raise PbxProtocolError("bad_agent_id", f"stream metadata: agent id "
                                   f"{shown(value, 60)}: letters, digits and ._@- (at most 64)")
        return value

    def _language(self, meta: StreamMeta) -> str | None:
        value = _lookup(meta.custom, _LANGUAGE_KEYS)
        if value is None:
            return None
        code = value.strip().lower().replace("_", "-").split("-")[0] \
            if isinstance(value, str) else ""
        if not LANGUAGE.fullmatch(code):
            raise PbxProtocolError("bad_language", f"stream metadata: language "
                                   f"{shown(value, 40)} is not a code like en, de, fr")
        return code

    def _feed(self, chunk: Chunk) -> bool:
        """The chunk to the call; False when the call was ended elsewhere."""
        tap = self.owner.tap
        if tap.calls.get(self.call_id) is not self.call:
            return False
        if len(chunk.agent):
            now_s = self.owner.clock()
            tap.audio(self.call_id, "agent", chunk.agent, now_s)
            tap.audio(self.call_id, "customer", chunk.customer, now_s)
        return True

    def end(self, reason: EndReason) -> None:
        """End this stream's call (if it is still the tap's open call of that id)."""
        self.ended = True
        tap = self.owner.tap
        if self.call is not None and tap.calls.get(self.call_id) is self.call:
            tap.end(self.call_id, reason)

    def _finish(self) -> None:
        """The stream is over however it went: its call ends with its summary."""
        if self.ended or self.call is None:
            return
        if self.owner.tap.calls.get(self.call_id) is self.call and not self.closed_cleanly:
            self.owner.dropped_connections += 1
            log.warning("tap stream went away without a close frame; its call ends",
                        extra={"fields": {"call": self.call_id, "route": self.route.name}})
        self.end("source_closed")


def _lookup(custom: Mapping[str, Any], keys: tuple[str, ...]) -> object:
    """The first of ``keys`` at the metadata's top level, else in its ``metadata`` object
    (jambonz puts the app's own fields there)."""
    nested = custom.get("metadata")
    for scope in (custom, nested if isinstance(nested, Mapping) else {}):
        for key in keys:
            if scope.get(key) is not None:
                return scope[key]
    return None


def _channels(text: str) -> int | None:
    """A ``channels`` field of 1 or 2 in metadata the core has already read as an object."""
    value = _lookup(json.loads(text), _CHANNEL_KEYS)
    if isinstance(value, bool) or not isinstance(value, int) or value not in (1, 2):
        return None
    return value
