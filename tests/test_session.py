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
