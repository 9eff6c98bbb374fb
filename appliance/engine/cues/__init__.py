"""Cue rules: small state machines over seconds and probabilities, one rule a module.

Every rule has ``on_frame(ctx) -> list[Cue]``, ``close(t_s) -> list[Cue]`` and
``summary() -> dict``; word-based rules also implement ``on_words``.  None sees audio.
"""

from __future__ import annotations

from typing import Any, Protocol

from appliance.engine.conversation import FrameContext
from appliance.events import Cue, WordEvent


class CueRule(Protocol):
    def on_frame(self, ctx: FrameContext) -> list[Cue]: ...

    def close(self, t_s: float) -> list[Cue]: ...

    def summary(self) -> dict[str, Any]: ...


class WordRule(CueRule, Protocol):
    """A rule fed by the recognizer seam (filler, phrase checks, words per minute)."""

    def on_words(self, t_s: float, words: list[WordEvent]) -> list[Cue]: ...
