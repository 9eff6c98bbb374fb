"""Acoustic features per party: 10 ms frame features, syllable nuclei, hold-music flag.

:class:`FeatureExtractor` turns int16 chunks of any size into :class:`FeatureFrames`
(one element per completed 10 ms hop); :class:`NucleiDetector` and :class:`MusicDetector`
consume those frames.  All three are streaming and chunk-size invariant.
"""

from appliance.engine.features.extractor import FeatureExtractor, FeatureFrames
from appliance.engine.features.music import MusicDetector
from appliance.engine.features.nuclei import NucleiDetector

__all__ = ["FeatureExtractor", "FeatureFrames", "MusicDetector", "NucleiDetector"]
