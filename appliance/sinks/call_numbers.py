"""The desk's call numbers, carried across restarts.

A desk names its calls ``call-1``, ``call-2``...  Those ids leave the box (the summaries
store, the fleet's topics), so a restart must not hand out ``call-1`` again: the supervisor
console would take the new call for the old one.  The last number given is kept in
``<state_dir>/desk-call-number``, written atomically (a temporary file renamed over it)
before the call starts.  A missing file starts at 1; an unreadable or damaged one is
logged and numbering starts after the highest number seen in this run (never a crash).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

FILE_NAME = "desk-call-number"
_MAX = 10**12


class CallNumbers:
    """``next()`` gives 1, 2, 3... continuing from the last number a previous run gave."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / FILE_NAME
        self._last = self._read()
        self._warned = False

    def _read(self) -> int:
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return 0
        except (OSError, UnicodeDecodeError) as exc:
            log.warning("cannot read the last call number in %s (%s): numbering starts at 1",
                        self.path, type(exc).__name__)
            return 0
        if not text.isdigit() or int(text) > _MAX:
            log.warning("the last call number in %s is damaged: numbering starts at 1",
                        self.path)
            return 0
        return int(text)

    def next(self) -> int:
        self._last += 1
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(f"{self._last}\n", encoding="ascii")
            os.replace(tmp, self.path)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot keep the call number in %s (%s): after a restart the "
                            "desk's call ids may repeat", self.path, exc.strerror or exc)
        return self._last
