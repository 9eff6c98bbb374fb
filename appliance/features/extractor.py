"""Frame-level acoustic features for one party, computed in 10 ms hops.

:class:`FeatureExtractor` turns a stream of 16 kHz mono int16 chunks of any size into
:class:`FeatureFrames`, one element per *completed* 10 ms hop.  All the complete hops of a
chunk are analysed together with numpy; the only per-call state is the tail of the sample
buffer and the two noise-floor trackers, so the output does not depend on how the stream
was cut into chunks (see ``tests/test_features.py``).

Conventions
-----------
* Hop ``k`` (0-based) covers samples ``[k*H, (k+1)*H)`` with ``H`` = 10 ms.  Its time
  ``t_s`` is the hop *end*, ``(k+1) * 0.010`` s since the stream start.
* The analysis window is causal: the 40 ms that *end* at the hop end (the hop itself and
  the three hops before it).  Before the stream start the buffer holds zeros, so the first
  three hops see a partly empty window (their level reads low).
* Levels are dBFS with full scale 32768 (a full-scale square wave is 0 dBFS, a full-scale
  sine -3.01 dBFS); silence floors at -120 dB.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

FULL_SCALE = 32768.0
FLOOR_DB = -120.0
_FLOOR_POWER = 10.0 ** (FLOOR_DB / 10.0)


@dataclass(frozen=True, slots=True)
class FeatureFrames:
    """Struct of arrays: element ``i`` of every field belongs to the same 10 ms hop.

    Fields (all numpy arrays of the same length, possibly 0):

    * ``t_s`` -- end of the hop, seconds since the stream start (float64).
    * ``level_dbfs`` -- RMS level over the 40 ms analysis window, dBFS, floor -120.
    * ``band_db`` -- level of the 300-2500 Hz band over the same window, dBFS (power of the
      band-limited signal, Hann-weighted), floor -120.  Works on telephone-band audio.
    * ``f0_hz`` -- pitch (60-400 Hz) on voiced hops, NaN when unvoiced.
    * ``voicing`` -- periodicity strength 0..1 (normalised cross-correlation at the
      chosen period, or the best one when unvoiced).
    * ``flatness`` -- spectral flatness 0..1 over 300-3400 Hz (geometric / arithmetic
      mean of the power spectrum; 1 = white noise-like, ~0 = a few pure tones).
    * ``tonality`` -- -1..1, correlation of the spectral fine structure (log spectrum
      minus its ~250 Hz moving average, 300-3400 Hz) with that of the window 40 ms
      earlier: ~1 for sustained notes, ~0 for noise and transients.
    * ``flux`` -- spectral flux 0..2: squared distance between the unit-norm magnitude
      spectra (300-3400 Hz) of this window and the one 40 ms earlier.
    * ``digital_silence`` -- every sample of the hop (the newest 10 ms) is within
      +-2 LSB: a muted microphone or a PBX mute.
    * ``noise_floor_dbfs`` -- running noise floor of ``level_dbfs``: follows a drop at
      once, rises at most ``rise_db_per_s``; frozen during digital silence.
    * ``band_floor_db`` -- the same tracker run on ``band_db``.
    """

    t_s: FloatArray
    level_dbfs: FloatArray
    band_db: FloatArray
    f0_hz: FloatArray
    voicing: FloatArray
    flatness: FloatArray
    tonality: FloatArray
    flux: FloatArray
    digital_silence: BoolArray
    noise_floor_dbfs: FloatArray
    band_floor_db: FloatArray

    def __len__(self) -> int:
        return int(self.t_s.shape[0])

    @staticmethod
    def empty() -> FeatureFrames:
        """Zero hops."""
        z = np.zeros(0)
        return FeatureFrames(z, z, z, z, z, z, z, z, np.zeros(0, dtype=bool), z, z)

    @staticmethod
    def concat(parts: list[FeatureFrames]) -> FeatureFrames:
        """Join consecutive blocks of hops into one (tests, offline analysis)."""
        if not parts:
            return FeatureFrames.empty()
        cols = [np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(FeatureFrames)]
        return FeatureFrames(*cols)


class _FloorTracker:
    """Asymmetric floor tracker: ``y[k] = min(x[k], y[k-1] + rise)``, vectorised.

    Only hops marked valid update it; on the others the previous value is held.  Before
    the first valid hop the output is ``initial``.
    """

    __slots__ = ("_initial", "_rise", "_value")

    def __init__(self, rise_per_hop: float, initial: float = FLOOR_DB) -> None:
        self._rise = rise_per_hop
        self._initial = initial
        self._value = np.inf

    def reset(self) -> None:
        self._value = np.inf

    def update(self, x: FloatArray, valid: BoolArray) -> FloatArray:
        if x.shape[0] == 0:
            return x.copy()
        steps = np.cumsum(valid) * self._rise  # rise allowance since the call start
        shifted = np.where(valid, x - steps, np.inf)
        y = np.minimum(np.minimum.accumulate(shifted), self._value) + steps
        self._value = float(y[-1])
        return np.where(np.isfinite(y), y, self._initial)


class FeatureExtractor:
    """Streaming per-party feature extractor (10 ms hop, causal 40 ms window)."""

    def __init__(
        self,
        sample_rate_hz: int = 16000,
        *,
        f0_min_hz: float = 60.0,
        f0_max_hz: float = 400.0,
        voicing_threshold: float = 0.5,
        octave_ratio: float = 0.9,
        rise_db_per_s: float = 3.0,
        silence_lsb: int = 2,
    ) -> None:
        if sample_rate_hz < 8000 or sample_rate_hz % 100:
            raise ValueError(f"unsupported sample rate {sample_rate_hz} Hz")
        self.sample_rate_hz = sample_rate_hz
        self.hop = sample_rate_hz // 100
        self.win = 4 * self.hop
        self.hop_s = self.hop / sample_rate_hz
        self.voicing_threshold = voicing_threshold
        self.octave_ratio = octave_ratio
        self.silence_lsb = silence_lsb
        sr = float(sample_rate_hz)
        self._lag_min = int(np.ceil(sr / f0_max_hz))
        self._lag_max = int(np.floor(sr / f0_min_hz))
        if self._lag_max + 2 >= self.win // 2:
            raise ValueError("f0_min_hz too low for the 40 ms window")
        # FFT size for the linear autocorrelation up to lag_max + 1.
        self._nfft_acf = 1 << int(np.ceil(np.log2(self.win + self._lag_max + 2)))
        self._hann = np.hanning(self.win + 2)[1:-1]
        self._hann_power = float(np.sum(self._hann**2))
        bin_hz = sr / self.win

        def bins(lo: float, hi: float) -> slice:
            return slice(int(np.ceil(lo / bin_hz)), int(np.floor(hi / bin_hz)) + 1)

        self._band = bins(300.0, 2500.0)
        self._spec = bins(300.0, 3400.0)
        n_spec = self._spec.stop - self._spec.start
        self._smooth_len = max(3, round(250.0 / bin_hz) | 1)
        self._n_fine = n_spec - self._smooth_len + 1
        # Lags 1..lag_max+1 (index 0 = lag 1): window energies for the NCCF.
        lags = np.arange(1, self._lag_max + 2)
        self._lags = lags
        self._e0_idx = self.win - lags  # sum of x[0 : win-lag]
        self._e1_idx = lags  # sum of x[lag : win] = c[win] - c[lag]
        self._floor_level = _FloorTracker(rise_db_per_s * self.hop_s)
        self._floor_band = _FloorTracker(rise_db_per_s * self.hop_s)
        self._lookback = 4  # hops between the windows compared by tonality and flux
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget the stream: zeros before the next sample, trackers re-initialised."""
        # History: win + 1 samples (one extra for the first difference) + pending samples.
        self._buf = np.zeros(self.win + 1, dtype=np.float64)
        self._n_hops = 0
        self._prev_fine = np.zeros((self._lookback, self._n_fine))
        self._prev_mag = np.zeros((self._lookback, self._spec.stop - self._spec.start))
        self._floor_level.reset()
        self._floor_band.reset()

    @property
    def time_s(self) -> float:
        """End time of the last completed hop."""
        return self._n_hops * self.hop_s

    # --------------------------------------------------------------- process
    def process(self, chunk: npt.NDArray[np.int16]) -> FeatureFrames:
        """Append ``chunk`` (int16 samples, any length) and analyse every completed hop."""
        x = np.concatenate([self._buf, np.asarray(chunk, dtype=np.float64).ravel()])
        hist = self.win + 1
        n = (x.shape[0] - hist) // self.hop
        if n <= 0:
            self._buf = x
            return FeatureFrames.empty()
        used = hist + n * self.hop
        # hop i of this call ends at x[hist + (i+1)*hop]; its frame starts (i+1)*hop.
        frames = np.lib.stride_tricks.sliding_window_view(x[:used], hist)[self.hop :: self.hop]
        self._buf = x[used - hist :]
        k0 = self._n_hops
        self._n_hops += n
        t_s = (np.arange(k0 + 1, k0 + n + 1, dtype=np.float64)) * self.hop_s
        return self._analyse(frames, t_s, k0)

    def _analyse(self, frames: FloatArray, t_s: FloatArray, k0: int) -> FeatureFrames:
        win, hop = self.win, self.hop
        raw = frames[:, 1:]
        # ---- level and digital silence
        power = np.sum(raw * raw, axis=1) / (win * FULL_SCALE**2)
        level = 10.0 * np.log10(np.maximum(power, _FLOOR_POWER))
        silent = np.max(np.abs(raw[:, -hop:]), axis=1) <= self.silence_lsb
        # ---- spectrum (Hann, 40 ms)
        spec = np.abs(np.fft.rfft(raw * self._hann, axis=1)) ** 2
        scale = 2.0 / (self._hann_power * win * FULL_SCALE**2)  # -> mean-square re FS
        band_p = np.sum(spec[:, self._band], axis=1) * scale
        band_db = 10.0 * np.log10(np.maximum(band_p, _FLOOR_POWER))
        sp = spec[:, self._spec] * scale + 1e-14
        logsp = np.log(sp)
        flatness = np.exp(np.mean(logsp, axis=1)) / np.mean(sp, axis=1)
        tonality, flux = self._tonality_flux(logsp, np.sqrt(sp))
        # ---- pitch
        f0, voicing = self._pitch(frames)
        # ---- noise floors (warm-up hops with a partly empty window are ignored)
        valid = ~silent & (np.arange(k0, k0 + t_s.shape[0]) >= 3)
        nf = self._floor_level.update(level, valid)
        bf = self._floor_band.update(band_db, valid)
        return FeatureFrames(
            t_s=t_s,
            level_dbfs=level,
            band_db=band_db,
            f0_hz=f0,
            voicing=voicing,
            flatness=flatness,
            tonality=tonality,
            flux=flux,
            digital_silence=silent,
            noise_floor_dbfs=nf,
            band_floor_db=bf,
        )

    def _tonality_flux(self, logsp: FloatArray, mag: FloatArray) -> tuple[FloatArray, FloatArray]:
        m, lb = self._smooth_len, self._lookback
        c = np.cumsum(logsp, axis=1)
        c = np.concatenate([np.zeros((c.shape[0], 1)), c], axis=1)
        smooth = (c[:, m:] - c[:, :-m]) / m
        fine = logsp[:, m // 2 : m // 2 + smooth.shape[1]] - smooth
        fine = fine - np.mean(fine, axis=1, keepdims=True)
        fine = fine / np.maximum(np.sqrt(np.sum(fine * fine, axis=1, keepdims=True)), 1e-9)
        unit = mag / np.sqrt(np.sum(mag * mag, axis=1, keepdims=True))
        all_fine = np.concatenate([self._prev_fine, fine])
        all_unit = np.concatenate([self._prev_mag, unit])
        self._prev_fine = all_fine[-lb:]
        self._prev_mag = all_unit[-lb:]
        tonality = np.sum(all_fine[lb:] * all_fine[:-lb], axis=1)
        d = all_unit[lb:] - all_unit[:-lb]
        flux = np.sum(d * d, axis=1)
        return tonality, flux

    def _pitch(self, frames: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Normalised cross-correlation pitch on the first difference of the window.

        Differencing removes DC and the low-frequency rumble of brown/pink room noise,
        which would otherwise look periodic at short lags.  The chosen period is the
        *shortest* lag whose NCCF peak reaches ``octave_ratio`` of the best one, which
        avoids the sub-harmonic (octave-down) error; a missing fundamental (telephone
        band) does not matter because the harmonics still repeat with the period.
        """
        win = self.win
        d = frames[:, 1:] - frames[:, :-1]
        spec = np.fft.rfft(d, n=self._nfft_acf, axis=1)
        acf = np.fft.irfft(spec.real**2 + spec.imag**2, n=self._nfft_acf, axis=1)
        r = acf[:, 1 : self._lag_max + 2]  # lags 1..lag_max+1
        c = np.concatenate([np.zeros((d.shape[0], 1)), np.cumsum(d * d, axis=1)], axis=1)
        e0 = c[:, self._e0_idx]
        e1 = c[:, win : win + 1] - c[:, self._e1_idx]
        nccf = r / np.sqrt(e0 * e1 + 1e-9)
        # candidate lags lag_min..lag_max (need neighbours at +-1)
        lo = self._lag_min - 1  # index of lag_min
        hi = self._lag_max - 1  # index of lag_max
        mid = nccf[:, lo : hi + 1]
        left = nccf[:, lo - 1 : hi]
        right = nccf[:, lo + 1 : hi + 2]
        best = np.max(mid, axis=1)
        peak = (mid > left) & (mid >= right)
        thresh = np.maximum(self.voicing_threshold, self.octave_ratio * best)
        cand = peak & (mid >= thresh[:, None])
        voiced = np.any(cand, axis=1)
        first = np.argmax(cand, axis=1)
        rows = np.arange(mid.shape[0])
        y0, y1, y2 = left[rows, first], mid[rows, first], right[rows, first]
        denom = y0 - 2.0 * y1 + y2
        safe = np.where(denom < -1e-12, denom, -1.0)
        offset = np.clip(0.5 * (y0 - y2) / safe, -0.5, 0.5)
        lag = first + self._lag_min + offset
        f0 = np.where(voiced, self.sample_rate_hz / lag, np.nan)
        voicing = np.clip(np.where(voiced, y1, best), 0.0, 1.0)
        return f0, voicing
