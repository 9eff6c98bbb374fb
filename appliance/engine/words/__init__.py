"""Word-level helpers for the recognizer-based cues: per-language word lists and tolerant
phrase matching.  Pure functions and small buffers; no audio, no model, no logging of words."""

from appliance.engine.words.locale import Locale, load_locale
from appliance.engine.words.matching import PhraseSet, WordBuffer, compact, tokens

__all__ = ["Locale", "PhraseSet", "WordBuffer", "compact", "load_locale", "tokens"]
