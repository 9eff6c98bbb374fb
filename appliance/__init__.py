"""Offline call-etiquette coach: live etiquette cues from two-party call audio."""

__version__ = "0.1.0"
