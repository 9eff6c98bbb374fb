"""Events that leave the engine: cues, errors and the call summary.

Events are frozen, slotted dataclasses with a stable ``kind``.  Field names carry units.
Audio never travels in an event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Party = Literal["agent", "customer"]
Severity = Literal["info", "warn", "alert"]
PARTIES: tuple[Party, Party] = ("agent", "customer")


@dataclass(frozen=True, slots=True)
class Cue:
    """One etiquette cue, emitted while the call is running.

    ``t_s`` is the audio time (seconds since the start of the call) at which the cue was
    emitted, i.e. how much audio the engine had seen.  ``kind`` names the rule
    (``interruption``, ``hold_leak``...).  Interval cues carry ``data["start"]`` and
    ``data["end"]`` in seconds of audio.
    """

    t_s: float
    kind: str
    party: Party | None
    severity: Severity
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "t": round(self.t_s, 3),
            "kind": self.kind,
            "party": self.party,
            "severity": self.severity,
            "message": self.message,
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """A failure at the boundary, with the stable code of :mod:`appliance.errors`."""

    t_s: float | None
    code: str
    message: str
    kind: str = "error"

    def to_json(self) -> dict[str, Any]:
        return {
            "t": None if self.t_s is None else round(self.t_s, 3),
            "kind": self.kind,
            "party": None,
            "severity": "alert",
            "message": self.message,
            "data": {"code": self.code},
        }


@dataclass(frozen=True, slots=True)
class Summary:
    """The call summary: the same events, counted, for the supervisor."""

    t_s: float
    data: dict[str, Any]
    kind: str = "summary"

    def to_json(self) -> dict[str, Any]:
        return {
            "t": round(self.t_s, 3),
            "kind": self.kind,
            "party": None,
            "severity": "info",
            "message": "call summary",
            "data": self.data,
        }


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
    kind: str = "transcript"

    def to_json(self) -> dict[str, Any]:
        from appliance.privacy import mask_digit_runs

        return {
            "t": round(self.t_s, 3),
            "kind": self.kind,
            "party": self.party,
            "severity": "info",
            "message": "transcript",
            "data": {"text": mask_digit_runs(self.text), "start": round(self.start_s, 3),
                     "end": round(self.end_s, 3)},
        }
