"""Streaming filled-pause detector (« um », « uh », « äh », « euh ») on :class:`FeatureFrames`.

Small speech recognisers often drop hesitation sounds, so the ``filler`` cue gets this
acoustic second source.  A filled pause is one *sustained* vowel or nasal: a voiced stretch
of ~0.3-1.5 s whose pitch stays within about a semitone and whose spectrum hardly changes,
usually next to a silent pause.  Ordinary speech is voiced in stretches of 50-250 ms, and
longer voiced stretches (a vowel between nasals, "many more") move their pitch and their
formants, which shows in the 300-2500 Hz band level (``FeatureFrames.band_db``).

Pitch is handled in semitones; octave slips of the pitch tracker (f0 halved or doubled for
a few hops) are folded onto the octave of the (lower) median, other tracker errors count
as misses.

Per 10 ms hop, over the last ``local_hops`` hops (100 ms) ending at it, the hop is *steady*
when

* all but ``local_misses`` of those hops are voiced with a pitch within
  +-``local_pitch_st / 2`` of the window's median pitch,
* the band level changes by at most ``local_band_db`` dB per hop on average, and
* the hop is ``noise_margin_db`` above the running floor, in the band (``band_db`` over
  ``band_floor_db``) or in the full band (``level_dbfs`` over ``noise_floor_dbfs``; a
  hummed /m/ has most of its energy below 300 Hz).

A *segment* starts at the first hop of the first steady window and lasts while steady hops
follow each other with gaps of at most ``bridge_hops`` hops.  When it ends (or reaches
``max_s``) it is a filled pause if it lasts at least ``min_s`` and, over the whole segment,

* at least ``min_voiced_fraction`` of the hops are voiced,
* the pitch spread (10th to 90th percentile) is at most ``max_pitch_spread_st``,
* the glide (median pitch of the last quarter minus that of the first quarter, absolute)
  is at most ``max_glide_st`` and at most ``max_glide_rate_st_per_s`` per second of the
  3/4 segment between the quarters' centres (short voiced stretches of speech that pass
  the spread test still fall or rise by ~1 st in 0.3 s: 4 st/s), and
* the median absolute change of the band level over ``_CHANGE_LAG`` = 3 hops (30 ms) is at
  most ``max_band_change_db``: formant movement and the level slide of a word ending
  raise it, while a single vowel -> nasal step ("uh" -> "m") or the on- and offset only
  touch a few hops and leave the median alone.

A segment that starts within ``merge_gap_s`` of the end of the last reported filled pause
is its continuation (the steadiness broke for a moment) and is not reported again.

Times: ``start_s`` / ``end_s`` are the centres of the 40 ms analysis windows of the first and
the last hop of the segment (hop end minus ``window_s / 2``), so they mark the acoustic onset
and offset of the sustained sound to about +-20 ms.

Latency: a segment is reported by the call that processes the hop ``bridge_hops + 1`` hops
after its last steady hop, i.e. ``report_delay_s`` = ``window_s / 2 + (bridge_hops + 1) *
hop_s`` (60 ms with the defaults) after ``end_s``.  A segment that reaches ``max_s`` is
judged at once, on its first ``max_s``, and reported as ``(start_s, start_s + max_s)`` --
at most ``max_s + window_s / 2`` after its onset -- or, with ``report_overlong=False``,
dropped as "too long for a filled pause"; the rest of the sound is ignored until it stops.
Either way the latency is bounded.  Held notes of music, steady tones and hum are flat and
stable too: with ``report_overlong=True`` a tone or hum gives one report, music one per
note or chord of 0.3 s or longer -- gate the cue with the hold-music flag
(:class:`~appliance.engine.features.music.MusicDetector`) and the voice-activity detector.

Limits: the frames carry no formant tracks, so a vowel whose formants glide slowly at a
flat pitch and a steady level passes.  The segment covers the steady part only: on- and
offset ramps make it ~30-50 ms shorter than the sound, so sounds under ~0.35 s are mostly
missed with ``min_s`` = 0.3.

Cost: the window statistics are computed with numpy for all the hops of a call (a sort of
``local_hops`` values per hop), the segment statistics once per candidate segment; the
per-hop loop is a few comparisons.  The state is the last ``max_s + local_hops +
bridge_hops`` hops of time, pitch and band level plus the segment bookkeeping, so the
result does not depend on how the frames are cut into calls.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import as_strided

from appliance.engine.features.extractor import FeatureFrames

FloatArray = npt.NDArray[np.float64]

_REF_HZ = 100.0  # pitch in semitones re 100 Hz (only differences matter)
_T, _ST, _BAND = range(3)  # columns of the hop history
_CHANGE_LAG = 3  # hops over which the segment's band-level change is measured


class FilledPauseDetector:
    """Streaming filled-pause detector; ``process`` returns ``(start_s, end_s)`` pairs."""

    def __init__(
        self,
        *,
        hop_s: float = 0.01,
        window_s: float = 0.04,
        min_s: float = 0.3,
        max_s: float = 1.5,
        local_hops: int = 10,
        local_pitch_st: float = 1.0,
        local_misses: int = 2,
        local_band_db: float = 2.0,
        noise_margin_db: float = 10.0,
        bridge_hops: int = 3,
        max_pitch_spread_st: float = 1.2,
        max_glide_st: float = 1.2,
        max_glide_rate_st_per_s: float = 3.0,
        max_band_change_db: float = 1.5,
        min_voiced_fraction: float = 0.8,
        merge_gap_s: float = 0.1,
        report_overlong: bool = True,
    ) -> None:
        """Parameters (times in seconds, pitch in semitones, levels in dB):

        * ``hop_s`` / ``window_s`` -- hop and analysis window of the frames (10 / 40 ms).
        * ``min_s`` -- shortest filled pause.
        * ``max_s`` -- longest segment; one that reaches it is judged (or dropped, see
          ``report_overlong``) at once and its rest ignored.
        * ``local_hops`` -- hops in the local steadiness window (10 = 100 ms).
        * ``local_pitch_st`` -- width of the pitch band around the window's median.
        * ``local_misses`` -- window hops allowed outside it (unvoiced, tracker errors).
        * ``local_band_db`` -- mean absolute hop-to-hop change of ``band_db`` in the
          window, dB per hop.
        * ``noise_margin_db`` -- level above the running noise floor for a steady hop.
        * ``bridge_hops`` -- non-steady hops bridged inside a segment.
        * ``max_pitch_spread_st`` -- 10-90 percentile pitch range of the segment.
        * ``max_glide_st`` -- pitch change first quarter -> last quarter (medians).
        * ``max_glide_rate_st_per_s`` -- the same per second (st/s).
        * ``max_band_change_db`` -- median absolute change of ``band_db`` over 30 ms.
        * ``min_voiced_fraction`` -- share of voiced hops in the segment.
        * ``merge_gap_s`` -- a segment starting this soon after the end of the last
          reported filled pause is its continuation.
        * ``report_overlong`` -- report segments that reach ``max_s`` (True) or drop them.
        """
        if local_hops < 4:
            raise ValueError("local_hops must be >= 4")
        if not 0.0 < min_s <= max_s:
            raise ValueError("need 0 < min_s <= max_s")
        if bridge_hops < 0:
            raise ValueError("bridge_hops must be >= 0")
        self.hop_s = hop_s
        self.window_s = window_s
        self.min_s = min_s
        self.max_s = max_s
        self.local_hops = local_hops
        self.local_pitch_st = local_pitch_st
        self.local_misses = local_misses
        self.local_band_db = local_band_db
        self.noise_margin_db = noise_margin_db
        self.bridge_hops = bridge_hops
        self.max_pitch_spread_st = max_pitch_spread_st
        self.max_glide_st = max_glide_st
        self.max_glide_rate_st_per_s = max_glide_rate_st_per_s
        self.max_band_change_db = max_band_change_db
        self.min_voiced_fraction = min_voiced_fraction
        self.merge_gap_s = merge_gap_s
        self.report_overlong = report_overlong
        self._max_hops = max(1, round(max_s / hop_s))
        # hops kept between calls: the longest segment plus its first window and the bridge
        self._keep = self._max_hops + local_hops + bridge_hops + 1
        self.reset()

    @property
    def report_delay_s(self) -> float:
        """Time from a segment's ``end_s`` to the hop whose processing reports it."""
        return self.window_s / 2 + (self.bridge_hops + 1) * self.hop_s

    def reset(self) -> None:
        """Forget the stream."""
        self._n = 0  # hops consumed
        self._hist = np.zeros((0, 3))  # last hops: time, pitch (st), band level (dB)
        self._seg_a = -1  # global index of the segment's first hop, -1: no segment
        self._last = -1  # global index of its last steady hop
        self._capped = False  # segment reached max_s: ignore it until it ends
        self._last_end = -np.inf  # end_s of the last filled pause reported
        self.count = 0  # filled pauses reported since the start / reset

    # --------------------------------------------------------------- process
    def process(self, frames: FeatureFrames) -> list[tuple[float, float]]:
        """Consume hops; return the filled pauses ``(start_s, end_s)`` confirmed by them."""
        n = len(frames)
        if n == 0:
            return []
        w = self.local_hops
        new = np.empty((n, 3))
        new[:, _T] = frames.t_s
        with np.errstate(divide="ignore", invalid="ignore"):
            new[:, _ST] = 12.0 * np.log2(frames.f0_hz / _REF_HZ)
        new[:, _BAND] = frames.band_db
        hist = np.concatenate((self._hist, new))
        g0 = self._n - self._hist.shape[0]  # global index of hist[0]
        steady = self._steady(hist, frames, n)
        out: list[tuple[float, float]] = []
        seg_a, last, capped = self._seg_a, self._last, self._capped
        bridge, max_hops = self.bridge_hops, self._max_hops
        k = self._n
        for s in steady.tolist():
            if s:
                if seg_a < 0:
                    seg_a = k - w + 1
                last = k
                if not capped and last - seg_a + 1 >= max_hops:
                    if self.report_overlong:
                        out += self._judge(hist[max(seg_a - g0, 0) : seg_a + max_hops - g0])
                    capped = True
            elif seg_a >= 0 and k - last > bridge:
                if not capped:
                    out += self._judge(hist[max(seg_a - g0, 0) : last + 1 - g0])
                seg_a, capped = -1, False
            k += 1
        self._seg_a, self._last, self._capped = seg_a, last, capped
        self._n += n
        self._hist = hist[-self._keep :]
        self.count += len(out)
        return out

    def _steady(self, hist: FloatArray, frames: FeatureFrames, n: int) -> npt.NDArray[np.bool_]:
        """Local steadiness of the ``n`` new hops (the last ``n`` rows of ``hist``)."""
        w = self.local_hops
        win = hist[-(w - 1 + n) :, _ST : _BAND + 1]
        pad = w - 1 + n - win.shape[0]  # stream start: windows reach before it
        if pad:
            win = np.concatenate((np.full((pad, 2), np.nan), win))
        with np.errstate(invalid="ignore"):
            sv = np.sort(_windows(win[:, 0], w), axis=1)  # NaN (unvoiced) sort last
            n_voiced = w - np.isnan(sv).sum(axis=1)
            # lower median of the voiced hops; octave slips of the pitch tracker folded
            med = np.take_along_axis(sv, np.maximum(n_voiced - 1, 0)[:, None] // 2, axis=1)
            dev = np.abs(sv - med)
            dev = np.abs(dev - 12.0 * np.round(dev / 12.0))
            n_near = (dev <= 0.5 * self.local_pitch_st).sum(axis=1)  # NaN counts as far
            # mean absolute hop-to-hop change of the band level over each window
            band_change = _windows(np.abs(np.diff(win[:, 1])), w - 1).mean(axis=1)
            return (
                (n_near >= w - self.local_misses)
                & (band_change <= self.local_band_db)
                & (
                    (frames.band_db >= frames.band_floor_db + self.noise_margin_db)
                    | (frames.level_dbfs >= frames.noise_floor_dbfs + self.noise_margin_db)
                )
            )

    def _judge(self, seg: FloatArray) -> list[tuple[float, float]]:
        """Whole-segment check; ``[(start_s, end_s)]`` or ``[]``."""
        if seg.shape[0] < 2:
            return []
        start = float(seg[0, _T] - self.window_s / 2)
        end = float(seg[-1, _T] - self.window_s / 2)
        if end - start < self.min_s - 1e-9:
            return []
        if start < self._last_end + self.merge_gap_s:  # the rest of the last one
            self._last_end = max(self._last_end, end)
            return []
        stats = segment_stats(seg)
        if (
            stats["voiced"] < self.min_voiced_fraction
            or stats["spread_st"] > self.max_pitch_spread_st
            or stats["glide_st"] > self.max_glide_st
            or stats["glide_st_per_s"] > self.max_glide_rate_st_per_s
            or stats["band_change_db"] > self.max_band_change_db
        ):
            return []
        self._last_end = end
        return [(_t_round(start), _t_round(end))]


def _windows(a: FloatArray, w: int) -> FloatArray:
    """Read-only view of every ``w`` consecutive elements of the 1-D ``a`` (rows)."""
    step = a.strides[0]
    return as_strided(a, (a.shape[0] - w + 1, w), (step, step), writeable=False)


def segment_stats(seg: FloatArray) -> dict[str, float]:
    """Statistics of a segment (rows: hops; columns: time, pitch in semitones with NaN
    when unvoiced, band level dB) that the detector judges it by."""
    voiced = ~np.isnan(seg[:, _ST])
    p = seg[voiced, _ST]
    out = {"voiced": float(voiced.mean()), "spread_st": np.inf, "glide_st": np.inf,
           "glide_st_per_s": np.inf}
    if p.shape[0] >= 4:
        med = np.sort(p)[(p.shape[0] - 1) // 2]  # lower median: a real pitch value
        p = p - 12.0 * np.round((p - med) / 12.0)  # fold octave slips onto its octave
        lo, hi = np.percentile(p, [10.0, 90.0])
        q = max(1, p.shape[0] // 4)
        out["spread_st"] = float(hi - lo)
        out["glide_st"] = abs(float(np.median(p[-q:]) - np.median(p[:q])))
        # the quarters' centres are 3/4 of the segment apart
        span = 0.75 * float(seg[-1, _T] - seg[0, _T])
        out["glide_st_per_s"] = out["glide_st"] / max(span, 1e-3)
    lag = _CHANGE_LAG
    if seg.shape[0] > lag:
        out["band_change_db"] = float(np.median(np.abs(seg[lag:, _BAND] - seg[:-lag, _BAND])))
    else:
        out["band_change_db"] = np.inf
    return out


def _t_round(t: float) -> float:
    """Times to the microsecond (the hop grid is 10 ms; this only hides float noise)."""
    return max(0.0, round(t, 6))
