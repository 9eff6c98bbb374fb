"""Errors with stable codes.

Every failure the box can explain to a person is an :class:`ApplianceError` with a stable
``code`` (used by IT scripts, the dashboard and the JSONL error event) and a one-line
human message.  At the boundary (CLI, service loop) it becomes one error event / one line on
stderr, never a traceback.
"""

from __future__ import annotations

MAX_MESSAGE_CHARS = 1000
"""A message longer than this keeps its beginning and its end (where the fix is)."""


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters: a 100 000-character
    value in a config or on the command line must not become a 100 000-character line."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


class ApplianceError(Exception):
    """A failure with a stable machine code and a one-line message for a person."""

    def __init__(self, code: str, message: str) -> None:
        if len(message) > MAX_MESSAGE_CHARS:
            tail = MAX_MESSAGE_CHARS // 4
            message = (f"{message[:MAX_MESSAGE_CHARS - tail]} …[{len(message)} characters]… "
                       f"{message[-tail:]}")
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.message} [{self.code}]"


# Stable codes. Never renumber or rename: scripts and dashboards match on them.
INPUT_NOT_FOUND = "input.not_found"
INPUT_NOT_A_FILE = "input.not_a_file"
INPUT_NOT_WAV = "input.not_wav"
INPUT_TRUNCATED = "input.truncated"
INPUT_EMPTY = "input.empty"
INPUT_UNSUPPORTED = "input.unsupported_format"
INPUT_BAD_CHANNEL = "input.bad_channel"
INPUT_MISMATCH = "input.mismatch"
MARKS_NOT_FOUND = "marks.not_found"
MARKS_INVALID = "marks.invalid_line"
CONFIG_NOT_FOUND = "config.not_found"
CONFIG_INVALID = "config.invalid"
MODEL_MISSING = "model.missing"
MODEL_CORRUPT = "model.corrupt"
MODEL_SOURCE_NOT_FOUND = "model.source_not_found"
MODEL_INVALID = "model.invalid"
MODEL_DOWNLOAD_FAILED = "model.download_failed"
MODEL_EXISTS = "model.exists"
MODEL_LANG_UNKNOWN = "model.lang_unknown"
MODEL_INSTALL_FAILED = "model.install_failed"
AUDIO_PORTAUDIO_MISSING = "audio.portaudio_missing"
AUDIO_DEVICE_NOT_FOUND = "audio.device_not_found"
AUDIO_DEVICE_AMBIGUOUS = "audio.device_ambiguous"
AUDIO_DEVICE_CHANNELS = "audio.device_channels"
AUDIO_DEVICE_LOST = "audio.device_lost"
DASHBOARD_PORT_IN_USE = "dashboard.port_in_use"
DASHBOARD_BIND_FAILED = "dashboard.bind_failed"
DASHBOARD_TOKEN_REQUIRED = "dashboard.token_required"
STORE_CORRUPT = "store.corrupt"
STORE_UNAVAILABLE = "store.unavailable"
STORE_NEWER_SCHEMA = "store.newer_schema"
EXPORT_BAD_DATE = "export.bad_date"
EXPORT_OUTPUT_FAILED = "export.output_failed"
SERVICE_INSTALL_FAILED = "service.install_failed"
SERVICE_NEEDS_ROOT = "service.needs_root"
SERVICE_PATH_HIDDEN = "service.path_hidden"
SERVICE_STILL_ENABLED = "service.still_enabled"
CALL_EXISTS = "call.exists"
CALL_UNKNOWN = "call.unknown"
CALL_FINISH_FAILED = "call.finish_failed"
CALL_NOT_STARTED = "call.not_started"
CALLS_FULL = "calls.full"
WORKER_CRASHED = "worker.crashed"
PBX_PROTOCOL = "pbx.protocol"
PBX_STREAM_REFUSED = "pbx.stream_refused"
RTP_MALFORMED = "rtp.malformed"
TAP_NOT_ENABLED = "tap.not_enabled"
API_BAD_REQUEST = "api.bad_request"
API_TOO_LARGE = "api.too_large"
API_UNSUPPORTED_MEDIA = "api.unsupported_media_type"
TAP_BIND_FAILED = "tap.bind_failed"
FLEET_CREDENTIALS = "fleet.credentials"
FLEET_AUTH = "fleet.auth"
FLEET_TLS = "fleet.tls"
FLEET_UNREACHABLE = "fleet.unreachable"
FLEET_REFUSED = "fleet.refused"
FLEET_DENIED = "fleet.denied"
FLEET_OUTBOX_CORRUPT = "fleet.outbox_corrupt"
FLEET_OUTBOX_UNAVAILABLE = "fleet.outbox_unavailable"
FLEET_STOPPED = "fleet.stopped"
CONSOLE_BROKER_AUTH = "console.broker_auth"
"""The broker refused the console's credentials (user name, password or certificate)."""
CONSOLE_BROKER_UNREACHABLE = "console.broker_unreachable"
CONSOLE_BROKER_DENIED = "console.broker_denied"
"""The broker refused the console's subscription (its ACL does not let the console read)."""
CONSOLE_TOKEN_REQUIRED = "console.token_required"
CONSOLE_SECRET_UNREADABLE = "console.secret_unreadable"
CONSOLE_BIND_FAILED = "console.bind_failed"
