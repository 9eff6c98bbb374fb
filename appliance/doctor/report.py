"""The doctor's report: text (one line per check, an indented fix for problems, the
count of problems at the end) or JSON (a list of check objects)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TextIO

from appliance.doctor.check import Check

WORDS = {"ok": "OK", "warn": "WARN", "fail": "FAIL"}
_INDENT = " " * 6


def problems(checks: Sequence[Check]) -> int:
    return sum(c.status != "ok" for c in checks)


def exit_code(checks: Sequence[Check]) -> int:
    """1 when any check failed (warnings do not fail), else 0."""
    return 1 if any(c.status == "fail" for c in checks) else 0


def write_text(checks: Sequence[Check], out: TextIO) -> None:
    width = max((len(c.name) for c in checks), default=0) + 2
    for c in checks:
        out.write(f"{WORDS[c.status]:<6}{c.name:<{width}}{c.detail}\n")
        for note in c.notes:
            out.write(f"{_INDENT}  {note}\n")
        if c.status != "ok" and c.fix:
            out.write(f"{_INDENT}fix: {c.fix}\n")
    n = problems(checks)
    fails = sum(c.status == "fail" for c in checks)
    tail = f" ({fails} failed, {n - fails} warning{'s' if n - fails != 1 else ''})" if n else ""
    out.write(f"{n} problem{'s' if n != 1 else ''}{tail}\n")


def write_json(checks: Sequence[Check], out: TextIO) -> None:
    out.write(json.dumps([c.as_dict() for c in checks], indent=2, ensure_ascii=False) + "\n")
