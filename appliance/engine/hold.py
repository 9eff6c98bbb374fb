"""Hold state and the hold cues (rules 5 and 6 of ETIQUETTE.md).

A hold begins with hold music on the agent channel (heard by the music detector) or with a
hold mark (dashboard hold key, API, PBX, or ``--marks``).  During a hold:

* ``hold_leak``: agent speech on the agent channel — the caller may hear it;
* ``hold_unmuted``: the agent channel carries room noise instead of digital silence or
  music — an open microphone;
* ``hold_check_back`` / ``hold_too_long``: timers.

Marks that make no sense are not silently obeyed or dropped: a ``hold_end`` with no hold
open, a second ``hold_start`` while a marked hold runs, or a mark after the end of the
audio is ignored with one warning line each and listed in the summary (``marks_ignored``);
a marked hold still open when the call ends says so (``open_at_end`` in its record).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from appliance.config import HoldConfig
from appliance.cue_payloads import (
    HoldCheckBack,
    HoldEnded,
    HoldLeak,
    HoldStarted,
    HoldTooLong,
    HoldType,
    HoldUnmuted,
    HoldVia,
)
from appliance.engine.conversation import HoldView
from appliance.events import Cue

log = logging.getLogger(__name__)

_NOT_ON_HOLD = HoldView(False, None, None)

MAX_IGNORED_LISTED = 50
"""At most this many ignored marks are listed (and logged) per call; the rest are counted."""


@dataclass(slots=True)
class _Hold:
    start_s: float
    via: HoldVia
    music_s: float = 0.0
    silent_s: float = 0.0
    open_mic_s: float = 0.0
    open_run_s: float = 0.0
    unmuted_cued: bool = False
    leak_start_s: float | None = None
    leak_active_s: float = 0.0
    leak_cued: bool = False
    leaks: list[tuple[float, float]] = field(default_factory=list)
    check_back_cued: bool = False
    too_long_cued: bool = False

    def hold_type(self) -> HoldType | None:
        judged = self.music_s + self.silent_s + self.open_mic_s
        if judged < 1.0:
            return None
        if self.music_s >= 0.5 * judged:
            return "music"
        return "unmuted" if self.unmuted_cued or self.leaks else "muted"


class HoldTracker:
    """The hold state machine; fed once per frame by the engine."""

    def __init__(self, cfg: HoldConfig) -> None:
        self.cfg = cfg
        self._hold: _Hold | None = None
        self._music_run_start_s: float | None = None
        self._last_music_s: float | None = None
        # after a hold ends, music still heard is its tail: a new music hold needs a gap
        self._music_gap_needed = False
        # hold inferred from a hold-request phrase followed by silence on both sides
        self._requested_s: float | None = None
        self._quiet_since_s: float | None = None
        self._talk_after_request_s = 0.0
        self.holds: list[HoldEnded] = []
        """The record of every hold that ended (the ``hold_ended`` cues' payloads)."""
        self.marks_ignored: list[dict[str, Any]] = []
        """``{"t", "event", "reason"}`` of marks that were not applied (reasons:
        ``no_hold_open``, ``already_on_hold``, ``after_end``)."""
        self.marks_ignored_total = 0

    @property
    def view(self) -> HoldView:
        h = self._hold
        if h is None:
            return _NOT_ON_HOLD
        return HoldView(True, h.start_s, h.hold_type())

    def update(
        self,
        t0_s: float,
        t_s: float,
        marks: list[tuple[float, str]],
        *,
        music: bool,
        speaking: bool,
        active: bool,
        spurt_start_s: float | None,
        digital_silence: bool,
        level_dbfs: float,
        other_speaking: bool = False,
    ) -> list[Cue]:
        """Advance by one frame of the agent channel.

        ``marks`` are the (time, event) marks due now; each is dated at its own time (a
        live mark can arrive a little after the moment it names), but never before the
        current hold began.
        """
        cues: list[Cue] = []
        dt = t_s - t0_s
        if not music:
            self._music_gap_needed = False
            if self._hold is None:
                self._music_run_start_s = None
        if music and not self._music_gap_needed:
            if self._music_run_start_s is None:
                self._music_run_start_s = t0_s
            self._last_music_s = t_s
        cues += self.apply_marks(marks, t0_s, t_s)
        if (
            music
            and self._hold is None
            and self._music_run_start_s is not None
            and t_s - self._music_run_start_s >= self.cfg.music_min_s
        ):
            cues += self._start(self._music_run_start_s, t_s, "music")
        cues += self._phrase_hold(t0_s, t_s, not (speaking or other_speaking or music), active)
        h = self._hold
        if h is None:
            return cues
        if h.via == "music" and not music and self._last_music_s is not None and (
            t_s - self._last_music_s >= self.cfg.music_end_s or active
        ):
            # the music stopped (or the agent speaks where the music was): back from hold
            return cues + self._end(self._last_music_s, t_s)
        if h.via == "phrase" and active and spurt_start_s is not None:
            # a hold the agent only announced ends when the agent speaks again
            return cues + self._end(max(h.start_s, spurt_start_s), t_s)
        cues += self._observe(h, t0_s, t_s, dt, music, speaking, active, spurt_start_s,
                              digital_silence, level_dbfs)
        return cues + self._timers(h, t_s)

    def status(self, t_s: float) -> dict[str, Any]:
        """The hold panel of the dashboard."""
        h = self._hold
        if h is None:
            return {"on": False, "type": None, "start": None, "elapsed_s": 0.0,
                    "open_mic": False, "leak": False, "via": None}
        return {"on": True, "type": h.hold_type(), "start": round(h.start_s, 3),
                "elapsed_s": round(max(0.0, t_s - h.start_s), 1),
                "open_mic": h.unmuted_cued and h.open_run_s > 0, "leak": h.leak_cued,
                "via": h.via}

    def request_hold(self, t_s: float) -> None:
        """The agent asked the caller to hold (a hold-request phrase ended at ``t_s``)."""
        self._requested_s = t_s
        self._talk_after_request_s = 0.0

    def _phrase_hold(self, t0_s: float, t_s: float, quiet: bool, active: bool) -> list[Cue]:
        req = self._requested_s
        if req is None or self._hold is not None:
            return []
        if active and t0_s >= req:
            self._talk_after_request_s += t_s - t0_s
        if (t_s - req > self.cfg.phrase_window_s + self.cfg.phrase_silence_s
                or self._talk_after_request_s > self.cfg.phrase_max_talk_s):
            self._requested_s = None
            return []
        if not quiet or t0_s < req:
            self._quiet_since_s = None
            return []
        if self._quiet_since_s is None:
            self._quiet_since_s = t0_s
        if t_s - self._quiet_since_s >= self.cfg.phrase_silence_s:
            self._requested_s = None
            return self._start(self._quiet_since_s, t_s, "phrase")
        return []

    def apply_marks(self, marks: list[tuple[float, str]], t0_s: float, t_s: float) -> list[Cue]:
        """Apply (time, event) marks at the frame [t0_s, t_s)."""
        cues: list[Cue] = []
        for mark_t, event in marks:
            when = min(mark_t, t0_s)
            if event == "hold_start" and self._hold is None:
                cues += self._start(when, t_s, "marks")
            elif event == "hold_start" and self._hold is not None:
                if self._hold.via == "music":
                    self._hold.via = "marks+music"
                else:
                    self.ignore_mark(mark_t, event, "already_on_hold")
            elif event == "hold_end" and self._hold is not None:
                cues += self._end(max(when, self._hold.start_s), t_s)
            elif event == "hold_end":
                self.ignore_mark(mark_t, event, "no_hold_open")
        return cues

    def ignore_mark(self, t_s: float, event: str, reason: str) -> None:
        """Note a mark that is not applied: one warning line, one entry in the summary."""
        self.marks_ignored_total += 1
        if len(self.marks_ignored) >= MAX_IGNORED_LISTED:
            return
        self.marks_ignored.append({"t": round(t_s, 3), "event": event, "reason": reason})
        why = {"no_hold_open": "no hold is open",
               "already_on_hold": "a marked hold is already running",
               "after_end": "it is after the end of the audio"}.get(reason, reason)
        log.warning("%s mark at %.1f s ignored: %s", event, t_s, why)

    def _observe(
        self, h: _Hold, t0_s: float, t_s: float, dt: float, music: bool, speaking: bool,
        active: bool, spurt_start_s: float | None, digital_silence: bool, level_dbfs: float,
    ) -> list[Cue]:
        cues: list[Cue] = []
        if music:
            h.music_s += dt
            h.open_run_s = 0.0
        elif digital_silence or level_dbfs < self.cfg.unmuted_floor_dbfs:
            h.silent_s += dt
            h.open_run_s = 0.0
        else:
            h.open_mic_s += dt
            h.open_run_s += dt
            if h.open_run_s >= self.cfg.unmuted_min_s and not h.unmuted_cued:
                h.unmuted_cued = True
                cues.append(Cue(t_s, "agent", "warn", "Mic open on hold: mute it",
                                HoldUnmuted(start_s=round(t_s - h.open_run_s, 3),
                                            end_s=round(t_s, 3))))
        # Leaks: agent speech during the hold (music frames are the hold itself).
        if speaking and not music and spurt_start_s is not None:
            if h.leak_start_s is None:
                h.leak_start_s = max(spurt_start_s, h.start_s)
                h.leak_active_s = 0.0
                h.leak_cued = False
            if active:
                h.leak_active_s += dt
            if not h.leak_cued and h.leak_active_s >= self.cfg.leak_min_s:
                h.leak_cued = True
                cues.append(Cue(t_s, "agent", "alert", "Caller may hear you on hold",
                                HoldLeak(start_s=round(h.leak_start_s, 3),
                                         end_s=round(t_s, 3))))
        elif h.leak_start_s is not None:
            self._close_leak(h, t0_s)
        return cues

    @staticmethod
    def _close_leak(h: _Hold, end_s: float) -> None:
        if h.leak_cued and h.leak_start_s is not None:
            h.leaks.append((round(h.leak_start_s, 3), round(end_s, 3)))
        h.leak_start_s = None
        h.leak_active_s = 0.0
        h.leak_cued = False

    def _timers(self, h: _Hold, t_s: float) -> list[Cue]:
        held = t_s - h.start_s
        if not h.check_back_cued and held >= self.cfg.check_back_s:
            h.check_back_cued = True
            return [Cue(t_s, "agent", "warn", f"{held:.0f} s on hold: check back with the caller",
                        HoldCheckBack(start_s=round(h.start_s, 3), held_s=round(held, 1)))]
        if not h.too_long_cued and held >= self.cfg.too_long_s:
            h.too_long_cued = True
            return [Cue(t_s, "agent", "alert",
                        f"Hold over {self.cfg.too_long_s:.0f} s: return to the caller",
                        HoldTooLong(start_s=round(h.start_s, 3), held_s=round(held, 1)))]
        return []

    def _start(self, start_s: float, t_s: float, via: HoldVia) -> list[Cue]:
        self._hold = _Hold(start_s=start_s, via=via)
        return [Cue(t_s, "agent", "info", "On hold",
                    HoldStarted(start_s=round(start_s, 3), via=via))]

    def _end(self, end_s: float, t_s: float, *, open_at_end: bool = False) -> list[Cue]:
        h = self._hold
        assert h is not None
        if h.leak_start_s is not None:
            self._close_leak(h, end_s)
        self._hold = None
        self._music_run_start_s = None
        self._last_music_s = None
        self._music_gap_needed = True
        held = max(0.0, end_s - h.start_s)
        record = HoldEnded(
            start_s=round(h.start_s, 3),
            end_s=round(end_s, 3),
            duration_s=round(held, 1),
            hold_type=h.hold_type() or "muted",
            via=h.via,
            leak_spans_s=tuple(h.leaks),
            open_mic=h.unmuted_cued,
            open_at_end=open_at_end,
        )
        self.holds.append(record)
        return [Cue(t_s, "agent", "info", f"Hold ended after {held:.0f} s", record)]

    def close(self, t_s: float) -> list[Cue]:
        """End of the call: a hold still running ends here."""
        if self._hold is None:
            return []
        marked = "marks" in self._hold.via
        start = self._hold.start_s
        cues = self._end(t_s, t_s, open_at_end=True)
        if marked:
            log.warning("the hold marked at %.1f s has no hold_end: it runs to the end of the "
                        "call (%.1f s)", start, t_s)
        return cues
