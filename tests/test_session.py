"""One call path: the file path (``appliance analyze``) and the desk's runner drive the same
:class:`CallSession`, so the same call gives the same cues; the call's lifecycle events
(``call_started`` … ``call_ended``, then the summary) frame them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from appliance.audio.filesource import FileSource
from appliance.audio.marks_file import load_marks
from appliance.config import config_from_dict
from appliance.engine.vad import SileroModel
from appliance.events import Event
from appliance.stream.blocks import EndOfCall
from appliance.stream.live import LiveRunner
from appliance.stream.pipeline import analyse_blocks
from appliance.stream.session import CallSession
from tests.waiting import until

DEMO = Path(__file__).resolve().parent.parent / "appliance" / "demo"


class NoSource:
    """A live source that never delivers: the test feeds the runner's queue itself."""

    flowing = True

    async def run(self, queue: Any) -> None:
        await asyncio.Event().wait()

    def stats(self) -> dict[str, Any]:
        return {}


def _file_events() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def emit(ev: Event) -> None:
        out.append(ev.to_json())

    cfg = config_from_dict({})
    session = CallSession(cfg, SileroModel(), emit, call_id="call-1", lang="en",
                          marks=load_marks(DEMO / "demo_marks.jsonl"), source="file")
    asyncio.run(analyse_blocks(FileSource(DEMO / "demo_call.wav", block_s=0.1).blocks(),
                               session))
    return out


def _desk_events(passes: int = 1) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cfg = config_from_dict({})
    runner = LiveRunner(cfg, NoSource(), SileroModel(), publish=out.append,
                        marks=load_marks(DEMO / "demo_marks.jsonl"), source_name="replay")

    async def go() -> None:
        task = asyncio.create_task(runner.analyse())
        for n in range(passes):  # blocks of the headset's size, not the file path's
            for block in FileSource(DEMO / "demo_call.wav", block_s=0.032).blocks():
                await runner.queue.put(block)
            await runner.queue.put(EndOfCall("source_closed") if n < passes - 1 else None)
        await task
        await asyncio.gather(*runner._closing)

    asyncio.run(go())
    return out


def _cues(events: list[dict[str, Any]], call_id: str = "call-1") -> list[tuple[Any, ...]]:
    return [(e["t"], e["kind"], e["party"], e["severity"], repr(e["data"])) for e in events
            if e["call_id"] == call_id and e["kind"] not in (
                "state", "call_started", "call_ended", "summary")]


def test_the_file_path_and_the_desk_give_the_same_cues_for_the_same_call() -> None:
    file_events, desk_events = _file_events(), _desk_events()
    assert _cues(file_events)  # the demo has cues to compare
    assert _cues(desk_events) == _cues(file_events)
    summaries = [e for e in (file_events, desk_events) for e in e if e["kind"] == "summary"]
    file_summary, desk_summary = (s["data"] for s in summaries)
    assert desk_summary == file_summary


def test_a_call_is_framed_by_its_start_and_its_end() -> None:
    events = _file_events()
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "call_started" and kinds[-2:] == ["call_ended", "summary"]
    assert events[0]["data"] == {"language": "en", "agent_id": None, "source": "file",
                                 "started_at": ""}
    assert events[-2]["data"]["reason"] == "source_closed"
    assert {e["call_id"] for e in events} == {"call-1"}


def test_an_end_of_call_in_the_stream_starts_the_next_call() -> None:
    """A looped replay (or a PBX leg that hangs up and a new one): two calls, each framed,
    each with the same cues; the second ends with the source."""
    events = _desk_events(passes=2)
    starts = [e for e in events if e["kind"] == "call_started"]
    ends = [e for e in events if e["kind"] == "call_ended"]
    assert [e["call_id"] for e in starts] == ["call-1", "call-2"]
    assert [(e["call_id"], e["data"]["reason"]) for e in ends] == [
        ("call-1", "source_closed"), ("call-2", "source_closed")]
    assert starts[0]["data"]["source"] == "replay" and starts[0]["data"]["started_at"]
    assert _cues(events, "call-2") == _cues(events, "call-1") != []


# -- automatic call boundaries at the desk -------------------------------------------------
def _blocks(seconds: float, level: int = 0, seed: int = 0) -> list[Any]:
    """Blocks of the headset's size: silence, or noise at ``level`` (int16 amplitude)."""
    import numpy as np

    from appliance.stream.blocks import PartyBlock

    rng = np.random.default_rng(seed)
    out = []
    for i in range(round(seconds / 0.032)):
        x = (rng.standard_normal(512) * level).astype(np.int16) if level else \
            np.zeros(512, np.int16)
        out.append(PartyBlock(i * 0.032, x, np.zeros(512, np.int16)))
    return out


def _desk(cfg_calls: dict[str, Any], feed: list[Any]) -> tuple[LiveRunner, list[dict[str, Any]],
                                                                  list[Any]]:
    out: list[dict[str, Any]] = []
    stored: list[Any] = []

    class Archive:
        keeps_transcripts = False

        def record(self, rec: Any) -> None:
            stored.append(rec)

        def health(self) -> dict[str, Any]:
            return {"ok": True, "state": "ok"}

    runner = LiveRunner(config_from_dict({"calls": cfg_calls}), NoSource(), SileroModel(),
                        publish=out.append, archive=Archive())  # type: ignore[arg-type]

    async def go() -> None:
        task = asyncio.create_task(runner.analyse())
        for item in feed:
            if callable(item):
                await runner.queue.put(None) if item is None else None
                # let the runner take everything before the check
                await until(lambda: not runner.queue.qsize(), "the runner took the blocks")
                item(runner)
            else:
                await runner.queue.put(item)
        await runner.queue.put(None)
        await task
        await asyncio.gather(*runner._closing)

    asyncio.run(go())
    return runner, out, stored


def _demo_blocks(seconds: float) -> list[Any]:
    blocks = list(FileSource(DEMO / "demo_call.wav", block_s=0.032).blocks())
    return blocks[: round(seconds / 0.032)]


def test_a_silent_line_ends_the_call_and_the_next_call_starts_when_it_comes_alive() -> None:
    seen: dict[str, Any] = {}

    def idle_now(r: LiveRunner) -> None:
        seen["idle"], seen["health_call"] = r.idle, r.health()["call"]

    _, events, stored = _desk(
        {"idle_end_s": 12.0},
        [*_demo_blocks(20.0), *_blocks(14.0), idle_now, *_blocks(3.0), *_demo_blocks(20.0)])
    assert seen == {"idle": True, "health_call": None}
    ends = [(e["call_id"], e["data"]["reason"]) for e in events if e["kind"] == "call_ended"]
    assert ends == [("call-1", "idle"), ("call-2", "source_closed")]
    assert [r.call_id for r in stored] == ["call-1", "call-2"]
    first = next(e for e in events if e["kind"] == "summary" and e["call_id"] == "call-1")
    assert 30.0 <= first["data"]["duration_s"] <= 36.0  # 20 s of call + the idle time
    second = [e for e in events if e["call_id"] == "call-2"]
    # the new call starts with the sound that woke the line (less its pre-roll): the same
    # 20 s of the demo give the same cues, shifted by the demo's leading quiet
    one, two = _cues(events, "call-1"), _cues(events, "call-2")
    assert two and [c[1:4] for c in two] == [c[1:4] for c in one[: len(two)]]
    shifts = {round(a[0] - b[0], 2) for a, b in zip(one, two, strict=False)}
    assert len(shifts) == 1 and 0.0 <= shifts.pop() <= 1.0
    assert second[0]["kind"] == "call_started"
    idle_states = [e for e in events if e["kind"] == "state" and e.get("idle")]
    assert not idle_states or all(e["t"] == 0.0 for e in idle_states)


def test_a_call_in_which_nobody_spoke_is_not_summarised() -> None:
    runner, events, stored = _desk({"idle_end_s": 10.0}, [*_blocks(11.0), *_blocks(2.0, 30)])
    assert [e["kind"] for e in events if e["kind"] in ("call_started", "call_ended",
                                                       "summary")] == ["call_started",
                                                                       "call_ended"]
    assert stored == [] and runner.idle


def test_idle_ends_can_be_turned_off_and_a_click_does_not_start_a_call() -> None:
    import numpy as np

    from appliance.stream.blocks import PartyBlock
    from appliance.stream.line import LineWatcher

    _, events, _ = _desk({"idle_end_s": 0.0}, [*_demo_blocks(10.0), *_blocks(40.0)])
    assert [e["data"]["reason"] for e in events if e["kind"] == "call_ended"] == [
        "source_closed"]

    watcher = LineWatcher(start_margin_db=15.0, preroll_s=0.5)
    quiet = _blocks(2.0, level=20)
    assert all(watcher.push(b) == [] for b in quiet)  # steady line noise
    click = PartyBlock(0.0, np.full(512, 8000, np.int16), np.zeros(512, np.int16))
    assert watcher.push(click) == [] and all(watcher.push(b) == [] for b in quiet[:10])
    loud = _blocks(0.2, level=3000, seed=1)
    got = [watcher.push(b) for b in loud[:3]]
    assert got[0] == got[1] == []
    assert 0.5 <= sum(len(b.agent) for b in got[2]) / 16000 <= 0.55  # the pre-roll is kept
    assert got[2][-1] is loud[2]


def test_the_pace_returns_to_neutral_after_the_agent_stops_talking() -> None:
    from appliance.engine.call_engine import CallEngine

    engine = CallEngine(config_from_dict({"calls": {"rate_hold_s": 5.0}}), SileroModel())
    for b in _demo_blocks(30.0):  # the agent talks fast around 25 s in the demo
        engine.push(b.agent, b.customer)
    assert engine.snapshot()["rate"] is not None
    for b in _blocks(8.0):
        engine.push(b.agent, b.agent)
    assert engine.snapshot()["rate"] is None
