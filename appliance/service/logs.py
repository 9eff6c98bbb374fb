"""Logging to stderr for journald: structured, levelled, and never transcript text.

Three formats (``[logging] format``):

* ``text``: ``LEVEL logger: message key=value ...``
* ``json``: one JSON object per line: ``{"t", "level", "logger", "msg", ...fields}``
* ``auto``: ``text``; under systemd (``JOURNAL_STREAM`` names our stderr) each line starts
  with the syslog priority ``<N>``, which journald turns into the entry's level, and the
  timestamp is left to journald.

Structured fields go in ``extra={"fields": {...}}``; they are appended as ``key=value``
(text) or merged into the object (json).  Callers never put recognised words in a log
record: the words exist only in the engine, the optional transcript retention and the
``--transcript`` output (``tests/test_asr_cli.py`` checks that logs carry none).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}
_HANDLER_NAME = "appliance-stderr"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, Mapping) else {}


def _kv(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n'):
        return json.dumps(text, ensure_ascii=False)
    return text


class TextFormatter(logging.Formatter):
    """``LEVEL logger: message k=v``; with ``journald`` a ``<priority>`` prefix instead of
    the level word (journald shows the level itself)."""

    def __init__(self, journald: bool = False) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage().replace("\n", " ")
        extra = " ".join(f"{k}={_kv(v)}" for k, v in _fields(record).items())
        line = f"{record.name}: {msg}" + (f" {extra}" if extra else "")
        if record.exc_info and record.levelno <= logging.DEBUG:
            line += " | " + self.formatException(record.exc_info).replace("\n", " | ")
        if self.journald:
            return f"<{_PRIORITY.get(record.levelno, 6)}>{line}"
        return f"{record.levelname} {line}"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "t": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in _fields(record).items():
            obj.setdefault(k, v)
        if record.exc_info and record.levelno <= logging.DEBUG:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, ensure_ascii=False, default=str)


def under_journald(env: Mapping[str, str], stream: TextIO) -> bool:
    """True when ``JOURNAL_STREAM`` (``device:inode``, set by systemd) is our stderr."""
    spec = env.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in spec.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def setup_logging(level: str = "warning", fmt: str = "auto",
                  env: Mapping[str, str] | None = None, stream: TextIO | None = None) -> None:
    """(Re)configure the root logger: one stderr handler in the chosen format."""
    stream = stream or sys.stderr
    env = os.environ if env is None else env
    formatter: logging.Formatter
    if fmt == "json":
        formatter = JsonFormatter()
    else:
        formatter = TextFormatter(journald=fmt == "auto" and under_journald(env, stream))
    root = logging.getLogger()
    for h in list(root.handlers):
        if h.get_name() == _HANDLER_NAME:
            root.removeHandler(h)
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(level.upper())


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())
