"""The one refusal of the PBX protocol cores: a peer broke the framing or sent a stream the
box cannot analyse.  The listener closes that connection (and only that one) and logs the
reason; for WebSocket peers :attr:`PbxProtocolError.close_code` is the close code to send."""

from __future__ import annotations

from appliance.errors import PBX_PROTOCOL, ApplianceError

WS_CLOSE_NORMAL = 1000
"""RFC 6455: the stream ended (its end frame came, or its call was ended elsewhere)."""
WS_CLOSE_GOING_AWAY = 1001
"""RFC 6455: the box is shutting down."""
WS_CLOSE_PROTOCOL_ERROR = 1002
"""RFC 6455: the peer broke the protocol (bad metadata, a frame in the wrong place)."""
WS_CLOSE_UNSUPPORTED_DATA = 1003
"""RFC 6455: the endpoint cannot accept this kind of data (a mixed stream, an odd rate)."""
WS_CLOSE_POLICY_VIOLATION = 1008
"""RFC 6455: a stream for a call id that is open already."""
WS_CLOSE_MESSAGE_TOO_BIG = 1009
"""RFC 6455: a message too big to process (metadata over its bound)."""
WS_CLOSE_TRY_AGAIN_LATER = 1013
"""IANA registry: no analysis worker can take another call (``calls.full``)."""


class PbxProtocolError(ApplianceError):
    """A PBX peer broke the framing or sent what cannot be analysed.

    ``reason`` is a short constant (``"audio_before_uuid"``, or for a refused stream a
    sentence such as ``wsfork.REASON_MIXED``) that the listener logs and, for WebSocket peers,
    sends as the close reason together with ``close_code`` (RFC 6455 codes; a close reason
    holds at most 123 bytes, and every reason here is shorter).  Never carries audio or
    transcript text.
    """

    def __init__(self, reason: str, message: str, *, close_code: int = WS_CLOSE_PROTOCOL_ERROR,
                 code: str = PBX_PROTOCOL) -> None:
        super().__init__(code, message)
        self.reason = reason
        self.close_code = close_code
