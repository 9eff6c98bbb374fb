"""What the live service keeps of a call once it ends: its summary, and its transcript only
when the site enabled retention.

Writes run in one dedicated thread behind a bounded queue (a summary write fsyncs), so the
analysis loop never waits on the disk.  A database that cannot be opened (corrupt, disk
full, read-only) is reported once and the service keeps coaching without storage; audio
is never written anywhere.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from appliance.config import StorageConfig
from appliance.config_env import resolve_state_dir
from appliance.errors import ApplianceError

log = logging.getLogger(__name__)

_QUEUE_CALLS = 16


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


class CallArchive:
    """Summaries into SQLite, transcripts (opt-in) into expiring files, off the hot path."""

    def __init__(self, cfg: StorageConfig, env: Mapping[str, str]) -> None:
        self.cfg = cfg
        self.state_dir = resolve_state_dir(cfg.state_dir, env)
        self.written = 0
        self.failed = 0
        self.dropped = 0
        self._store: Any = None
        self._transcripts: Any = None
        self._q: queue.Queue[CallRecord | None] = queue.Queue(maxsize=_QUEUE_CALLS)
        self._thread: threading.Thread | None = None
        self.enabled = cfg.summaries or cfg.transcripts

    @property
    def keeps_transcripts(self) -> bool:
        return self.cfg.transcripts

    def start(self) -> None:
        """Open the stores and start the writer; failures are logged, never raised."""
        if not self.enabled or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="archive", daemon=True)
        self._thread.start()

    def update(self, cfg: StorageConfig) -> None:
        """A reloaded [storage] section: limits apply from the next write; a change of
        directory or of what is kept needs a restart (the caller says so)."""
        self.cfg = cfg
        if self._store is not None:
            self._store.max_bytes = int(cfg.summaries_max_mb * 1024 * 1024)
            self._store.keep_days = cfg.summaries_days
        if self._transcripts is not None:
            self._transcripts.keep_days = cfg.transcript_days

    def record(self, rec: CallRecord) -> None:
        """Queue a finished call for writing (never blocks; a full queue drops and counts)."""
        if self._thread is None:
            return
        try:
            self._q.put_nowait(rec)
        except queue.Full:
            self.dropped += 1
            log.warning("archive queue full: call summary not kept", extra={
                "fields": {"call": rec.call_id, "dropped": self.dropped}})

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, then stop."""
        if self._thread is None:
            return
        self._q.put(None)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.error("archive writer did not finish within %.0f s", timeout_s)
        self._thread = None

    # -- the writer thread ---------------------------------------------------------------
    def _open(self) -> None:
        from appliance.store.summaries import SummaryStore, summaries_path
        from appliance.store.transcripts import TranscriptStore, transcripts_dir

        if self.cfg.summaries:
            path = summaries_path(self.state_dir)
            try:
                self._store = SummaryStore.open(
                    path, max_bytes=int(self.cfg.summaries_max_mb * 1024 * 1024),
                    keep_days=self.cfg.summaries_days)
                pruned = self._store.prune()  # limits lowered while the box was off
                log.info("call summaries kept in %s", path,
                         extra={"fields": {"calls": self._store.count(), "pruned": pruned}})
            except (ApplianceError, OSError) as exc:
                log.error("call summaries will not be kept: %s", exc)
        if self.cfg.transcripts:
            self._transcripts = TranscriptStore(transcripts_dir(self.state_dir),
                                                self.cfg.transcript_days)
            try:
                n = self._transcripts.expire(datetime.now(UTC))
                log.info("transcript retention on (%g days); %d expired file(s) removed",
                         self.cfg.transcript_days, n)
            except OSError as exc:
                log.error("transcript retention: cannot expire old files: %s", exc)

    def _run(self) -> None:
        self._open()
        while True:
            rec = self._q.get()
            if rec is None:
                break
            self._write(rec)
        if self._store is not None:
            self._store.close()

    def _write(self, rec: CallRecord) -> None:
        transcript_file = None
        try:
            if self._transcripts is not None and rec.utterances:
                transcript_file = self._transcripts.write(rec.call_id, rec.started_at,
                                                          rec.utterances)
                self._transcripts.expire(rec.ended_at)
            if self._store is not None:
                self._store.add(rec.summary, call_id=rec.call_id, started_at=rec.started_at,
                                ended_at=rec.ended_at, language=rec.language,
                                transcript_file=transcript_file)
            self.written += 1
        except Exception as exc:  # the disk, not a bug of the call: keep coaching
            self.failed += 1
            log.error("call summary not kept: %s", exc, extra={"fields": {"call": rec.call_id}})

    def stats(self) -> dict[str, Any]:
        return {"written": self.written, "failed": self.failed, "dropped": self.dropped,
                "state_dir": str(self.state_dir) if self.enabled else None}

