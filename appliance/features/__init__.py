"""Acoustic features: frame features, syllable nuclei and the hold-music detector."""

from appliance.features.extractor import FeatureExtractor, FeatureFrames

__all__ = ["FeatureExtractor", "FeatureFrames"]
