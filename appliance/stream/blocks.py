"""Audio blocks: what every source (file, headset, PBX stream) delivers to a call's stream.

Both parties at :data:`PIPELINE_RATE_HZ`, mono int16, the same length, stamped with the audio
time of their first sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from appliance.events import EndReason

PIPELINE_RATE_HZ = 16000
"""Every source delivers audio to the stream at this rate, mono int16 per party."""


@dataclass(frozen=True, slots=True)
class PartyBlock:
    """A block of both parties' audio at the pipeline rate."""

    t_s: float  # audio time of the first sample of this block, seconds since call start
    agent: np.ndarray  # int16, shape (n,), 16 kHz mono
    customer: np.ndarray  # int16, shape (n,), same n


@dataclass(frozen=True, slots=True)
class EndOfCall:
    """In a stream of blocks: the call ends here (a replay pass is over, a PBX leg hung
    up); the blocks that follow belong to the next call."""

    reason: EndReason = "source_closed"
