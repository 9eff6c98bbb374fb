# ruff: noqa: E501
"""Korean calls for the word path end to end (espeak-ng ``-v ko`` for both parties).

Each call follows a contact-centre script — greeting, the caller's problem, an explanation,
optionally a hold (asked or not, thanked for or not), the closing (question and thanks, or
one of them missing) — with hesitation fillers (음, 어, 그, 저) said as words of their own
between the agent's sentences, drawn out (0.5–0.9 s) on a level pitch as people hesitate.  Several agent and caller voices and rates; room noise on
every call, line echo on some, and a telephone-band share (300–3400 Hz, 8 kHz µ-law).
Holds are marked (``hold_start`` / ``hold_end``) with the agent's microphone muted.

Truth per call: ``greeting`` (name, offer), ``hold`` (None, or asked / answered / thanks),
``closing`` (question, thanks), ``fillers`` (agent: [{word, start, end}]), ``phrases``
(the defining words of each check: {check: [start, end]}), ``words`` (eojeol = space-separated
words said per party), ``speech_s`` per party (voiced seconds) and ``true_wpm`` for the agent.

:func:`build_korean_corpus` writes ``NAME.agent.wav``, ``NAME.customer.wav``,
``NAME.marks.jsonl`` and returns the truths (absolute paths) — no cache on disk: the tests
build it once per session into a temporary folder (about 1 s a call).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from .mix import TEL_RATE_HZ, echo, room_noise, telephone, write_wav
from .speech import ESPEAK_RATE_HZ, Synth, Utt, _analyse

RATE_HZ = 16000
SPEECH_DBFS = -20.0
AGENT_VOICES = ("ko", "ko+f2", "ko+m4", "ko+f4")
CUSTOMER_VOICES = ("ko+m7", "ko+f3", "ko+m2", "ko+f5")
NAMES = ("김민수", "이서연", "박지훈", "최유진")
FILLERS = ("음", "어", "그", "저")

TEXT: dict[str, tuple[str, ...]] = {
    "greet": ("안녕하십니까 한빛통신 상담원 {name}입니다 무엇을 도와드릴까요",
              "감사합니다 한빛통신 상담원 {name}입니다 어떻게 도와드릴까요"),
    "greet_no_offer": ("안녕하십니까 한빛통신 상담원 {name}입니다",
                       "네 한빛통신 상담원 {name}입니다"),
    "problem": ("인터넷이 저녁마다 자주 끊겨서 전화했습니다",
                "이번 달 요금이 두 번 청구된 것 같아요",
                "이사를 해서 주소를 변경하고 싶습니다",
                "주문한 공유기가 아직 도착하지 않았어요"),
    "explain": ("지난달 요금은 정상적으로 납부되었습니다",
                "새 요금제는 다음 달부터 적용됩니다",
                "기사님이 내일 오후에 방문할 예정입니다",
                "변경된 주소로 청구서가 발송됩니다"),
    "hold_ask": ("확인해 보겠습니다 잠시만 기다려 주시겠어요",
                 "담당 부서에 확인해야 하는데 잠시 기다려 주시겠습니까"),
    "hold_announce": ("확인해 보겠습니다", "담당 부서에 확인해 볼게요"),
    "yes": ("네 괜찮아요", "네 기다릴게요", "네 그러세요"),
    "hold_thanks": ("기다려 주셔서 감사합니다 확인이 끝났습니다",
                    "오래 기다리셨습니다 확인해 보니 중복 청구가 맞습니다"),
    "after_hold": ("확인해 보니 중복 청구가 맞습니다", "네 확인이 끝났습니다"),
    "reply": ("네 알겠습니다", "아 그렇군요 감사합니다", "네 그러면 기다리겠습니다"),
    "closing_question": ("혹시 더 궁금하신 점 있으신가요", "다른 문의 사항은 없으신가요"),
    "no_more": ("아니요 없습니다", "아니요 괜찮습니다"),
    "closing_thanks": ("전화 주셔서 감사합니다 좋은 하루 되세요",
                       "한빛통신을 이용해 주셔서 감사합니다"),
    "closing_bye": ("네 안녕히 계세요", "네 그럼 끊겠습니다"),
}

# The plan: every check present and absent in several calls, cycled deterministically so a
# small corpus still balances.  (greeting offer, hold, closing question, closing thanks)
_HOLDS: tuple[dict[str, bool] | None, ...] = (
    {"asked": True, "thanks": True}, None, {"asked": True, "thanks": False},
    {"asked": False, "thanks": True}, {"asked": True, "thanks": True}, None,
    {"asked": False, "thanks": False},
)
_CLOSINGS = ((True, True), (True, True), (False, True), (True, False), (True, True),
             (False, False), (True, True))


def plan(seed: int = 11, n_calls: int = 10) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    specs = []
    for i in range(n_calls):
        q, th = _CLOSINGS[i % len(_CLOSINGS)]
        specs.append({
            "name": f"ko{i:02d}",
            "agent_voice": AGENT_VOICES[i % len(AGENT_VOICES)],
            "customer_voice": CUSTOMER_VOICES[(i + 1) % len(CUSTOMER_VOICES)],
            "agent_speed": int(rng.integers(130, 166)),
            "customer_speed": int(rng.integers(135, 171)),
            "agent_name": NAMES[i % len(NAMES)],
            "offer": i % 4 != 3,
            "hold": _HOLDS[i % len(_HOLDS)],
            "closing_question": q,
            "closing_thanks": th,
            "fillers": 2 + i % 3,
            "telephone": i % 3 == 2,
            "echo": i % 4 == 1,
            "noise": ("pink", "hvac", "murmur", "brown")[i % 4],
            "seed": int(rng.integers(1 << 30)),
        })
    return specs


class _Call:
    """Two channels being written, in call time, with the truth gathered on the way."""

    def __init__(self, spec: dict[str, Any], synth: Synth) -> None:
        self.spec = spec
        self.synth = synth
        self.rng = np.random.default_rng(spec["seed"])
        self.placed: list[tuple[str, float, Utt]] = []
        self.t = 0.6
        self.fillers: list[dict[str, Any]] = []
        self.phrases: dict[str, list[float]] = {}
        self.words = {"agent": 0, "customer": 0}

    def say(self, party: str, text: str, gap: tuple[float, float] = (0.4, 0.8)) -> tuple[float, float]:
        voice = self.spec[f"{party}_voice"]
        speed = self.spec[f"{party}_speed"]
        u = self.synth.utt(voice, speed, 50, text, RATE_HZ)
        start = self.t + float(self.rng.uniform(*gap))
        self.placed.append((party, start, u))
        self.words[party] += len(text.split())
        self.t = start + u.dur
        return start + u.segs[0][0], start + u.segs[-1][1]

    def say_key(self, party: str, key: str, **fmt: str) -> tuple[float, float]:
        options = TEXT[key]
        text = options[int(self.rng.integers(len(options)))].format(**fmt)
        return self.say(party, text)

    def filler(self) -> None:
        """A hesitation as people make it: drawn out (0.6–0.9 s) on a level pitch."""
        word = FILLERS[int(self.rng.integers(len(FILLERS)))]
        u = _drawn_out(self.spec["agent_voice"], word)
        start = self.t + float(self.rng.uniform(0.3, 0.6))
        self.placed.append(("agent", start, u))
        self.words["agent"] += 1
        self.t = start + u.dur
        s, e = start + u.segs[0][0], start + u.segs[-1][1]
        self.fillers.append({"word": word, "start": round(s, 3), "end": round(e, 3)})

    def pause(self, seconds: float) -> None:
        self.t += seconds


_DRAWN: dict[tuple[str, str], Utt] = {}


def _drawn_out(voice: str, word: str) -> Utt:
    """``word`` slow and on a level pitch (SSML prosody range x-low), at 16 kHz."""
    key = (voice, word)
    if key not in _DRAWN:
        ssml = f'<speak><prosody range="x-low" rate="x-slow">{word}</prosody></speak>'
        out = subprocess.run(["espeak-ng", "-v", voice, "-m", "--stdout", ssml],
                             capture_output=True, check=True).stdout
        pcm = out[out.find(b"data") + 8:]
        x = np.frombuffer(pcm[: len(pcm) // 2 * 2], "<i2").astype(np.float32) / 32768.0
        u = _analyse(x, word)
        audio = soxr.resample(u.audio, ESPEAK_RATE_HZ, RATE_HZ, quality="HQ").astype(np.float32)
        _DRAWN[key] = Utt(audio, u.segs, word, 1, RATE_HZ)
    return _DRAWN[key]


def _script(c: _Call) -> dict[str, Any]:
    sp = c.spec
    n_fill = sp["fillers"]
    slots = set(c.rng.choice(4, size=min(n_fill, 4), replace=False).tolist())
    hold_truth: dict[str, Any] | None = None
    holds: list[tuple[float, float]] = []

    key = "greet" if sp["offer"] else "greet_no_offer"
    c.phrases["greeting"] = list(c.say_key("agent", key, name=sp["agent_name"]))
    c.say_key("customer", "problem")
    if 0 in slots:
        c.filler()
    c.say_key("agent", "explain")
    h = sp["hold"]
    if h is not None:
        if 1 in slots:
            c.filler()
        if h["asked"]:
            c.phrases["hold_request"] = list(c.say_key("agent", "hold_ask"))
            c.say_key("customer", "yes")
        else:
            c.say_key("agent", "hold_announce")
        start = c.t + float(c.rng.uniform(0.4, 0.8))
        c.t = start + float(c.rng.uniform(6.0, 9.0))
        holds.append((start, c.t))
        if h["thanks"]:
            c.phrases["hold_thanks"] = list(c.say_key("agent", "hold_thanks"))
        else:
            c.say_key("agent", "after_hold")
        hold_truth = {"start": round(start, 3), "end": round(c.t, 3), "asked": h["asked"],
                      "answered": h["asked"], "thanks": h["thanks"]}
    if 2 in slots:
        c.filler()
    if h is None:
        c.say_key("agent", "explain")
    c.say_key("customer", "reply")
    if 3 in slots:
        c.filler()
    if sp["closing_question"]:
        c.phrases["closing_question"] = list(c.say_key("agent", "closing_question"))
        c.say_key("customer", "no_more")
    if sp["closing_thanks"]:
        c.phrases["closing_thanks"] = list(c.say_key("agent", "closing_thanks"))
    else:
        c.say_key("agent", "closing_bye")
    c.pause(1.5)
    return {"hold": hold_truth, "holds": holds}


def _render(c: _Call, dur: float, holds: list[tuple[float, float]]) -> dict[str, np.ndarray]:
    n = int(dur * RATE_HZ)
    ch = {"agent": np.zeros(n, np.float64), "customer": np.zeros(n, np.float64)}
    gain = 10 ** (SPEECH_DBFS / 20)
    for party, start, u in c.placed:
        i = int(start * RATE_HZ)
        seg = u.audio[: n - i] * gain
        ch[party][i:i + len(seg)] += seg
    clean = {p: x.copy() for p, x in ch.items()}
    for p in ch:
        ch[p] += room_noise(c.rng, n, RATE_HZ, c.spec["noise"], float(c.rng.uniform(-62, -50)))
    if c.spec["echo"]:  # line echo of the agent on the caller's channel
        ch["customer"] += echo(clean["agent"], RATE_HZ, -24.0, 40.0, 3000.0)
    for s, e in holds:  # muted microphone: digital silence on the agent channel
        ch["agent"][int(s * RATE_HZ):int(e * RATE_HZ)] = 0.0
    return {p: np.clip(x, -1.0, 1.0) for p, x in ch.items()}


def build_call(spec: dict[str, Any], out_dir: Path, synth: Synth) -> dict[str, Any]:
    c = _Call(spec, synth)
    extra = _script(c)
    dur = c.t
    audio = _render(c, dur, extra["holds"])
    name = spec["name"]
    files = {}
    for p, x in audio.items():
        path = out_dir / f"{name}.{p}.wav"
        if spec["telephone"]:
            write_wav(path, telephone(x), TEL_RATE_HZ, "mulaw")
        else:
            write_wav(path, x, RATE_HZ, "pcm16")
        files[p] = str(path)
    marks = out_dir / f"{name}.marks.jsonl"
    marks.write_text("".join(json.dumps({"t": round(t, 3), "event": ev}) + "\n"
                             for s, e in extra["holds"]
                             for t, ev in ((s, "hold_start"), (e, "hold_end"))))
    speech = {p: round(sum(u.voiced for q, _, u in c.placed if q == p), 2)
              for p in ("agent", "customer")}
    return {
        "name": name, "lang": "ko", "files": files, "marks": str(marks),
        "telephone": spec["telephone"], "echo": spec["echo"], "noise": spec["noise"],
        "voices": {"agent": spec["agent_voice"], "customer": spec["customer_voice"]},
        "duration_s": round(dur, 2),
        "greeting": {"name": True, "offer": spec["offer"]},
        "hold": extra["hold"],
        "closing": {"question": spec["closing_question"], "thanks": spec["closing_thanks"]},
        "fillers": c.fillers,
        "phrases": {k: [round(v[0], 3), round(v[1], 3)] for k, v in c.phrases.items()},
        "words": c.words,
        "speech_s": speech,
        "true_wpm": round(60.0 * c.words["agent"] / speech["agent"], 1),
        "agent_speech": [[round(s + a, 3), round(s + b, 3)] for q, s, u in c.placed
                         if q == "agent" for a, b in u.segs],
    }


def build_korean_corpus(out_dir: Path, *, seed: int = 11, n_calls: int = 10) -> list[dict[str, Any]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    synth = Synth()
    return [build_call(spec, out_dir, synth) for spec in plan(seed, n_calls)]
