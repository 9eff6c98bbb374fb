"""Marks: events of the call that the audio cannot tell (hold on / hold off...).

A marks file is JSON Lines, one mark per non-blank line::

    {"t": 40.0, "event": "hold_start"}
    {"t": 55.5, "event": "hold_end"}

``t`` is seconds of call audio (>= 0).  Blank lines and lines starting with ``#`` are
ignored; other keys are ignored too, so later versions can add fields.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass

from appliance.errors import MARKS_INVALID, ApplianceError

#: Events a mark may carry.  Extend here when a new kind of mark is introduced.
KNOWN_MARK_EVENTS: tuple[str, ...] = ("hold_start", "hold_end")

_EXAMPLE = '{"t": 40.0, "event": "hold_start"}'
#: No call lasts a year; a larger "t" is a mistake (and a float overflow, 2**1024, a crash).
MAX_T_S = 365 * 86400.0


@dataclass(frozen=True, slots=True)
class Mark:
    t_s: float  # seconds of call audio
    event: str  # one of KNOWN_MARK_EVENTS


def parse_marks(lines: Iterable[str], source: str = "marks.jsonl") -> list[Mark]:
    """Parse marks from text lines; ``source`` names the file in error messages."""
    marks = []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parsed = _parse_line(text)
        if isinstance(parsed, str):
            raise ApplianceError(MARKS_INVALID, f"{source} line {number}: {parsed}")
        marks.append(parsed)
    marks.sort(key=lambda m: m.t_s)
    return marks


def _parse_line(text: str) -> Mark | str:
    """The mark on this line, or a description of what is wrong with it."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"is not valid JSON ({exc.msg}); expected e.g. {_EXAMPLE}"
    except RecursionError:
        return f"is nested too deeply to be a mark; expected e.g. {_EXAMPLE}"
    except ValueError:  # an integer of more than 4300 digits
        return f"holds a number too long to read; expected e.g. {_EXAMPLE}"
    if not isinstance(obj, dict):
        return f"expected a JSON object like {_EXAMPLE}, got {text[:40]}"
    if "t" not in obj:
        return 'missing "t" (seconds of call audio)'
    t = obj["t"]
    if isinstance(t, bool) or not isinstance(t, int | float):
        return f'"t" must be a number of seconds, got {json.dumps(t)}'
    if (isinstance(t, float) and not math.isfinite(t)) or t < 0 or t > MAX_T_S:
        shown = (t if isinstance(t, float) or abs(t) < 10**12
                 else f"an integer of {t.bit_length()} bits")
        return f'"t" must be a finite number of seconds >= 0 (at most a year), got {shown}'
    if "event" not in obj:
        return 'missing "event"'
    event = obj["event"]
    if not isinstance(event, str) or event not in KNOWN_MARK_EVENTS:
        known = ", ".join(KNOWN_MARK_EVENTS)
        return f'unknown "event" {json.dumps(event)}; known events: {known}'
    return Mark(float(t), event)
