"""Retained transcripts, only when the site opts in (``[storage] transcripts = true``).

One JSONL file per call, ``<dir>/<UTC start, 20261101T093000Z>_<call id>.jsonl``, one
utterance a line, every ``text`` with digit runs (card, account, phone numbers) masked.
Files are written atomically (temporary file in the same directory, fsync, rename), mode
0600, and deleted after ``keep_days``.  Only files matching that name pattern (and this
module's own temporary files) are ever touched.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from appliance.errors import STORE_UNAVAILABLE, ApplianceError
from appliance.privacy import mask_digit_runs

log = logging.getLogger(__name__)

TRANSCRIPTS_DIR = "transcripts"
TEMP_GRACE_S = 3600.0
"""A temporary file older than this is a leftover of an interrupted write."""

_STAMP = "%Y%m%dT%H%M%SZ"
_CALL_MAX = 48
NAME_RE = re.compile(r"^(?P<ts>\d{8}T\d{6}Z)_(?P<call>[A-Za-z0-9._-]{1,64})\.jsonl$")
_TEMP_RE = re.compile(r"^\.\d{8}T\d{6}Z_[A-Za-z0-9._-]{1,64}\.jsonl\.[A-Za-z0-9_]+\.tmp$")


def transcripts_dir(state_dir: Path) -> Path:
    """Where retained transcripts live in a state directory."""
    return Path(state_dir) / TRANSCRIPTS_DIR


@dataclass(slots=True)
class TranscriptStore:
    """Transcript files of one directory, kept ``keep_days`` days (a handle, not a value:
    a reloaded config may change ``keep_days``)."""

    dir: Path
    keep_days: float

    def write(self, call_id: str, started_at: datetime,
              utterances: Sequence[Mapping[str, Any]]) -> str:
        """Write one call's utterances (dicts such as ``{"party", "start", "end", "text"}``;
        digit runs are masked in every string value, at any depth) and return the file name.

        Raises ValueError for a naive ``started_at`` or an utterance that is not a dict,
        (STORE_UNAVAILABLE) when the file cannot be written.
        """
        if started_at.tzinfo is None:
            raise ValueError("started_at must be timezone-aware")
        if not all(isinstance(u, Mapping) for u in utterances):
            raise ValueError("each utterance must be a mapping")
        body = "".join(json.dumps(_masked(u), ensure_ascii=False) + "\n" for u in utterances)
        base = f"{started_at.astimezone(UTC).strftime(_STAMP)}_{_safe(call_id)}"
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            name = self._free_name(base)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    os.fchmod(f.fileno(), 0o600)
                    f.write(body)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.dir / name)
            except BaseException:
                with suppress(OSError):
                    os.unlink(tmp)
                raise
            _fsync_dir(self.dir)
        except OSError as exc:
            raise ApplianceError(STORE_UNAVAILABLE, f"cannot write a transcript in {self.dir}: "
                                 f"{exc.strerror or exc}") from exc
        log.info("transcript retained: %s (%d utterances)", name, len(utterances))
        return name

    def expire(self, now: datetime | None = None) -> int:
        """Delete transcripts older than ``keep_days`` (by the time in the name, else the
        file's mtime) and stale temporary files; returns how many were deleted."""
        now = now or datetime.now(UTC)
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        cutoff = now - timedelta(days=self.keep_days)
        try:
            entries = list(os.scandir(self.dir))
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.warning("cannot list transcripts in %s: %s", self.dir, exc.strerror or exc)
            return 0
        removed = 0
        for e in entries:
            m = NAME_RE.match(e.name)
            if not (m or _TEMP_RE.match(e.name)) or not e.is_file(follow_symlinks=False):
                continue
            try:
                mtime = datetime.fromtimestamp(e.stat(follow_symlinks=False).st_mtime, UTC)
                if m:
                    old = (_parse_stamp(m["ts"]) or mtime) < cutoff
                else:
                    old = mtime < now - timedelta(seconds=TEMP_GRACE_S)
                if old:
                    os.unlink(e.path)
                    removed += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("cannot delete transcript %s: %s", e.path, exc.strerror or exc)
        if removed:
            log.info("%d expired transcript files deleted from %s", removed, self.dir)
        return removed

    def _free_name(self, base: str) -> str:
        name = f"{base}.jsonl"
        n = 2
        while (self.dir / name).exists():
            name = f"{base}-{n}.jsonl"
            n += 1
        return name


def _safe(call_id: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "-", str(call_id))[:_CALL_MAX]
    return safe or "call"


def _parse_stamp(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


def _masked(obj: Any) -> Any:
    """A copy with digit runs masked in every string (the text, and anything else a future
    utterance format might carry)."""
    if isinstance(obj, str):
        return mask_digit_runs(obj)
    if isinstance(obj, Mapping):
        return {k: _masked(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_masked(v) for v in obj]
    return obj


def _fsync_dir(path: Path) -> None:
    """Make the rename itself durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
