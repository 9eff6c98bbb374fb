"""The team-lead view of a PBX tap (``sinks/floor.py``) and the tap's figures
(``TapCollector``): pure bookkeeping over events and states, no audio."""

from __future__ import annotations

import asyncio
import json
import re

from aiohttp.test_utils import make_mocked_request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from appliance.config import config_from_dict
from appliance.cue_payloads import Interruption, Jargon
from appliance.events import CallEnded, CallStarted, Cue, Summary, TranscriptEvent
from appliance.service.tap_service import TapService
from appliance.sinks.dashboard.server import STATIC_DIR, asset
from appliance.sinks.floor import FloorBoard
from appliance.sinks.metrics import TapCollector


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_the_floor_lists_open_calls_with_agent_duration_hold_and_last_cue() -> None:
    clock = Clock()
    board = FloorBoard(clock)
    board(CallStarted("c1", "de", agent_id="a-7", source="rtp",
                      started_at="2026-12-06T09:00:00.000Z"))
    clock.t += 5
    board(CallStarted("c2", "en", agent_id="b-2", source="websocket"))
    board(TranscriptEvent(1.0, "agent", "words never reach the floor", 0.5, 1.0,
                          call_id="c1"))
    board(Cue(12.3, "agent", "warn", "You talked over the customer",
              Interruption(start_s=11.7, overlap_s=0.8, interrupted="customer"), call_id="c1"))
    board.state("c1", {"kind": "state", "t": 40.0,
                       "hold": {"on": True, "elapsed_s": 12.5, "type": "music"}})
    board.state("nope", {"kind": "state", "t": 1.0})  # an unknown call: ignored
    clock.t += 60
    view = board.view()
    assert view["open"] == 2 and [c["call_id"] for c in view["calls"]] == ["c1", "c2"]
    c1, c2 = view["calls"]
    assert (c1["agent_id"], c1["source"], c1["duration_s"], c1["on_hold"], c1["hold_s"],
            c1["audio_s"]) == ("a-7", "rtp", 65.0, True, 12.5, 40.0)
    assert c1["last_cue"] == {"kind": "interruption", "party": "agent", "severity": "warn",
                              "t_s": 12.3}
    assert c2["last_cue"] is None and c2["on_hold"] is False and c2["duration_s"] == 60.0
    assert view["hold_limits"] == {"check_back_s": 45.0, "too_long_s": 60.0}
    assert "words" not in repr(view) and "talked over" not in repr(view)
    assert board.agent_of("c1") == "a-7"
    board(CallEnded("c1", 70.0, "source_closed"))
    board(Summary(70.0, {"language": "de"}, call_id="c1"))
    assert [c["call_id"] for c in board.view()["calls"]] == ["c2"]


def test_a_cue_that_quotes_the_agent_reaches_the_floor_without_its_words() -> None:
    board = FloorBoard(Clock(), check_back_s=30.0, too_long_s=90.0)
    board(CallStarted("c1", "en", agent_id="a-1", source="websocket"))
    board(Cue(20.0, "agent", "info", "Jargon: 'escrow disbursement' — say it plainly",
              Jargon(term="escrow disbursement", start_s=19.1), call_id="c1"))
    view = board.view()
    assert view["calls"][0]["last_cue"] == {"kind": "jargon", "party": "agent",
                                            "severity": "info", "t_s": 20.0}
    assert view["calls"][0]["cues"] == 1 and "escrow" not in repr(view)
    assert view["hold_limits"] == {"check_back_s": 30.0, "too_long_s": 90.0}


def test_the_floor_is_bounded() -> None:
    board = FloorBoard(Clock(), max_calls=2)
    for i in range(4):
        board(CallStarted(f"c{i}", "en"))
    assert board.view()["open"] == 2 and board.left_out == 2


def test_the_tap_figures_carry_listener_counters_and_cues() -> None:
    figures = {"healthy": True, "calls_open": 3, "calls": 10, "announced": 1,
               "dropped_blocks": 2, "cues": {"interruption": 4, "summary": 7},
               "storage": None,
               "listeners": {"rtp": {"open": 6, "packets": 1000, "malformed": 3,
                                     "note": "text is skipped"},
                             "websocket": {"open": 0, "frames": 50}}}
    reg = CollectorRegistry()
    reg.register(TapCollector(lambda: figures))
    fams = {f.name: f for f in text_string_to_metric_families(generate_latest(reg).decode())}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in fams.values() for s in f.samples}
    assert samples[("appliance_tap_calls_open", ())] == 3
    assert samples[("appliance_tap_calls_total", ())] == 10
    assert samples[("appliance_tap_listener_total",
                    (("counter", "malformed"), ("listener", "rtp")))] == 3
    assert samples[("appliance_tap_listener_open", (("listener", "rtp"),))] == 6
    assert samples[("appliance_cues_total", (("kind", "interruption"),))] == 4
    assert not any("note" in str(k) for k in samples)
    assert "appliance_storage_ok" not in fams  # no archive: no made-up storage figures


def test_the_floor_page_ships_in_the_package_with_no_inline_script_or_style() -> None:
    page = asset("floor.html")
    assert page.status == 200 and page.content_type == "text/html"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert isinstance(page.body, bytes)
    html = page.body.decode()
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts == [(' src="/static/floor.js" defer', "")]
    assert "<style" not in html and not re.search(r"\s(style|on[a-z]+)=", html)
    refs = re.findall(r'(?:src|href)="/static/([^"]+)"', html)
    assert set(refs) == {"floor.js", "style.css", "floor.css"}
    assert all((STATIC_DIR / name).is_file() for name in refs)
    assert 'id="empty"' in html and "No calls right now" in html


def test_the_tap_serves_the_floor_page_and_its_json_with_the_configs_hold_limits() -> None:
    cfg = config_from_dict({"hold": {"check_back_s": 30.0, "too_long_s": 50.0},
                            "tap": {"enabled": True}})
    svc = TapService(cfg, processes=1, port=0)  # built, not started: no worker, no socket
    svc.floor(CallStarted("c1", "en", agent_id="a-1", source="rtp"))
    routes = {r.path: r for r in svc.floor_routes()}
    assert set(routes) == {"/floor", "/api/floor"}

    async def get(path: str) -> tuple[bytes, dict[str, str]]:
        resp = await routes[path].handler(make_mocked_request("GET", path))
        return resp.body, dict(resp.headers)

    body, headers = asyncio.run(get("/floor"))
    assert b'src="/static/floor.js"' in body and headers["X-Frame-Options"] == "DENY"
    body, headers = asyncio.run(get("/api/floor"))
    view = json.loads(body)
    assert view["hold_limits"] == {"check_back_s": 30.0, "too_long_s": 50.0}
    assert [c["agent_id"] for c in view["calls"]] == ["a-1"]
    assert headers["Cache-Control"] == "no-store"
