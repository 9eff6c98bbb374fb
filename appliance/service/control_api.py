"""The control API: the PBX's (or the call-center software's) signalling for the tap's
calls, as ``aiohttp.web`` routes (:meth:`ControlApi.routes`, mounted on the dashboard's HTTP
server behind its token check).  JSON in and out; a request body is at most 16 KiB
(:data:`MAX_BODY_BYTES`) of ``application/json``.

* ``POST /api/calls`` announces a call before its audio comes::

      {"call_id": "7f3a…", "agent_id": "a-17", "language": "de", "ring_s": 9.5,
       "legs": {"agent": {"audiosocket": "<uuid>"}, "customer": {"audiosocket": "<uuid>"}}}

  Only ``call_id`` is needed.  ``legs`` says how the audio will come when the listener
  cannot tell from the stream itself: ``{"audiosocket": "<uuid>"}`` (the UUID the
  AudioSocket leg will send) or ``{"rtp": {"port": 40002, "ssrc": 1234}}`` (``ssrc``
  optional) per party, both legs the same way; none for WebSocket streams (their metadata
  names the call).  The stream's own metadata wins over the announcement; an announcement
  whose audio never comes is forgotten after ``[tap] plan_ttl_s``.  Answer 201 with the
  call.
* ``GET /api/calls``: the live calls (``state`` ``live``: agent, source, seconds open,
  seconds of audio, on hold) and the announced ones (``announced``); ``GET
  /api/calls/{id}``: one of them.
* ``DELETE /api/calls/{id}`` (or ``POST /api/calls/{id}/end``): ends a live call now (its
  summary follows; reason ``api``) or forgets an announced one.
* ``POST /api/calls/{id}/hold`` ``{"action": "start"}`` / ``{"action": "end"}``: a hold
  mark at the call's audio time (the hold cues, and a hold is never counted as dead air).
* ``POST /api/calls/{id}/hangup`` ``{"party": "agent"}``: who hung up, when the signalling
  says it (``hung_up_first``).

Errors are one JSON answer ``{"error": {"code": "call.exists", "message": "…"}}`` with a
stable code (:mod:`appliance.errors`): 400 ``api.bad_request`` (a field missing, of the wrong
type or out of range; an unknown field), 400 ``tap.not_enabled`` (legs of a listener that is
off), 404 ``call.unknown``, 409 ``call.exists``, 409 ``call.not_started`` (hold or hang-up
before the call's audio came), 413 ``api.too_large``, 415 ``api.unsupported_media_type``,
503 ``calls.full``.

The AudioSocket and RTP listeners are optional duck-typed objects with
``expect(call_id, …)`` and ``forget(call_id)``; the clock (monotonic seconds) is injected.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from appliance.audio.tap import CallPlan, TapCalls
from appliance.config.tap import AGENT_ID, CALL_ID, LANGUAGE
from appliance.errors import (
    API_BAD_REQUEST,
    API_TOO_LARGE,
    API_UNSUPPORTED_MEDIA,
    CALL_EXISTS,
    CALL_NOT_STARTED,
    CALL_UNKNOWN,
    CALLS_FULL,
    TAP_NOT_ENABLED,
    ApplianceError,
    shown,
)
from appliance.events import PARTIES, Party

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 16 * 1024
MAX_RING_S = 600.0
STATUS = {CALL_UNKNOWN: 404, CALL_EXISTS: 409, CALL_NOT_STARTED: 409, API_TOO_LARGE: 413,
          API_UNSUPPORTED_MEDIA: 415, CALLS_FULL: 503}
"""HTTP status per error code; any other code is 400."""
_CALL_FIELDS = frozenset({"call_id", "agent_id", "language", "ring_s", "legs"})
_LEG_KINDS = ("audiosocket", "rtp")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _bad(message: str) -> ApplianceError:
    return ApplianceError(API_BAD_REQUEST, message)


def error_response(err: ApplianceError) -> web.Response:
    return web.json_response({"error": {"code": err.code, "message": err.message}},
                             status=STATUS.get(err.code, 400))


async def read_json(request: web.Request, limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """The request's JSON object, read at most ``limit`` bytes far (413 beyond, 415 for
    another content type, 400 for anything but a JSON object)."""
    if request.content_type != "application/json":
        raise ApplianceError(API_UNSUPPORTED_MEDIA, "send the body as application/json, not "
                             f"{shown(request.content_type, 60)}")
    if request.content_length is not None and request.content_length > limit:
        raise ApplianceError(API_TOO_LARGE, f"a body of {request.content_length} bytes "
                             f"(at most {limit})")
    body = bytearray()
    while chunk := await request.content.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            raise ApplianceError(API_TOO_LARGE, f"a body of more than {limit} bytes")
    try:
        obj = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise _bad("the body is not JSON") from None
    if not isinstance(obj, dict):
        raise _bad(f"the body is a JSON {type(obj).__name__}, not an object")
    return obj


def _answering(handler: Handler) -> Handler:
    """Every refusal becomes one JSON error answer."""
    async def answer(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApplianceError as err:
            log.info("control API refused %s %s: %s", request.method, request.rel_url.path,
                     err.code)
            return error_response(err)
    return answer


def _only(body: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise _bad(f"unknown field {shown(unknown[0], 40)} (allowed: "
                   f"{', '.join(sorted(allowed))})")


def _text(body: dict[str, Any], key: str, pattern: Any, what: str,
          required: bool = False) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise _bad(f"{key} {shown(value, 60)}: {what}")
    return value


def _int(value: object, key: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _bad(f"{key} {shown(value, 40)}: an integer {lo}..{hi}")
    return value


class ControlApi:
    def __init__(self, tap: TapCalls, *, clock: Callable[[], float] = time.monotonic,
                 audiosocket: Any = None, rtp: Any = None) -> None:
        self.tap = tap
        self.clock = clock
        self.listeners: dict[str, Any] = {"audiosocket": audiosocket, "rtp": rtp}

    def routes(self) -> list[web.RouteDef]:
        one = "/api/calls/{call_id}"
        return [web.post("/api/calls", _answering(self.create)),
                web.get("/api/calls", _answering(self.list_calls), allow_head=False),
                web.get(one, _answering(self.get_call), allow_head=False),
                web.delete(one, _answering(self.end_call)),
                web.post(one + "/end", _answering(self.end_call)),
                web.post(one + "/hold", _answering(self.hold)),
                web.post(one + "/hangup", _answering(self.hangup))]

    # -- handlers ------------------------------------------------------------------------
    async def create(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        _only(body, _CALL_FIELDS)
        call_id = _text(body, "call_id", CALL_ID, "letters, digits and ._:@- (at most 128)",
                        required=True)
        assert call_id is not None
        agent_id = _text(body, "agent_id", AGENT_ID, "letters, digits and ._@- (at most 64)")
        language = _text(body, "language", LANGUAGE, "a language code like en, de, fr")
        ring_s = body.get("ring_s")
        if ring_s is not None and (isinstance(ring_s, bool) or not isinstance(
                ring_s, int | float) or not math.isfinite(ring_s)
                or not 0 <= ring_s <= MAX_RING_S):
            raise _bad(f"ring_s {shown(ring_s, 40)}: seconds 0..{MAX_RING_S:g}")
        kind, legs = self._legs(body.get("legs"))
        plan = CallPlan(call_id, agent_id, language, None if ring_s is None else float(ring_s),
                        kind, created_s=self.clock())
        self.tap.plan(plan)
        try:
            self._expect(call_id, kind, legs)
        except Exception:
            self.tap.forget(call_id)
            self._forget_legs(call_id)
            raise
        log.info("call announced", extra={"fields": {"call": call_id, "legs": kind}})
        answer = {**self._announced(plan), "legs": legs}
        return web.json_response({"call": answer}, status=201,
                                 headers={"Location": f"/api/calls/{call_id}"})

    async def list_calls(self, request: web.Request) -> web.Response:
        now_s = self.clock()
        calls = [{**c, "state": "live"} for c in self.tap.live(now_s)]
        calls += [self._announced(p, now_s) for p in self.tap.plans.values()]
        return web.json_response({"calls": calls})

    async def get_call(self, request: web.Request) -> web.Response:
        call_id = _path_id(request)
        if self.tap.is_open(call_id):
            [call] = [c for c in self.tap.live(self.clock()) if c["call_id"] == call_id]
            return web.json_response({"call": {**call, "state": "live"}})
        plan = self.tap.plans.get(call_id)
        if plan is None:
            raise _unknown(call_id)
        return web.json_response({"call": self._announced(plan, self.clock())})

    async def end_call(self, request: web.Request) -> web.Response:
        call_id = _path_id(request)
        if self.tap.is_open(call_id):
            self.tap.end(call_id, "api")
            state = "ended"
        elif self.tap.forget(call_id):
            state = "forgotten"
        else:
            raise _unknown(call_id)
        self._forget_legs(call_id)
        log.info("call %s through the control API", state, extra={"fields": {"call": call_id}})
        return web.json_response({"call": {"call_id": call_id, "state": state}})

    async def hold(self, request: web.Request) -> web.Response:
        call_id = _path_id(request)
        body = await read_json(request)
        _only(body, frozenset({"action"}))
        action = body.get("action")
        if action not in ("start", "end"):
            raise _bad(f"action {shown(action, 40)}: start or end")
        self._started(call_id)
        self.tap.mark(call_id, f"hold_{action}")
        return web.json_response({"call": {"call_id": call_id, "on_hold": action == "start"}})

    async def hangup(self, request: web.Request) -> web.Response:
        call_id = _path_id(request)
        body = await read_json(request)
        _only(body, frozenset({"party"}))
        party = body.get("party")
        if party not in PARTIES:
            raise _bad(f"party {shown(party, 40)}: agent or customer")
        self._started(call_id)
        self.tap.hung_up(call_id, party)
        return web.json_response({"call": {"call_id": call_id, "hung_up": party}})

    # -- helpers -------------------------------------------------------------------------
    def _started(self, call_id: str) -> None:
        if self.tap.is_open(call_id):
            return
        if call_id in self.tap.plans:
            raise ApplianceError(CALL_NOT_STARTED, f"call {call_id!r} is announced but its "
                                 "audio has not come yet")
        raise _unknown(call_id)

    def _announced(self, plan: CallPlan, now_s: float | None = None) -> dict[str, Any]:
        out = {"call_id": plan.call_id, "agent_id": plan.agent_id, "language": plan.language,
               "ring_s": plan.ring_s, "source": plan.source, "state": "announced"}
        if now_s is not None:
            out["waiting_s"] = round(max(0.0, now_s - plan.created_s), 1)
        return out

    def _legs(self, legs: object) -> tuple[str | None, dict[str, Any]]:
        """The legs, checked: their kind (one for both) and each party's spec."""
        if legs is None:
            return None, {}
        if not isinstance(legs, dict) or not legs or set(legs) - set(PARTIES):
            raise _bad("legs: an object with agent and/or customer")
        out: dict[str, Any] = {}
        kinds = set()
        for party, spec in legs.items():
            if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in _LEG_KINDS:
                raise _bad(f"legs.{party}: {{\"audiosocket\": \"<uuid>\"}} or "
                           "{\"rtp\": {\"port\": …, \"ssrc\": …}}")
            [(kind, value)] = spec.items()
            kinds.add(kind)
            out[party] = {kind: self._leg(f"legs.{party}.{kind}", kind, value)}
        if len(kinds) > 1:
            raise _bad("legs: both legs of a call come the same way (audiosocket or rtp)")
        kind = kinds.pop()
        if len(out) == 2 and _same_leg(out["agent"][kind], out["customer"][kind]):
            raise _bad(f"legs: the two legs cannot be told apart ({kind})")
        if self.listeners[kind] is None:
            raise ApplianceError(TAP_NOT_ENABLED, f"{kind} legs: the {kind} listener is not "
                                 f"enabled ([tap.{kind}] enabled)")
        return kind, out

    @staticmethod
    def _leg(where: str, kind: str, value: object) -> Any:
        if kind == "audiosocket":
            try:
                if not isinstance(value, str) or len(value) > 64:
                    raise ValueError
                return str(uuid.UUID(value))
            except ValueError:
                raise _bad(f"{where} {shown(value, 60)}: a UUID") from None
        if not isinstance(value, dict) or set(value) - {"port", "ssrc"}:
            raise _bad(f"{where}: {{\"port\": 1..65535, \"ssrc\": 0..4294967295}}")
        ssrc = value.get("ssrc")
        return {"port": _int(value.get("port"), f"{where}.port", 1, 65535),
                "ssrc": None if ssrc is None else _int(ssrc, f"{where}.ssrc", 0, 2**32 - 1)}

    def _expect(self, call_id: str, kind: str | None, legs: dict[str, Any]) -> None:
        if kind == "audiosocket":
            self.listeners["audiosocket"].expect(
                call_id, agent_uuid=legs.get("agent", {}).get(kind),
                customer_uuid=legs.get("customer", {}).get(kind))
        elif kind == "rtp":
            for party, spec in legs.items():
                rtp: dict[str, Any] = spec[kind]
                self.listeners["rtp"].expect(call_id, _party(party), port=rtp["port"],
                                             ssrc=rtp["ssrc"])

    def _forget_legs(self, call_id: str) -> None:
        for listener in self.listeners.values():
            if listener is not None:
                listener.forget(call_id)


def _same_leg(a: Any, b: Any) -> bool:
    """Two legs a listener could not tell apart: one UUID, or one port with an SSRC
    missing on either (any SSRC) or the same on both."""
    if isinstance(a, str):
        return bool(a == b)
    return bool(a["port"] == b["port"] and (None in (a["ssrc"], b["ssrc"])
                                            or a["ssrc"] == b["ssrc"]))


def _party(value: str) -> Party:
    return "agent" if value == "agent" else "customer"


def _path_id(request: web.Request) -> str:
    call_id = request.match_info["call_id"]
    if not CALL_ID.fullmatch(call_id):
        raise _bad(f"call id {shown(call_id, 60)}: letters, digits and ._:@- (at most 128)")
    return call_id


def _unknown(call_id: str) -> ApplianceError:
    return ApplianceError(CALL_UNKNOWN, f"no call {call_id!r}, live or announced")
