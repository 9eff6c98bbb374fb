"""Recognizer words for tests: the recognizer seam without a recognizer."""

from __future__ import annotations

from appliance.events import WordEvent


def say(party, text, t0, dur=0.3, gap=0.08):  # type: ignore[no-untyped-def]
    """One WordEvent a whitespace-separated word, from ``t0`` on."""
    out, t = [], t0
    for w in text.split():
        out.append(WordEvent(party, w, t, t + dur))
        t += dur + gap
    return out
