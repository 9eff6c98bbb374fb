"""Streaming syllable-nucleus detector (after de Jong & Wempe 2009).

The Praat script of de Jong & Wempe counts syllables as peaks of the intensity contour
that (a) stand out by at least ~2 dB from the dips on both sides, (b) are above a silence
threshold set relative to the loudest part of the recording and (c) are voiced.  This is
the streaming version, on :class:`~appliance.features.extractor.FeatureFrames`:

* envelope = ``band_db`` (300-2500 Hz, so it behaves the same on telephone audio), averaged
  in the power domain over ``smooth_hops`` hops;
* hysteresis peak picking: a peak is *confirmed* once the envelope has fallen
  ``prominence_db`` below it, provided it rose ``prominence_db`` above the dip before it;
* a confirmed peak counts as a nucleus if it is voiced (a pitch in the peak hop or the
  two before it), at least ``noise_margin_db`` above the running band noise floor, and
  no more than ``max_drop_db`` below the recent maximum of the envelope (a peak hold that
  decays ``max_decay_db_per_s``).

Latency: a nucleus is reported in the call that processes the hop where the envelope has
fallen ``prominence_db`` below the peak, i.e. at the start of the dip after the vowel
(typically 30-150 ms after the peak).  There is no fixed upper bound: a level that never
falls is never a syllable.  The reported time is the estimated centre of the peak window
(hop end minus half the 40 ms window minus the smoothing delay).
"""

from __future__ import annotations

import numpy as np

from appliance.features.extractor import FeatureFrames

_VOICED_LOOKBACK = 3  # hops (peak hop and the two before it)


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
        self._time_offset_s = window_s / 2 + (smooth_hops - 1) / 2 * hop_s
        self.reset()

    def reset(self) -> None:
        self._pow_hist = np.zeros(self.smooth_hops - 1)
        self._voiced_hist = np.zeros(_VOICED_LOOKBACK - 1, dtype=bool)
        self._max_db = -np.inf
        # hysteresis state
        self._rising = False  # start by looking for a dip: no peak before the first dip
        self._dip = np.inf  # lowest envelope since the last confirmed peak
        self._peak = -np.inf  # candidate peak value
        self._peak_t = 0.0
        self._peak_ok = False  # candidate passes the voicing / level checks

    def process(self, frames: FeatureFrames) -> list[float]:
        """Consume hops; return the times (s) of the nuclei confirmed by them."""
        n = len(frames)
        if n == 0:
            return []
        m = self.smooth_hops
        p = np.concatenate([self._pow_hist, 10.0 ** (frames.band_db / 10.0)])
        if m > 1:
            c = np.concatenate([[0.0], np.cumsum(p)])
            env_p = (c[m:] - c[:-m]) / m
            self._pow_hist = p[-(m - 1) :]
        else:
            env_p = p
        env = 10.0 * np.log10(np.maximum(env_p, 1e-12))
        v = np.concatenate([self._voiced_hist, ~np.isnan(frames.f0_hz)])
        voiced = v[2:] | v[1:-1] | v[:-2]
        self._voiced_hist = v[-(_VOICED_LOOKBACK - 1) :]
        # recent maximum: y[k] = max(env[k], y[k-1] - decay)
        steps = np.arange(1, n + 1) * self._decay
        mx = np.maximum(np.maximum.accumulate(env + steps), self._max_db) - steps
        self._max_db = float(mx[-1])
        ok = (
            voiced
            & (env >= frames.band_floor_db + self.noise_margin_db)
            & (env >= mx - self.max_drop_db)
        )
        return self._pick(env.tolist(), ok.tolist(), frames.t_s.tolist())

    def _pick(self, env: list[float], ok: list[bool], t_s: list[float]) -> list[float]:
        prom = self.prominence_db
        out: list[float] = []
        rising, dip, peak, peak_t, peak_ok = (
            self._rising, self._dip, self._peak, self._peak_t, self._peak_ok)
        for e, good, t in zip(env, ok, t_s, strict=True):
            if rising:
                if e > peak:
                    peak, peak_t, peak_ok = e, t, good
                elif e <= peak - prom:
                    if peak_ok and peak - dip >= prom:
                        out.append(peak_t - self._time_offset_s)
                    rising, dip = False, e
            elif e < dip:
                dip = e
            elif e >= dip + prom:
                rising, peak, peak_t, peak_ok = True, e, t, good
        self._rising, self._dip, self._peak, self._peak_t, self._peak_ok = (
            rising, dip, peak, peak_t, peak_ok)
        return out
