"""The level detector fused with Silero: loud, speech-like frames are speech.

Silero VAD misses some loud, clear real voices: on the real-speech corpus it gives 0.00 to
whole sentences of one speaker at -22 dBFS (a GSM-coded recording with faint room noise
under it), and on telephone-band audio generally less.  A level detector does not: a frame
whose every 10 ms hop is ``snr_db`` above the channel's running noise floor, with a
speech-like spectrum (not flat like a key click or hiss, not tonal like hold music), is
speech once two such frames follow each other (a single key click rarely makes two) and
the level has *fallen* by ``MIN_FALL_DB`` from a peak within the last ``FALL_HOPS`` hops of
the loud stretch: speech comes in syllables, while a sustained pad of hold music holds or
swells its level (Silero rightly gives it 0.00, and the music detector needs a few seconds
to be sure).  Synthetic partials are also perfectly unflat (flatness ~0).
Inside such speech a strong frame needs nothing more (a long vowel holds its level), and
weaker frames (``continue_db`` less, fricatives flatter) keep it going, the way Silero's
lower off-threshold does, so the soft ends of words and short dips are not cut.

:meth:`LevelDetector.update` returns evidence on Silero's scale: 1.0 (speech), a value
between the tracker's off and on thresholds (continues speech, never starts it), or 0.0.
The engine takes the larger of it and Silero's probability; the echo, music and silence
gates apply afterwards as to Silero.  Pure state machine over feature frames: no audio.
"""

from __future__ import annotations

import numpy as np

from appliance.engine.features.extractor import FeatureFrames

#: Sustained notes (hold music, ringback) have a stable fine structure; speech harmonics
#: glide (corpus: median tonality 0.02 for speech frames, 0.90 for hold music).
MAX_TONALITY = 0.7
#: Flat spectra are clicks and hiss (median flatness 0.42 for key clicks, 0.12 for speech).
MAX_FLATNESS = 0.4
MAX_FLATNESS_CONTINUE = 0.6
MIN_FLATNESS = 0.01
#: A fall from a peak (dB) within the last ``FALL_HOPS`` 10 ms hops of the loud stretch:
#: syllables have it, steady music or hum does not.
MIN_FALL_DB = 6.0
FALL_HOPS = 50


def hop_mean(values: list[float]) -> float:
    """``float(np.mean(values))`` bit for bit, without numpy's call overhead for the 3-4
    hops of a frame (numpy adds fewer than 8 values in order; more go to numpy)."""
    if len(values) >= 8:
        return float(np.mean(values))
    s = 0.0
    for v in values:
        s += v
    return s / len(values)


class LevelDetector:
    """Per-party level/SNR speech evidence, one 32 ms frame at a time."""

    def __init__(self, snr_db: float, continue_db: float, continue_prob: float) -> None:
        self.snr_db = snr_db
        self.continue_snr_db = snr_db - continue_db
        self.continue_prob = continue_prob
        self._prev_strong = False
        self._in_speech = False
        self._run: list[float] = []  # hop levels of the current loud stretch (dBFS)

    def _fell(self) -> bool:
        """Did the level fall MIN_FALL_DB after a peak within the recent loud stretch?"""
        run = np.asarray(self._run)
        if len(run) < 2:
            return False
        later_min = np.minimum.accumulate(run[::-1])[::-1]
        return bool(np.max(run - later_min) >= MIN_FALL_DB)

    def update(self, feats: FeatureFrames, floor_dbfs: float) -> float:
        """Evidence for the frame whose hops are ``feats`` (noise floor ``floor_dbfs``)."""
        if len(feats) == 0:
            return 0.0
        hop_levels = feats.level_dbfs.tolist()
        snr = min(hop_levels) - floor_dbfs
        tonal = hop_mean(feats.tonality.tolist()) >= MAX_TONALITY
        flat = hop_mean(feats.flatness.tolist())
        if snr >= self.continue_snr_db:
            self._run += hop_levels
            del self._run[:-FALL_HOPS]
        else:
            self._run.clear()
        strong = snr >= self.snr_db and not tonal and MIN_FLATNESS <= flat < MAX_FLATNESS
        # an onset needs two strong frames and a syllabic fall; inside speech a strong frame
        # is enough (a long vowel holds its level)
        confirmed = strong and (self._in_speech or (self._prev_strong and self._fell()))
        self._prev_strong = strong
        if confirmed:
            self._in_speech = True
            return 1.0
        if (self._in_speech and snr >= self.continue_snr_db and not tonal
                and MIN_FLATNESS <= flat < MAX_FLATNESS_CONTINUE):
            return self.continue_prob
        self._in_speech = False
        return 0.0
