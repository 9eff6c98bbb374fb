"""Offline speech recognition with Vosk: models, the speech gate and the recognizer worker."""
