"""One received RTP stream (one direction of one call) between the socket and the tap: its
jitter buffer, the silence it owes while it is quiet, and its rate (pure, no socket; the
caller passes the clock reading).

**Quiet streams.**  The jitter buffer fills a gap only when the packet after it arrives.  A
stream that goes quiet (packets lost in a burst, a sender that pauses) would lag the call's
other leg meanwhile, so once no packet has come for ``quiet_after_s``, and while the other
leg still delivers (``fill``: the listener knows), :meth:`RtpStream.pull` plays silence up
to the playout clock (the time since the last real audio left, less the jitter depth),
counted ``quiet_ms``.  When both legs are quiet nothing is filled: there is nothing to keep
in step with, and a call whose senders stopped is not padded with the wait for their
timeout.  That silence is owed: when packets come again, the
jitter buffer's own fill of the same span (concealment of the lost packets, or the
silence of a new SSRC) is dropped from its output for as long (``trimmed_ms``), so the leg
stays on the clock's timeline without playing the span twice.  A sender that paused and
then sends its backlog in a burst (no gap in its timestamps) has that much of its backlog
dropped: the same choice as :class:`~appliance.audio.legs.LegAligner`, which keeps the
legs on the timeline the parties lived.

**Rates.**  A stream plays at its codec's rate (PCMU/PCMA 8 kHz, L16 8 or 16 kHz); the
tap's call takes one rate, the one of the stream that opened it, and a stream at the other
rate is resampled to it (soxr, :class:`~appliance.audio.resample.StreamResampler`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from appliance.audio.resample import StreamResampler, to_int16
from appliance.audio.rtp.codecs import Codec
from appliance.audio.rtp.jitter import Chunk, JitterBuffer, JitterConfig
from appliance.audio.rtp.packet import RtpPacket

QUIET_AFTER_S = 0.2
"""How long past the jitter depth a stream may send nothing before it plays silence."""


class RtpStream:
    """A stream at ``rate_hz`` (its codec's), delivered at ``call_rate_hz``."""

    def __init__(self, rate_hz: int, call_rate_hz: int, codecs: Mapping[int, Codec],
                 config: JitterConfig, now_s: float, *,
                 quiet_after_s: float | None = None) -> None:
        self.rate = rate_hz
        self.jitter = JitterBuffer(rate_hz, codecs, config)
        self.depth_s = config.depth_ms / 1000.0
        self.quiet_after_s = (quiet_after_s if quiet_after_s is not None
                              else self.depth_s + QUIET_AFTER_S)
        self._resampler = (StreamResampler(rate_hz, call_rate_hz)
                           if rate_hz != call_rate_hz else None)
        self.started_s = now_s
        self.last_packet_s = now_s
        self._anchor_s = now_s  # when the played timeline was at _anchor_n (+ the depth)
        self._anchor_n = 0
        self._delivered = 0  # samples out of this stream (real audio and quiet fill)
        self._owed = 0
        self.quiet_samples = 0
        self.trimmed_samples = 0

    def push(self, packet: RtpPacket, now_s: float) -> None:
        """A packet that arrived at ``now_s`` (parsed; decoding happens in the buffer)."""
        self.last_packet_s = now_s
        self.jitter.push(packet, now_s)

    def quiet(self, now_s: float) -> bool:
        """Whether no packet came for ``quiet_after_s``."""
        return now_s - self.last_packet_s >= self.quiet_after_s

    def pull(self, now_s: float, *, fill: bool = True) -> np.ndarray | None:
        """The audio due by ``now_s`` at the call's rate (None if none): the jitter buffer's,
        less what is owed, or (``fill``) silence while the stream is quiet."""
        out = self._repay(self.jitter.pop_ready(now_s), now_s)
        if out is None and fill and self.quiet(now_s):
            due = self._anchor_n + int((now_s - self._anchor_s - self.depth_s) * self.rate)
            if due > self._delivered:
                n = due - self._delivered
                self._owed += n
                self.quiet_samples += n
                self._delivered += n
                out = np.zeros(n, np.int16)
        return self._to_call_rate(out, last=False)

    def finish(self) -> np.ndarray | None:
        """Everything still buffered (the stream ended), at the call's rate."""
        out = self._repay(self.jitter.drain(), None)
        return self._to_call_rate(out, last=True)

    def idle(self, now_s: float, timeout_s: float) -> bool:
        return now_s - self.last_packet_s >= timeout_s

    @property
    def stats(self) -> dict[str, float]:
        """The jitter buffer's counters plus ``quiet_ms`` and ``trimmed_ms``."""
        out = dict(self.jitter.stats)
        out["quiet_ms"] = self.quiet_samples * 1000.0 / self.rate
        out["trimmed_ms"] = self.trimmed_samples * 1000.0 / self.rate
        return out

    def _repay(self, chunk: Chunk | None, now_s: float | None) -> np.ndarray | None:
        if chunk is None:
            return None
        samples = chunk.samples
        if self._owed:
            pay = min(self._owed, len(samples))
            self._owed -= pay
            self.trimmed_samples += pay
            samples = samples[pay:]
        self._delivered += len(samples)
        if now_s is not None and len(samples):
            self._anchor_s, self._anchor_n = now_s, self._delivered
        return samples if len(samples) else None

    def _to_call_rate(self, samples: np.ndarray | None, *, last: bool) -> np.ndarray | None:
        if self._resampler is None:
            return samples
        x = np.zeros(0, np.float32) if samples is None else samples.astype(np.float32) / 32768
        y = to_int16(self._resampler.process(x, last=last))
        return y if len(y) else None
