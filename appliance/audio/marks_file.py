"""A marks file (JSON Lines of hold marks) read from disk; the parsing itself is
:func:`appliance.engine.marks.parse_marks`."""

from __future__ import annotations

from pathlib import Path

from appliance.engine.marks import Mark, parse_marks
from appliance.errors import MARKS_INVALID, MARKS_NOT_FOUND, ApplianceError


def load_marks(path: Path | str) -> list[Mark]:
    """Read and parse the marks file at ``path``; marks sorted by time (stable)."""
    p = Path(path)
    if p.is_dir():
        raise ApplianceError(MARKS_NOT_FOUND, f"{p}: is a directory, not a marks file")
    try:
        raw = p.read_bytes()
    except FileNotFoundError as exc:
        raise ApplianceError(MARKS_NOT_FOUND, f"{p}: no such marks file; check the path") from exc
    except OSError as exc:
        raise ApplianceError(
            MARKS_NOT_FOUND, f"{p}: the marks file cannot be read ({exc.strerror})"
        ) from exc
    lines = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            lines.append(line.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError as exc:
            raise ApplianceError(
                MARKS_INVALID, f"{p.name} line {number}: is not valid UTF-8 text"
            ) from exc
    return parse_marks(lines, source=p.name)
