"""Streaming syllable-nucleus detector (after de Jong & Wempe 2009).

The Praat script of de Jong & Wempe counts syllables as peaks of the intensity contour
that (a) stand out by at least ~2 dB from the dips on both sides, (b) are above a silence
threshold set relative to the loudest part of the recording and (c) are voiced.  This is
the streaming version, on :class:`~appliance.engine.features.extractor.FeatureFrames`:

* envelope = ``band_db`` (300-2500 Hz, so it behaves the same on telephone audio),
  averaged over the last ``smooth_hops`` hops (30 ms);
* hysteresis peak picking: a peak is *confirmed* once the envelope has fallen
  ``prominence_db`` below it, and it must have risen ``prominence_db`` above the dip
  before it;
* a confirmed peak counts as a nucleus if it is voiced (a pitch in the peak hop or one
  of the two before it), at least ``noise_margin_db`` above the running band noise floor
  (``band_floor_db``), and no more than ``max_drop_db`` below the recent maximum of the
  envelope (a peak hold that decays ``max_decay_db_per_s``).

Latency: a nucleus is reported by the call that processes the hop where the envelope has
fallen ``prominence_db`` below the peak, i.e. at the start of the dip after the vowel
(typically 30-150 ms after the peak).  There is no fixed upper bound: a level that never
falls (a held note) is never a syllable.  The reported time is the estimated centre of
the peak: the hop end minus half the 40 ms window minus the smoothing delay.

The envelope recursion is inherently sequential, so it runs as a scalar loop of a dozen
float operations per 10 ms hop (~2 us); the state is a handful of floats.
"""

from __future__ import annotations

import numpy as np

from appliance.engine.features.extractor import FeatureFrames


class NucleiDetector:
    """Streaming syllable-nucleus detector; ``process`` returns the confirmed times."""

    def __init__(
        self,
        *,
        hop_s: float = 0.01,
        window_s: float = 0.04,
        smooth_hops: int = 3,
        prominence_db: float = 2.0,
        noise_margin_db: float = 10.0,
        max_drop_db: float = 25.0,
        max_decay_db_per_s: float = 6.0,
    ) -> None:
        if smooth_hops < 1:
            raise ValueError("smooth_hops must be >= 1")
        self.hop_s = hop_s
        self.smooth_hops = smooth_hops
        self.prominence_db = prominence_db
        self.noise_margin_db = noise_margin_db
        self.max_drop_db = max_drop_db
        self._decay = max_decay_db_per_s * hop_s
        self.time_offset_s = window_s / 2 + (smooth_hops - 1) / 2 * hop_s
        self.reset()

    def reset(self) -> None:
        self._hist: list[float] = []  # last smooth_hops band levels (dB)
        self._voiced_run = 99  # hops since the last voiced hop
        self._max_db = -np.inf
        self._rising = False  # start by looking for a dip: no peak before the first dip
        self._dip = np.inf
        self._peak = -np.inf
        self._peak_t = 0.0
        self._peak_ok = False  # candidate passes the voicing / level checks
        self.count = 0  # nuclei reported since the start / reset

    def process(self, frames: FeatureFrames) -> list[float]:
        """Consume hops; return the times (s) of the nuclei confirmed by them."""
        if len(frames) == 0:
            return []
        band = frames.band_db.tolist()
        floor = frames.band_floor_db.tolist()
        voiced_hops = (frames.f0_hz == frames.f0_hz).tolist()  # not NaN
        times = frames.t_s.tolist()
        m = self.smooth_hops
        prom, margin, drop, decay = (
            self.prominence_db, self.noise_margin_db, self.max_drop_db, self._decay)
        hist = self._hist
        run, mx = self._voiced_run, self._max_db
        rising, dip, peak, peak_t, peak_ok = (
            self._rising, self._dip, self._peak, self._peak_t, self._peak_ok)
        out: list[float] = []
        for b, fl, vo, t in zip(band, floor, voiced_hops, times, strict=True):
            hist.append(b)
            if len(hist) > m:
                del hist[0]
            e = sum(hist) / len(hist)
            run = 0 if vo else run + 1
            mx = max(e, mx - decay)
            if rising:
                if e > peak:
                    peak, peak_t = e, t
                    peak_ok = run < 3 and e >= fl + margin and e >= mx - drop
                elif e <= peak - prom:
                    if peak_ok:
                        out.append(_t_round(peak_t - self.time_offset_s))
                    rising, dip = False, e
            elif e < dip:
                dip = e
            elif e >= dip + prom:
                rising, peak, peak_t = True, e, t
                peak_ok = run < 3 and e >= fl + margin and e >= mx - drop
        self._voiced_run, self._max_db = run, mx
        self._rising, self._dip, self._peak, self._peak_t, self._peak_ok = (
            rising, dip, peak, peak_t, peak_ok)
        self.count += len(out)
        return out


def _t_round(t: float) -> float:
    """Times to the microsecond (the hop grid is 10 ms; this only hides float noise)."""
    return max(0.0, round(t, 6))
