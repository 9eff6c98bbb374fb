"""What the PBX-listener tests send and compare against: the demo call as two 8 kHz legs
(the WAV's own G.711 samples, exactly), G.711 encoders, RTP packets of a leg, the reference
cues of the same audio through the file path, and a fake pool for the tests that need no
analysis."""

from __future__ import annotations

import asyncio
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from appliance.audio.filesource import FileSource
from appliance.audio.rtp.codecs import ALAW_TO_INT16, ULAW_TO_INT16
from appliance.audio.rtp.packet import build
from appliance.audio.wavfile import open_wav
from appliance.config import config_from_dict
from appliance.stream.shards import ShardPool

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "appliance" / "demo" / "demo_call.wav"
CFG = config_from_dict({"asr": {"enabled": False}})
RATE = 8000
FRAME = 160  # 20 ms at 8 kHz
CONTROL_CUES = ("answer_delay", "hung_up_first")


def demo_legs_8k(start_s: float = 0.0, end_s: float | None = None) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    """The demo's agent and customer channels: the WAV's µ-law samples as int16, exactly."""
    x = np.concatenate(list(open_wav(DEMO).read_blocks(1 << 16)))
    pcm = np.rint(x * 32768).astype(np.int16)
    lo, hi = int(start_s * RATE), None if end_s is None else int(end_s * RATE)
    return pcm[lo:hi, 0].copy(), pcm[lo:hi, 1].copy()


def _encoder(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(table, kind="stable")
    return table[order].astype(np.int32), order.astype(np.uint8)


_ULAW_ENC = _encoder(ULAW_TO_INT16)
_ALAW_ENC = _encoder(ALAW_TO_INT16)


def g711(samples: np.ndarray, law: str) -> bytes:
    """µ-law (``"u"``) or A-law (``"a"``) bytes: the code whose value is nearest each sample
    (a sample that is a G.711 value gets its own code back)."""
    values, codes = _ULAW_ENC if law == "u" else _ALAW_ENC
    x = samples.astype(np.int32)
    i = np.clip(np.searchsorted(values, x), 1, len(values) - 1)
    nearer_left = (x - values[i - 1]) <= (values[i] - x)
    return codes[np.where(nearer_left, i - 1, i)].tobytes()


def rtp_packets(samples: np.ndarray, law: str, *, ssrc: int, seq0: int,
                ts0: int) -> list[bytes]:
    """One leg as 20 ms RTP packets (PCMU payload type 0 or PCMA 8)."""
    payload = g711(samples, law)
    pt = 0 if law == "u" else 8
    return [build(pt, seq0 + k, ts0 + k * FRAME, ssrc, payload[k * FRAME:(k + 1) * FRAME],
                  marker=k == 0)
            for k in range(len(samples) // FRAME)]


def write_wav(path: Path, *channels: np.ndarray, rate: int = RATE) -> Path:
    """16-bit PCM WAV of one or more int16 channels."""
    n = min(len(c) for c in channels)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.stack([c[:n] for c in channels], axis=1).astype("<i2").tobytes())
    return path


async def reference(pool: ShardPool, call_id: str, wav: Path = DEMO) -> None:
    """The WAV as one call through the file path's blocks (what ``appliance analyze``
    reads), on the same pool."""
    pool.open_call(call_id, lang="en")
    for k, block in enumerate(FileSource(wav).blocks()):
        assert pool.push(call_id, block)
        if k % 256 == 0:
            await asyncio.sleep(0)
    pool.end_call(call_id, "source_closed")


def cues(lines: list[dict[str, Any]], call_id: str) -> list[tuple[str, str | None, float]]:
    return [(e["kind"], e["party"], e["t"]) for e in lines if e["call_id"] == call_id
            and e["kind"] not in ("call_started", "call_ended", "summary")]


def compare(got: list[tuple[str, str | None, float]], want: list[tuple[str, str | None, float]],
            tolerance_s: float) -> float:
    """Assert the same cues (kinds, parties) at times within ``tolerance_s`` (the call-
    control cues of the tap left out); the largest difference."""
    got = [c for c in got if c[0] not in CONTROL_CUES]
    assert want, "the reference gave no cues"
    assert [c[:2] for c in got] == [c[:2] for c in want], (got, want)
    diffs = [abs(g[2] - w[2]) for g, w in zip(got, want, strict=True)]
    assert max(diffs) <= tolerance_s, (diffs, got, want)
    return max(diffs)


def event(lines: list[dict[str, Any]], call_id: str, kind: str) -> dict[str, Any]:
    return next(e for e in lines if e["call_id"] == call_id and e["kind"] == kind)


@dataclass
class FakePool:
    """Records what the tap asks of a pool (for the listener tests that need no analysis)."""

    opened: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    samples: dict[str, int] = field(default_factory=dict)
    signals: list[tuple[str, str, str | None]] = field(default_factory=list)
    ended: list[tuple[str, str]] = field(default_factory=list)
    blocks: dict[str, list[Any]] = field(default_factory=dict)

    def open_call(self, call_id: str, **kw: Any) -> int:
        self.opened.append((call_id, kw))
        self.samples[call_id] = 0
        self.blocks[call_id] = []
        return 0

    def push(self, call_id: str, block: Any) -> bool:
        self.samples[call_id] += len(block.agent)
        self.blocks[call_id].append(block)
        return True

    def signal(self, call_id: str, ev: str, *, party: str | None = None,
               ring_s: float | None = None) -> None:
        self.signals.append((call_id, ev, party))

    def end_call(self, call_id: str, reason: str = "api") -> bool:
        self.ended.append((call_id, reason))
        return True

    def add_mark(self, call_id: str, mark: Any) -> None:
        pass
