"""The recognizer worker: Vosk runs in its own thread, off the frame path.

Vosk's decoder is a blocking C call that can take longer than real time on a busy box; the
acoustic cues must never wait for it.  The engine's frame tap hands gated audio to
:meth:`RecognizerWorker.submit`, which only puts it on a bounded queue: live audio is dropped
and counted when the queue is full (recognition is behind), file audio waits for room
(``block_when_full``) so a file is recognised completely.  Results come back on a second
bounded queue that the analysis loop drains with :meth:`poll`.

One ``vosk.Model`` is shared by every recognizer of the process; each party of each call
has its own ``KaldiRecognizer`` (created through ``make_recognizer`` so tests can inject a
fake one).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from appliance.asr.gate import TimeMap
from appliance.events import Party, WordEvent

log = logging.getLogger(__name__)


Result = tuple[list[WordEvent], "Transcript | None"]


class Recognizer(Protocol):
    """What the worker needs of a ``vosk.KaldiRecognizer`` (Vosk's own method names)."""

    def AcceptWaveform(self, data: bytes) -> bool: ...

    def Result(self) -> str: ...

    def FinalResult(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Transcript:
    """One final recognition result (kept in memory only)."""

    party: Party
    text: str
    start_s: float
    end_s: float
    kind: str = "transcript"


@dataclass(frozen=True, slots=True)
class _Item:
    party: Party
    t_s: float
    pcm: np.ndarray
    end_of_segment: bool


def vosk_recognizer_factory(model: Any, sample_rate_hz: int = 16000) -> Callable[[], Recognizer]:
    """Recognizers over one shared ``vosk.Model``, with word timings on."""

    def make() -> Recognizer:
        import vosk

        rec = vosk.KaldiRecognizer(model, sample_rate_hz)
        rec.SetWords(True)
        return rec

    return make


class RecognizerWorker:
    def __init__(
        self,
        make_recognizer: Callable[[], Recognizer],
        parties: Sequence[Party],
        *,
        queue_items: int,
        block_when_full: bool,
        result_items: int = 4096,
    ) -> None:
        self._recs: dict[Party, Recognizer] = {p: make_recognizer() for p in parties}
        self._maps: dict[Party, TimeMap] = {p: TimeMap() for p in parties}
        self._in: queue.Queue[_Item | None] = queue.Queue(maxsize=queue_items)
        self._out: queue.Queue[Result] = queue.Queue(
            maxsize=result_items
        )
        self._block = block_when_full
        self._thread = threading.Thread(target=self._run, name="recognizer", daemon=True)
        self.dropped_items = 0
        self.decode_cpu_s = 0.0
        self.fed_s: dict[Party, float] = dict.fromkeys(parties, 0.0)
        self.words: dict[Party, int] = dict.fromkeys(parties, 0)
        self.error: BaseException | None = None
        self._thread.start()

    @property
    def parties(self) -> tuple[Party, ...]:
        return tuple(self._recs)

    def submit(self, party: Party, t_s: float, pcm: np.ndarray, end_of_segment: bool) -> bool:
        """Queue gated audio; False (and a counted drop) when a live queue is full."""
        if party not in self._recs:
            return True
        item = _Item(party, t_s, pcm, end_of_segment)
        if self._block:
            self._in.put(item)
            return True
        try:
            self._in.put_nowait(item)
            return True
        except queue.Full:
            self.dropped_items += 1
            if self.dropped_items == 1 or self.dropped_items % 100 == 0:
                log.warning("speech recognition is behind: %d audio blocks dropped",
                            self.dropped_items)
            return False

    def poll(self) -> list[Result]:
        """Results ready so far (never blocks)."""
        out = []
        while True:
            try:
                out.append(self._out.get_nowait())
            except queue.Empty:
                return out

    def close(self, timeout_s: float | None = None) -> list[Result]:
        """Finalise every party, stop the thread, and return the remaining results."""
        for p in self._recs:
            self._in.put(_Item(p, 0.0, np.zeros(0, np.int16), True))
        self._in.put(None)
        results: list[Result] = []
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self._thread.is_alive():
            results += self.poll()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._thread.join(0.05 if left is None else min(0.05, left))
            if deadline is not None and time.monotonic() >= deadline:
                log.warning("speech recognition did not finish in %.0f s", timeout_s)
                break
        return results + self.poll()

    # -- the worker thread -------------------------------------------------------------
    def _run(self) -> None:
        try:
            while (item := self._in.get()) is not None:
                t0 = time.thread_time()
                self._feed(item)
                self.decode_cpu_s += time.thread_time() - t0
        except BaseException as exc:  # a recognizer failure must not take the box down
            self.error = exc
            log.error("speech recognition stopped: %s", type(exc).__name__)

    def _feed(self, item: _Item) -> None:
        rec = self._recs[item.party]
        if len(item.pcm):
            self._maps[item.party].add(item.t_s, len(item.pcm))
            self.fed_s[item.party] += len(item.pcm) / 16000
            if rec.AcceptWaveform(item.pcm.astype(np.int16).tobytes()):
                self._emit(item.party, rec.Result())
        if item.end_of_segment:
            self._emit(item.party, rec.FinalResult())

    def _emit(self, party: Party, raw: str) -> None:
        res = json.loads(raw)
        tmap = self._maps[party]
        words = [
            WordEvent(party, str(w["word"]), tmap.to_call(float(w["start"])),
                      tmap.to_call(float(w["end"])), float(w.get("conf", 1.0)))
            for w in res.get("result", [])
        ]
        if not words:
            return
        self.words[party] += len(words)
        text = " ".join(w.word for w in words)
        self._out.put((words, Transcript(party, text, words[0].start_s, words[-1].end_s)))
