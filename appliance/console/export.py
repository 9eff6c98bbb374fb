"""Exporting the central store's calls, as the box's ``summaries export`` does: JSONL (one
call a line, its projected summary included) or CSV (one row a call: who, where, when, the
figures as columns, ``cues.<kind>`` counts for every cue kind in the contract's order, the
summary as JSON last).  Counts and figures only: the store holds no words."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from appliance.console.store import FIGURE_COLUMNS
from appliance.events import CUE_KINDS

CSV_COLUMNS = ("site", "box", "call_id", "agent_id", "language", "source", "started_at",
               "ended_at", "reason", *FIGURE_COLUMNS, "cue_count")
_LIVE = ("last_cue_kind", "last_cue_at", "hold_started_at", "updated_at")


def _row(r: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if k not in _LIVE}


def write_jsonl(f: TextIO, rows: Iterable[Mapping[str, Any]]) -> int:
    n = 0
    for r in rows:
        f.write(json.dumps(_row(r), ensure_ascii=False, separators=(",", ":")) + "\n")
        n += 1
    return n


def write_csv(f: TextIO, rows: Iterable[Mapping[str, Any]]) -> int:
    w = csv.writer(f, lineterminator="\n")
    w.writerow([*CSV_COLUMNS, *(f"cues.{k}" for k in CUE_KINDS), "summary_json"])
    n = 0
    for r in rows:
        summary: dict[str, Any] = r["summary"] if isinstance(r.get("summary"), dict) else {}
        cues: dict[str, Any] = summary["cues"] if isinstance(summary.get("cues"), dict) else {}
        w.writerow([*("" if r.get(c) is None else r[c] for c in CSV_COLUMNS),
                    *(cues.get(k, 0) for k in CUE_KINDS),
                    json.dumps(summary, ensure_ascii=False, separators=(",", ":"))])
        n += 1
    return n
