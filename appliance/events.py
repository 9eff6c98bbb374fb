"""Events that leave a call: its start and end, cues, transcripts (opt-in), errors and the
call summary.

Events are frozen, slotted dataclasses with a stable ``kind``; every one names its call
(``call_id``).  Field names carry units.  Audio never travels in an event.  :data:`Event` is
the closed set; each serialises with ``to_json()`` to one line of the JSONL contract:
``{"t", "kind", "party", "severity", "message", "data", "call_id"}``.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from appliance.cue_payloads import PAYLOAD_OF_KIND, CuePayload

Party = Literal["agent", "customer"]
Severity = Literal["info", "warn", "alert"]
PARTIES: tuple[Party, Party] = ("agent", "customer")
CueKind = Literal[
    "closing", "dead_air", "filler", "follow_up", "greeting", "hold_check_back", "hold_ended",
    "hold_leak", "hold_no_permission", "hold_no_thanks", "hold_started", "hold_too_long",
    "hold_unmuted", "interruption", "jargon", "restated", "speaking_rate", "talk_ratio", "tone",
    # added later: appended, so the CSV export's cue columns only grow at the end
    "answer_delay", "hung_up_first",
]
"""Every cue the engine emits: a closed set (a new rule adds its kind at the end)."""
CUE_KINDS: tuple[CueKind, ...] = typing.get_args(CueKind)
EndReason = Literal["end_key", "api", "source_closed", "idle", "service_stop", "error"]
"""Why a call ended: the dashboard's End key, the control API, the source closed (end of a
file, a PBX stream that hung up), the line went idle, the service stopped, or a failure."""
END_REASONS: tuple[EndReason, ...] = ("end_key", "api", "source_closed", "idle",
                                      "service_stop", "error")


def _line(t_s: float | None, kind: str, party: Party | None, severity: Severity, message: str,
          data: dict[str, Any], call_id: str) -> dict[str, Any]:
    return {"t": None if t_s is None else round(t_s, 3), "kind": kind, "party": party,
            "severity": severity, "message": message, "data": data, "call_id": call_id}


@dataclass(frozen=True, slots=True)
class Cue:
    """One etiquette cue, emitted while the call is running.

    ``t_s`` is the audio time (seconds since the start of the call) at which the cue was
    emitted, i.e. how much audio the engine had seen.  ``data`` is the cue's typed payload
    (:mod:`appliance.cue_payloads`), and ``kind``, the rule's name (``interruption``,
    ``hold_leak``...), is its payload's: the two cannot disagree.  Interval cues carry
    ``start_s`` (and ``end_s``) in seconds of audio, ``data.start`` / ``data.end`` in JSON.
    """

    t_s: float
    party: Party | None
    severity: Severity
    message: str
    data: CuePayload
    call_id: str = ""
    """Set by the engine that emits the cue (rules build cues without it)."""

    @property
    def kind(self) -> CueKind:
        return self.data.kind

    def to_json(self) -> dict[str, Any]:
        return _line(self.t_s, self.kind, self.party, self.severity, self.message,
                     self.data.to_json(), self.call_id)


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """A failure at the boundary, with the stable code of :mod:`appliance.errors`."""

    t_s: float | None
    code: str
    message: str
    call_id: str = ""
    kind: str = "error"

    def to_json(self) -> dict[str, Any]:
        return _line(self.t_s, self.kind, None, "alert", self.message, {"code": self.code},
                     self.call_id)


@dataclass(frozen=True, slots=True)
class Summary:
    """The call summary: the same events, counted, for the supervisor."""

    t_s: float
    data: dict[str, Any]
    call_id: str = ""
    kind: str = "summary"

    def to_json(self) -> dict[str, Any]:
        return _line(self.t_s, self.kind, None, "info", "call summary", self.data, self.call_id)


@dataclass(frozen=True, slots=True)
class CallStarted:
    """A call begins (audio time 0 of the call)."""

    call_id: str
    language: str
    agent_id: str | None = None
    source: str = ""
    """Where the audio comes from: ``file``, ``headset``, ``replay``, a PBX stream..."""
    started_at: str = ""
    """Wall-clock start, UTC ISO 8601 (empty for a file)."""
    t_s: float = 0.0
    kind: str = "call_started"

    def to_json(self) -> dict[str, Any]:
        return _line(self.t_s, self.kind, None, "info", "call started",
                     {"language": self.language, "agent_id": self.agent_id,
                      "source": self.source, "started_at": self.started_at}, self.call_id)


@dataclass(frozen=True, slots=True)
class CallEnded:
    """A call ends (``t_s``: its length in seconds of audio), with the reason."""

    call_id: str
    t_s: float
    reason: EndReason
    ended_at: str = ""
    """Wall-clock end, UTC ISO 8601 (empty for a file)."""
    kind: str = "call_ended"

    def to_json(self) -> dict[str, Any]:
        return _line(self.t_s, self.kind, None, "info", "call ended",
                     {"reason": self.reason, "duration_s": round(self.t_s, 2),
                      "ended_at": self.ended_at}, self.call_id)


@dataclass(frozen=True, slots=True)
class WordEvent:
    """A recognised word at the recognizer seam (the word-based cues plug in here).

    Times are seconds of call audio.  ``conf`` is the recognizer's confidence, 0..1.
    """

    party: Party
    word: str
    start_s: float
    end_s: float
    conf: float = 1.0
    kind: str = "word"


@dataclass(frozen=True, slots=True)
class TranscriptEvent:
    """A final recognition result, emitted only when the site asked for transcripts.

    Digit runs (card, account, phone numbers) are masked in :meth:`to_json`.
    """

    t_s: float
    party: Party
    text: str
    start_s: float
    end_s: float
    call_id: str = ""
    kind: str = "transcript"

    def to_json(self) -> dict[str, Any]:
        from appliance.privacy import mask_digit_runs

        return _line(self.t_s, self.kind, self.party, "info", "transcript",
                     {"text": mask_digit_runs(self.text), "start": round(self.start_s, 3),
                      "end": round(self.end_s, 3)}, self.call_id)


Event = CallStarted | Cue | TranscriptEvent | ErrorEvent | CallEnded | Summary
"""Every event a call emits, and nothing else (word events stay at the recognizer seam)."""


def event_from_json(line: Mapping[str, Any]) -> Event:
    """The event a JSONL line (``to_json()``) describes: for tools that read the output back,
    and the round-trip tests.  Raises ValueError for a line that is no event of the set."""
    try:
        kind, t, data, call_id = line["kind"], line["t"], line["data"], line.get("call_id", "")
        if kind == "call_started":
            return CallStarted(call_id, data["language"], agent_id=data.get("agent_id"),
                               source=data.get("source", ""),
                               started_at=data.get("started_at", ""), t_s=t)
        if kind == "call_ended":
            if data["reason"] not in END_REASONS:
                raise ValueError(f"unknown end reason {data['reason']!r}")
            return CallEnded(call_id, t, data["reason"], ended_at=data.get("ended_at", ""))
        if kind == "summary":
            return Summary(t, dict(data), call_id=call_id)
        if kind == "error":
            return ErrorEvent(t, data["code"], line["message"], call_id=call_id)
        if kind == "transcript":
            return TranscriptEvent(t, line["party"], data["text"], data["start"], data["end"],
                                   call_id=call_id)
        if kind in PAYLOAD_OF_KIND:
            if line["severity"] not in ("info", "warn", "alert"):
                raise ValueError(f"unknown severity {line['severity']!r}")
            if line["party"] not in (None, *PARTIES):
                raise ValueError(f"unknown party {line['party']!r}")
            return Cue(t, line["party"], line["severity"], line["message"],
                       PAYLOAD_OF_KIND[kind].from_json(data), call_id=call_id)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not an event line: {exc}") from exc
    raise ValueError(f"unknown event kind {kind!r}")


def iso_utc(t: datetime) -> str:
    """``2026-11-01T09:30:00.000Z``: the wall-clock times of events and the store, fixed
    width, so text order is time order."""
    if t.tzinfo is None:
        raise ValueError("a timezone-aware datetime is required (e.g. datetime.now(UTC))")
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
