"""Fillers (rule 2): « um », « äh », « euh » counted per party, with a live cue for the agent.

Two sources report fillers:

* ``asr``: recognised words found in the language's filler list (plus ``[words]
  extra_fillers``), compared in compact form (« ähm » = « aehm », « hmmm » = « hm »).
  Backchannels (« mhm », « mm-hmm », « uh-huh ») are never fillers, for either party: the
  agent's « mhm » while the caller talks is active listening.  A filler word that turns out
  to be the first half of a two-word backchannel (« uh » then « huh ») is taken back.
* ``acoustic``: :meth:`FillerRule.add_acoustic`, from a filled-pause detector.

A filler both sources report at overlapping times counts once, as ``both``.

The live cue: agent fillers in the last ``filler_window_s`` of call time, per minute of the
agent's speech in that window (voice activity when frames are seen, else the recognised
words' spans), above ``filler_per_min`` — once at least ``min_count`` fillers and
``min_speech_s`` of speech are in the window.  It re-arms when the rate falls to
``rearm_ratio`` of the threshold, and never repeats within ``cooldown_s``.

Only filler tokens are kept (they are not transcript); nothing is logged.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from appliance.config import WordsConfig
from appliance.cue_payloads import Filler
from appliance.engine.conversation import FrameContext
from appliance.engine.words.locale import Locale
from appliance.engine.words.matching import compact, tokens
from appliance.events import PARTIES, Cue, Party, WordEvent

ACOUSTIC = "(filled pause)"
_MSG_MAX = 50


@dataclass(slots=True)
class _Filler:
    start_s: float
    end_s: float
    source: str  # "asr", "acoustic" or "both"
    token: str  # the filler as recognised, compact; ACOUSTIC for the acoustic source


class _Speech:
    """Speech seconds of one party: rolling (for the window) and in total."""

    def __init__(self) -> None:
        self.items: deque[tuple[float, float]] = deque()  # (end_s, seconds)
        self.total_s = 0.0

    def add(self, end_s: float, seconds: float) -> None:
        if seconds <= 0:
            return
        self.items.append((end_s, seconds))
        self.total_s += seconds

    def since(self, t_s: float) -> float:
        while self.items and self.items[0][0] < t_s:
            self.items.popleft()
        return sum(s for _, s in self.items)


class FillerRule:
    def __init__(
        self,
        cfg: WordsConfig,
        locale: Locale | None,
        *,
        lang: str | None = None,
        cooldown_s: float = 60.0,
        rearm_ratio: float = 0.6,
        min_count: int = 3,
        min_speech_s: float = 15.0,
        overlap_tol_s: float = 0.15,
    ) -> None:
        self.cfg = cfg
        self.lang = locale.language if locale is not None else lang
        self.cooldown_s = cooldown_s
        self.rearm_ratio = rearm_ratio
        self.min_count = min_count
        self.min_speech_s = min_speech_s
        self.overlap_tol_s = overlap_tol_s
        words = list(locale.fillers) if locale is not None else []
        back = {compact(b) for b in locale.backchannels} if locale is not None else set()
        pairs = [tokens(b) for b in (locale.backchannels if locale is not None else ())]
        self._backchannel_pairs = {(compact(t[0]), compact(t[1])) for t in pairs if len(t) == 2}
        name = {compact(t) for t in tokens(cfg.agent_name)}
        self._fillers = {compact(w) for w in words} - back - name
        self._fillers |= {compact(w) for w in cfg.extra_fillers if len(tokens(w)) == 1}
        self._multi = {tuple(compact(t) for t in tokens(w))
                       for w in cfg.extra_fillers if len(tokens(w)) > 1}
        self.asr_available = bool(self._fillers or self._multi)
        self._events: dict[Party, list[_Filler]] = {"agent": [], "customer": []}
        self._last_tok: dict[Party, tuple[str, float, _Filler | None]] = {}
        self._recent: dict[Party, deque[str]] = {p: deque(maxlen=4) for p in PARTIES}
        self._vad = {p: _Speech() for p in PARTIES}
        self._wordspan = {p: _Speech() for p in PARTIES}
        self._word_end: dict[Party, float] = {"agent": -1e9, "customer": -1e9}
        self._frames_seen = False
        self._acoustic_seen = False
        #: Set by whoever attaches a recognizer to the call; without one only the acoustic
        #: source can find fillers.
        self.asr_running = False
        self._high = False
        self._last_cue_s = -1e9
        self._next_eval_s = 0.0
        self.cues = 0

    # -- input ------------------------------------------------------------------------------
    def on_frame(self, ctx: FrameContext) -> list[Cue]:
        self._frames_seen = True
        for p in PARTIES:
            if ctx.party(p).active and not (p == "agent" and ctx.hold.on_hold):
                self._vad[p].add(ctx.t_s, ctx.dt_s)
        if ctx.t_s < self._next_eval_s:
            return []
        self._next_eval_s = ctx.t_s + 1.0
        return self._judge(ctx.t_s)

    def on_words(self, t_s: float, words: list[WordEvent]) -> list[Cue]:
        for w in sorted(words, key=lambda w: w.start_s):
            self._add_span(w)
            tok = compact(w.word)
            if not tok:
                continue
            last = self._last_tok.get(w.party)
            if (last is not None and w.start_s - last[1] <= 0.5
                    and (last[0], tok) in self._backchannel_pairs):
                self._retract(w.party, last[2])  # « uh » + « huh »: a backchannel
                self._last_tok[w.party] = (tok, w.end_s, None)
                self._recent[w.party].clear()
                continue
            self._recent[w.party].append(tok)
            multi = self._multi_match(w.party)
            ev = None
            if tok in self._fillers or multi:
                ev = self._add("asr", w.party, w.start_s, w.end_s, multi or tok)
            self._last_tok[w.party] = (tok, w.end_s, ev)
        return self._judge(t_s)

    def add_acoustic(self, t_s: float, party: Party, start_s: float, end_s: float) -> list[Cue]:
        """A filled pause found by the acoustic detector (source ``acoustic``)."""
        self._acoustic_seen = True
        self._add("acoustic", party, start_s, end_s, ACOUSTIC)
        return self._judge(t_s)

    def _add_span(self, w: WordEvent) -> None:
        """Speech seconds covered by recognised words (gaps under 0.3 s bridged)."""
        prev_end = self._word_end[w.party]
        start = prev_end if w.start_s - prev_end < 0.3 else w.start_s
        self._wordspan[w.party].add(w.end_s, max(0.0, w.end_s - start))
        self._word_end[w.party] = max(self._word_end[w.party], w.end_s)

    def _retract(self, party: Party, ev: _Filler | None) -> None:
        if ev is None:
            return
        if ev.source == "asr":
            self._events[party].remove(ev)
        elif ev.source == "both":
            ev.source, ev.token = "acoustic", ACOUSTIC

    def _multi_match(self, party: Party) -> str | None:
        """A multi-word site filler (« you know ») ending with the latest word."""
        recent = tuple(self._recent[party])
        for m in self._multi:
            if len(m) <= len(recent) and recent[-len(m):] == m:
                return " ".join(m)
        return None

    def _add(self, source: str, party: Party, start_s: float, end_s: float, token: str) -> _Filler:
        tol = self.overlap_tol_s
        other = "acoustic" if source == "asr" else "asr"
        for ev in reversed(self._events[party][-20:]):
            if ev.source == other and ev.start_s <= end_s + tol and start_s <= ev.end_s + tol:
                ev.source = "both"
                if source == "asr":
                    ev.token = token
                ev.start_s, ev.end_s = min(ev.start_s, start_s), max(ev.end_s, end_s)
                return ev
        ev = _Filler(start_s, end_s, source, token)
        self._events[party].append(ev)
        return ev

    def found(self, party: Party) -> list[tuple[float, float, str]]:
        """The fillers found so far for ``party``: (start_s, end_s, source), in order."""
        return [(e.start_s, e.end_s, e.source) for e in self._events[party]]

    # -- the live cue ---------------------------------------------------------------------
    def recent(self, t_s: float, window_s: float = 60.0) -> int:
        """Agent fillers that started in the last ``window_s`` seconds (dashboard counter)."""
        return sum(1 for e in self._events["agent"] if e.start_s >= t_s - window_s)

    def _window(self, t_s: float) -> tuple[list[_Filler], float]:
        t_from = t_s - self.cfg.filler_window_s
        evs = [e for e in self._events["agent"] if e.start_s >= t_from]
        speech = self._vad["agent"] if self._frames_seen else self._wordspan["agent"]
        return evs, speech.since(t_from)

    def _judge(self, t_s: float) -> list[Cue]:
        evs, speech_s = self._window(t_s)
        if speech_s < self.min_speech_s:
            return []
        per_min = 60.0 * len(evs) / speech_s
        thr = self.cfg.filler_per_min
        if self._high:
            if per_min <= thr * self.rearm_ratio:
                self._high = False
            return []
        if (per_min <= thr or len(evs) < self.min_count
                or t_s - self._last_cue_s < self.cooldown_s):
            return []
        self._high = True
        self._last_cue_s = t_s
        self.cues += 1
        counts = Counter(e.token for e in evs)
        named = [tok for tok, _ in counts.most_common() if tok != ACOUSTIC]
        msg = f"Many fillers ({named[0][:16]}): pause instead" if named else \
            "Many filled pauses: pause instead"
        data = Filler(count=len(evs), per_min=round(per_min, 1), threshold_per_min=thr,
                      window_s=self.cfg.filler_window_s, speech_s=round(speech_s, 1),
                      words=dict(counts))
        return [Cue(t_s, "agent", "warn", msg[:_MSG_MAX], data)]

    def close(self, t_s: float) -> list[Cue]:
        return []

    def summary(self) -> dict[str, Any]:
        by_source = {"asr": 0, "acoustic": 0, "both": 0}
        count: dict[str, int] = {}
        per_min: dict[str, float | None] = {}
        words: dict[str, dict[str, int]] = {}
        for p in PARTIES:
            evs = self._events[p]
            count[p] = len(evs)
            for e in evs:
                by_source[e.source] += 1
            speech = (self._vad[p] if self._frames_seen else self._wordspan[p]).total_s
            per_min[p] = round(60.0 * len(evs) / speech, 2) if speech >= 10.0 else None
            words[p] = dict(Counter(e.token for e in evs if e.token != ACOUSTIC))
        out: dict[str, Any] = {
            **count,
            "by_source": by_source,
            "per_min": per_min,
            "words": words,
            "sources": (["asr"] if self.asr_running and self.asr_available else [])
            + ["acoustic"],
            "available": True,
        }
        if not self.asr_available:
            out["note"] = f"no filler list for language {self.lang or '?'}"
        elif not self.asr_running:
            out["note"] = "no speech model: acoustic filled pauses only"
        return {"fillers": out}
