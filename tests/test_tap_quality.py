"""The real-voices quality figures hold for calls that arrive over the PBX tap.

Every telephone-band call of the real-voices corpus (tests/corpus/real.py: 8 kHz G.711
µ-law, real recorded speakers) is sent as a PBX sends it — two 8 kHz legs in 20 ms frames,
the customer's 60 ms behind the agent's, many calls at once, hold marks through the
control path — into :class:`~appliance.audio.tap.TapCalls` over a real
:class:`~appliance.stream.shards.ShardPool` (two worker processes), and the cues are
scored against the corpus truth with the same bounds as the telephone band of
``test_quality_real.py``.  Four calls are also analysed from their WAV files, and the tap's
cues must be the WAV path's (same kinds and parties, times within ``TOLERANCE_S``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from appliance.audio.marks_file import load_marks
from appliance.audio.tap import TapCalls
from appliance.audio.wavfile import open_wav
from appliance.config import Config
from appliance.events import Cue, Event, Summary
from appliance.stream.shards import ShardPool
from tests.quality import analyse_call, real_voices_marks, score
from tests.waiting import until

TOLERANCE_S = 0.1
"""Cue times: the legs resampled as they stream against the WAV resampled in one piece."""
FRAME = 160  # 20 ms at 8 kHz
CUSTOMER_LAG = 480  # the customer's leg arrives 60 ms behind the agent's


pytestmark = real_voices_marks()


def _legs(truth: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    wav = open_wav(Path(truth["dir"]) / truth["files"]["stereo"])
    assert wav.info.sample_rate_hz == 8000
    x = np.concatenate(list(wav.read_blocks(1 << 16)))
    pcm = np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)
    return pcm[:, 0].copy(), pcm[:, 1].copy()


async def _send(tap: TapCalls, truth: dict[str, Any], step: int) -> None:
    """One call's legs, ``step`` frames per turn of the loop (the other calls interleave)."""
    name = truth["name"]
    agent, customer = _legs(truth)
    tap.open(name, rate_hz=8000, now_s=0.0, source="rtp", agent_id=f"agent-{name}")
    if truth.get("marks"):
        for mark in load_marks(Path(truth["dir"]) / truth["marks"]):
            tap.pool.add_mark(name, mark)
    n = len(agent)
    for k, i in enumerate(range(0, n + CUSTOMER_LAG, FRAME)):
        if i < n:
            tap.audio(name, "agent", agent[i:i + FRAME], now_s=i / 8000)
        j = i - CUSTOMER_LAG
        if 0 <= j < n:
            tap.audio(name, "customer", customer[j:j + FRAME], now_s=i / 8000)
        if k % step == 0:
            await asyncio.sleep(0)
    tap.leg_ended(name, "agent")
    tap.leg_ended(name, "customer")


@pytest.fixture(scope="module")
def over_the_tap(request: pytest.FixtureRequest) -> tuple[list[dict[str, Any]],
                                                           list[dict[str, Any]], int]:
    from tests.corpus.real import build_real_corpus

    out = request.config.cache.mkdir("corpus_real")
    truths = [t for t in build_real_corpus(out, seed=7, scale="full") if t["telephone"]]
    found: dict[str, dict[str, Any]] = {t["name"]: {"name": t["name"], "cues": [],
                                                    "summary": None} for t in truths}

    def emit(ev: Event) -> None:
        if isinstance(ev, Cue):
            found[ev.call_id]["cues"].append(ev.to_json())
        elif isinstance(ev, Summary):
            found[ev.call_id]["cues"].append(ev.to_json())
            found[ev.call_id]["summary"] = ev.data

    async def go() -> int:
        pool = ShardPool(Config(), emit, processes=2)
        await pool.start()
        tap = TapCalls(pool, idle_timeout_s=3600.0)
        await asyncio.gather(*(_send(tap, t, step=25 + 7 * k) for k, t in enumerate(truths)))
        await until(lambda: all(r["summary"] is not None for r in found.values()),
                    hang_s=600)
        await pool.stop()
        return tap.dropped_blocks

    dropped = asyncio.run(go())
    return truths, list(found.values()), dropped


def test_nothing_was_dropped_on_the_way(over_the_tap):
    truths, results, dropped = over_the_tap
    assert len(truths) >= 30 and dropped == 0
    assert all(r["summary"]["call_control"] for r in results)  # the legs' ends were signalled


def test_the_telephone_band_figures_hold_over_the_tap(over_the_tap):
    truths, results, _ = over_the_tap
    sc = score(truths, results)
    print(f"\ninterruption F1 {sc.interruption_f1:.3f}, raised recall {sc.raised_recall:.3f} "
          f"precision {sc.raised_precision:.3f}, talk error mean {sc.talk_error_mean:.3f}, "
          f"holds {sc.holds_found}/{sc.holds_total}, dead air {sc.dead_air_found}/"
          f"{sc.dead_air_total}")
    # the bounds of the telephone band in test_quality_real.py
    assert sc.interruption_f1 >= 0.94, sc.misses
    assert sc.backchannels_flagged == 0, sc.misses
    lat = sorted(sc.interruption_latency_s)
    assert lat[int(0.9 * (len(lat) - 1))] <= 0.3, lat
    assert sc.raised_recall >= 0.85 and sc.raised_precision >= 0.85, sc.misses
    assert sc.talk_error_mean <= 0.07, sc.misses
    assert sc.holds_found == sc.holds_total and sc.false_holds == [], sc.misses
    assert sc.leaks_found == sc.leaks_total and sc.false_leak_alarms == [], sc.misses
    assert sc.unmuted_found == sc.unmuted_total and sc.false_unmuted == []
    assert sc.dead_air_found == sc.dead_air_total and sc.dead_air_false == 0, sc.misses


def _cues(result: dict[str, Any]) -> list[tuple[str, str, float]]:
    return [(c["kind"], c["party"], c["t"]) for c in result["cues"]
            if c["kind"] not in ("summary", "hung_up_first", "answer_delay")]


def test_a_call_over_the_tap_gives_the_cues_of_its_wav(over_the_tap):
    truths, results, _ = over_the_tap
    by_name = {r["name"]: r for r in results}
    picked = [t for t in truths if t["scenario"] in ("conversation", "hold", "raised")][:4] \
        or truths[:4]
    for truth in picked:
        want = _cues(analyse_call(truth))
        got = _cues(by_name[truth["name"]])
        assert [c[:2] for c in got] == [c[:2] for c in want], (truth["name"], got, want)
        worst = max((abs(a[2] - b[2]) for a, b in zip(got, want, strict=True)), default=0.0)
        assert worst <= TOLERANCE_S, (truth["name"], worst)
