"""The fleet's message contract: what a box publishes to the site's MQTT broker, and what the
supervisor console reads back.

Topics, under a box's prefix ``P`` (default ``coach/<site>/<box>``):

* ``P/status`` (retained): ``online`` when the box connects, ``offline`` as its last will
  or when it stops;
* ``P/call/<call_id>/event``: ``new`` (the call started), ``update`` (one cue: kind, party,
  severity, time) and ``end`` (the call's figures);
* ``P/stats``: every minute, the box's health, drops, open calls and cue counts.

Every payload is one JSON object with ``schema`` (:data:`SCHEMA_VERSION`), a unique ``id``
(the console's idempotency key: a message resent after a reconnect is stored once), the
``box`` and ``site`` it comes from, and ``at``, the box's wall clock (UTC ISO 8601).

**Never words, never audio.**  A cue travels as its kind, party, severity and call time,
never its message (a jargon or filler cue's message quotes the agent).  The end of a call
carries :func:`fleet_summary`, a projection of the summary onto counts, seconds and flags;
:func:`assert_no_text` checks that no free text slipped into a payload.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from appliance.events import CUE_KINDS, END_REASONS, PARTIES, Cue

SCHEMA_VERSION = 1
"""Bumped only for a change a console of the previous version would misread; fields are
added without a bump (readers ignore unknown keys)."""
MAX_PAYLOAD_BYTES = 64 * 1024
"""A payload longer than this is refused on both sides (a summary is ~1-2 KiB)."""

EventType = Literal["new", "update", "end"]
EVENT_TYPES: tuple[EventType, ...] = ("new", "update", "end")
StatusState = Literal["online", "offline"]

_SEVERITIES = ("info", "warn", "alert")
_LANG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz-_")
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:@")
MAX_ID_CHARS = 128


def new_message_id() -> str:
    """A unique message id (random, 32 hex digits)."""
    return uuid.uuid4().hex


def valid_name(value: object) -> bool:
    """A box, site, agent or call id that may appear in a topic and a payload: 1-128 of
    ``[A-Za-z0-9-_.:@]`` (no ``/``, ``+``, ``#``, spaces or text)."""
    return (isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS
            and all(c in _ID_CHARS for c in value))


def topic_prefix(site: str, box: str, template: str = "coach/{site}/{box}") -> str:
    """The box's topic prefix, from the configured template."""
    return template.format(site=site, box=box).rstrip("/")


def status_topic(prefix: str) -> str:
    return f"{prefix}/status"


def stats_topic(prefix: str) -> str:
    return f"{prefix}/stats"


def call_topic(prefix: str, call_id: str) -> str:
    return f"{prefix}/call/{call_id}/event"


# -- payloads ---------------------------------------------------------------------------------
def _envelope(box: str, site: str, at: str, msg_id: str | None) -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION, "id": msg_id or new_message_id(), "box": box,
            "site": site, "at": at}


def status_payload(box: str, site: str, state: StatusState, at: str, *,
                   version: str = "", msg_id: str | None = None) -> dict[str, Any]:
    return {**_envelope(box, site, at, msg_id), "state": state, "version": version}


def call_new_payload(box: str, site: str, at: str, call_id: str, *, agent_id: str | None,
                     language: str, source: str, started_at: str,
                     msg_id: str | None = None) -> dict[str, Any]:
    return {**_envelope(box, site, at, msg_id), "call_id": call_id, "type": "new",
            "agent_id": agent_id, "language": language, "source": source,
            "started_at": started_at}


def call_update_payload(box: str, site: str, at: str, cue: Cue, *,
                        msg_id: str | None = None) -> dict[str, Any]:
    """One cue: its kind, party, severity and call time only (never its message)."""
    return cue_update_payload(box, site, at, cue.call_id, kind=cue.kind, party=cue.party,
                              severity=cue.severity, t_s=cue.t_s, msg_id=msg_id)


def cue_update_payload(box: str, site: str, at: str, call_id: str, *, kind: str,
                       party: str | None, severity: str, t_s: float,
                       msg_id: str | None = None) -> dict[str, Any]:
    """:func:`call_update_payload` from the cue's fields (the benchmark's boxes)."""
    return {**_envelope(box, site, at, msg_id), "call_id": call_id, "type": "update",
            "cue": {"kind": kind, "party": party, "severity": severity,
                    "t_s": round(t_s, 3)}}


def call_end_payload(box: str, site: str, at: str, call_id: str, *, reason: str,
                     ended_at: str, summary: Mapping[str, Any],
                     msg_id: str | None = None) -> dict[str, Any]:
    """The end of a call with :func:`fleet_summary` of its summary."""
    return {**_envelope(box, site, at, msg_id), "call_id": call_id, "type": "end",
            "reason": reason, "ended_at": ended_at, "summary": fleet_summary(summary)}


def stats_payload(box: str, site: str, at: str, *, healthy: bool, problems: list[str],
                  calls_open: int, cues: Mapping[str, int], drops: Mapping[str, int],
                  outbox_pending: int, outbox_evicted: int,
                  msg_id: str | None = None) -> dict[str, Any]:
    """The box's minute: health (``problems`` are the health check's stable codes), open
    calls, cue counts since start, drop counters and the outbox."""
    return {**_envelope(box, site, at, msg_id), "healthy": healthy,
            "problems": list(problems), "calls_open": calls_open,
            "cues": {k: int(v) for k, v in sorted(cues.items())},
            "drops": {k: int(v) for k, v in sorted(drops.items())},
            "outbox": {"pending": outbox_pending, "evicted": outbox_evicted}}


def encode(payload: Mapping[str, Any]) -> bytes:
    """The wire form: compact UTF-8 JSON, finite numbers only."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


# -- the summary's projection -----------------------------------------------------------------
def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return round(float(v), 3)


def _int(v: Any) -> int:
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else 0


def _parties(d: Any, key: str | None = None) -> dict[str, float | None]:
    d = d if isinstance(d, Mapping) else {}
    return {p: _num(d.get(p) if key is None else (d.get(p) or {}).get(key)) for p in PARTIES}


def _flags(d: Any, keys: tuple[str, ...]) -> dict[str, bool | None] | None:
    if not isinstance(d, Mapping):
        return None
    out = {k: d.get(k) if isinstance(d.get(k), bool) else None for k in keys}
    return {**out, "done": all(v is not False for v in out.values())}


def _counts(d: Any, keys: tuple[str, ...]) -> dict[str, int] | None:
    return {k: _int(d.get(k)) for k in keys} if isinstance(d, Mapping) else None


def fleet_summary(s: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of a call summary that leave the box: counts, seconds, rates and flags.

    Dropped on purpose: the filler words said (``fillers.words``), jargon terms, follow-up
    and dead-air interval lists, and everything else that is not a number or a flag.  A
    crashed worker's summary (``incomplete``) has only duration, language and cue counts."""
    holds = [h for h in s.get("holds") or [] if isinstance(h, Mapping)]
    hold_s = [_num(h.get("duration_s")) or 0.0 for h in holds]
    dead: Mapping[str, Any] = s["dead_air"] if isinstance(s.get("dead_air"), Mapping) else {}
    dead_iv = [iv for iv in dead.get("intervals") or [] if isinstance(iv, list | tuple)
               and len(iv) == 2 and all(_num(x) is not None for x in iv)]
    fillers: Mapping[str, Any] = (s["fillers"] if isinstance(s.get("fillers"), Mapping)
                                  else {})
    lang = s.get("language")
    out: dict[str, Any] = {
        "duration_s": _num(s.get("duration_s")),
        "language": lang if isinstance(lang, str) and set(lang) <= _LANG_CHARS else None,
        "incomplete": bool(s.get("incomplete", False)),
        "interruptions": {p: _int((s.get("interruptions") or {}).get(p)) for p in PARTIES},
        "overlap_s": _num(s.get("overlap_s")),
        "talk_s": _parties(s.get("talk_s")),
        "agent_share": _num(s.get("agent_share")),
        "dead_air": {"count": _int(dead.get("count")),
                     "total_s": round(sum(float(b) - float(a) for a, b in dead_iv), 3)},
        "fillers": {"agent": _int(fillers.get("agent")), "customer": _int(fillers.get("customer")),
                    "per_min": _parties(fillers.get("per_min"))},
        "wpm": _parties(s.get("wpm")),
        "holds": {"count": len(holds), "total_s": round(sum(hold_s), 3),
                  "over_60s": sum(1 for d in hold_s if d > 60.0),
                  "longest_s": round(max(hold_s, default=0.0), 3),
                  "leaks": sum(len(h.get("leaks") or []) for h in holds)},
        "greeting": _flags(s.get("greeting"), ("name", "company", "offer")),
        "closing": _flags(s.get("closing"), ("question", "thanks")),
        "hold_permission": _counts(s.get("hold_permission"), (
            "holds", "ok", "answered_yes", "no_answer", "not_asked", "unknown")),
        "hold_thanks": _counts(s.get("hold_thanks"), ("holds", "ok", "missing", "unknown")),
        "restated": _int(s.get("restated")),
        "follow_ups": len(s.get("follow_up") or []),
        "jargon": sum(_int(v) for v in (s.get("jargon") or {}).values())
        if isinstance(s.get("jargon"), Mapping) else 0,
        "cues": {k: _int(v) for k, v in sorted((s.get("cues") or {}).items())
                 if k in CUE_KINDS},
    }
    cc = s.get("call_control")
    if isinstance(cc, Mapping):
        by = cc.get("hung_up_by")
        out["call_control"] = {
            "ring_s": _num(cc.get("ring_s")),
            "answer_delay": cc.get("answer_delay") if isinstance(cc.get("answer_delay"), bool)
            else None,
            "hung_up_by": by if by in (*PARTIES, None) else None,
            "hung_up_first": cc.get("hung_up_first")
            if isinstance(cc.get("hung_up_first"), bool) else None}
    return out


# -- checking what goes out, and what comes in ------------------------------------------------
_ENUM_STRINGS = frozenset({*CUE_KINDS, *PARTIES, *_SEVERITIES, *EVENT_TYPES, *END_REASONS,
                           "online", "offline"})
_FREE_STRING_KEYS = frozenset({"id", "box", "site", "at", "call_id", "agent_id", "language",
                               "source", "started_at", "ended_at", "version", "problems"})
"""Keys whose string values are identifiers, timestamps or stable codes, never speech."""


def assert_no_text(payload: Any, key: str = "") -> None:
    """Raise ValueError if a payload holds a string that is neither an identifier under a
    known key nor one of the contract's enumerations: free text (what someone said) can
    never ride along.  Cue kinds appear as dictionary keys (counts) and are checked too."""
    if isinstance(payload, Mapping):
        for k, v in payload.items():
            if not isinstance(k, str) or not (k in _ENUM_STRINGS or k.isidentifier()):
                raise ValueError(f"unexpected key {k!r} in a fleet payload")
            assert_no_text(v, k)
    elif isinstance(payload, list | tuple):
        for v in payload:
            assert_no_text(v, key)
    elif isinstance(payload, str):
        if key in _FREE_STRING_KEYS:
            if len(payload) > 200:
                raise ValueError(f"{key} is too long for an identifier")
            return
        if payload not in _ENUM_STRINGS:
            raise ValueError(f"free text under {key!r} in a fleet payload")


class BadMessage(ValueError):
    """A message the console cannot use (it is counted and dropped, never fatal)."""


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed fleet topic: the box prefix's last two levels, and what follows."""

    site: str
    box: str
    kind: Literal["status", "stats", "call"]
    call_id: str | None = None


def parse_topic(topic: str) -> Topic:
    """``…/<site>/<box>/status|stats`` or ``…/<site>/<box>/call/<call_id>/event``."""
    parts = topic.split("/")
    if len(parts) >= 3 and parts[-1] in ("status", "stats"):
        site, box = parts[-3], parts[-2]
        kind: Literal["status", "stats", "call"] = (
            "status" if parts[-1] == "status" else "stats")
        call_id = None
    elif len(parts) >= 5 and parts[-1] == "event" and parts[-3] == "call":
        site, box, kind, call_id = parts[-5], parts[-4], "call", parts[-2]
    else:
        raise BadMessage(f"not a fleet topic: {topic[:120]!r}")
    if not all(valid_name(x) for x in (site, box, call_id or "x")):
        raise BadMessage(f"bad name in topic {topic[:120]!r}")
    return Topic(site, box, kind, call_id)


def decode(topic: str, raw: bytes) -> tuple[Topic, dict[str, Any]]:
    """Parse and check a message as the console receives it: size, JSON, schema, envelope,
    and that the payload's box, site and call agree with its topic (the broker's ACL makes
    the topic the sender's identity).  Raises :class:`BadMessage`."""
    t = parse_topic(topic)
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise BadMessage(f"payload of {len(raw)} bytes")
    try:
        p = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadMessage(f"not JSON: {exc}") from None
    if not isinstance(p, dict):
        raise BadMessage("payload is not an object")
    if not isinstance(p.get("schema"), int) or p["schema"] > SCHEMA_VERSION:
        raise BadMessage(f"unknown schema {p.get('schema')!r}")
    if not valid_name(p.get("id")) or not isinstance(p.get("at"), str):
        raise BadMessage("missing id or at")
    if p.get("box") != t.box or p.get("site") != t.site:
        raise BadMessage("payload's box/site differ from its topic")
    if t.kind == "status" and p.get("state") not in ("online", "offline"):
        raise BadMessage(f"bad status {p.get('state')!r}")
    if t.kind == "call":
        if p.get("call_id") != t.call_id or p.get("type") not in EVENT_TYPES:
            raise BadMessage("bad call event")
        if p["type"] == "update":
            cue = p.get("cue")
            if (not isinstance(cue, dict) or cue.get("kind") not in CUE_KINDS
                    or _num(cue.get("t_s")) is None):
                raise BadMessage("bad cue")
        if p["type"] == "end" and not isinstance(p.get("summary"), dict):
            raise BadMessage("end without summary")
    return t, p
