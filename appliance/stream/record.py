"""What is kept of a finished call, as handed from the call's stream to the archive."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One finished call, as handed to the archive."""

    call_id: str
    language: str
    started_at: datetime
    ended_at: datetime
    summary: dict[str, Any]
    """The summary event's JSON (cue counts and figures; never words)."""
    utterances: list[dict[str, Any]] = field(default_factory=list)
    """Transcript events' JSON (digits masked); empty unless retention is on."""
