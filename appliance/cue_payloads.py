"""What each cue carries: one frozen payload class per cue kind (:data:`CuePayload`).

Field names carry units (``start_s``, ``overlap_s``, ``level_db``); :meth:`to_json` writes
the keys of the JSONL contract (``data.start``, ``data.end`` for intervals...), which never
change: a field's JSON key is in its metadata when it differs from the field's name, and an
optional field (``None``) is left out of the line rather than written as ``null``.
:meth:`from_json` reads the ``data`` of a line back and refuses a key the class does not
know, so a round trip loses nothing.

A payload's ``kind`` is a class constant, and a :class:`~appliance.events.Cue` takes its
kind from its payload: a cue whose kind and payload disagree cannot be built.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

if TYPE_CHECKING:
    from appliance.events import CueKind, Party


def _key(json_key: str, *, optional: bool = False) -> dict[str, Any]:
    """A field's metadata: written under another JSON key than its name (``start_s`` ->
    ``start``), and/or ``optional``: left out of the JSON line while it is None."""
    meta: dict[str, Any] = {"json": json_key} if json_key else {}
    if optional:
        meta["optional"] = True
    return meta


_START, _END, _OPTIONAL = _key("start"), _key("end"), _key("", optional=True)


def _plain(v: Any) -> Any:
    """Tuples as JSON lists, mappings copied (the payload stays unshared)."""
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    return v


def _frozen(v: Any) -> Any:
    """JSON lists back as tuples (the payload's sequences are immutable)."""
    if isinstance(v, list):
        return tuple(_frozen(x) for x in v)
    if isinstance(v, Mapping):
        return dict(v)
    return v


@dataclass(frozen=True, slots=True)
class _Payload:
    """What every payload shares: its cue kind, and the way to and from JSON."""

    kind: ClassVar[CueKind]

    def to_json(self) -> dict[str, Any]:
        """The ``data`` object of the cue's JSONL line."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None and f.metadata.get("optional"):
                continue
            out[f.metadata.get("json", f.name)] = _plain(v)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """The payload a line's ``data`` describes; ValueError for a key missing or unknown."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{cls.kind}: data is not an object")
        kw: dict[str, Any] = {}
        for f in fields(cls):
            key = f.metadata.get("json", f.name)
            if key in data:
                kw[f.name] = _frozen(data[key])
            elif not f.metadata.get("optional"):
                raise ValueError(f"{cls.kind}: data has no {key!r}")
        unknown = set(data) - {f.metadata.get("json", f.name) for f in fields(cls)}
        if unknown:
            raise ValueError(f"{cls.kind}: unknown data keys {sorted(unknown)}")
        return cls(**kw)


# -- acoustic cues ----------------------------------------------------------------------------
RateState = Literal["fast", "slow", "ok"]
ToneState = Literal["raised", "agitated", "monotone"]


@dataclass(frozen=True, slots=True)
class Interruption(_Payload):
    """``start_s``: the interrupter's onset; ``overlap_s``: how long both were heard."""

    kind: ClassVar[Literal["interruption"]] = "interruption"
    start_s: float = field(metadata=_START)
    overlap_s: float
    interrupted: Party


@dataclass(frozen=True, slots=True)
class SpeakingRate(_Payload):
    """The agent's articulation rate over the window, its band, and the state it is in
    (``fast``, ``slow``, ``ok``); ``wpm`` once words are recognised."""

    kind: ClassVar[Literal["speaking_rate"]] = "speaking_rate"
    syllables_per_s: float
    window_speech_s: float
    band_syllables_per_s: tuple[float, float] = field(metadata=_key("band"))
    state: RateState
    wpm: int | None = field(default=None, metadata=_OPTIONAL)


@dataclass(frozen=True, slots=True)
class Tone(_Payload):
    """``raised`` (agent) / ``agitated`` (customer): since ``start_s``, the level
    ``level_db`` over the speaker's baseline and the pitch ``pitch_st`` semitones above it;
    ``monotone``: the agent's pitch spread, ``pitch_spread_st`` semitones."""

    kind: ClassVar[Literal["tone"]] = "tone"
    state: ToneState
    start_s: float | None = field(default=None, metadata=_key("start", optional=True))
    level_db: float | None = field(default=None, metadata=_OPTIONAL)
    pitch_st: float | None = field(default=None, metadata=_OPTIONAL)
    pitch_spread_st: float | None = field(default=None, metadata=_OPTIONAL)


@dataclass(frozen=True, slots=True)
class DeadAir(_Payload):
    kind: ClassVar[Literal["dead_air"]] = "dead_air"
    start_s: float = field(metadata=_START)
    silent_s: float


@dataclass(frozen=True, slots=True)
class TalkRatio(_Payload):
    """``share``: the agent's share (0..1) of the talk time over the last ``window_s``."""

    kind: ClassVar[Literal["talk_ratio"]] = "talk_ratio"
    share: float
    window_s: float


@dataclass(frozen=True, slots=True)
class Filler(_Payload):
    """Agent fillers in the last ``window_s``: ``count`` of them, ``per_min`` per minute of
    ``speech_s`` seconds of speech; ``words``: count per token (``acoustic`` for the filled
    pauses the detector heard)."""

    kind: ClassVar[Literal["filler"]] = "filler"
    count: int
    per_min: float
    threshold_per_min: float
    window_s: float
    speech_s: float
    words: Mapping[str, int]


# -- holds ------------------------------------------------------------------------------------
HoldVia = Literal["music", "marks", "marks+music", "phrase"]
HoldType = Literal["music", "muted", "unmuted"]


@dataclass(frozen=True, slots=True)
class HoldStarted(_Payload):
    kind: ClassVar[Literal["hold_started"]] = "hold_started"
    start_s: float = field(metadata=_START)
    via: HoldVia


@dataclass(frozen=True, slots=True)
class HoldEnded(_Payload):
    """The hold's record (also listed in the summary's ``holds``): its type, how it was
    known, the leaks ((start, end) in seconds), whether the mic was open, and whether it
    was still running when the call ended."""

    kind: ClassVar[Literal["hold_ended"]] = "hold_ended"
    start_s: float = field(metadata=_START)
    end_s: float = field(metadata=_END)
    duration_s: float
    hold_type: HoldType = field(metadata=_key("type"))
    via: HoldVia
    leak_spans_s: tuple[tuple[float, float], ...] = field(metadata=_key("leaks"))
    open_mic: bool
    open_at_end: bool


@dataclass(frozen=True, slots=True)
class HoldLeak(_Payload):
    kind: ClassVar[Literal["hold_leak"]] = "hold_leak"
    start_s: float = field(metadata=_START)
    end_s: float = field(metadata=_END)


@dataclass(frozen=True, slots=True)
class HoldUnmuted(_Payload):
    kind: ClassVar[Literal["hold_unmuted"]] = "hold_unmuted"
    start_s: float = field(metadata=_START)
    end_s: float = field(metadata=_END)


@dataclass(frozen=True, slots=True)
class HoldCheckBack(_Payload):
    kind: ClassVar[Literal["hold_check_back"]] = "hold_check_back"
    start_s: float = field(metadata=_START)
    held_s: float


@dataclass(frozen=True, slots=True)
class HoldTooLong(_Payload):
    kind: ClassVar[Literal["hold_too_long"]] = "hold_too_long"
    start_s: float = field(metadata=_START)
    held_s: float


# -- word cues --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Greeting(_Payload):
    """The greeting checklist (``company`` None when no company is configured); ``missing``
    names what was not said, and is left out of a complete greeting."""

    kind: ClassVar[Literal["greeting"]] = "greeting"
    name: bool
    company: bool | None
    offer: bool
    missing: tuple[str, ...] | None = field(default=None, metadata=_OPTIONAL)


@dataclass(frozen=True, slots=True)
class HoldNoPermission(_Payload):
    kind: ClassVar[Literal["hold_no_permission"]] = "hold_no_permission"
    start_s: float = field(metadata=_START)
    asked: bool
    answered: bool


@dataclass(frozen=True, slots=True)
class HoldNoThanks(_Payload):
    kind: ClassVar[Literal["hold_no_thanks"]] = "hold_no_thanks"
    start_s: float = field(metadata=_START)
    end_s: float = field(metadata=_END)


@dataclass(frozen=True, slots=True)
class Closing(_Payload):
    """Whether « anything else? » (``question``) and a thank-you closed the call."""

    kind: ClassVar[Literal["closing"]] = "closing"
    question: bool
    thanks: bool


@dataclass(frozen=True, slots=True)
class Restated(_Payload):
    kind: ClassVar[Literal["restated"]] = "restated"
    start_s: float = field(metadata=_START)


@dataclass(frozen=True, slots=True)
class FollowUp(_Payload):
    kind: ClassVar[Literal["follow_up"]] = "follow_up"
    start_s: float = field(metadata=_START)


@dataclass(frozen=True, slots=True)
class Jargon(_Payload):
    kind: ClassVar[Literal["jargon"]] = "jargon"
    term: str
    start_s: float = field(metadata=_START)


@dataclass(frozen=True, slots=True)
class AnswerDelay(_Payload):
    kind: ClassVar[Literal["answer_delay"]] = "answer_delay"
    ring_s: float
    """Seconds from the first ring to the answer (from the PBX's signalling)."""
    limit_s: float


@dataclass(frozen=True, slots=True)
class HungUpFirst(_Payload):
    kind: ClassVar[Literal["hung_up_first"]] = "hung_up_first"
    agent_end_s: float
    """Call time at which the agent's leg ended."""
    customer_end_s: float | None = field(default=None, metadata=_OPTIONAL)
    """Call time at which the customer's leg ended (absent when the PBX named who hung up
    instead)."""


CuePayload = (AnswerDelay | Closing | DeadAir | Filler | FollowUp | Greeting | HoldCheckBack
              | HoldEnded | HoldLeak | HoldNoPermission | HoldNoThanks | HoldStarted
              | HoldTooLong | HoldUnmuted | HungUpFirst | Interruption | Jargon | Restated
              | SpeakingRate | TalkRatio | Tone)
"""Every cue's payload: one class per :data:`~appliance.events.CueKind`."""

PAYLOAD_CLASSES: tuple[type[CuePayload], ...] = typing.get_args(CuePayload)
PAYLOAD_OF_KIND: dict[CueKind, type[CuePayload]] = {c.kind: c for c in PAYLOAD_CLASSES}
"""The payload class of each cue kind (tests check that every kind has exactly one)."""
