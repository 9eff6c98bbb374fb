"""Frame-level acoustic features for one party, computed in 10 ms hops.

:class:`FeatureExtractor` turns a stream of 16 kHz mono int16 chunks of any size into
:class:`FeatureFrames`, one element per *completed* 10 ms hop (or several streams in step:
``channels=2`` for the two parties of a call, one :class:`FeatureFrames` each).  All the
complete hops of a chunk are analysed together with numpy (one FFT pair per hop serves the
spectrum and the pitch); the only state between calls is the tail of the sample buffer,
the noise-floor trackers and the fine structure of the last four spectra, so the output
does not depend on how the stream was cut into chunks (``tests/test_features.py`` checks it).

Conventions
-----------
* Hop ``k`` (0-based) covers samples ``[k*H, (k+1)*H)`` with ``H`` = 10 ms.  Its time
  ``t_s`` is the hop *end*, ``(k+1) * 0.010`` s since the stream start.
* The analysis window is causal: the 40 ms that *end* at the hop end (the hop itself and
  the three hops before it), so a window's centre is ``t_s - 0.020``.  Before the stream
  start the buffer holds zeros: the first three hops see a partly empty window.
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
_SPEC_EPS = 1e-14  # added to the normalised power spectrum before logs (-140 dB)
_LOOKBACK = 4  # hops between the two windows compared by ``tonality`` (no overlap)
_WARMUP = 3  # hops whose window still reaches before the stream start
_T_TABLE = 4096  # precomputed noise-floor rise steps (longer calls compute them)


@dataclass(frozen=True, slots=True)
class FeatureFrames:
    """Struct of arrays: element ``i`` of every field belongs to the same 10 ms hop.

    Fields (numpy arrays of one common length, possibly 0):

    * ``t_s`` -- end of the hop, seconds since the stream start (float64).
    * ``level_dbfs`` -- RMS level over the 40 ms analysis window, dBFS, floor -120.
    * ``band_db`` -- level of the 300-2500 Hz band over the same (Hann) window, dBFS,
      floor -120; the envelope used for syllable nuclei, fine on telephone audio.
    * ``f0_hz`` -- pitch (60-400 Hz) on voiced hops, NaN when unvoiced.
    * ``voicing`` -- periodicity strength 0..1 (normalised autocorrelation at the chosen
      period, or at the best lag when unvoiced).
    * ``flatness`` -- spectral flatness 0..1 over 300-3400 Hz (geometric / arithmetic mean
      of the power spectrum): ~0.56 white noise, ~0.2 brown noise, ~0 tones, 1 silence.
    * ``tonality`` -- -1..1: correlation of the spectral fine structure (log spectrum minus
      its 250 Hz moving average, 300-3400 Hz) with that of the window 40 ms earlier;
      ~1 for sustained notes, ~0 for noise, transients and gliding speech harmonics.
    * ``digital_silence`` -- every sample of the hop (its newest 10 ms) is within
      +-``silence_lsb`` (2 LSB): a muted microphone or a PBX mute.
    * ``noise_floor_dbfs`` -- running floor of ``level_dbfs``: follows a drop at once,
      rises at most ``rise_db_per_s`` (2 dB/s); held during digital silence.  -120 until
      the first non-silent complete window.
    * ``band_floor_db`` -- the same tracker on ``band_db``.
    """

    t_s: FloatArray
    level_dbfs: FloatArray
    band_db: FloatArray
    f0_hz: FloatArray
    voicing: FloatArray
    flatness: FloatArray
    tonality: FloatArray
    digital_silence: BoolArray
    noise_floor_dbfs: FloatArray
    band_floor_db: FloatArray

    def __len__(self) -> int:
        return int(self.t_s.shape[0])

    @staticmethod
    def empty() -> FeatureFrames:
        """Zero hops."""
        z = np.zeros(0)
        return FeatureFrames(z, z, z, z, z, z, z, np.zeros(0, dtype=bool), z, z)

    @staticmethod
    def concat(parts: list[FeatureFrames]) -> FeatureFrames:
        """Join consecutive blocks of hops into one (tests, offline analysis)."""
        if not parts:
            return FeatureFrames.empty()
        return FeatureFrames(*(np.concatenate([getattr(p, n) for p in parts])
                               for n in _FIELD_NAMES))

    def slice(self, start: int, stop: int) -> FeatureFrames:
        """Hops ``start:stop``."""
        return FeatureFrames(*(getattr(self, n)[start:stop] for n in _FIELD_NAMES))


_FIELD_NAMES = tuple(f.name for f in fields(FeatureFrames))


class FeatureExtractor:
    """Streaming feature extractor (10 ms hop, causal 40 ms window).

    One extractor analyses ``channels`` streams in step (the two parties of a call): their
    hops go through the same numpy calls, which halves the per-call overhead that dominates
    at 3-4 hops per 32 ms frame.  Every operation is row-wise, so each channel's frames are
    bit-identical to those of an extractor of its own (``tests/test_features.py``).
    """

    def __init__(
        self,
        sample_rate_hz: int = 16000,
        *,
        f0_min_hz: float = 60.0,
        f0_max_hz: float = 400.0,
        voicing_threshold: float = 0.5,
        octave_ratio: float = 0.9,
        rise_db_per_s: float = 2.0,
        silence_lsb: int = 2,
        channels: int = 1,
    ) -> None:
        if channels < 1:
            raise ValueError("channels must be >= 1")
        if sample_rate_hz < 8000 or sample_rate_hz % 100:
            raise ValueError(f"unsupported sample rate {sample_rate_hz} Hz")
        self.sample_rate_hz = sample_rate_hz
        self.channels = channels
        self.hop = sample_rate_hz // 100
        self.win = 4 * self.hop
        self.hop_s = self.hop / sample_rate_hz
        self.silence_lsb = silence_lsb
        self._rise = rise_db_per_s * self.hop_s
        nfft = 1 << int(np.ceil(np.log2(self.win * 1.6)))  # room for lags to 0.6 window
        self._nfft = nfft
        hann = np.hanning(self.win + 2)[1:-1]
        self._hann = hann
        bin_hz = sample_rate_hz / nfft
        lo = int(np.ceil(300.0 / bin_hz))
        hi = int(np.floor(3400.0 / bin_hz)) + 1
        # one-sided power spectrum scaled so that a band's sum is its mean square re FS,
        # divided by the power response of the first difference
        diff_gain = (2.0 * np.sin(np.pi * np.arange(lo, hi) / nfft)) ** 2
        self._pscale = 2.0 / (float(np.sum(hann**2)) * nfft * FULL_SCALE**2) / diff_gain
        band_hi = int(np.floor(2500.0 / bin_hz)) + 1
        self._spec = slice(lo, hi)
        n_spec = hi - lo
        # linear maps on the spectrum slice: [mean, band sum] of the power and
        # [mean, centred fine structure] of the log power
        self._power_map = np.zeros((n_spec, 2))
        self._power_map[: band_hi - lo, 1] = 1.0
        self._eps_band = np.array([0.0, _SPEC_EPS * (band_hi - lo)])
        # flatness and fine structure use every other bin (the 40 ms Hann window resolves
        # ~50 Hz; the zero-padded FFT interpolates)
        n_sub = (n_spec + 1) // 2
        self._log_map = _log_map(n_sub, max(3, round(250.0 / (2 * bin_hz)) | 1))
        self._inv_n_sub = 1.0 / n_sub
        # column 0: rectangular window mean square, column 1: band (already scaled)
        self._level_scale = np.array([1.0 / (self.win * FULL_SCALE**2), 1.0])
        self._rise_steps = (np.arange(1, _T_TABLE + 1) * self._rise)[:, None]
        self._pitch = _Pitch(
            sample_rate_hz,
            self.win,
            nfft,
            hann,
            f0_min_hz=f0_min_hz,
            f0_max_hz=f0_max_hz,
            voicing_threshold=voicing_threshold,
            octave_ratio=octave_ratio,
        )
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Forget the stream: zeros before the next sample, trackers re-initialised."""
        c = self.channels
        self._buf = np.zeros((c, self.win + 1), dtype=np.float64)  # history + pending
        self._n_hops = 0
        n_fine = self._log_map.shape[1] - 1
        self._prev_fine = np.zeros((c, _LOOKBACK, n_fine))
        self._prev_ss = np.zeros((c, _LOOKBACK))
        self._floor = np.full((c, 2), np.inf)  # level, band
        self._floor_set = False

    @property
    def time_s(self) -> float:
        """End time of the last completed hop."""
        return self._n_hops * self.hop_s

    # --------------------------------------------------------------- process
    def process(self, chunk: npt.NDArray[np.int16]) -> FeatureFrames:
        """Append ``chunk`` (int16 samples, any length) and analyse every completed hop
        (an extractor of one channel)."""
        if self.channels != 1:
            raise ValueError("process() is for one channel: use process_channels()")
        return self.process_channels(np.asarray(chunk).reshape(1, -1))[0]

    def process_channels(self, chunks: npt.NDArray[np.int16]) -> list[FeatureFrames]:
        """Append ``chunks`` (``(channels, m)`` int16 samples, any ``m``) and analyse every
        completed hop; one :class:`FeatureFrames` per channel."""
        c = self.channels
        x = np.concatenate((self._buf, np.asarray(chunks).reshape(c, -1)), axis=1,
                           dtype=np.float64)
        win, hop = self.win, self.hop
        length = x.shape[1]
        n = (length - win - 1) // hop
        if n <= 0:
            self._buf = x
            return [FeatureFrames.empty() for _ in range(c)]
        # hop i of this call ends at x[:, win + 1 + (i+1)*hop]; its window (plus the sample
        # before it, for the first difference) starts at (i+1)*hop
        frames = np.ndarray((c, n, win + 1), dtype=np.float64, buffer=x, offset=hop * 8,
                            strides=(length * 8, hop * 8, 8))
        k0 = self._n_hops
        self._n_hops += n
        out = self._analyse(frames, k0)
        self._buf = x[:, n * hop :].copy()
        return out

    def _analyse(self, frames: FloatArray, k0: int) -> list[FeatureFrames]:
        c, n = frames.shape[0], frames.shape[1]
        raw = frames[:, :, 1:]
        t_s = np.arange(k0 + 1, k0 + n + 1, dtype=np.float64) * self.hop_s
        silent = np.abs(raw[:, :, -self.hop :]).max(axis=2) <= self.silence_lsb
        # spectrum of the first difference (no leakage from room rumble), Hann window,
        # zero-padded FFT shared with the pitch estimator; the tilt is undone per bin
        spec = np.fft.rfft((frames[:, :, 1:] - frames[:, :, :-1]) * self._hann, n=self._nfft,
                           axis=2)
        pw = spec.real**2 + spec.imag**2
        sp = pw[:, :, self._spec] * self._pscale + _SPEC_EPS
        sub = sp[:, :, ::2]
        lmap = np.log(sub) @ self._log_map  # [mean log power, fine structure...]
        pmap = sp @ self._power_map - self._eps_band  # [-, band mean square]
        pmap[:, :, 0] = np.einsum("cij,cij->ci", raw, raw)  # window mean square (scaled)
        levels = 10.0 * np.log10(np.maximum(pmap * self._level_scale, _FLOOR_POWER))
        flatness = np.exp(lmap[:, :, 0]) / (sub.sum(axis=2) * self._inv_n_sub)
        tonality = self._tonality(lmap[:, :, 1:])
        f0, voicing = self._pitch.estimate(pw.reshape(c * n, -1))
        f0, voicing = f0.reshape(c, n), voicing.reshape(c, n)
        floors = self._track_floors(levels, silent, k0)
        return [FeatureFrames(
            t_s=t_s,
            level_dbfs=levels[i, :, 0],
            band_db=levels[i, :, 1],
            f0_hz=f0[i],
            voicing=voicing[i],
            flatness=flatness[i],
            tonality=tonality[i],
            digital_silence=silent[i],
            noise_floor_dbfs=floors[i, :, 0],
            band_floor_db=floors[i, :, 1],
        ) for i in range(c)]

    def _tonality(self, fine: FloatArray) -> FloatArray:
        ss = np.concatenate((self._prev_ss, np.einsum("cij,cij->ci", fine, fine)), axis=1)
        allf = np.concatenate((self._prev_fine, fine), axis=1)
        self._prev_fine = allf[:, -_LOOKBACK:]
        self._prev_ss = ss[:, -_LOOKBACK:]
        dot = np.einsum("cij,cij->ci", allf[:, _LOOKBACK:], allf[:, :-_LOOKBACK])
        # the floor keeps float noise on (near) silent spectra from being normalised up
        return dot / np.sqrt((ss[:, _LOOKBACK:] + 1e-3) * (ss[:, :-_LOOKBACK] + 1e-3))

    def _track_floors(self, x: FloatArray, silent: BoolArray, k0: int) -> FloatArray:
        """``y[k] = min(x[k], y[k-1] + rise)`` on valid hops, held on the others.

        Closed form: with ``s[k]`` = rise x (valid hops so far in this call),
        ``y[k] = s[k] + min(y_prev, min_{valid j<=k} (x[j] - s[j]))``.
        ``x`` is (channels, hops, 2), ``silent`` (channels, hops).
        """
        n = x.shape[1]
        if k0 >= _WARMUP and n <= _T_TABLE and self._floor_set and not silent.any():
            steps = self._rise_steps[:n]  # fast path: every hop valid, floor initialised
            y = np.minimum(np.minimum.accumulate(x - steps, axis=1), self._floor[:, None]) + steps
            self._floor = y[:, -1].copy()
            return y
        valid = ~silent
        if k0 < _WARMUP:
            valid[:, : _WARMUP - k0] = False
        steps = (np.cumsum(valid, axis=1) * self._rise)[:, :, None]
        shifted = np.where(valid[:, :, None], x - steps, np.inf)
        y = np.minimum(np.minimum.accumulate(shifted, axis=1), self._floor[:, None]) + steps
        self._floor = y[:, -1].copy()
        self._floor_set = bool(np.all(self._floor < np.inf))
        return np.where(y < np.inf, y, FLOOR_DB)


def _log_map(n_spec: int, smooth: int) -> FloatArray:
    """Matrix mapping a log spectrum to [its mean, centred fine structure]."""
    n_fine = n_spec - smooth + 1
    half = smooth // 2
    fine = np.zeros((n_spec, n_fine))
    for j in range(n_fine):
        fine[j : j + smooth, j] -= 1.0 / smooth
        fine[j + half, j] += 1.0
    fine -= fine.mean(axis=1, keepdims=True)
    out = np.empty((n_spec, n_fine + 1))
    out[:, 0] = 1.0 / n_spec
    out[:, 1:] = fine
    return out


class _Pitch:
    """Autocorrelation pitch from the Hann-windowed power spectrum (after Boersma 1993).

    The input is the power spectrum of the Hann-windowed *first difference* of the signal
    (the difference turns the rumble of brown/pink room noise into white noise), faded
    out between 3.4 and 4 kHz (fricative hiss); its inverse FFT is the autocorrelation,
    normalised by its lag-0 value and by the autocorrelation of the window.  The chosen
    period is the *shortest* lag whose peak reaches ``octave_ratio`` of the best peak (no
    octave-down error from the repeats at 2T, 3T); a missing fundamental (telephone band)
    does not matter because the harmonics still repeat with the period.  Parabolic
    interpolation refines the lag.
    """

    def __init__(
        self,
        sample_rate_hz: int,
        win: int,
        nfft: int,
        window: FloatArray,
        *,
        f0_min_hz: float,
        f0_max_hz: float,
        voicing_threshold: float,
        octave_ratio: float,
    ) -> None:
        # the autocorrelation only holds frequencies below _PITCH_TOP_HZ: compute it at a
        # lag step of q samples, still >= 4 points per period of its highest frequency
        q = 1
        while sample_rate_hz % (2 * q) == 0 and sample_rate_hz / (2 * q) >= 4 * _PITCH_TOP_HZ:
            q *= 2
        rate = sample_rate_hz / q
        self._rate = rate
        self._lag_min = int(np.ceil(rate / f0_max_hz))
        self._lag_max = int(np.floor(rate / f0_min_hz))
        if (self._lag_max + 1) * q > nfft - win or self._lag_min < 2:
            raise ValueError("pitch range does not fit the analysis window")
        self._n_acf = nfft // q
        f = np.arange(self._n_acf // 2 + 1) * sample_rate_hz / nfft
        taper = np.clip((_PITCH_TOP_HZ - f) / (_PITCH_TOP_HZ - _PITCH_FLAT_HZ), 0.0, 1.0)
        weight = np.sin(0.5 * np.pi * taper) ** 2
        self._n_bins = int(np.count_nonzero(weight > 0.0))
        self._weight = weight[: self._n_bins]
        wacf = np.correlate(window, window, "full")[win - 1 :]
        lags = np.arange(self._lag_min - 1, self._lag_max + 2)
        self._lags = slice(self._lag_min - 1, self._lag_max + 2)
        self._inv_wacf = wacf[0] / wacf[lags * q]
        self.voicing_threshold = voicing_threshold
        self.octave_ratio = octave_ratio

    def estimate(self, pw: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Return ``(f0_hz, voicing)`` per row of the one-sided power spectrum ``pw``."""
        acf = np.fft.irfft(pw[:, : self._n_bins] * self._weight, n=self._n_acf, axis=1)
        # window-corrected autocorrelation, not yet divided by its lag-0 value acf0
        r = acf[:, self._lags] * self._inv_wacf
        acf0 = acf[:, 0] + 1e-12
        mid, left, right = r[:, 1:-1], r[:, :-2], r[:, 2:]
        best = mid.max(axis=1)
        thresh = np.maximum(self.octave_ratio * best, self.voicing_threshold * acf0)
        cand = (mid > left) & (mid >= right) & (mid >= thresh[:, None])
        first = cand.argmax(axis=1)
        voiced = cand.any(axis=1)
        # r[row, first + 0..2] = left, mid, right at the chosen lag
        y = r.ravel()[(first + np.arange(0, r.size, r.shape[1]))[:, None] + _NEIGHBOURS]
        nd = y @ _PARABOLA  # [y0 - y2, y0 - 2 y1 + y2]
        lag = first + (self._lag_min + 0.5 * nd[:, 0] / np.minimum(nd[:, 1], -1e-12))
        f0 = np.where(voiced, self._rate / lag, np.nan)
        voicing = np.where(voiced, y[:, 1], best) / acf0
        return f0, np.minimum(np.maximum(voicing, 0.0), 1.0)


_NEIGHBOURS = np.array([0, 1, 2])
_PARABOLA = np.array([[1.0, 1.0], [0.0, -2.0], [-1.0, 1.0]])
_PITCH_FLAT_HZ = 3400.0
_PITCH_TOP_HZ = 4000.0
