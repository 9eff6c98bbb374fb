"""What is kept of a finished call, as handed from the call's stream to the archive, and
the subscriber that assembles it from the call's events."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from appliance.events import CallEnded, CallStarted, Event, Summary, TranscriptEvent


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
    agent_id: str | None = None
    """The agent's id, when the call's source named one (the PBX tap)."""
    source: str | None = None
    """Where the call came from (``call_started``'s source: ``file``, ``capture``,
    ``websocket``, ``audiosocket``, ``rtp``...)."""


class CallRecorder:
    """An event subscriber: for each call, its start, its transcripts (when the site keeps
    them) and its end, and at its summary one :class:`CallRecord` to ``record`` (the
    archive's).  A call's summary directly follows its ``call_ended``; a call that ends
    without one (nobody spoke) leaves nothing, and nothing is held for it."""

    def __init__(self, record: Callable[[CallRecord], None], *,
                 keep_transcripts: bool = False) -> None:
        self.record = record
        self.keep_transcripts = keep_transcripts
        self._calls: dict[str, _Open] = {}
        self._ended: dict[str, _Open] = {}
        """Calls whose ``call_ended`` came and whose summary has not (yet): insertion order,
        bounded by ``MAX_ENDED``."""

    MAX_ENDED = 64

    def __call__(self, ev: Event) -> None:
        if isinstance(ev, Summary):
            done = self._ended.pop(ev.call_id, None)
            if done is not None:
                end = done.ended_at or datetime.now(UTC)
                self.record(CallRecord(ev.call_id, str(ev.data.get("language", done.language)),
                                       done.started_at or end, end, ev.to_json(),
                                       done.utterances, done.agent_id, done.source))
            return
        if isinstance(ev, CallStarted):
            self._calls[ev.call_id] = _Open(_parse(ev.started_at), ev.language,
                                            agent_id=ev.agent_id or None,
                                            source=ev.source or None)
            return
        call = self._calls.get(ev.call_id)
        if call is None:
            return
        if isinstance(ev, TranscriptEvent) and self.keep_transcripts:
            call.utterances.append(ev.to_json())  # masked in to_json
        elif isinstance(ev, CallEnded):
            del self._calls[ev.call_id]
            call.ended_at = _parse(ev.ended_at) or datetime.now(UTC)
            self._ended[ev.call_id] = call
            while len(self._ended) > self.MAX_ENDED:  # calls that ended without a summary
                del self._ended[next(iter(self._ended))]

    def open_calls(self) -> int:
        """Calls started and not yet ended (what the recorder holds in memory)."""
        return len(self._calls)


@dataclass(slots=True)
class _Open:
    started_at: datetime | None
    language: str
    utterances: list[dict[str, Any]] = field(default_factory=list)
    ended_at: datetime | None = None
    agent_id: str | None = None
    source: str | None = None


def _parse(iso: str) -> datetime | None:
    if not iso:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))
