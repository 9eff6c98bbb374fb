"""From the PBX to the supervisor's console: a call streamed into the tap (WebSocket, as
FreeSWITCH's mod_audio_fork sends it) is analysed by the tap's workers, published by the
box's fleet publisher to a real Mosquitto (TLS, passwords, the per-box ACL) and stored by
the real console: the call, its agent, each cue once and its figures.  Skipped when
mosquitto is not installed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from appliance.config import config_from_dict
from appliance.console.settings import Secrets
from appliance.service.console_service import ConsoleService
from appliance.service.tap_service import TapService
from appliance.sinks.archive import CallArchive
from tests import mqttbroker
from tests.conftest import VirtualClock
from tests.test_tap import _legs_8k
from tests.test_tap_service import HANG_S, _ws_call
from tests.waiting import until

pytestmark = pytest.mark.skipif(not mqttbroker.available(),
                                reason="mosquitto not installed (scripts/setup.sh)")
SITE = "lyon"


def test_a_pbx_call_reaches_the_console_through_the_broker(tmp_path: Path) -> None:
    broker = mqttbroker.MosquittoBroker(tmp_path / "broker", site=SITE,
                                        users={"pbx-tap-1": "pw-tap", "console": "pwc"})
    broker.start()
    (tmp_path / "fleet-password").write_text("pw-tap\n", encoding="utf-8")
    cfg = config_from_dict({
        "asr": {"enabled": False},
        "storage": {"state_dir": str(tmp_path / "state")},
        "tap": {"enabled": True, "idle_timeout_s": 60.0,
                "routes": [{"name": "fs1", "mix_type": "stereo", "sample_rate_hz": 8000}]},
        "fleet": {"enabled": True, "broker": broker.url, "box_id": "pbx-tap-1",
                  "site": SITE, "username": "pbx-tap-1",
                  "password_file": str(tmp_path / "fleet-password"),
                  "ca_file": str(broker.ca_file), "reconnect_min_s": 0.2,
                  "reconnect_max_s": 1.0},
        "console": {"broker": broker.url, "ca_file": str(broker.ca_file),
                    "username": "console", "port": 0, "client_id": "console-tap"}})
    archive = CallArchive(cfg.storage, {})
    archive.start()
    svc = TapService(cfg, archive=archive, processes=1, port=0, clock=VirtualClock())
    events: list[dict[str, Any]] = []
    svc.bus.subscribe(lambda ev: events.append(ev.to_json()))
    console = ConsoleService(cfg, env={}, secrets=Secrets("pwc", "t" * 32, ""))
    agent, customer = _legs_8k()
    got: dict[str, Any] = {}

    async def go() -> None:
        await console.start()
        await until(lambda: console.ingest.connected, "the console connects")
        await svc.start()
        try:
            async with aiohttp.ClientSession() as http:
                await _ws_call(http, svc.url, agent, customer)
            await until(lambda: any(e["kind"] == "summary" for e in events), hang_s=HANG_S)
            await until(lambda: (row := console.store.call(SITE, "pbx-tap-1", "ws-1"))
                        is not None and row["ended_at"] is not None,
                        "the call's end is in the central store", poll_s=0.05)
            got["row"] = console.store.call(SITE, "pbx-tap-1", "ws-1")
            got["cues"] = console.store.cues(SITE, "pbx-tap-1", "ws-1")
            await until(lambda: console.store.counts()["boxes"] >= 1, "the box's status")
        finally:
            await svc.stop()
            await console.stop()
            archive.close()
            broker.stop()

    asyncio.run(go())
    box_cues = [e for e in events if e["call_id"] == "ws-1" and e["kind"] not in (
        "call_started", "call_ended", "summary", "error", "transcript")]
    summary = next(e["data"] for e in events if e["kind"] == "summary")
    row = got["row"]
    assert box_cues, "the call must carry cues, else the test proves little"
    assert row["agent_id"] == "a-ws" and row["source"] and row["reason"] == "source_closed"
    assert sorted(c["kind"] for c in got["cues"]) == sorted(e["kind"] for e in box_cues)
    assert row["interruptions_agent"] == summary["interruptions"]["agent"]
    assert row["duration_s"] == pytest.approx(summary["duration_s"], abs=0.01)
    assert row["summary"]["cues"] == summary["cues"]
