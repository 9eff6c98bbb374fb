"""Offline call-etiquette coach: live etiquette cues from two-party call audio."""

import os as _os

# onnxruntime (Silero VAD) ships a telemetry uploader on Linux: at import it writes a device
# id and an event database under ~/.cache and $TMPDIR and later resolves and contacts
# mobile.events.data.microsoft.com.  This switch must be set before onnxruntime is first
# imported, so it lives here, where every entry point passes.  Forced, not defaulted: a
# site cannot turn it back on by accident.  tests/test_privacy.py traces the real process.
_os.environ["ORT_DISABLE_TELEMETRY"] = "1"

__version__ = "0.1.0"
