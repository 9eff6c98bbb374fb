"""Output formats of ``appliance analyze``: JSONL (machines) and a text timeline (people)."""

from __future__ import annotations

import json
from typing import Any, TextIO

from appliance.events import CallEnded, CallStarted, ErrorEvent, Event, Summary, TranscriptEvent

_MARK = {"info": "·", "warn": "!", "alert": "!!"}


def _clock(t_s: float) -> str:
    m, s = divmod(max(0.0, t_s), 60.0)
    return f"{int(m):02d}:{s:04.1f}"


class JsonlWriter:
    """One JSON object a line, flushed per event so a reader can follow live."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def event(self, ev: Event) -> None:
        self.out.write(json.dumps(ev.to_json(), ensure_ascii=False) + "\n")
        self.out.flush()


class TextWriter:
    """A readable timeline, then the summary as a small table."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def event(self, ev: Event) -> None:
        if isinstance(ev, CallStarted | CallEnded):
            return  # the timeline is one call; the summary says how it ended
        if isinstance(ev, Summary):
            self.out.write(format_summary(ev.data))
        elif isinstance(ev, ErrorEvent):
            self.out.write(f"error: {ev.message} [{ev.code}]\n")
        elif isinstance(ev, TranscriptEvent):
            text = ev.to_json()["data"]["text"]
            self.out.write(f"{_clock(ev.start_s)}  {'':<8} {'transcript':<16} {ev.party:<9} "
                           f"« {text} »\n")
        else:
            who = ev.party or ""
            sev = f"{_MARK[ev.severity]} {ev.severity}"
            self.out.write(f"{_clock(ev.t_s)}  {sev:<8} {ev.kind:<16} {who:<9} {ev.message}\n")
        self.out.flush()


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def format_summary(d: dict[str, Any]) -> str:
    """The call summary as a small two-column table (agent | customer)."""
    rate = d.get("rate", {})
    tone = d.get("tone", {})
    talk = d.get("talk_s", {})
    inter = d.get("interruptions", {})
    fill = d.get("fillers", {})
    rows: list[tuple[str, Any, Any]] = [
        ("talk time (s)", talk.get("agent"), talk.get("customer")),
        ("talk spurts", d.get("spurts", {}).get("agent"), d.get("spurts", {}).get("customer")),
        ("interruptions made", inter.get("agent"), inter.get("customer")),
        ("syllables / s", rate.get("agent", {}).get("syllables_per_s"),
         rate.get("customer", {}).get("syllables_per_s")),
        ("raised / agitated", tone.get("agent", {}).get("raised"),
         tone.get("customer", {}).get("agitated")),
        ("fillers" + ("" if "asr" in fill.get("sources", []) else " (acoustic)"),
         fill.get("agent") if fill.get("available") else "n/a",
         fill.get("customer") if fill.get("available") else "n/a"),
    ]
    lines = ["", f"Call summary ({_fmt(d.get('duration_s'))} s)",
             f"  {'':<20} {'agent':>9} {'customer':>9}"]
    lines += [f"  {name:<20} {_fmt(a):>9} {_fmt(c):>9}" for name, a, c in rows]
    share = d.get("agent_share")
    lines.append(f"  agent share of talk  {'-' if share is None else f'{share:.0%}':>9}")
    lines.append(f"  overlap (s)          {_fmt(d.get('overlap_s')):>9}")
    lines.append(f"  dead air             {d.get('dead_air', {}).get('count', 0):>9}")
    asr = d.get("asr")
    if asr and "words" in asr:
        words = asr["words"]
        lines.append(f"  words recognised     {words.get('agent', 0):>9} "
                     f"{words.get('customer', '-'):>9}")
        wpm_a = rate.get("agent", {}).get("wpm")
        wpm_c = rate.get("customer", {}).get("wpm")
        lines.append(f"  words / min          {_fmt(wpm_a):>9} {_fmt(wpm_c):>9}")
    holds = d.get("holds", [])
    lines.append(f"  holds                {len(holds):>9}")
    for h in holds:
        leaks = len(h.get("leaks", []))
        lines.append(f"    {_clock(h['start'])}-{_clock(h['end'])}  {h['type']:<8} "
                     f"{h['duration_s']:>5.0f} s  via {h['via']:<11} leaks {leaks}"
                     + ("  (no hold_end: ran to the end)" if h.get("open_at_end")
                        and "marks" in str(h.get("via")) else ""))
    ignored = d.get("marks_ignored_total") or 0
    if ignored:
        lines.append(f"  marks ignored        {ignored:>9}  (see the warnings above)")
    return "\n".join(lines) + "\n"
