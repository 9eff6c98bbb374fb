"""What a configuration reload (SIGHUP, ``systemctl reload appliance``) can change live.

Cue thresholds apply from the next call (the call in progress keeps the ones it started
with, so its cues stay consistent); the log level applies at once, the storage limits from
the next write; the rest (audio wiring, language and model, dashboard address and token,
where and what is stored, log format) is bound at start-up and needs a restart.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from appliance.config import Config

RESTART_KEYS: tuple[str, ...] = (
    "language", "asr", "audio",
    "dashboard.enabled", "dashboard.host", "dashboard.port", "dashboard.token",
    "storage.state_dir", "storage.summaries", "storage.transcripts",
    "logging.format", "fleet",
)
"""Settings that a reload cannot apply (a section name covers all of its keys)."""


def _flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(_flatten(value, key + "."))
        else:
            out[key] = value
    return out


def changed_keys(old: Config, new: Config) -> list[str]:
    """Dotted keys whose value differs (``rate.max_wpm``, ``language``)."""
    a, b = _flatten(old), _flatten(new)
    return [k for k in a if a[k] != b[k]]


def restart_needed(old: Config, new: Config) -> list[str]:
    """The changed keys a reload cannot apply (token values are never returned, only the
    key name ``dashboard.token``)."""
    return [k for k in changed_keys(old, new)
            if any(k == r or k.startswith(r + ".") for r in RESTART_KEYS)]
