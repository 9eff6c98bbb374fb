"""The level meter and its judgement: pure functions over the captured samples.

Samples are int16 (full scale 32768) or float (full scale 1.0).  Levels are dBFS: RMS and
peak relative to full scale (a full-scale sine has an RMS of -3 dBFS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from appliance.doctor.check import Check, Status, worst

NAME = "audio levels"
CLIP_AT = 32700 / 32768
"""A sample at or above this fraction of full scale counts as clipped."""
CLIP_SHARE = 0.01
"""More than this share of clipped samples is clipping."""
LOW_PEAK_DBFS = -50.0
"""A party whose peak stays below this over the listen is very quiet."""
SAME_CORRELATION = 0.98
"""Two channels this correlated, at the same level, carry the same signal."""
SAME_LEVEL_DB = 1.0
METER_FLOOR_DBFS = -60.0
METER_CELLS = 10


@dataclass(frozen=True, slots=True)
class PartyLevel:
    """What the meter shows for one party over the listen."""

    party: str
    rms_dbfs: float
    peak_dbfs: float
    clipped_share: float
    digital_silence: bool
    samples: int


def _unit(x: np.ndarray) -> np.ndarray:
    y = np.asarray(x)
    if np.issubdtype(y.dtype, np.integer):
        return y.astype(np.float64) / 32768.0
    return y.astype(np.float64)


def _db(v: float) -> float:
    return 20.0 * math.log10(v) if v > 0 else -math.inf


def measure(party: str, x: np.ndarray) -> PartyLevel:
    """RMS, peak, clipped share and digital silence of one party's samples."""
    y = _unit(x).ravel()
    if y.size == 0:
        return PartyLevel(party, -math.inf, -math.inf, 0.0, True, 0)
    a = np.abs(y)
    rms = float(np.sqrt(np.mean(y * y)))
    return PartyLevel(party, _db(rms), _db(float(a.max())), float(np.mean(a >= CLIP_AT)),
                      not bool(np.any(y)), int(y.size))


def meter(level: PartyLevel) -> str:
    """``agent      -23.4 dBFS rms   -3.1 peak  ▇▇▇▇▇▇░░░░``"""
    filled = 0
    if level.rms_dbfs > METER_FLOOR_DBFS:
        frac = (level.rms_dbfs - METER_FLOOR_DBFS) / -METER_FLOOR_DBFS
        filled = min(METER_CELLS, max(1, round(frac * METER_CELLS)))
    bar = "▇" * filled + "░" * (METER_CELLS - filled)
    rms = f"{level.rms_dbfs:6.1f}" if math.isfinite(level.rms_dbfs) else "  -inf"
    peak = f"{level.peak_dbfs:6.1f}" if math.isfinite(level.peak_dbfs) else "  -inf"
    return f"{level.party:<9}{rms} dBFS rms {peak} peak  {bar}"


def same_signal(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two channels carry one signal (a mono device, a splitter not wired)."""
    x, y = _unit(a).ravel(), _unit(b).ravel()
    n = min(x.size, y.size)
    if n == 0:
        return False
    x, y = x[:n], y[:n]
    if np.array_equal(x, y):
        return bool(np.any(x))
    sx, sy = float(np.std(x)), float(np.std(y))
    if sx == 0 or sy == 0:
        return False
    corr = float(np.mean((x - x.mean()) * (y - y.mean())) / (sx * sy))
    return corr >= SAME_CORRELATION and abs(_db(sx) - _db(sy)) <= SAME_LEVEL_DB


def judge_levels(agent: np.ndarray, customer: np.ndarray, seconds: float | None = None,
                 context: str = "") -> Check:
    """The "audio levels" check over what was captured: digital silence, clipping, very low
    level, and both channels carrying the same signal; the meter lines as notes."""
    levels = [measure("agent", agent), measure("customer", customer)]
    found: list[tuple[Status, str, str]] = []
    silent = [lv.party for lv in levels if lv.digital_silence]
    if silent:
        who = " and ".join(silent)
        found.append(("fail", f"{who}: digital silence (every sample is zero)",
                      f"{who}: muted or wrong channel/device: check the mute switch, the "
                      "splitter cable, and [audio] agent_channel / customer_channel (or "
                      "agent_device / customer_device)"))
    for lv in levels:
        if lv.digital_silence:
            continue
        if lv.clipped_share > CLIP_SHARE:
            found.append(("warn", f"{lv.party}: clipping ({lv.clipped_share:.1%} of samples "
                          "at full scale)",
                          f"{lv.party}: lower the input gain (alsamixer, or the splitter's "
                          "gain) until the peaks stay below about -3 dBFS"))
        if lv.peak_dbfs < LOW_PEAK_DBFS:
            found.append(("warn", f"{lv.party}: very low level (peak {lv.peak_dbfs:.1f} dBFS)",
                          f"{lv.party}: speak (or have a call running) during the listen; "
                          "if it stays this low, raise the input gain (alsamixer) or check "
                          "the cable"))
    if not any(lv.digital_silence for lv in levels) and same_signal(agent, customer):
        found.append(("fail", "mono device or splitter not wired: agent and customer are "
                      "the same signal",
                      "use a stereo input with the splitter (agent on one channel, customer "
                      "on the other), or wiring = \"two_devices\" with one device per party"))
    took = f"listened {seconds:.1f} s: " if seconds is not None else ""
    notes = [meter(lv) for lv in levels]
    if context:
        notes.append(context)
    if not found:
        return Check(NAME, "ok", f"{took}both parties have signal, no clipping, the two "
                     "channels differ", "", tuple(notes))
    status = worst([s for s, _, _ in found])
    return Check(NAME, status, took + "; ".join(d for _, d, _ in found),
                 "; ".join(f for _, _, f in found), tuple(notes))
