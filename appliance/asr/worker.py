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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from appliance.asr.gate import TimeMap
from appliance.asr.pool import Lane, RecognizerPool
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
    """One call's recognizers (one per party), decoded on a :class:`RecognizerPool`: the
    process's shared pool, or a private one-thread pool when none is given."""

    def __init__(
        self,
        make_recognizer: Callable[[], Recognizer],
        parties: Sequence[Party],
        *,
        queue_items: int,
        block_when_full: bool,
        result_items: int = 4096,
        pool: RecognizerPool | None = None,
    ) -> None:
        self._recs: dict[Party, Recognizer] = {p: make_recognizer() for p in parties}
        self._maps: dict[Party, TimeMap] = {p: TimeMap() for p in parties}
        self._out: queue.Queue[Result] = queue.Queue(maxsize=result_items)
        self._block = block_when_full
        self._own_pool = pool is None
        self._pool = pool if pool is not None else RecognizerPool(1, queue_items)
        self._lanes: dict[Party, Lane] = {p: self._pool.lane(p, self._timed_feed)
                                          for p in parties}
        self.dropped_items = 0
        self.decode_cpu_s = 0.0
        self.fed_s: dict[Party, float] = dict.fromkeys(parties, 0.0)
        self.words: dict[Party, int] = dict.fromkeys(parties, 0)
        self.segments_done: dict[Party, int] = dict.fromkeys(parties, 0)
        """Segments finalised per party (their words are on the result queue), counting
        the ones whose end was dropped (their words are lost, not late)."""

    @property
    def parties(self) -> tuple[Party, ...]:
        return tuple(self._recs)

    @property
    def error(self) -> BaseException | None:
        """The first recognizer failure of this call (its lane stopped; the call goes on)."""
        return next((ln.error for ln in self._lanes.values() if ln.error is not None), None)

    def submit(self, party: Party, t_s: float, pcm: np.ndarray, end_of_segment: bool) -> bool:
        """Queue gated audio; False (and a counted drop) when a live pool is full."""
        lane = self._lanes.get(party)
        if lane is None:
            return True
        if self._pool.submit(lane, _Item(party, t_s, pcm, end_of_segment), block=self._block):
            return True
        self.dropped_items += 1
        if end_of_segment:
            self.segments_done[party] += 1
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
        """Finalise every party, wait for its lane (at most ``timeout_s``), and return the
        remaining results."""
        for p, lane in self._lanes.items():
            self._pool.close(lane, _Item(p, 0.0, np.zeros(0, np.int16), True))
        results: list[Result] = []
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for lane in self._lanes.values():
            while not lane.done.wait(0.05):
                results += self.poll()
                if deadline is not None and time.monotonic() >= deadline:
                    log.warning("speech recognition did not finish in %.0f s", timeout_s)
                    break
        if self._own_pool:
            self._pool.stop()
        return results + self.poll()

    # -- on a pool thread --------------------------------------------------------------
    def _timed_feed(self, item: _Item) -> None:
        t0 = time.thread_time()
        try:
            self._feed(item)
        finally:
            self.decode_cpu_s += time.thread_time() - t0

    def _feed(self, item: _Item) -> None:
        rec = self._recs[item.party]
        if len(item.pcm):
            self._maps[item.party].add(item.t_s, len(item.pcm))
            self.fed_s[item.party] += len(item.pcm) / 16000
            if rec.AcceptWaveform(item.pcm.astype(np.int16).tobytes()):
                self._emit(item.party, rec.Result())
        if item.end_of_segment:
            self._emit(item.party, rec.FinalResult())
            self.segments_done[item.party] += 1

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
