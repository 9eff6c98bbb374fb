"""Phrase checks (rules 7–10, 13–15): greeting, hold permission and thanks, closing,
restating, promised callbacks and jargon, from recognised words.

Words arrive at the recognizer seam later than the audio (the recognizer lags), so every
check that waits for words gives them ``asr_lag_s`` before it decides — or, when the call's
recognizer reports its progress (:meth:`PhraseRule.heard`), waits until every word said
before the check's moment has come back (a file: as long as that takes; a live call: at
most ``words_wait_s`` past the moment).  A check that has nothing to judge — no
recognised words from the agent — stays silent rather than guess.

* greeting: within ``greeting_window_s`` the agent says their name (``agent_name`` when
  configured, any of its words or all of it; else any name introduction), the company
  (when configured) and an offer of help.  A positive cue as soon as it is complete, else
  one cue naming what was missing once the window (plus the lag) is over.
* hold permission: when a hold starts, the agent must have asked (a hold-request phrase
  in the last ``hold_lookback_s``) and the caller must have answered after the request and
  before the hold (caller words, or caller speech from voice activity).
* hold thanks: the agent's first words after a hold (``thanks_window_s``) thank the caller.
* closing: at the end of the call, « anything else? » and a thank-you within the last
  ``closing_window_s``.
* restated (positive, at most once per ``restate_cooldown_s``), follow_up (each promised
  callback, listed in the summary by time), jargon (site terms, once per term per
  ``jargon_cooldown_s``).

With no word lists for the call's language (``locale`` None) only jargon runs; the summary
says the other checks are unavailable.  Words stay in memory; nothing is logged.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from appliance.config import WordsConfig
from appliance.cue_payloads import (
    Closing,
    CuePayload,
    FollowUp,
    Greeting,
    HoldNoPermission,
    HoldNoThanks,
    Jargon,
    Restated,
)
from appliance.engine.conversation import FrameContext
from appliance.engine.words.locale import PHRASE_KEYS, Locale
from appliance.engine.words.matching import Match, PhraseSet, WordBuffer, tokens
from appliance.events import PARTIES, Cue, Party, Severity, WordEvent

_MSG_MAX = 50
_GREETING_SHORT = {"name": "name", "company": "company", "offer": "offer of help"}


@dataclass(slots=True)
class _Pending:
    hold_start_s: float
    moment_s: float
    """The words said before this call time decide the check."""
    hold_end_s: float = 0.0


class PhraseRule:
    def __init__(
        self,
        cfg: WordsConfig,
        locale: Locale | None,
        *,
        lang: str | None = None,
        asr_lag_s: float = 3.0,
        hold_lookback_s: float = 60.0,
        thanks_window_s: float = 10.0,
        thanks_before_s: float = 3.0,
        restate_cooldown_s: float = 60.0,
        follow_up_merge_s: float = 30.0,
        jargon_cooldown_s: float = 60.0,
        max_gap_s: float = 2.0,
        context_s: float = 10.0,
    ) -> None:
        self.cfg = cfg
        self.locale = locale
        self.lang = locale.language if locale is not None else (lang or "?")
        self.asr_lag_s = asr_lag_s
        self.hold_lookback_s = hold_lookback_s
        self.thanks_window_s = thanks_window_s
        self.thanks_before_s = thanks_before_s
        self.restate_cooldown_s = restate_cooldown_s
        self.follow_up_merge_s = follow_up_merge_s
        self.jargon_cooldown_s = jargon_cooldown_s
        self.context_s = context_s
        span = max(180.0, cfg.closing_window_s + 60.0, hold_lookback_s + 60.0)
        self._buf = {p: WordBuffer(span, max_gap_s) for p in PARTIES}
        self._sets = ({k: PhraseSet(locale.phrases(k)) for k in PHRASE_KEYS}
                      if locale is not None else {})
        self._name: PhraseSet | None = self._sets.get("name_intro")
        if cfg.agent_name.strip():
            parts = [t for t in tokens(cfg.agent_name) if len(t) >= 3]
            self._name = PhraseSet([cfg.agent_name, *parts])
        self._company = PhraseSet([cfg.company]) if cfg.company.strip() else None
        self._jargon = {term: PhraseSet([term], strict=True) for term in cfg.jargon
                        if tokens(term)}
        self._done: dict[str, float] = {}
        self._heard_s: float | None = None  # None: no progress reports, wait asr_lag_s
        self._words_wait_s: float | None = None
        self._t = 0.0
        self._words_changed = False
        # greeting
        self._greet = {"name": False, "company": False, "offer": False}
        self._greeting_done = False
        self.greeting: dict[str, bool | None] | None = None
        # holds
        self._was_on_hold = False
        self._hold_start_s = 0.0
        self._last_hold_start_s = float("-inf")
        self._requests: list[Match] = []
        self._customer_speech: deque[list[float]] = deque()
        self._perm_pending: list[_Pending] = []
        self._thanks_pending: list[_Pending] = []
        self.hold_permission: Counter[str] = Counter()
        self.hold_thanks: Counter[str] = Counter()
        # closing and the rest
        self._closing_question_s: float | None = None
        self.closing: dict[str, bool] | None = None
        self.restated = 0
        self._last_restate_cue_s = float("-inf")
        self.follow_ups: list[dict[str, float]] = []
        self.jargon: Counter[str] = Counter()
        self._jargon_cue_s: dict[str, float] = {}

    def live_greeting(self) -> dict[str, bool | None] | None:
        """Greeting checklist so far (None without a phrase list)."""
        if self.locale is None:
            return None
        return {"name": self._greet["name"],
                "company": self._greet["company"] if self._company is not None else None,
                "offer": self._greet["offer"]}

    def live_closing(self) -> dict[str, bool] | None:
        """Whether the closing question has been heard yet (thanks is judged at the end)."""
        if self.locale is None:
            return None
        return {"question": self._closing_question_s is not None,
                "thanks": bool(self.closing and self.closing.get("thanks"))}

    @property
    def hold_requested_s(self) -> float | None:
        """End (s) of the agent's latest hold-request phrase not yet followed by a hold and
        at most ``hold_lookback_s`` old; None otherwise."""
        if not self._requests:
            return None
        end = self._requests[-1].end_s
        if end <= self._last_hold_start_s or self._t - end > self.hold_lookback_s:
            return None
        return end

    # -- the recognizer's progress -------------------------------------------------------
    def follow_recognizer(self, words_wait_s: float | None) -> None:
        """Decide on the recognizer's progress (:meth:`heard`) rather than a fixed lag;
        wait at most ``words_wait_s`` past a check's moment (None: no limit)."""
        self._heard_s = float("-inf")
        self._words_wait_s = words_wait_s

    def heard(self, heard_s: float) -> None:
        """Every word said before ``heard_s`` (call time) has been delivered."""
        if self._heard_s is not None:
            self._heard_s = max(self._heard_s, heard_s)

    def _ready(self, moment_s: float, t_s: float) -> bool:
        """Have the words that decide a check at ``moment_s`` all come back by ``t_s``?"""
        if self._heard_s is None:
            return t_s >= moment_s + self.asr_lag_s
        if self._heard_s >= moment_s:
            return True
        return self._words_wait_s is not None and t_s >= moment_s + self._words_wait_s

    # -- input ------------------------------------------------------------------------------
    def on_frame(self, ctx: FrameContext) -> list[Cue]:
        self._t = max(self._t, ctx.t_s)
        if ctx.customer.active:
            sp = self._customer_speech
            if sp and ctx.t0_s - sp[-1][1] <= 1e-6:
                sp[-1][1] = ctx.t_s
            else:
                sp.append([ctx.t0_s, ctx.t_s])
        on = ctx.hold.on_hold
        if on and not self._was_on_hold:
            start = ctx.hold.start_s if ctx.hold.start_s is not None else ctx.t0_s
            self._hold_start_s = self._last_hold_start_s = min(start, ctx.t_s)
            if self.locale is not None:
                self._perm_pending.append(_Pending(self._hold_start_s, ctx.t_s))
                self._words_changed = True
        elif not on and self._was_on_hold and self.locale is not None:
            moment = ctx.t0_s + self.thanks_window_s
            self._thanks_pending.append(_Pending(self._hold_start_s, moment, ctx.t0_s))
        self._was_on_hold = on
        return self._tick(ctx.t_s)

    def on_words(self, t_s: float, words: list[WordEvent]) -> list[Cue]:
        self._t = max(self._t, t_s)
        first: dict[Party, float] = {}
        for w in words:
            self._buf[w.party].add(w)
            first[w.party] = min(first.get(w.party, w.start_s), w.start_s)
        cues: list[Cue] = []
        if "agent" in first:
            cues += self._agent_words(first["agent"] - self.context_s)
        self._words_changed = bool(words)
        cues += self._tick(self._t)
        for b in self._buf.values():
            b.prune(self._t)
        keep_s = 2 * self.hold_lookback_s
        self._requests = [m for m in self._requests if self._t - m.end_s <= keep_s]
        while self._customer_speech and self._t - self._customer_speech[0][1] > keep_s:
            self._customer_speech.popleft()
        return cues

    def _new(self, key: str, phrases: PhraseSet | None, t_from: float) -> list[Match]:
        """Agent matches not reported before (they start after the last one ended)."""
        if phrases is None:
            return []
        out = []
        for m in self._buf["agent"].find(phrases, t_from):
            if m.start_s >= self._done.get(key, float("-inf")):
                out.append(m)
                self._done[key] = m.end_s
        return out

    def _cue(self, severity: Severity, msg: str, data: CuePayload) -> Cue:
        return Cue(self._t, "agent", severity, msg[:_MSG_MAX], data)

    def _agent_words(self, t_from: float) -> list[Cue]:
        cues: list[Cue] = []
        if self.locale is not None:
            if not self._greeting_done:
                cues += self._scan_greeting(t_from)
            self._requests += self._new("hold_request", self._sets["hold_request"], t_from)
            for m in self._new("closing_question", self._sets["closing_question"], t_from):
                self._closing_question_s = m.end_s
            for m in self._new("restate", self._sets["restate"], t_from):
                self.restated += 1
                if m.end_s - self._last_restate_cue_s >= self.restate_cooldown_s:
                    self._last_restate_cue_s = m.end_s
                    cues.append(self._cue("info", "Good: you restated the problem",
                                          Restated(start_s=round(m.start_s, 3))))
            for m in self._new("follow_up", self._sets["follow_up"], t_from):
                last = self.follow_ups[-1]["t"] if self.follow_ups else float("-inf")
                if m.start_s - last < self.follow_up_merge_s:
                    continue  # the same promise, said again
                self.follow_ups.append({"t": round(m.start_s, 2)})
                cues.append(self._cue("info", "Callback promised: note a reminder",
                                      FollowUp(start_s=round(m.start_s, 3))))
        for term, ps in self._jargon.items():
            for m in self._new(f"jargon:{term}", ps, t_from):
                self.jargon[term] += 1
                if m.end_s - self._jargon_cue_s.get(term, float("-inf")) < self.jargon_cooldown_s:
                    continue
                self._jargon_cue_s[term] = m.end_s
                shown = term if len(term) <= 22 else term[:21] + "…"
                cues.append(self._cue("info", f"Jargon: '{shown}' — say it plainly",
                                      Jargon(term=term, start_s=round(m.start_s, 3))))
        return cues

    # -- greeting ---------------------------------------------------------------------------
    def _scan_greeting(self, t_from: float) -> list[Cue]:
        gw = self.cfg.greeting_window_s
        items = {"name": self._name, "company": self._company,
                 "offer": self._sets["greeting_offer"]}
        agent = self._buf["agent"]
        for item, ps in items.items():
            if ps is not None and not self._greet[item] and agent.find(ps, t_from, gw):
                self._greet[item] = True
        if all(self._greet[i] or items[i] is None for i in items):
            return self._decide_greeting()
        return []

    def _decide_greeting(self) -> list[Cue]:
        self._greeting_done = True
        if self._buf["agent"].words_seen == 0:
            return []  # no words from the agent: nothing to judge
        company = self._greet["company"] if self._company is not None else None
        g: dict[str, bool | None] = {"name": self._greet["name"], "company": company,
                                     "offer": self._greet["offer"]}
        self.greeting = g
        missing = [k for k, v in g.items() if v is False]
        data = Greeting(name=self._greet["name"], company=company, offer=self._greet["offer"],
                        missing=tuple(missing) if missing else None)
        if not missing:
            return [self._cue("info", "Good: complete greeting", data)]
        if len(missing) == 1:
            msg = {"name": "Greeting: say your name", "company": "Greeting: say the company name",
                   "offer": "Greeting: offer your help"}[missing[0]]
        else:
            msg = "Greeting: add " + ", ".join(_GREETING_SHORT[k] for k in missing)
        return [self._cue("info", msg, data)]

    # -- holds ------------------------------------------------------------------------------
    def _permission(self, hold_start_s: float) -> tuple[bool, bool, bool]:
        """(asked, answered, answered yes) for a hold that started at ``hold_start_s``."""
        reqs = [m for m in self._requests
                if hold_start_s - self.hold_lookback_s <= m.end_s <= hold_start_s + 0.5]
        if not reqs:
            return False, False, False
        cust = self._buf["customer"]
        for r in reversed(reqs):
            t0 = r.end_s - 0.5
            heard = cust.any_between(t0, hold_start_s)
            if heard or self._customer_speech_s(r.end_s - 0.3, hold_start_s) >= 0.2:
                yes = bool(cust.find(self._sets["customer_yes"], t0, hold_start_s))
                return True, True, yes
        return True, False, False

    def _customer_speech_s(self, t0: float, t1: float) -> float:
        return sum(max(0.0, min(e, t1) - max(s, t0)) for s, e in self._customer_speech)

    def _tick(self, t_s: float) -> list[Cue]:
        if self.locale is None:
            return []
        cues: list[Cue] = []
        if not self._greeting_done and self._ready(self.cfg.greeting_window_s, t_s):
            cues += self._decide_greeting()
        changed, self._words_changed = self._words_changed, False
        for p in list(self._perm_pending):
            final = self._ready(p.moment_s, t_s)
            if changed or final:
                cues += self._judge_permission(p, final=final)
        for p in list(self._thanks_pending):
            final = self._ready(p.moment_s, t_s)
            if changed or final:
                cues += self._judge_thanks(p, final=final)
        return cues

    def _judge_permission(self, p: _Pending, final: bool) -> list[Cue]:
        asked, answered, yes = self._permission(p.hold_start_s)
        if not (answered or final):
            return []
        self._perm_pending.remove(p)
        self.hold_permission["holds"] += 1
        if answered:
            self.hold_permission["ok"] += 1
            self.hold_permission["answered_yes"] += int(yes)
            return []
        if self._buf["agent"].words_seen == 0:
            self.hold_permission["unknown"] += 1
            return []
        self.hold_permission["no_answer" if asked else "not_asked"] += 1
        msg = "Wait for the caller's answer first" if asked else "Ask before putting on hold"
        return [self._cue("warn", msg, HoldNoPermission(start_s=round(p.hold_start_s, 3),
                                                        asked=asked, answered=False))]

    def _judge_thanks(self, p: _Pending, final: bool) -> list[Cue]:
        lo = max(p.hold_start_s, p.hold_end_s - self.thanks_before_s)
        hi = p.hold_end_s + self.thanks_window_s
        agent = self._buf["agent"]
        thanked = bool(agent.find(self._sets["hold_thanks"], lo, hi))
        if not (thanked or final):
            return []
        self._thanks_pending.remove(p)
        self.hold_thanks["holds"] += 1
        if thanked:
            self.hold_thanks["ok"] += 1
            return []
        if not agent.any_between(lo, hi):
            self.hold_thanks["unknown"] += 1  # the agent said nothing recognisable yet
            return []
        self.hold_thanks["missing"] += 1
        return [self._cue("info", "Thank the caller for waiting",
                          HoldNoThanks(start_s=round(p.hold_start_s, 3),
                                       end_s=round(p.hold_end_s, 3)))]

    # -- end of call ------------------------------------------------------------------------
    def close(self, t_s: float) -> list[Cue]:
        self._t = max(self._t, t_s)
        if self.locale is None:
            return []
        cues: list[Cue] = []
        if not self._greeting_done:
            cues += self._decide_greeting()
        for p in list(self._perm_pending):
            cues += self._judge_permission(p, final=True)
        for p in list(self._thanks_pending):
            cues += self._judge_thanks(p, final=True)
        agent = self._buf["agent"]
        if agent.words_seen == 0:
            return cues
        lo = self._t - self.cfg.closing_window_s
        q = bool(agent.find(self._sets["closing_question"], lo)) or (
            self._closing_question_s is not None and self._closing_question_s >= lo)
        th = bool(agent.find(self._sets["closing_thanks"], lo))
        self.closing = {"question": q, "thanks": th}
        if not (q and th):
            msg = ("Closing: ask 'anything else?' and thank" if not (q or th)
                   else "Closing: thank the caller for calling" if q
                   else "Closing: ask if anything else is needed")
            cues.append(self._cue("info", msg, Closing(question=q, thanks=th)))
        return cues

    def summary(self) -> dict[str, Any]:
        jargon = dict(self.jargon)
        if self.locale is None:
            return {"phrases": f"unavailable for language {self.lang}", "jargon": jargon}
        keys = ("holds", "ok", "answered_yes", "no_answer", "not_asked", "unknown")
        return {
            "greeting": self.greeting,
            "hold_permission": {k: self.hold_permission[k] for k in keys},
            "hold_thanks": {k: self.hold_thanks[k] for k in ("holds", "ok", "missing", "unknown")},
            "closing": self.closing,
            "restated": self.restated,
            "follow_up": list(self.follow_ups),
            "jargon": jargon,
        }
