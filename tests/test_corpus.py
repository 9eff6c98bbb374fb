"""Sanity tests of the synthetic call corpus generator (tests/corpus), on the small scale."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.corpus import build_corpus, load_corpus, read_call
from tests.corpus.build import plan, validate
from tests.corpus.mix import mulaw_decode, mulaw_encode

Truth = dict[str, Any]


@pytest.fixture(scope="module")
def small(request: pytest.FixtureRequest) -> list[Truth]:
    out = Path(request.config.cache.mkdir("corpus_small"))
    return build_corpus(out, seed=7, scale="small")


@pytest.fixture(scope="module")
def audio(small: list[Truth]) -> dict[str, tuple[int, np.ndarray, np.ndarray]]:
    return {t["name"]: read_call(t) for t in small}


def _mask(n: int, sr: int, iv: list[list[float]], pad: float = 0.0) -> np.ndarray:
    m = np.zeros(n, bool)
    for s, e in iv:
        m[max(0, round((s - pad) * sr)): round((e + pad) * sr)] = True
    return m


def _holds(t: Truth) -> list[list[float]]:
    return [[h["start"], h["end"]] for h in t["holds"]]


def test_files_exist_and_decode(small: list[Truth], audio: dict) -> None:
    assert len(small) >= 5
    for t in small:
        for f in t["files"].values():
            assert Path(f).is_file()
        sr, a, c = audio[t["name"]]
        assert sr == t["sample_rate_hz"]
        assert abs(len(a) / sr - t["duration_s"]) < 0.01
        assert len(a) == len(c) and np.isfinite(a).all() and np.isfinite(c).all()
        assert np.abs(a).max() <= 1.0 and np.abs(c).max() <= 1.0
        marked = [h for h in t["holds"] if h["via"] == "marks"]
        assert bool(t["marks"]) == bool(marked)
        if marked:
            lines = [json.loads(x) for x in Path(t["marks"]).read_text().splitlines()]
            assert [x["event"] for x in lines] == ["hold_start", "hold_end"] * len(marked)
            assert [x["t"] for x in lines] == [h[k] for h in marked for k in ("start", "end")]
    assert any("agent" in t["files"] for t in small), "one call should be a mono pair"
    assert any(t["format"] == "mulaw" for t in small)


def test_truth_is_consistent(small: list[Truth]) -> None:
    for t in small:
        assert validate(t) == [], t["name"]
        dur = t["duration_s"]
        for s, e in [*_holds(t), *t["dead_air"], *t["typing"],
                     *[lk for h in t["holds"] for lk in h["leaks"]]]:
            assert 0 <= s < e <= dur
        for ev in t["interruptions"]:
            assert ev["t_def"] == pytest.approx(ev["onset"] + 0.6, abs=1e-3)


def _echo_gain_db(src: np.ndarray, dst: np.ndarray, sr: int, delay_ms: float,
                  mask: np.ndarray) -> float:
    """Least-squares gain of ``src`` delayed by ~``delay_ms`` inside ``dst`` (best lag ±0.5 ms),
    over (at most) the first 4 s of ``mask``."""
    d0 = round(delay_ms * sr / 1000)
    idx = np.flatnonzero(mask)[: 4 * sr]
    best = -np.inf
    for d in range(max(0, d0 - sr // 2000), d0 + sr // 2000 + 1):
        i = idx[idx >= d]
        x, y = src[i - d].astype(np.float64), dst[i].astype(np.float64)
        best = max(best, float(np.dot(x, y) / np.dot(x, x)))
    return 20 * np.log10(max(best, 1e-9))


def test_echo_level(small: list[Truth], audio: dict) -> None:
    for t in small:
        sr, a, c = audio[t["name"]]
        hold = _mask(len(a), sr, _holds(t), pad=0.2)
        for party, src, dst in (("customer", c, a), ("agent", a, c)):
            other = "agent" if party == "customer" else "customer"
            only = (_mask(len(a), sr, t["speech"][party])
                    & ~_mask(len(a), sr, t["speech"][other], pad=0.15) & ~hold)
            assert only.sum() > 2 * sr
            e = t["acoustics"]["echo"][other]
            g = _echo_gain_db(src, dst, sr, e["delay_ms"], only)
            assert -40.0 <= e["gain_db"] <= -28.0
            # estimate from the audio: noise, µ-law and the low-pass blur it by ~1–2 dB
            assert -42.0 <= g <= -26.5, (t["name"], party, g, e)
            assert g == pytest.approx(e["gain_db"], abs=3.0 if e["lowpass_hz"] else 2.0)


def test_muted_hold_is_digital_silence(small: list[Truth], audio: dict) -> None:
    muted = [(t, h) for t in small for h in t["holds"] if h["type"] == "muted"]
    assert muted
    for t, h in muted:
        sr, a, _c = audio[t["name"]]
        seg = a[round(h["start"] * sr): round(h["end"] * sr)]
        assert len(seg) > 10 * sr and np.all(seg == 0.0)
        before = a[round((h["start"] - 0.5) * sr): round(h["start"] * sr)]
        assert np.any(before != 0.0)


def test_unmuted_hold_has_noise_floor_and_leak(small: list[Truth], audio: dict) -> None:
    unmuted = [(t, h) for t in small for h in t["holds"] if h["type"] == "unmuted"]
    assert unmuted and any(h["leaks"] for _, h in unmuted)
    for t, h in unmuted:
        sr, a, _ = audio[t["name"]]
        inside = _mask(len(a), sr, [[h["start"], h["end"]]])
        leak = _mask(len(a), sr, h["leaks"])
        quiet = inside & ~_mask(len(a), sr, h["leaks"] + t["typing"], pad=0.2)
        floor = np.sqrt(np.mean(a[quiet] ** 2))
        assert floor > 10 ** (-75 / 20)  # an open mic: room noise, not zeros
        if h["leaks"]:
            assert np.sqrt(np.mean(a[leak] ** 2)) > 10 * floor  # speech well above the floor


def test_telephone_band(small: list[Truth], audio: dict) -> None:
    tel = [t for t in small if t["telephone"]]
    assert tel
    for t in tel:
        sr, a, c = audio[t["name"]]
        assert sr == 8000
        for x in (a, c):
            spec = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
            f = np.fft.rfftfreq(len(x), 1 / sr)
            hi = spec[f > 3700].sum() / spec[(f > 300) & (f < 3400)].sum()
            assert 10 * np.log10(hi) < -25


def test_interruptions_overlap_in_audio(small: list[Truth], audio: dict) -> None:
    events = [(t, ev) for t in small for ev in t["interruptions"]]
    assert len(events) >= 2
    for t, ev in events:
        sr, a, c = audio[t["name"]]
        n = len(a)
        for party, x in (("agent", a), ("customer", c)):
            silent = ~_mask(n, sr, t["speech"][party], pad=0.3) & ~_mask(n, sr, _holds(t))
            floor = np.sqrt(np.mean(x[silent] ** 2))
            win = x[round(ev["onset"] * sr): round((ev["onset"] + 1.2) * sr)]
            assert np.sqrt(np.mean(win**2)) > 4 * floor, (t["name"], party, ev)
    for t in small:
        for ev in t["non_interruptions"]:
            if ev["type"] == "backchannel":
                assert ev["duration_s"] <= 0.5


def test_mulaw_file_is_format_7_with_fact(small: list[Truth]) -> None:
    t = next(t for t in small if t["format"] == "mulaw")
    raw = Path(next(iter(t["files"].values()))).read_bytes()
    tag, _ch, sr, _, _, bits = struct.unpack("<HHIIHH", raw[20:36])
    assert (tag, bits, sr) == (7, 8, 8000) and b"fact" in raw[:80]
    x = np.linspace(-1, 1, 1001)
    assert np.abs(mulaw_decode(mulaw_encode(x)) - x).max() < 0.032
    assert mulaw_decode(mulaw_encode(np.zeros(4))).tolist() == [0.0] * 4


def test_rebuild_reuses_cache(small: list[Truth]) -> None:
    out = Path(small[0]["dir"])
    stamp = {p: p.stat().st_mtime_ns for p in out.iterdir()}
    again = build_corpus(out, seed=7, scale="small")
    assert [t["name"] for t in again] == [t["name"] for t in small]
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == stamp
    assert load_corpus(out) == again


def test_full_plan_covers_the_scenarios() -> None:
    specs = plan(7, "full")
    assert specs == plan(7, "full")
    assert 40 <= len(specs) <= 60
    tel = sum(s["telephone"] for s in specs) / len(specs)
    assert 0.35 <= tel <= 0.45
    by = [s["scenario"] for s in specs]
    assert by.count("speaking_rate") >= 12
    wpm = [s["params"]["wpm"] for s in specs if s["scenario"] == "speaking_rate"]
    assert min(wpm) == 90 and max(wpm) == 280
    episodes = sum(s["params"]["episodes"] for s in specs
                   if s["scenario"] == "raised" and s["params"]["party"])
    assert episodes >= 10
    holds = [s["params"] for s in specs if s["scenario"] == "hold"]
    assert {(h["kind"], h["via"]) for h in holds} == {
        ("music", "music"), ("muted", "marks"), ("unmuted", "marks"), ("music", "marks")}
    assert sum(h["dur"] > 60 for h in holds) >= 3 and sum(h["dur"] > 45 for h in holds) >= 6
    assert {s["sample_rate_hz"] for s in specs} == {8000, 16000, 44100, 48000}
    assert sum(s["mono_pair"] for s in specs) >= 3
