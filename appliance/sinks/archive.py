"""What the live service keeps of a call once it ends: its summary, and its transcript only
when the site enabled retention.

Writes run in one dedicated thread behind a bounded queue (a summary write fsyncs), so the
analysis loop never waits on the disk.  A database that cannot be opened (corrupt, disk
full, read-only) is reported and the service keeps coaching; every later call tries to open
it again, and until one is stored :meth:`CallArchive.health` says the store is failing (the
service's /healthz, /metrics, STATUS line).  A writer thread that dies of a bug is restarted
(up to :data:`MAX_RESTARTS` times, then the archive reports itself stopped).  Audio is never
written anywhere.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from appliance.config import StorageConfig
from appliance.config_env import resolve_state_dir
from appliance.errors import STORE_UNAVAILABLE, ApplianceError
from appliance.stream.record import CallRecord

log = logging.getLogger(__name__)

_QUEUE_CALLS = 16
MAX_RESTARTS = 3
"""A writer thread that died is restarted this many times; then the archive is stopped."""


class CallArchive:
    """Summaries into SQLite, transcripts (opt-in) into expiring files, off the hot path."""

    def __init__(self, cfg: StorageConfig, env: Mapping[str, str]) -> None:
        self.cfg = cfg
        self.state_dir = resolve_state_dir(cfg.state_dir, env)
        self.written = 0
        self.failed = 0
        self.dropped = 0
        self.restarts = 0
        """Writer threads restarted after dying of an unexpected error."""
        self.last_error: str | None = None
        """Stable code of the last storage failure (``store.corrupt``...), None once a write
        succeeded after it."""
        self.last_write_ok: bool | None = None
        self.last_write_at: datetime | None = None
        self._store: Any = None
        self._transcripts: Any = None
        self._q: queue.Queue[CallRecord | None] = queue.Queue(maxsize=_QUEUE_CALLS)
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        self._stopping = False
        self.enabled = cfg.summaries or cfg.transcripts

    @property
    def keeps_transcripts(self) -> bool:
        return self.cfg.transcripts

    def start(self) -> None:
        """Open the stores and start the writer; failures are logged, never raised."""
        if not self.enabled or self._thread is not None:
            return
        self._start_thread()

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="archive", daemon=True)
        self._thread.start()

    def _ensure_writer(self) -> bool:
        """True while a writer thread runs; one that died is restarted (a bounded number of
        times: a thread that keeps dying leaves the archive stopped, and unhealthy)."""
        with self._guard:
            t = self._thread
            if t is None or self._stopping:
                return False
            if t.is_alive():
                return True
            if self.restarts >= MAX_RESTARTS:
                return False
            self.restarts += 1
            log.error("archive writer had stopped; restarting it",
                      extra={"fields": {"restarts": self.restarts}})
            self._start_thread()
            return True

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
        if not self._ensure_writer():
            self.dropped += 1
            log.error("archive stopped: call summary not kept", extra={
                "fields": {"call": rec.call_id, "dropped": self.dropped}})
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
        self._ensure_writer()
        with self._guard:
            self._stopping = True
        deadline = time.monotonic() + timeout_s
        try:
            self._q.put(None, timeout=timeout_s)
        except queue.Full:
            log.error("archive writer is not taking calls; %d summaries not kept",
                      self._q.qsize())
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.error("archive writer did not finish within %.0f s", timeout_s)
        self._thread = None

    # -- the writer thread ---------------------------------------------------------------
    def _open_summaries(self) -> None:
        from appliance.sinks.store.summaries import SummaryStore, summaries_path

        path = summaries_path(self.state_dir)
        try:
            self._store = SummaryStore.open(
                path, max_bytes=int(self.cfg.summaries_max_mb * 1024 * 1024),
                keep_days=self.cfg.summaries_days)
            pruned = self._store.prune()  # limits lowered while the box was off
            log.info("call summaries kept in %s", path,
                     extra={"fields": {"calls": self._store.count(), "pruned": pruned}})
        except (ApplianceError, OSError) as exc:
            if self._store is not None:
                self._store.close()
                self._store = None
            code = exc.code if isinstance(exc, ApplianceError) else STORE_UNAVAILABLE
            if self.last_error != code:  # once per kind of failure, not once per call
                log.error("call summaries cannot be kept: %s", exc)
            self.last_error = code

    def _open(self) -> None:
        from appliance.sinks.store.transcripts import TranscriptStore, transcripts_dir

        if self.cfg.summaries and self._store is None:
            self._open_summaries()
        if self.cfg.transcripts and self._transcripts is None:
            self._transcripts = TranscriptStore(transcripts_dir(self.state_dir),
                                                self.cfg.transcript_days)
            try:
                n = self._transcripts.expire(datetime.now(UTC))
                log.info("transcript retention on (%g days); %d expired file(s) removed",
                         self.cfg.transcript_days, n)
            except OSError as exc:
                log.error("transcript retention: cannot expire old files: %s", exc)

    def _run(self) -> None:
        try:
            self._open()
            while True:
                rec = self._q.get()
                if rec is None:
                    break
                self._write(rec)
        except BaseException:  # a bug: the next record() or health() restarts the writer
            log.exception("archive writer stopped by an unexpected error")
            return
        if self._store is not None:
            self._store.close()
            self._store = None

    def _write(self, rec: CallRecord) -> None:
        transcript_file = None
        try:
            if self._transcripts is not None and rec.utterances:
                transcript_file = self._transcripts.write(rec.call_id, rec.started_at,
                                                          rec.utterances)
                self._transcripts.expire(rec.ended_at)
            if self.cfg.summaries and self._store is None:
                self._open_summaries()  # the disk may have been fixed since the last call
                if self._store is None:
                    raise ApplianceError(self.last_error or STORE_UNAVAILABLE,
                                         "the summaries database cannot be opened")
            if self._store is not None:
                self._store.add(rec.summary, call_id=rec.call_id, started_at=rec.started_at,
                                ended_at=rec.ended_at, language=rec.language,
                                transcript_file=transcript_file, agent_id=rec.agent_id,
                                source=rec.source)
        except Exception as exc:  # the disk, not a bug of the call: keep coaching
            self.failed += 1
            self.last_write_ok = False
            self.last_error = exc.code if isinstance(exc, ApplianceError) else \
                STORE_UNAVAILABLE
            log.error("call summary not kept: %s", exc, extra={"fields": {"call": rec.call_id}})
            return
        self.written += 1
        self.last_write_ok = True
        self.last_write_at = datetime.now(UTC)
        self.last_error = None

    def stats(self) -> dict[str, Any]:
        return {"written": self.written, "failed": self.failed, "dropped": self.dropped,
                "state_dir": str(self.state_dir) if self.enabled else None}

    def health(self) -> dict[str, Any]:
        """The truth about storage, for /healthz, /metrics, STATUS and ``doctor``.

        ``state``: ``off`` (nothing kept by configuration), ``ok``, ``failing`` (the store
        cannot be opened or the last write failed: ``last_error`` says why) or ``stopped``
        (the writer thread is gone and was not restarted).  ``ok`` is False for the last two.
        """
        if not self.enabled:
            return {"state": "off", "ok": True, "writer_alive": False, "pending": 0,
                    "written": 0, "failed": 0, "dropped": self.dropped, "restarts": 0,
                    "last_write_ok": None, "last_write_at": None, "last_error": None}
        alive = self._ensure_writer()
        if not alive and self._thread is not None:
            state = "stopped"
        elif self.last_error is not None or self.last_write_ok is False:
            state = "failing"
        else:
            state = "ok"
        return {"state": state, "ok": state == "ok", "writer_alive": alive,
                "pending": self._q.qsize(), "written": self.written, "failed": self.failed,
                "dropped": self.dropped, "restarts": self.restarts,
                "last_write_ok": self.last_write_ok,
                "last_write_at": (self.last_write_at.isoformat(timespec="seconds")
                                  if self.last_write_at else None),
                "last_error": self.last_error}
