"""One call's speech recognition: a speech gate per party feeding the recognizer worker.

The engine calls :meth:`AsrSession.tap` once per 32 ms frame (after its own analysis, so the
gate sees the party's speech state); the analysis loop drains words with :meth:`poll` and
hands them to ``CallEngine.add_words``.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from appliance.asr.gate import SpeechGate
from appliance.asr.pool import RecognizerPool
from appliance.asr.worker import Recognizer, RecognizerWorker, Result
from appliance.config import AsrConfig
from appliance.engine.conversation import FrameContext
from appliance.errors import CONFIG_INVALID, MODEL_MISSING, ApplianceError, shown
from appliance.events import PARTIES, Party

log = logging.getLogger(__name__)
FRAME_S = 0.032


def check_language(lang: str, models_dir: Path | None, cfg: AsrConfig) -> None:
    """Refuse a call language the box knows nothing of: no bundled word lists and no speech
    model installed for it (a typo such as ``--lang fe`` would otherwise run silently with
    acoustic cues only).  Raises ApplianceError (CONFIG_INVALID)."""
    from appliance.asr.models import list_models, resolve_models_dir
    from appliance.engine.words.locale import available_languages

    if not re.fullmatch(r"[a-z]{2,3}", lang):
        raise ApplianceError(CONFIG_INVALID, f"language {shown(lang)}: give a language code "
                             "like en, de, fr")
    bundled = available_languages()
    if lang in bundled:
        return
    where = resolve_models_dir(models_dir, cfg.models_dir)
    if any(m.lang == lang for m in list_models(where)):
        return
    raise ApplianceError(CONFIG_INVALID, f"language {shown(lang)}: no word lists for it (bundled: "
                         f"{', '.join(bundled)}) and no speech model installed for it in "
                         f"{where}; pick one of those, or install a model with "
                         f"`appliance models install MODEL.zip --lang {lang}`")


def load_call_model(lang: str, models_dir: Path | None, cfg: AsrConfig) -> Any | None:
    """The shared ``vosk.Model`` for ``lang``, fully verified, or None (one warning line
    saying how to install one) when no model for the language is installed.  A damaged
    model is an error: the box refuses it rather than run on it."""
    from appliance.asr.models import load_model, resolve_models_dir

    try:
        return load_model(lang, resolve_models_dir(models_dir, cfg.models_dir), verify="full")
    except ApplianceError as exc:
        if exc.code != MODEL_MISSING:
            raise
        log.warning("%s; word cues are off, acoustic cues run", exc.message)
        return None


def queue_items(cfg: AsrConfig) -> int:
    """Gated 32 ms frames a call's recognizer may have waiting (``[asr] queue_s``)."""
    return max(4, round(cfg.queue_s / FRAME_S))


class AsrSession:
    def __init__(
        self,
        make_recognizer: Callable[[], Recognizer],
        cfg: AsrConfig,
        *,
        block_when_full: bool,
        parties: Sequence[Party] | None = None,
        pool: RecognizerPool | None = None,
    ) -> None:
        self.parties: tuple[Party, ...] = tuple(parties) if parties is not None else (
            PARTIES if cfg.customer else ("agent",)
        )
        self._gates = {p: SpeechGate(FRAME_S, cfg.preroll_s, cfg.postroll_s,
                                     cfg.segment_gap_s) for p in self.parties}
        self.worker = RecognizerWorker(make_recognizer, self.parties,
                                       queue_items=queue_items(cfg),
                                       block_when_full=block_when_full, pool=pool)
        # call times at which the gated segments not yet finalised began, per party
        self._open: dict[Party, deque[float]] = {p: deque() for p in self.parties}
        self._in_segment: dict[Party, bool] = dict.fromkeys(self.parties, False)
        self._finalised: dict[Party, int] = dict.fromkeys(self.parties, 0)

    def tap(self, ctx: FrameContext, window: np.ndarray) -> None:
        """The engine's per-frame tap: gate each party's frame into the worker."""
        for i, p in enumerate(PARTIES):
            gate = self._gates.get(p)
            if gate is None:
                continue
            out = gate.push(ctx.t0_s, window[i], ctx.party(p).speaking)
            if len(out.pcm) and not self._in_segment[p]:
                self._in_segment[p] = True
                self._open[p].append(out.t_s)
            if out.end_of_segment:
                self._in_segment[p] = False
            if len(out.pcm) or out.end_of_segment:
                self.worker.submit(p, out.t_s, out.pcm, out.end_of_segment)

    def heard_s(self, now_s: float) -> float:
        """Call time up to which every party's words have come back: the start of the
        oldest segment the recognizer has not finalised, else ``now_s``.  Read it *before*
        :meth:`poll`: the words of every segment counted as finalised are then in the poll."""
        out = now_s
        for p in self.parties:
            done, q = self.worker.segments_done[p], self._open[p]
            while q and self._finalised[p] < done:
                q.popleft()
                self._finalised[p] += 1
            if q:
                out = min(out, q[0])
        return out

    def poll(self) -> list[Result]:
        return self.worker.poll()

    def finish(self, timeout_s: float | None = None) -> list[Result]:
        return self.worker.close(timeout_s)

    def stats(self) -> dict[str, Any]:
        w = self.worker
        return {
            "parties": list(self.parties),
            "words": dict(w.words),
            "fed_s": {p: round(w.fed_s[p], 1) for p in self.parties},
            "gated_share": {
                p: round(self._gates[p].fed_s / self._gates[p].total_s, 3)
                if self._gates[p].total_s else None for p in self.parties
            },
            "decode_cpu_s": round(w.decode_cpu_s, 2),
            "dropped_blocks": w.dropped_items,
            "error": None if w.error is None else type(w.error).__name__,
        }
