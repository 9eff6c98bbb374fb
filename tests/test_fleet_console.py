"""Box to console, end to end, through a real Mosquitto (TLS, passwords, the per-box ACL):
the box's publisher and outbox, the broker, the console's subscriber and its central store.

Every summary arrives exactly once in the central store when the broker is SIGKILLed and
restarted while the box is publishing, and when the box is restarted with a full outbox
while the broker is down.  Skipped when mosquitto is not installed."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from appliance.config import config_from_dict
from appliance.config.fleet import FleetConfig
from appliance.console.settings import Secrets
from appliance.cue_payloads import Interruption
from appliance.events import CallEnded, CallStarted, Cue, Summary
from appliance.service.console_service import ConsoleService
from appliance.sinks.fleet.outbox import Outbox, outbox_path
from appliance.sinks.fleet.publisher import Publisher
from appliance.sinks.fleet.sink import FleetSink
from tests import mqttbroker
from tests.waiting import until

pytestmark = pytest.mark.skipif(not mqttbroker.available(),
                                reason="mosquitto not installed (scripts/setup.sh)")
SITE, TOKEN = "site1", "console-token-of-32-characters-x"



def _console(broker: mqttbroker.MosquittoBroker, state: Path) -> ConsoleService:
    cfg = config_from_dict({"storage": {"state_dir": str(state)}, "console": {
        "broker": broker.url, "ca_file": str(broker.ca_file), "username": "console",
        "port": 0, "client_id": "console-e2e", "reconnect_max_s": 1.0}})
    return ConsoleService(cfg, env={}, secrets=Secrets("pwc", TOKEN, ""))


def _box(broker: mqttbroker.MosquittoBroker, state: Path, box: str, **kw: Any) -> Publisher:
    cfg = FleetConfig(**{"enabled": True, "broker": broker.url, "box_id": box, "site": SITE,
                         "username": box, "ca_file": str(broker.ca_file),
                         "reconnect_min_s": 0.2, "reconnect_max_s": 1.0,
                         "stop_flush_s": 5.0, **kw})
    outbox = Outbox.open(outbox_path(state), max_messages=cfg.outbox_max_messages,
                         max_bytes=cfg.outbox_max_bytes)
    return Publisher(cfg, outbox, password=box.replace("box", "pw"))


def _call(sink: FleetSink, call_id: str, cues: int) -> None:
    sink(CallStarted(call_id, "en", agent_id=f"agent-{call_id[-1]}", source="websocket",
                     started_at="2026-12-06T10:00:00.000Z"))
    for i in range(cues):
        sink(Cue(float(i), "agent", "warn", "You talked over 'the words'",
                 Interruption(start_s=float(i), overlap_s=0.4, interrupted="customer"),
                 call_id))
    sink(CallEnded(call_id, 60.0, "source_closed", ended_at="2026-12-06T10:01:00.000Z"))
    sink(Summary(60.0, {"duration_s": 60.0, "language": "en",
                        "interruptions": {"agent": cues, "customer": 0},
                        "cues": {"interruption": cues}}, call_id))


def _saved_after(broker: mqttbroker.MosquittoBroker, t: float) -> bool:
    db = broker.dir / "data" / "mosquitto.db"
    return db.exists() and db.stat().st_mtime > t


def _assert_each_call_once(svc: ConsoleService, box: str, calls: list[str], cues: int) -> None:
    rows = [r for r in svc.store.export() if r["box"] == box]
    assert sorted(r["call_id"] for r in rows) == sorted(calls)  # each summary once
    for call_id in calls:
        row = svc.store.call(SITE, box, call_id)
        assert row is not None and row["ended_at"], call_id
        assert row["summary"]["interruptions"] == {"agent": cues, "customer": 0}
        assert len(svc.store.cues(SITE, box, call_id)) == cues, call_id


def test_the_broker_killed_mid_stream_every_summary_arrives_once(
        broker: mqttbroker.MosquittoBroker, tmp_path: Path) -> None:
    calls = [f"kill-{i:03d}" for i in range(60)]

    async def scenario() -> None:
        svc = _console(broker, tmp_path / "console")
        await svc.start()
        await until(lambda: svc.ingest.connected, "the console connects")
        # A broker keeps a subscriber's session across a crash only once it has saved it
        # (here every second: `autosave_interval 1`; a site's broker must persist too, see
        # the README): wait for a save after the console subscribed.
        subscribed = time.time()
        await until(lambda: _saved_after(broker, subscribed + 0.2), "the broker saves the "
                    "console's session", poll_s=0.1)
        pub = _box(broker, tmp_path / "box1", "box1")
        pub.start()
        sink = FleetSink(pub, figures=None, stats_interval_s=60.0, clock=time.monotonic)
        fed = threading.Event()
        killed = threading.Event()

        def box() -> None:  # the box keeps coaching and publishing through the outage
            for n, call_id in enumerate(calls):
                _call(sink, call_id, cues=5)
                if n == 20:
                    killed.wait(120)  # a hang guard: the kill always comes mid-stream
                time.sleep(0.01)
            fed.set()

        feeder = threading.Thread(target=box, daemon=True)
        feeder.start()
        try:
            await until(lambda: svc.ingest.stored >= 20, "the console has some of it")
            broker.kill()  # SIGKILL while messages are in flight in both directions
            killed.set()
            await asyncio.sleep(0.5)
            broker.start()
            await until(fed.is_set, "the box has emitted every call")
            await until(lambda: pub.pending == 0, "the box's outbox drains after the restart",
                        poll_s=0.1)
            await until(lambda: sum(1 for r in svc.store.export() if r["box"] == "box1")
                        >= len(calls), "every summary is in the central store", poll_s=0.1)
            assert svc.ingest.connects >= 2  # the console did reconnect
            _assert_each_call_once(svc, "box1", calls, cues=5)
        finally:
            pub.stop(0)
            await svc.stop()

    asyncio.run(scenario())


def test_a_box_restarted_with_a_full_outbox_delivers_every_summary_once(
        broker: mqttbroker.MosquittoBroker, tmp_path: Path) -> None:
    calls = [f"out-{i:03d}" for i in range(40)]

    async def scenario() -> None:
        svc = _console(broker, tmp_path / "console")
        await svc.start()
        await until(lambda: svc.ingest.connected, "the console connects")
        try:
            broker.stop()  # the site's broker is down for maintenance
            first = _box(broker, tmp_path / "box2", "box2", outbox_max_messages=400)
            first.start()
            sink = FleetSink(first, figures=None, stats_interval_s=60.0, clock=time.monotonic)
            for call_id in calls:
                _call(sink, call_id, cues=3)
            assert first.pending >= len(calls) * 5  # new, 3 updates, end: all in the outbox
            first.stop(0)  # the box restarts with its outbox full
            second = _box(broker, tmp_path / "box2", "box2", outbox_max_messages=400)
            assert second.pending >= len(calls) * 5 and second.evicted == 0
            second.start()
            broker.start()
            await until(lambda: second.pending == 0, "the outbox drains", poll_s=0.1)
            await until(lambda: sum(1 for r in svc.store.export() if r["box"] == "box2")
                        >= len(calls), "every summary is in the central store", poll_s=0.1)
            _assert_each_call_once(svc, "box2", calls, cues=3)
            second.stop(0)
        finally:
            await svc.stop()

    asyncio.run(scenario())


def test_a_box_authenticated_by_its_client_certificate(
        broker: mqttbroker.MosquittoBroker, tmp_path: Path) -> None:
    """A site that gives each box a certificate instead of a password: the certificate's
    name is the box's user for the broker's ACL, so it writes its own topics only."""
    cert, key = broker.ca.client_cert("box1")

    async def scenario() -> None:
        svc = _console(broker, tmp_path / "console")
        await svc.start()
        await until(lambda: svc.ingest.connected, "the console connects")
        cfg = FleetConfig(enabled=True, broker=broker.cert_url, box_id="box1", site=SITE,
                          client_cert=str(cert), client_key=str(key),
                          ca_file=str(broker.ca_file), reconnect_min_s=0.2,
                          reconnect_max_s=1.0, stop_flush_s=5.0)
        pub = Publisher(cfg, Outbox.open(outbox_path(tmp_path / "box1")), password="")
        pub.start()
        try:
            sink = FleetSink(pub, figures=None, stats_interval_s=60.0, clock=time.monotonic)
            _call(sink, "cert-1", cues=2)
            await until(lambda: (row := svc.store.call(SITE, "box1", "cert-1")) is not None
                        and row["ended_at"] is not None, "the call arrives", poll_s=0.05)
            _assert_each_call_once(svc, "box1", ["cert-1"], cues=2)
            assert pub.health()["last_error"] is None and pub.denied == 0
        finally:
            pub.stop(0)
            await svc.stop()

    asyncio.run(scenario())
