"""Call scenarios: a :class:`Timeline` lays utterances of two parties on a common clock and
records the ground truth of every event it creates; scenario functions script whole calls.

Times are seconds on the final timeline.  Speech truth is the union of the voiced segments
of the placed utterances (pauses < 0.3 s merged); an interrupted utterance is cut (30 ms fade)
and its truth ends at the cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .music import hold_music
from .speech import MERGE_GAP_S, TEXT, Synth, Utt, lang_of

AGENT, CUSTOMER = "agent", "customer"
OTHER = {AGENT: CUSTOMER, CUSTOMER: AGENT}
LONG_ROLE = {AGENT: "explain", CUSTOMER: "problem"}
REPLY_ROLE = {AGENT: "explain", CUSTOMER: "reply"}
SHORT_ROLE = {AGENT: "ack", CUSTOMER: "reply"}


@dataclass
class Party:
    voice: str
    speed: int
    pitch: int
    level_db: float  # base active-speech level, dBFS
    spread_db: float = 3.0  # per-utterance level jitter, ± dB

    @property
    def lang(self) -> str:
        return lang_of(self.voice)


@dataclass
class Placed:
    party: str
    start: float
    utt: Utt
    gain_db: float
    kind: str = "speech"
    cut: float | None = None

    def segs(self) -> list[tuple[float, float]]:
        out = []
        for s, e in self.utt.segs:
            s, e = s + self.start, e + self.start
            if self.cut is not None:
                if s >= self.cut:
                    continue
                e = min(e, self.cut)
            out.append((s, e))
        return out

    @property
    def end(self) -> float:
        return self.segs()[-1][1]


@dataclass
class Music:
    start: float
    audio: np.ndarray
    meta: dict[str, object]


def merge(segs: list[tuple[float, float]], gap: float = MERGE_GAP_S) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for s, e in sorted(segs):
        if out and s - out[-1][1] < gap:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


@dataclass
class Timeline:
    rng: np.random.Generator
    synth: Synth
    sr: int
    parties: dict[str, Party]
    agent_name: str
    t: float = 0.0  # end of the latest voiced speech on the main line
    placed: list[Placed] = field(default_factory=list)
    last: Placed | None = None
    interruptions: list[dict[str, object]] = field(default_factory=list)
    non_interruptions: list[dict[str, object]] = field(default_factory=list)
    holds: list[dict[str, object]] = field(default_factory=list)
    raised: list[dict[str, object]] = field(default_factory=list)
    typing: list[tuple[float, float]] = field(default_factory=list)
    music: list[Music] = field(default_factory=list)
    dead_air_marks: list[float] = field(default_factory=list)
    true_wpm: int | None = None
    p_typing: float = 0.3
    _pick: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.t = float(self.rng.uniform(0.4, 1.5))

    # ------------------------------------------------------------------ material
    def text(self, party: str, role: str) -> str:
        key = (party, role)
        if not self._pick.get(key):
            bank = TEXT[self.parties[party].lang][role]
            self._pick[key] = [bank[i] for i in self.rng.permutation(len(bank))]
        return self._pick[key].pop().format(name=self.agent_name)

    def utt(self, party: str, text: str, *, dpitch: int | None = None, amp: int = 100,
            speed: int | None = None) -> Utt:
        p = self.parties[party]
        if dpitch is None:
            dpitch = int(self.rng.choice([-4, -2, 0, 2, 4]))
        return self.synth.utt(p.voice, speed or p.speed, p.pitch + dpitch, text, self.sr, amp)

    def voiced(self, party: str, kinds: tuple[str, ...] = ("speech", "interruption")) -> float:
        return sum(e - s for p in self.placed if p.party == party and p.kind in kinds
                   for s, e in p.segs())

    # ------------------------------------------------------------------ placement
    def put(self, party: str, utt: Utt, start: float, *, kind: str = "speech",
            gain_db: float | None = None, cut: float | None = None) -> Placed:
        p = self.parties[party]
        if gain_db is None:
            gain_db = p.level_db + float(self.rng.uniform(-p.spread_db, p.spread_db))
        pl = Placed(party, start, utt, gain_db, kind, cut)
        self.placed.append(pl)
        p_type = self.p_typing if party == AGENT else 0.8 * self.p_typing
        if kind in ("speech", "interruption") and self.rng.random() < p_type:
            ln = pl.end - pl.start
            if ln > 1.0:
                s = pl.start + float(self.rng.uniform(0, 0.4)) * ln
                self.typing.append((s, s + float(self.rng.uniform(0.4, 0.95)) * (pl.end - s)))
        return pl

    def say(self, party: str, role: str = "", *, text: str | None = None,
            gap: tuple[float, float] = (0.45, 1.2), kind: str = "speech", **kw: int) -> Placed:
        u = self.utt(party, text or self.text(party, role), **kw)
        pl = self.put(party, u, self.t + float(self.rng.uniform(*gap)), kind=kind)
        self.t, self.last = max(self.t, pl.end), pl
        return pl

    def turn(self, party: str, role: str) -> Placed:
        """Quick turn-taking: start 0–0.4 s after the other stops, or overlap its end ≤ 0.2 s."""
        assert self.last is not None and self.last.party != party
        end = self.last.end
        gap = float(self.rng.uniform(0.0, 0.4) if self.rng.random() < 0.5
                    else -self.rng.uniform(0.05, 0.2))
        pl = self.put(party, self.utt(party, self.text(party, role)), end + gap)
        self.non_interruptions.append({"party": party, "onset": end + gap, "type": "turn",
                                       "gap_s": gap})
        self.t, self.last = max(self.t, pl.end), pl
        return pl

    def backchannel(self, party: str, host: Placed, text: str | None = None) -> Placed | None:
        """A ≤ 0.5 s backchannel inside a long voiced segment of ``host`` (other party)."""
        p = self.parties[party]
        text = text or self.text(party, "backchannel")
        u = self.synth.backchannel(p.voice, p.pitch, text, self.sr)
        for _ in range(6):
            segs = [(s, e) for s, e in host.segs() if e - s >= 1.8]
            if not segs:
                return None
            s, e = segs[int(self.rng.integers(len(segs)))]
            lo, hi = s + 0.6, min(e - 0.4, host.end - 0.8) - u.dur
            if hi <= lo:
                continue
            onset = float(self.rng.uniform(lo, hi))
            if any(q.party == party and q.start < onset + u.dur + 1.0 and q.end > onset - 1.0
                   for q in self.placed):
                continue
            gain = p.level_db + float(self.rng.uniform(-p.spread_db - 3, p.spread_db))
            pl = self.put(party, u, onset, kind="backchannel", gain_db=gain)
            self.non_interruptions.append({"party": party, "onset": onset,
                                           "type": "backchannel", "duration_s": u.dur})
            return pl
        return None

    def interrupt(self, party: str, role: str, text: str | None = None,
                  host_text: str | None = None) -> None:
        """``party`` cuts into a long utterance of the other party: the other has been speaking
        1.0–2.0 s, both then talk 1.3–2.2 s together and the interrupted party stops."""
        host = OTHER[party]
        lead, ov = float(self.rng.uniform(1.0, 2.0)), float(self.rng.uniform(1.3, 2.2))
        iu = self.utt(party, text or self.text(party, role))
        for _ in range(6 if text is None else 0):
            if iu.segs[0][1] >= ov + 0.3:
                break
            iu = self.utt(party, self.text(party, role))
        ov = max(1.3, min(ov, iu.segs[0][1] - 0.3))
        for _ in range(12):
            hu = self.utt(host, host_text or self.text(host, LONG_ROLE[host]))
            long_segs = [s for s in hu.segs if s[1] - s[0] >= lead + ov + 0.3]
            if long_segs:
                break
        else:
            raise RuntimeError("no host utterance long enough for an interruption")
        start = self.t + float(self.rng.uniform(0.45, 1.0))
        onset = start + long_segs[0][0] + lead
        self.put(host, hu, start, cut=onset + ov)
        ip = self.put(party, iu, onset, kind="interruption")
        self.interruptions.append({"party": party, "onset": onset, "t_def": onset + 0.6,
                                   "other_speaking_s": lead, "overlap_s": ov})
        self.t, self.last = max(onset + ov, ip.end), ip

    def raised_episode(self, party: str) -> None:
        """2–6 s raised stretch: espeak -a 180, pitch +15…+30, level +8…+12 dB vs baseline."""
        p = self.parties[party]
        role = "agitated" if party == CUSTOMER else "raised"
        dp, dl = int(self.rng.integers(15, 31)), float(self.rng.uniform(8.0, 12.0))
        for _ in range(8):
            u = self.utt(party, self.text(party, role), dpitch=dp, amp=180,
                         speed=int(p.speed * 1.08))
            if 2.0 <= u.segs[-1][1] <= 6.0:
                break
        base = float(np.mean([q.gain_db for q in self.placed
                              if q.party == party and q.kind == "speech"]))
        pl = self.put(party, u, self.t + float(self.rng.uniform(0.4, 1.0)), kind="raised",
                      gain_db=base + dl)  # relative to the mean level of the speech so far
        self.raised.append({"party": party, "start": pl.start, "end": pl.end,
                            "level_delta_db": dl, "pitch_delta": dp})
        self.t, self.last = pl.end, pl

    def pause(self, dur: float) -> None:
        self.t += dur

    def dead_air(self, dur: float) -> None:
        """Both parties silent (room noise only); truth is the exact speech gap around it."""
        self.dead_air_marks.append(self.t + dur / 2)
        self.t += dur

    def hold(self, kind: str, via: str, dur: float, *, leaks: int = 0, remark: bool = False,
             typing: bool = False, leak_text: str | None = None) -> None:
        rng = self.rng
        start = round(self.t + float(rng.uniform(0.6, 1.5)), 2)  # marks on a 10 ms grid
        end = round(start + dur, 2)
        dur = end - start
        h: dict[str, object] = {"start": start, "end": end, "type": kind, "via": via,
                                "leaks": []}
        busy: list[tuple[float, float]] = []
        if kind == "music":
            audio, meta = hold_music(rng, dur, self.sr, float(rng.uniform(-30, -15)))
            self.music.append(Music(start, audio, meta))
            h["music"] = meta
        if kind == "unmuted":
            if typing:
                for _ in range(int(rng.integers(1, 4))):
                    s = float(rng.uniform(start + 1, end - 6))
                    self.typing.append((s, s + float(rng.uniform(2, 5))))
            p = self.parties[AGENT]
            for i in range(leaks):
                for _ in range(8):
                    u = self.utt(AGENT, leak_text or self.text(AGENT, "leak"),
                                 speed=int(p.speed * 1.1))
                    if 1.0 <= u.segs[-1][1] <= 4.0:
                        break
                lo = start + 3 + i * (dur - 6) / leaks
                t0 = float(rng.uniform(lo, lo + (dur - 6) / leaks - u.dur))
                pl = self.put(AGENT, u, t0, kind="leak",
                              gain_db=p.level_db + float(rng.uniform(-6, 0)))
                h["leaks"].append([pl.start, pl.end])  # type: ignore[attr-defined]
                busy.append((pl.start - 1, pl.end + 1))
        if remark:
            u = self.utt(CUSTOMER, self.text(CUSTOMER, "hold_remark"))
            for _ in range(20):
                t0 = float(rng.uniform(start + 4, end - 4 - u.dur))
                if not any(a < t0 + u.dur and t0 < b for a, b in busy):
                    self.put(CUSTOMER, u, t0, kind="remark")
                    break
        self.holds.append(h)
        self.t = end


# ============================================================================== scenarios
def _open(tl: Timeline) -> Placed:
    tl.say(AGENT, "greet", gap=(0.0, 0.0))
    return tl.say(CUSTOMER, "problem")


def _close(tl: Timeline) -> None:
    close = TEXT[tl.parties[AGENT].lang]["close"]
    tl.say(AGENT, text=close[0])
    tl.turn(CUSTOMER, "bye") if tl.rng.random() < 0.4 else tl.say(CUSTOMER, "bye")
    tl.say(AGENT, text=close[1])


def _exchange(tl: Timeline, bc: bool = False) -> None:
    """The party who did not speak last says a long utterance, optionally with a backchannel."""
    party = OTHER[tl.last.party] if tl.last else AGENT
    host = tl.say(party, LONG_ROLE[party] if tl.rng.random() < 0.6 else REPLY_ROLE[party])
    if bc:
        tl.backchannel(OTHER[party], host)


def conversation(tl: Timeline, *, n_int_agent: int = 3, n_int_customer: int = 0,
                 n_bc: int = 3, n_turn: int = 2) -> None:
    rng = tl.rng
    _open(tl)
    events = ["ia"] * n_int_agent + ["ic"] * n_int_customer + ["bc"] * n_bc + ["turn"] * n_turn
    for ev in [events[i] for i in rng.permutation(len(events))]:
        assert tl.last is not None
        if ev in ("ia", "ic"):
            party = AGENT if ev == "ia" else CUSTOMER
            if tl.last.party == OTHER[party]:
                tl.say(party, SHORT_ROLE[party])
            tl.interrupt(party, "interject" if party == AGENT else "cinterject")
        elif ev == "bc":
            bc_party = AGENT if rng.random() < 0.65 else CUSTOMER
            if tl.last.party == OTHER[bc_party]:
                tl.say(bc_party, SHORT_ROLE[bc_party])
            host = tl.say(OTHER[bc_party], LONG_ROLE[OTHER[bc_party]])
            if tl.backchannel(bc_party, host) is None:
                tl.backchannel(bc_party, tl.say(OTHER[bc_party], LONG_ROLE[OTHER[bc_party]]))
        else:
            party = OTHER[tl.last.party]
            tl.turn(party, REPLY_ROLE[party])
    _close(tl)


def hold(tl: Timeline, *, kind: str, via: str, dur: float, leaks: int = 0,
         remark: bool = False, typing: bool = False) -> None:
    rng = tl.rng
    host = _open(tl)
    if rng.random() < 0.5:
        tl.backchannel(AGENT, host)
    if rng.random() < 0.5:
        tl.say(AGENT, "explain")
        tl.say(CUSTOMER, "reply")
    tl.say(AGENT, "hold_ask")
    tl.turn(CUSTOMER, "yes") if rng.random() < 0.5 else tl.say(CUSTOMER, "yes")
    tl.hold(kind, via, dur, leaks=leaks, remark=remark, typing=typing)
    tl.say(AGENT, "hold_thanks", gap=(0.3, 0.9))
    host = tl.say(AGENT, "explain", gap=(0.35, 0.7))
    if rng.random() < 0.5:
        tl.backchannel(CUSTOMER, host)
    _close(tl)


def dead_air(tl: Timeline, *, dur: float, near_miss: float | None = None) -> None:
    rng = tl.rng
    _open(tl)
    tl.say(AGENT, "explain")
    tl.say(CUSTOMER, "reply")
    tl.dead_air(dur)
    tl.say(AGENT, "explain")
    _exchange(tl, bc=True)
    if near_miss is not None:  # a long pause that is NOT dead air (< 8 s)
        tl.pause(near_miss)
        _exchange(tl)
    if rng.random() < 0.5:
        tl.turn(OTHER[tl.last.party] if tl.last else AGENT, "reply")
    _close(tl)


def speaking_rate(tl: Timeline, *, wpm: int) -> None:
    rng = tl.rng
    tl.true_wpm = wpm
    _open(tl)
    while tl.voiced(AGENT) < 30.5:
        for k in range(int(rng.integers(3, 5))):
            host = tl.say(AGENT, "explain", gap=(0.45, 1.1) if k == 0 else (0.3, 0.8))
            if rng.random() < 0.3:
                tl.backchannel(CUSTOMER, host)
            if tl.voiced(AGENT) >= 30.5:
                break
        tl.say(CUSTOMER, "reply" if rng.random() < 0.5 else "yes")
    _close(tl)


def raised(tl: Timeline, *, party: str | None, episodes: int = 1,
           interrupt: str | None = None) -> None:
    """``party`` None: a calm call with within-speaker level spread and no raised episode.
    ``interrupt``: a party that cuts into the other once after the (last) raised episode."""
    _open(tl)
    target = party or CUSTOMER
    for ep in range(max(episodes, 1)):
        need = 21.5 if ep == 0 else tl.voiced(target) + 10.0
        while tl.voiced(target) < need:
            _monologue(tl, target)
        if party is not None:
            if tl.last is not None and tl.last.party == party:
                tl.say(OTHER[party], SHORT_ROLE[OTHER[party]])
            tl.raised_episode(party)
    if interrupt is not None:
        if tl.last is not None and tl.last.party == OTHER[interrupt]:
            tl.say(interrupt, SHORT_ROLE[interrupt])
        tl.interrupt(interrupt, "interject" if interrupt == AGENT else "cinterject")
    need = tl.voiced(target) + 8.0
    while tl.voiced(target) < need:
        _monologue(tl, target)
    _close(tl)


def _monologue(tl: Timeline, party: str) -> None:
    """A short reply by the other party, then 1–2 long sentences by ``party``."""
    rng = tl.rng
    if tl.last is not None and tl.last.party == party:
        tl.say(OTHER[party], SHORT_ROLE[OTHER[party]])
    host = tl.say(party, LONG_ROLE[party])
    if rng.random() < 0.5:
        host = tl.say(party, REPLY_ROLE[party], gap=(0.3, 0.8))
    if rng.random() < 0.35:
        tl.backchannel(OTHER[party], host)


SCENARIOS = {"conversation": conversation, "hold": hold, "dead_air": dead_air,
             "speaking_rate": speaking_rate, "raised": raised}
