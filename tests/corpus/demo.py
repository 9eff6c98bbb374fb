# ruff: noqa: E501
"""Generator of the bundled demo call (appliance/demo/): ``python -m tests.corpus.demo [DIR]``.

One English call of about 110 s, 8 kHz stereo G.711 µ-law WAV (channel 0 = agent, 1 = customer),
with a greeting, a problem description, one agent interruption, backchannels, a hold request,
a marked open-mic hold of ~62 s with a 2 s leaked remark, thanks after the hold and a closing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from . import mix
from .build import make_truth, render, validate
from .scenarios import AGENT, CUSTOMER, Party, Timeline
from .speech import Synth

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "appliance" / "demo"
SEED = 2024
HOLD_S = 62.0
ACOUSTICS = {
    "echo": {AGENT: {"gain_db": -34.0, "delay_ms": 32.0, "lowpass_hz": 3000.0},
             CUSTOMER: {"gain_db": -36.0, "delay_ms": 48.0, "lowpass_hz": None}},
    "noise": {AGENT: {"kind": "hvac", "dbfs": -58.0}, CUSTOMER: {"kind": "pink", "dbfs": -62.0}},
    "typing_peak_dbfs": -30.0,
}


def build_demo(out_dir: Path = DEFAULT_DIR) -> dict[str, Any]:
    rng = np.random.default_rng(SEED)
    parties = {AGENT: Party("en+f3", 172, 55, -24.0, 2.0),
               CUSTOMER: Party("en-us+m3", 175, 40, -27.0, 2.0)}
    tl = Timeline(rng, Synth(), mix.TEL_BUILD_RATE_HZ, parties, "Sarah")
    tl.p_typing = 0.0
    tl.t = 0.6
    tl.say(AGENT, text="Good morning, you are speaking with Sarah from Northwind Energy, "
                       "how can I help you today?", gap=(0.0, 0.0))
    host = tl.say(CUSTOMER, text="Hi, yes, I am calling because my last bill is almost twice "
                                 "as high as usual, and I do not understand why.")
    tl.backchannel(AGENT, host, text="mhm")
    tl.interrupt(AGENT, "interject",
                 text="Sorry, may I just ask for your customer number first, please?",
                 host_text="I was charged twice for the same month, once on the first "
                           "and again on the fifteenth.")
    host = tl.say(CUSTOMER, text="Yes, of course, it is four five seven, two two nine, eight one.")
    tl.backchannel(AGENT, host, text="okay")
    tl.say(AGENT, text="May I place you on hold for a minute so I can look into this?")
    tl.say(CUSTOMER, text="Sure, no problem.")
    tl.hold("unmuted", "marks", HOLD_S, leaks=1, typing=True,
            leak_text="Can you pass me the blue folder, please?")
    tl.say(AGENT, text="Thank you for holding. The meter reading was estimated, "
                       "and I have corrected your bill.", gap=(0.4, 0.4))
    tl.say(CUSTOMER, text="Great, thank you.")
    tl.say(AGENT, text="Is there anything else I can help you with today?")
    tl.say(CUSTOMER, text="No, that was everything, bye.")
    tl.say(AGENT, text="Thank you for calling, goodbye.")
    dur = round(tl.t + 1.0, 2)
    audio, ac = render(tl, rng, dur, True, acoustics=ACOUSTICS)
    out_dir.mkdir(parents=True, exist_ok=True)
    mix.write_wav(out_dir / "demo_call.wav", audio, mix.TEL_RATE_HZ, "mulaw")
    h = tl.holds[0]
    (out_dir / "demo_marks.jsonl").write_text(
        json.dumps({"t": h["start"], "event": "hold_start"}) + "\n"
        + json.dumps({"t": h["end"], "event": "hold_end"}) + "\n")
    truth = {"name": "demo_call", "files": {"stereo": "demo_call.wav"},
             "sample_rate_hz": mix.TEL_RATE_HZ, "telephone": True, "format": "mulaw",
             "marks": "demo_marks.jsonl", **make_truth(tl, dur, ac)}
    problems = validate(truth)
    if problems:
        raise AssertionError("; ".join(problems))
    (out_dir / "README.md").write_text(_readme(truth))
    return truth


def _t(x: float) -> str:
    return f"{x:6.2f}"


def _readme(t: dict[str, Any]) -> str:
    h, i = t["holds"][0], t["interruptions"][0]
    rows = [f"| {_t(u['start'])} | {_t(u['end'])} | {u['party']} | {u['kind']} | {u['text']} |"
            for u in t["utterances"]]
    bcs = ", ".join(f"{e['onset']:.2f} s" for e in t["non_interruptions"]
                    if e["type"] == "backchannel")
    leak = h["leaks"][0]
    g = t["utterances"][0]
    after = next(u["start"] for u in t["utterances"] if u["start"] > h["end"])
    core = {k: t[k] for k in ("duration_s", "speech", "interruptions", "non_interruptions",
                              "holds", "dead_air", "raised")}
    return f"""# Demo call

`demo_call.wav` is a synthetic English support call ({t['duration_s']:.1f} s), 8 kHz stereo
G.711 µ-law WAV (format tag 7, with a `fact` chunk): **channel 0 = agent, channel 1 = customer**.
It is telephone-band (300–3400 Hz) with a faint echo of the other party on each channel, room
noise and keyboard typing during the hold.  `demo_marks.jsonl` carries the hold marks.
Regenerate both (and this file) with `python -m tests.corpus.demo`.

## What happens (ground truth, seconds from the start of the file)

- **Greeting** {g['start']:.2f}–{g['end']:.2f} s: agent name (Sarah), company (Northwind Energy), offer of help.
- **Customer explains the problem**; agent backchannels (not interruptions) at {bcs}.
- **Agent interruption**: onset {i['onset']:.2f} s, after {i['other_speaking_s']:.1f} s of customer speech, overlap {i['overlap_s']:.1f} s; defining moment (0.6 s of overlap) t = {i['t_def']:.2f} s.
- **Hold permission**: the agent asks, the customer agrees.
- **Marked hold** {h['start']:.2f}–{h['end']:.2f} s ({h['end'] - h['start']:.0f} s), **open mic** (room noise and typing on the agent channel, not digital silence): `hold_check_back` due at {h['start'] + 45:.2f} s, `hold_too_long` at {h['start'] + 60:.2f} s.
- **Leaked remark** to a colleague during the hold: {leak[0]:.2f}–{leak[1]:.2f} s ("Can you pass me the blue folder, please?").
- **Thanks after the hold** ("Thank you for holding …") at {after:.2f} s, then the **closing** ("anything else", goodbye).
- No dead air, no raised voice.

| start | end | party | kind | text |
|---:|---:|---|---|---|
{chr(10).join(rows)}

Machine-readable truth (same conventions as the test corpus in `tests/corpus`):

```json
{json.dumps(core, indent=None)}
```
"""


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR
    tr = build_demo(out)
    print(f"{out}: demo_call.wav {tr['duration_s']:.1f} s, hold {tr['holds'][0]}")
