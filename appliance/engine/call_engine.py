"""The per-call streaming engine: frames in, cues out.

One :class:`CallEngine` per call holds every piece of per-call state; the Silero model is
shared (passed in).  Audio arrives as int16 chunks of any size per party; the engine cuts
it into 32 ms frames (Silero's window), and for each frame runs the feature extractors, the
voice activity decision (echo gate, hysteresis, hangover), the hold state and the cue rules.

Two ways to drive it:

* :meth:`CallEngine.push` — one call alone: runs the VAD for both parties in one batch.
* :meth:`feed` / :meth:`take_window` / :meth:`step` — a :class:`~appliance.stream.bank.CallBank`
  gathers one window from many calls and evaluates the VAD for all of them in one batch.

Nothing here looks ahead: each cue is decided from the frames seen so far.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from appliance.config import Config
from appliance.engine.conversation import (
    EchoGate,
    FrameContext,
    PartyFrame,
    SpeechTracker,
    Spurt,
)
from appliance.engine.cues import CueRule
from appliance.engine.cues.call_control import CallControlRule
from appliance.engine.cues.dead_air import DeadAirRule
from appliance.engine.cues.filler import FillerRule
from appliance.engine.cues.interruption import InterruptionRule
from appliance.engine.cues.phrases import PhraseRule
from appliance.engine.cues.rate import RateRule
from appliance.engine.cues.talk_ratio import TalkRatioRule
from appliance.engine.cues.tone import ToneRule
from appliance.engine.features.extractor import FeatureExtractor, FeatureFrames
from appliance.engine.features.filled_pause import FilledPauseDetector
from appliance.engine.features.music import MusicDetector
from appliance.engine.features.nuclei import NucleiDetector
from appliance.engine.hold import HoldTracker
from appliance.engine.level_vad import LevelDetector, hop_mean
from appliance.engine.marks import Mark
from appliance.engine.vad import SAMPLE_RATE_HZ, WINDOW_SAMPLES, SileroModel, VadStream
from appliance.engine.words.locale import load_locale
from appliance.events import PARTIES, Cue, Party, Summary, WordEvent

log = logging.getLogger(__name__)

FRAME_S = WINDOW_SAMPLES / SAMPLE_RATE_HZ
#: The filled-pause detector is chunk-size invariant and its cost is mostly per call, so it
#: runs on batches of this many frames (128 ms more report latency for a per-minute rate).
FILLED_PAUSE_BATCH_FRAMES = 4
#: Music detector settings for the agent channel.  The tonal thresholds sit lower than the
#: detector's stand-alone defaults because Silero vetoes speech here: on the corpus this
#: took music recall from 0.90 to 0.99 with no false music on slow speech.
MUSIC_TONAL_THRESHOLD = 0.4
MUSIC_TONAL_CENTER = 0.4
#: Hold music is never speech: Silero's mean probability over the last second must stay
#: below this for the music flag to count (Silero gives ~0.00 on every hold-music style).
MUSIC_SPEECH_VETO = 0.3
MUSIC_VETO_FRAMES = round(1.0 / FRAME_S)
#: A weaker frame (this many dB under ``[vad] level_snr_db``) continues level-detected speech.
LEVEL_CONTINUE_DB = 7.0
#: The level detector says nothing while the other party is this much louder (double talk:
#: the echo the gate cannot place lives there).
LEVEL_MAX_BELOW_OTHER_DB = 12.0
#: No talk spurt starts on a frame less than this far above the channel's noise floor.
ONSET_MIN_SNR_DB = 10.0


def _levels_dbfs(window: np.ndarray) -> list[float]:
    """RMS level (dBFS) of each row of the (2, 512) window."""
    mean_sq = (np.add.reduce(np.square(window, dtype=np.float64), axis=1)
               / window.shape[1]).tolist()
    return [10.0 * math.log10(p / (32768.0**2)) if p > 0 else -120.0 for p in mean_sq]


def _median(values: list[float]) -> float:
    """``float(np.median(values))`` bit for bit (values without NaN, at least one)."""
    v = sorted(values)
    k = len(v)
    return v[k // 2] if k % 2 else (v[k // 2 - 1] + v[k // 2]) / 2


class _Party:
    """Per-party analysis state."""

    def __init__(self, cfg: Config) -> None:
        self.vad = VadStream()
        self.nuclei = NucleiDetector()
        self.filled = FilledPauseDetector()
        self.filled_buf: list[FeatureFrames] = []
        self.tracker = SpeechTracker(cfg.vad.on_threshold, cfg.vad.off_threshold,
                                     cfg.vad.hangover_s, cfg.vad.turn_gap_s)
        self.echo = EchoGate(cfg.vad.echo_margin_db, round(cfg.vad.echo_window_s / FRAME_S))
        self.spurts: list[Spurt] = []
        self.floor_dbfs = -120.0
        self.level = LevelDetector(cfg.vad.level_snr_db, LEVEL_CONTINUE_DB,
                                   0.5 * (cfg.vad.on_threshold + cfg.vad.off_threshold))


class CallEngine:
    """All state of one call.  Not thread-safe: drive it from one task."""

    def __init__(
        self,
        cfg: Config,
        vad: SileroModel,
        marks: Iterable[Mark] = (),
        *,
        call_id: str = "call",
        lang: str | None = None,
        rules: Sequence[CueRule] | None = None,
    ) -> None:
        self.cfg = cfg
        self.call_id = call_id
        self.lang = lang or cfg.language
        self._vad = vad
        self._p: dict[Party, _Party] = {p: _Party(cfg) for p in PARTIES}
        self._windows: deque[np.ndarray] = deque()  # complete (2, 512) windows, in order
        self._rest = np.empty((2, 0), dtype=np.int16)  # samples short of a window
        # both parties' hops in one pass (rows: PARTIES order)
        self._features = FeatureExtractor(SAMPLE_RATE_HZ, channels=len(PARTIES))
        self._music = MusicDetector(tonal_threshold=MUSIC_TONAL_THRESHOLD,
                                    tonal_center=MUSIC_TONAL_CENTER)
        self._music_now = False
        self._agent_probs: deque[float] = deque(maxlen=MUSIC_VETO_FRAMES)
        self._marks: deque[Mark] = deque(sorted(marks, key=lambda m: m.t_s))
        self.hold = HoldTracker(cfg.hold)
        self.rate = RateRule(cfg.rate)
        locale = load_locale(self.lang, cfg.words.extra_fillers)
        self.fillers = FillerRule(cfg.words, locale, lang=self.lang)
        self.phrases = PhraseRule(cfg.words, locale, lang=self.lang)
        self._hold_request_s: float | None = None
        self.tone = ToneRule(cfg.tone)
        self.dead_air = DeadAirRule(cfg.dead_air)
        self.talk_ratio = TalkRatioRule(cfg.talk_ratio, cfg.vad.turn_gap_s)
        self.call_control = CallControlRule(cfg.call_control)
        self.rules: list[CueRule] = list(rules) if rules is not None else [
            InterruptionRule(cfg.interruption),
            self.rate,
            self.tone,
            self.dead_air,
            self.talk_ratio,
            self.fillers,
            self.phrases,
        ]
        self.frames = 0
        self.cue_counts: Counter[str] = Counter()
        #: Per-frame observers (the speech-recognition gate): called with the frame's
        #: context and its (2, 512) window, after the rules.
        self.taps: list[Callable[[FrameContext, np.ndarray], None]] = []
        self._finished = False

    # -- input -------------------------------------------------------------------------
    @property
    def t_s(self) -> float:
        """Audio time analysed so far (s)."""
        return self.frames * FRAME_S

    @property
    def vad_streams(self) -> list[VadStream]:
        return [self._p[p].vad for p in PARTIES]

    def feed(self, agent: np.ndarray, customer: np.ndarray) -> None:
        """Queue audio (16 kHz int16, equal lengths) for analysis."""
        if len(agent) != len(customer):
            raise ValueError("agent and customer chunks must have the same length")
        n = len(agent)
        if n == WINDOW_SAMPLES and self._rest.shape[1] == 0:  # a PBX block: one window
            self._windows.append(np.stack([np.asarray(agent, dtype=np.int16),
                                           np.asarray(customer, dtype=np.int16)]))
            return
        buf = np.concatenate([self._rest, np.stack([np.asarray(agent, dtype=np.int16),
                                                    np.asarray(customer, dtype=np.int16)])],
                             axis=1)
        k = buf.shape[1] // WINDOW_SAMPLES
        for i in range(k):
            self._windows.append(np.ascontiguousarray(
                buf[:, i * WINDOW_SAMPLES:(i + 1) * WINDOW_SAMPLES]))
        self._rest = buf[:, k * WINDOW_SAMPLES:]

    def has_window(self) -> bool:
        return bool(self._windows)

    def take_window(self) -> np.ndarray | None:
        """The next (2, 512) window (agent, customer), or None if not enough audio yet."""
        return self._windows.popleft() if self._windows else None

    def push(self, agent: np.ndarray, customer: np.ndarray) -> list[Cue]:
        """Feed audio and analyse every complete frame; returns the cues in order."""
        self.feed(agent, customer)
        cues: list[Cue] = []
        while (w := self.take_window()) is not None:
            probs = self._vad.run_batch(self.vad_streams, w)
            cues += self.step(w, probs)
        return cues

    @property
    def asr_attached(self) -> bool:
        return self.fillers.asr_running

    def attach_asr(self, tap: Callable[[FrameContext, np.ndarray], None], *,
                   words_wait_s: float | None = None) -> None:
        """Feed a recognizer from this call's frames (its gate is ``tap``).  The word checks
        then wait for the recognizer's progress (:meth:`asr_heard`) — at most
        ``words_wait_s`` past their moment (None: as long as it takes, for a file)."""
        self.taps.append(tap)
        self.fillers.asr_running = True
        self.phrases.follow_recognizer(words_wait_s)

    def asr_heard(self, heard_s: float) -> None:
        """The recognizer has delivered every word said before ``heard_s`` (call time)."""
        self.phrases.heard(heard_s)

    def add_mark(self, mark: Mark) -> None:
        """A live hold mark (dashboard key, API, PBX); applied at the frame containing it."""
        self._marks.append(mark)
        self._marks = deque(sorted(self._marks, key=lambda m: m.t_s))

    def signal(self, event: str, *, party: Party | None = None,
               ring_s: float | None = None) -> list[Cue]:
        """The PBX's call control, at the current audio time: ``answered`` (with the
        seconds it rang), ``leg_ended`` (a party's leg of the call ended) or ``hung_up`` (the
        PBX names who hung up).  Not part of any frame: a file or a headset has none."""
        t = self.t_s
        if event == "answered" and ring_s is not None:
            cues = self.call_control.answered(t, ring_s)
        elif event == "leg_ended" and party is not None:
            cues = self.call_control.leg_ended(t, party)
        elif event == "hung_up" and party is not None:
            cues = self.call_control.hung_up(t, party)
        else:
            raise ValueError(f"call signal {event!r} needs its party or ring time")
        return self._count(cues)

    def add_words(self, words: list[WordEvent]) -> list[Cue]:
        """The recognizer seam: words for the word-based rules."""
        cues: list[Cue] = []
        for rule in self.rules:
            on_words = getattr(rule, "on_words", None)
            if on_words is not None:
                cues += on_words(self.t_s, words)
        req = self.phrases.hold_requested_s
        if req is not None and req != self._hold_request_s:
            self._hold_request_s = req
            self.hold.request_hold(req)
        return self._count(cues)

    # -- one frame ------------------------------------------------------------------------
    def step(self, window: np.ndarray, probs: np.ndarray) -> list[Cue]:
        """Analyse one (2, 512) window whose VAD probabilities are already known."""
        t0 = self.t_s
        self.frames += 1
        t1 = self.t_s
        lv = _levels_dbfs(window)
        self._agent_probs.append(float(probs[0]))
        speechy = sum(self._agent_probs) / len(self._agent_probs) >= MUSIC_SPEECH_VETO
        raw: list[tuple[float, float, float, bool, tuple[float, ...]]] = []
        filled: dict[Party, list[tuple[float, float]]] = {}
        for p, feats in zip(PARTIES, self._features.process_channels(window), strict=True):
            st = self._p[p]
            nuclei = tuple(st.nuclei.process(feats))
            has = len(feats) > 0
            if p == "agent" and has:
                self._music_now = bool(self._music.process(feats)[-1]) and not speechy
            voiced = [f for f in feats.f0_hz.tolist() if f == f]  # not NaN
            if has:
                st.floor_dbfs = float(feats.noise_floor_dbfs[-1])
            st.filled_buf.append(feats)
            if len(st.filled_buf) >= FILLED_PAUSE_BATCH_FRAMES:
                filled[p] = st.filled.process(FeatureFrames.concat(st.filled_buf))
                st.filled_buf.clear()
            band = (10.0 * math.log10(hop_mean(np.power(10.0, feats.band_db / 10.0).tolist()))
                    if has else -120.0)
            raw.append((band, st.level.update(feats, st.floor_dbfs),
                        _median(voiced) if voiced else math.nan,
                        all(feats.digital_silence.tolist()) if has else False, nuclei))
        frames: list[PartyFrame] = []
        silence_dbfs = self.cfg.vad.silence_dbfs
        for i, p in enumerate(PARTIES):
            st = self._p[p]
            own, other = lv[i], lv[1 - i]
            band, level_ev, f0, dsil, nuclei = raw[i]
            echo = st.echo.is_echo(own, other, window[i], window[1 - i])
            music = self._music_now if i == 0 else False
            blocked = echo or music or own < silence_dbfs
            # Silero fused with the level detector (loud, speech-like frames are speech); a
            # spurt never starts on a frame that hardly rises above the noise floor (Silero
            # now and then scores faint echo residue or hiss as speech)
            if level_ev > 0.0 and own < other - LEVEL_MAX_BELOW_OTHER_DB:
                level_ev = 0.0  # under a much louder other party: often their echo or the
                #                 tail of one's own word in it; Silero alone decides there
            silero = float(probs[i])
            prob = max(silero, level_ev)
            tr = st.tracker
            if not tr.speaking and own - st.floor_dbfs < ONSET_MIN_SNR_DB:
                prob = 0.0
            ended = tr.update(t0, t1, prob, blocked)
            if ended is not None:
                st.spurts.append(ended)
            frames.append(PartyFrame(
                silero, own, echo, tr.active, tr.speaking, tr.spurt_start_s, f0, dsil,
                st.floor_dbfs, music, nuclei, tr.turn_start_s, tr.turn_open(t1), band,
            ))
        due: list[tuple[float, str]] = []
        while self._marks and self._marks[0].t_s < t1:
            m = self._marks.popleft()
            due.append((m.t_s, m.event))
        ag, cu = frames
        cues = self.hold.update(
            t0, t1, due, music=ag.music, speaking=ag.speaking, active=ag.active,
            spurt_start_s=ag.spurt_start_s, digital_silence=ag.digital_silence,
            level_dbfs=ag.level_dbfs, other_speaking=cu.speaking,
        )
        ctx = FrameContext(t0, t1, ag, cu, self.hold.view)
        for rule in self.rules:
            cues += rule.on_frame(ctx)
        if filled:
            cues += self._filled_pauses(ctx, filled)
        for tap in self.taps:
            tap(ctx, window)
        return self._count(cues)

    def _filled_pauses(self, ctx: FrameContext,
                       filled: dict[Party, list[tuple[float, float]]]) -> list[Cue]:
        """Acoustic filled pauses (« um », « äh », « euh » that small recognizers drop):
        counted only inside the party's speech and never on hold or over music."""
        cues: list[Cue] = []
        for p in PARTIES:
            pf = ctx.party(p)
            if not filled.get(p) or pf.music or (p == "agent" and ctx.hold.on_hold):
                continue
            last_speech_s = self._p[p].tracker.last_active_end_s
            for start, end in filled[p]:
                if last_speech_s >= start:  # the pause was (part of) the party's speech
                    cues += self.fillers.add_acoustic(ctx.t_s, p, start, end)
        return cues

    def _count(self, cues: list[Cue]) -> list[Cue]:
        """Every cue leaves through here: counted, and stamped with the call's id."""
        for c in cues:
            self.cue_counts[c.kind] += 1
        return [dataclasses.replace(c, call_id=self.call_id) for c in cues] if cues else cues

    def snapshot(self, *, audio_flowing: bool = True) -> dict[str, Any]:
        """The live state for the dashboard's gauges, timers and checklists."""
        t = self.t_s
        share = self.talk_ratio.share
        return {
            "kind": "state",
            "t": round(t, 3),
            "audio": {"flowing": audio_flowing},
            "speaking": {p: self._p[p].tracker.speaking for p in PARTIES},
            "rate": self.rate.live(t) if self._spoke_within("agent", t,
                                                           self.cfg.calls.rate_hold_s) else None,
            "fillers_last_min": self.fillers.recent(t),
            "tone": {"agent": self.tone.state("agent", t),
                     "customer": self.tone.state("customer", t)},
            "hold": self.hold.status(t),
            "dead_air_s": round(self.dead_air.silent_s(t), 1),
            "talk_share": None if share is None else round(share, 3),
            "phrases": ("no_model" if not self.asr_attached
                        else "no_locale" if self.phrases.locale is None else "on"),
            "greeting": self.phrases.live_greeting() if self.asr_attached else None,
            "closing": self.phrases.live_closing() if self.asr_attached else None,
        }

    def _spoke_within(self, party: Party, t_s: float, seconds: float) -> bool:
        tr = self._p[party].tracker
        return tr.speaking or (tr.turn_start_s is not None
                               and t_s - tr.last_active_end_s <= seconds)

    @property
    def heard_speech(self) -> bool:
        """Whether either party has spoken in this call yet."""
        return any(self._p[p].tracker.turn_start_s is not None for p in PARTIES)

    def idle_s(self) -> float:
        """Seconds in which nobody has spoken and no hold ran (0 while anyone speaks)."""
        return self.dead_air.silent_s(self.t_s)

    # -- end of call ----------------------------------------------------------------------
    def finish(self, extra: Mapping[str, Any] | None = None) -> tuple[list[Cue], Summary]:
        """Close open intervals and build the call summary, complete before the (frozen)
        event exists: ``extra`` adds the sections the engine does not know (the
        recognizer's statistics).  Called once."""
        if self._finished:
            raise RuntimeError("finish() called twice")
        self._finished = True
        t = self.t_s
        for st in self._p.values():
            last = st.tracker.close()
            if last is not None:
                st.spurts.append(last)
        late = [(m.t_s, m.event) for m in self._marks if m.t_s <= t]
        cues = self.hold.apply_marks(late, t, t)
        for m in self._marks:
            if m.t_s > t:
                self.hold.ignore_mark(m.t_s, m.event, "after_end")
        self._marks.clear()
        cues += self.hold.close(t)
        for rule in self.rules:
            cues += rule.close(t)
        cues = self._count(cues)
        return cues, Summary(t, self._summary(t, extra or {}), call_id=self.call_id)

    def _summary(self, t: float, extra: Mapping[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {"duration_s": round(t, 2), "language": self.lang}
        for rule in self.rules:
            data.update(rule.summary())
        rate = data.get("rate", {})
        data["words"] = {p: rate.get(p, {}).get("words", 0) for p in PARTIES}
        data["wpm"] = {p: rate.get(p, {}).get("wpm") for p in PARTIES}
        data["holds"] = [h.to_json() for h in self.hold.holds]
        data["marks_ignored"] = list(self.hold.marks_ignored)
        data["marks_ignored_total"] = self.hold.marks_ignored_total
        data["spurts"] = {p: len(self._p[p].spurts) for p in PARTIES}
        data.setdefault("fillers", {"agent": 0, "customer": 0, "by_source": {},
                                    "available": False})
        data.update(self.call_control.summary())
        data.update(extra)
        data["cues"] = dict(sorted(self.cue_counts.items()))
        return data
