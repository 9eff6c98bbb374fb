"""Many calls in one process, with voice activity batched across every channel.

A PBX tap feeds dozens of calls to one box.  Each call keeps its own
:class:`~appliance.engine.call_engine.CallEngine`; the :class:`CallBank` gathers the next
32 ms window of every call that has one and evaluates Silero once for all of their channels
(one ONNX run with a batch of 2 × calls), then steps each engine with its probabilities.
"""

from __future__ import annotations

import numpy as np

from appliance.engine.call_engine import CallEngine
from appliance.engine.vad import SileroModel
from appliance.events import Cue


class CallBank:
    def __init__(self, vad: SileroModel) -> None:
        self._vad = vad
        self.calls: dict[str, CallEngine] = {}

    def add(self, engine: CallEngine) -> None:
        if engine.call_id in self.calls:
            raise ValueError(f"call {engine.call_id!r} is already in the bank")
        self.calls[engine.call_id] = engine

    def remove(self, call_id: str) -> CallEngine:
        return self.calls.pop(call_id)

    def feed(self, call_id: str, agent: np.ndarray, customer: np.ndarray) -> None:
        self.calls[call_id].feed(agent, customer)

    def step(self) -> dict[str, list[Cue]]:
        """One round: every call with a complete window advances by one frame."""
        ready: list[tuple[CallEngine, np.ndarray]] = []
        for eng in self.calls.values():
            w = eng.take_window()
            if w is not None:
                ready.append((eng, w))
        if not ready:
            return {}
        streams = [s for eng, _ in ready for s in eng.vad_streams]
        windows = np.concatenate([w for _, w in ready], axis=0)
        probs = self._vad.run_batch(streams, windows)
        out: dict[str, list[Cue]] = {}
        for i, (eng, w) in enumerate(ready):
            cues = eng.step(w, probs[2 * i : 2 * i + 2])
            if cues:
                out[eng.call_id] = cues
        return out

    def drain(self) -> dict[str, list[Cue]]:
        """Step until no call has a complete window left."""
        out: dict[str, list[Cue]] = {}
        while True:
            got = self.step()
            if not got and not any(e.has_window() for e in self.calls.values()):
                return out
            for k, v in got.items():
                out.setdefault(k, []).extend(v)
