"""One call, from its first block to its summary: the same object for a file, the desk and a
PBX stream.

A :class:`CallSession` owns the call's :class:`~appliance.engine.call_engine.CallEngine`,
and its recognizer session (if any).
It emits every event of the call through one callable (an :class:`~appliance.stream.bus.
EventBus` fans them out to the sinks), in order: ``call_started``, the cues (and
``transcript`` events when asked for: ``--transcript``, or the site keeping transcripts),
then at :meth:`finish` the recognizer's last words, the closing cues, ``call_ended`` with its
reason, and the ``summary`` — built once, with the call's language and the recognizer's
figures.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from appliance.config import Config
from appliance.engine.call_engine import CallEngine
from appliance.engine.marks import Mark
from appliance.engine.vad import SileroModel
from appliance.events import (
    CallEnded,
    CallStarted,
    Cue,
    EndReason,
    Event,
    Party,
    Summary,
    TranscriptEvent,
    iso_utc,
)
from appliance.stream.blocks import PartyBlock

log = logging.getLogger(__name__)

LIVE_WORDS_WAIT_S = 15.0
"""How long past its moment a live call's word check waits for words the recognizer still
owes (a file's checks wait for all of them)."""

LIVE_FINISH_TIMEOUT_S = 5.0
"""How long the end of a live call waits for the recognizer's last words (a file waits for
all of them)."""


class Recognizer(Protocol):
    """A call's recognizer session as the call sees it (``appliance.asr.session``)."""

    def tap(self, ctx: Any, window: Any) -> None: ...

    def poll(self) -> list[Any]: ...

    def finish(self, timeout_s: float | None = None) -> list[Any]: ...

    def stats(self) -> dict[str, Any]: ...


class CallSession:
    """One call: engine + recognizer + transcripts → events, and one summary at the end.

    Not thread-safe: drive it from one task.  ``emit`` receives every event of the call.
    """

    def __init__(self, cfg: Config, vad: SileroModel, emit: Callable[[Event], None], *,
                 call_id: str, lang: str, marks: Iterable[Mark] = (),
                 asr: Recognizer | None = None, transcripts: bool = False,
                 agent_id: str | None = None,
                 source: str = "", started_at: datetime | None = None,
                 finish_timeout_s: float | None = None) -> None:
        self.engine = CallEngine(cfg, vad, marks, call_id=call_id, lang=lang)
        self.asr = asr
        if asr is not None:
            self.engine.attach_asr(
                asr.tap, words_wait_s=None if finish_timeout_s is None else LIVE_WORDS_WAIT_S)
        self.emit = emit
        self.finish_timeout_s = finish_timeout_s
        """How long :meth:`finish` waits for the recognizer (None: until it is done)."""
        self.transcripts = transcripts
        """Emit a ``transcript`` event per utterance (the text stays in memory; digit runs
        are masked in its JSON)."""
        self.started_at = started_at or datetime.now(UTC)
        """Wall-clock start (for the archive); a file's call has none of its own."""
        self.ended_at: datetime | None = None
        self.summary: Summary | None = None
        self.end_reason: EndReason | None = None
        self._wall = started_at is not None
        wall = iso_utc(started_at) if started_at is not None else ""
        self.start_event = CallStarted(call_id, lang, agent_id=agent_id, source=source,
                                       started_at=wall)
        """The call's first event (emitted here; :meth:`LiveRunner.subscribe` hands it to a
        subscriber that comes after the call began)."""
        emit(self.start_event)

    @property
    def call_id(self) -> str:
        return self.engine.call_id

    @property
    def lang(self) -> str:
        return self.engine.lang

    @property
    def t_s(self) -> float:
        """Seconds of audio analysed so far."""
        return self.engine.t_s

    def push(self, block: PartyBlock) -> None:
        """Analyse one block; its cues (and the recognizer's words that came back) go out."""
        self.deliver(self.engine.push(block.agent, block.customer))

    def deliver(self, cues: list[Cue]) -> None:
        """Emit cues the engine gave (directly, or stepped by a bank with other calls), then
        the recognizer's words that came back meanwhile."""
        for cue in cues:
            self.emit(cue)
        if self.asr is not None:
            heard_s = getattr(self.asr, "heard_s", None)
            heard = heard_s(self.engine.t_s) if heard_s is not None else None
            self._apply(self.asr.poll())
            if heard is not None:
                self.engine.asr_heard(heard)

    def add_mark(self, mark: Mark) -> None:
        self.engine.add_mark(mark)

    def signal(self, event: str, *, party: Party | None = None,
               ring_s: float | None = None) -> None:
        """The PBX's call control (``answered``, ``leg_ended``, ``hung_up``); its cues go out
        at once."""
        for cue in self.engine.signal(event, party=party, ring_s=ring_s):
            self.emit(cue)

    def _apply(self, results: list[Any]) -> None:
        for words, transcript in results:
            for cue in self.engine.add_words(words):
                self.emit(cue)
            if transcript is not None and self.transcripts:
                self.emit(TranscriptEvent(self.engine.t_s, transcript.party, transcript.text,
                                          transcript.start_s, transcript.end_s,
                                          call_id=self.call_id))

    async def finish(self, reason: EndReason, ended_at: datetime | None = None) -> Summary:
        """End the call: the recognizer's last words (waited for in a thread, so the next
        call's audio is never held up), the closing cues, ``call_ended``, the summary."""
        if self.end_reason is not None:
            raise RuntimeError(f"call {self.call_id} was ended already")
        self.ended_at = ended_at or datetime.now(UTC)
        self.end_reason = reason
        extra: dict[str, Any] = {}
        if self.asr is not None:
            self._apply(await asyncio.to_thread(self.asr.finish, self.finish_timeout_s))
            extra["asr"] = self.asr.stats()
        cues, summary = self.engine.finish(extra)
        for cue in cues:
            self.emit(cue)
        self.summary = summary
        self.emit(CallEnded(self.call_id, self.engine.t_s, reason, self._ended_iso()))
        self.emit(summary)
        log.info("call ended", extra={"fields": {
            "call": self.call_id, "reason": reason, "audio_s": round(self.engine.t_s, 1),
            "cues": sum(dict(summary.data.get("cues") or {}).values())}})
        return summary

    async def discard(self, reason: EndReason) -> None:
        """End a call that had no speech (or no audio): ``call_ended``, but no summary and
        nothing to archive; the recognizer is stopped."""
        if self.end_reason is not None:
            return
        self.end_reason = reason
        self.ended_at = datetime.now(UTC)
        if self.asr is not None:
            await asyncio.to_thread(self.asr.finish, LIVE_FINISH_TIMEOUT_S)
        self.emit(CallEnded(self.call_id, self.engine.t_s, reason, self._ended_iso()))
        log.info("call ended without speech: not summarised",
                 extra={"fields": {"call": self.call_id, "reason": reason}})

    def _ended_iso(self) -> str:
        return iso_utc(self.ended_at) if self._wall and self.ended_at is not None else ""

