"""The result of one doctor check, and the guard that keeps a check from ever raising."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from appliance.errors import ApplianceError

log = logging.getLogger(__name__)

Status = Literal["ok", "warn", "fail"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "fail")
MIB = 1 << 20


@dataclass(frozen=True, slots=True)
class Check:
    """One finding: ``status`` ok / warn / fail, what was found, and how to fix it."""

    name: str
    status: Status
    detail: str
    fix: str = ""
    """What IT should do; empty when the status is ok."""
    notes: tuple[str, ...] = ()
    """Extra lines shown under the detail (a level meter, the list of inputs)."""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail,
                "fix": self.fix, "notes": list(self.notes)}


def ok(name: str, detail: str, notes: Sequence[str] = ()) -> Check:
    return Check(name, "ok", detail, "", tuple(notes))


def warn(name: str, detail: str, fix: str, notes: Sequence[str] = ()) -> Check:
    return Check(name, "warn", detail, fix, tuple(notes))


def fail(name: str, detail: str, fix: str, notes: Sequence[str] = ()) -> Check:
    return Check(name, "fail", detail, fix, tuple(notes))


def worst(statuses: Sequence[Status]) -> Status:
    """The most serious of ``statuses`` ("ok" for none)."""
    return max(statuses, key=STATUSES.index, default="ok")


def mib(n_bytes: float) -> str:
    """``n_bytes`` as MiB (or GiB from 10 GiB on), for people."""
    if n_bytes >= 10 * 1024 * MIB:
        return f"{n_bytes / (1024 * MIB):.1f} GiB"
    return f"{n_bytes / MIB:.0f} MiB" if n_bytes >= 10 * MIB else f"{n_bytes / MIB:.1f} MiB"


def guarded(name: str, fn: Callable[[], Check | Sequence[Check]]) -> list[Check]:
    """Run a check; an exception becomes a "fail" naming it instead of escaping."""
    try:
        result = fn()
    except ApplianceError as exc:
        return [fail(name, f"{exc.message} [{exc.code}]",
                     "see the message; run `appliance doctor` again after fixing it")]
    except Exception as exc:  # a check must never take the whole report down
        log.debug("doctor check %s failed", name, exc_info=True)
        return [fail(name, f"the check itself failed: {type(exc).__name__}: {exc}",
                     "unexpected: run `appliance --log-level debug doctor` and report the "
                     "traceback")]
    return [result] if isinstance(result, Check) else list(result)
