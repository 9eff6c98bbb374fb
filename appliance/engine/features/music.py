"""Streaming hold-music detector on :class:`~appliance.engine.features.extractor.FeatureFrames`.

Hold music is *continuously tonal*: notes and chords hold their partials for hundreds of
milliseconds and follow each other without gaps, also when the music is quiet, band-limited
and mu-law coded.  Speech is tonal only in short voiced stretches whose harmonics glide
with the pitch, broken by consonants and pauses every syllable; room noise, typing and
digital silence have no stable spectral peaks at all.  The detector uses two classic
discriminators over a sliding window (default 2 s):

* **tonal fraction** -- share of hops whose spectral fine structure persists over 40 ms
  (``FeatureFrames.tonality`` >= ``tonal_threshold``; this is the "tonality / pitch
  stability over 80 ms" cue and works for chords, where a single pitch does not);
* **low-energy-frame ratio** -- share of hops with power below ``low_energy_ratio`` times
  the window's mean power (speech ~0.5, music < 0.45): a mild penalty above
  ``low_energy_knee``.

``music_prob = sigmoid(tonal_gain * (tonal_frac - tonal_center)
- low_energy_gain * max(0, lefr - low_energy_knee))``.  The flag switches on when the
probability reaches ``on_prob`` and off when it falls below ``off_prob``, or at once when
the tonal fraction of the last ``release_s`` seconds drops under ``release_fraction``
(continuity: the music stopped).

Latency (10 ms hops, defaults; ``decision_latency_s`` / ``release_latency_s``): music that
starts after speech or noise is flagged after ~1.0 s (fully tonal music) to ~1.2 s (music
with percussion, ~85 % tonal hops).  After the music stops the flag drops after ~0.5 s
(release window), at the latest ~1.2 s (when what follows is itself partly tonal).

Limits: music dominated by percussion (under ~half the hops tonal) is not flagged; a
continuous steady tone (ringback, a whistle) longer than ~1 s would be.

The window statistics are exact running sums over ring buffers (integer counts; the float
power sum is re-summed once per window), so the result does not depend on chunking.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from appliance.engine.features.extractor import FeatureFrames

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]


class MusicDetector:
    """Per-hop hold-music flag; ``music_prob`` holds the last call's probabilities.

    The window statistics are running sums over ring buffers, updated in a scalar loop of
    ~20 float operations per 10 ms hop (the hysteresis is sequential anyway).
    """

    def __init__(
        self,
        *,
        hop_s: float = 0.01,
        window_s: float = 2.0,
        tonal_threshold: float = 0.5,
        tonal_center: float = 0.45,
        tonal_gain: float = 12.0,
        low_energy_ratio: float = 0.5,
        low_energy_knee: float = 0.4,
        low_energy_gain: float = 6.0,
        on_prob: float = 0.6,
        off_prob: float = 0.4,
        release_s: float = 0.5,
        release_fraction: float = 0.1,
    ) -> None:
        self.hop_s = hop_s
        self._w = max(2, round(window_s / hop_s))
        self._wr = min(self._w, max(1, round(release_s / hop_s)))
        self.tonal_threshold = tonal_threshold
        self.tonal_center = tonal_center
        self.tonal_gain = tonal_gain
        self.low_energy_ratio = low_energy_ratio
        self.low_energy_knee = low_energy_knee
        self.low_energy_gain = low_energy_gain
        self.on_prob = on_prob
        self.off_prob = off_prob
        self.release_fraction = release_fraction
        self.reset()

    def reset(self) -> None:
        w = self._w
        self._tonal = [0] * w  # ring buffers, index = hop count mod w
        self._power = [0.0] * w
        self._low = [0] * w
        self._pos = 0
        self._tonal_sum = 0
        self._tonal_sum_r = 0
        self._low_sum = 0
        self._power_sum = 0.0
        self.is_music = False
        self.music_prob: FloatArray = np.zeros(0)

    @property
    def decision_latency_s(self) -> float:
        """Nominal time of fully tonal music (after non-music) to switch the flag on."""
        z = float(np.log(self.on_prob / (1.0 - self.on_prob))) / self.tonal_gain
        return (self.tonal_center + z) * self._w * self.hop_s

    @property
    def release_latency_s(self) -> float:
        """Nominal time after the music stops until the flag drops (continuity rule)."""
        return (1.0 - self.release_fraction) * self._wr * self.hop_s

    def process(self, frames: FeatureFrames) -> BoolArray:
        """Consume hops; return ``is_music`` per hop (also sets ``music_prob``)."""
        n = len(frames)
        if n == 0:
            self.music_prob = np.zeros(0)
            return np.zeros(0, dtype=bool)
        tonal_in = (frames.tonality >= self.tonal_threshold).tolist()
        power_in = (10.0 ** (0.1 * frames.level_dbfs)).tolist()
        w, wr = self._w, self._wr
        inv_w = 1.0 / w
        tonal, power, low = self._tonal, self._power, self._low
        pos, ts, tsr, ls, ps = (
            self._pos, self._tonal_sum, self._tonal_sum_r, self._low_sum, self._power_sum)
        state = self.is_music
        ratio, center, gain = self.low_energy_ratio * inv_w, self.tonal_center, self.tonal_gain
        knee, lgain = self.low_energy_knee, self.low_energy_gain
        on_p, off_p, rel = self.on_prob, self.off_prob, self.release_fraction * wr
        probs: list[float] = []
        flags: list[bool] = []
        for t_new, p_new in zip(tonal_in, power_in, strict=True):
            t_int = int(t_new)
            ts += t_int - tonal[pos]
            tsr += t_int - tonal[(pos - wr) % w]
            tonal[pos] = t_int
            ps += p_new - power[pos]
            power[pos] = p_new
            lo = int(p_new < ratio * ps)
            ls += lo - low[pos]
            low[pos] = lo
            pos += 1
            if pos == w:  # re-sum the float ring once per window: no drift
                pos = 0
                ps = sum(power)
            z = gain * (ts * inv_w - center) - lgain * max(0.0, ls * inv_w - knee)
            prob = 1.0 / (1.0 + math.exp(-z)) if z > -700.0 else 0.0
            if prob < off_p or tsr < rel:
                state = False
            elif prob >= on_p:
                state = True
            probs.append(prob)
            flags.append(state)
        self._pos, self._tonal_sum, self._tonal_sum_r, self._low_sum, self._power_sum = (
            pos, ts, tsr, ls, ps)
        self.is_music = state
        self.music_prob = np.array(probs)
        return np.array(flags, dtype=bool)
