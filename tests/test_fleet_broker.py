"""The box's fleet publisher against a real Mosquitto broker (TLS, password file, per-box
ACL): events arrive, the status is retained with a last will, a box cannot publish as
another, wrong credentials are a clear error, a broker killed mid-stream and a box
restarted with a full outbox lose nothing.  Skipped when mosquitto is not installed."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import CollectorRegistry, generate_latest

from appliance.config.fleet import FleetConfig
from appliance.cue_payloads import Interruption
from appliance.errors import FLEET_AUTH, FLEET_DENIED, FLEET_UNREACHABLE
from appliance.events import CallEnded, CallStarted, Cue, Summary
from appliance.sinks.fleet.collector import FleetCollector
from appliance.sinks.fleet.messages import assert_no_text, decode
from appliance.sinks.fleet.outbox import Outbox, outbox_path
from appliance.sinks.fleet.publisher import Publisher
from appliance.sinks.fleet.sink import FleetSink
from tests import mqttbroker
from tests.waiting import until_sync

pytestmark = pytest.mark.skipif(not mqttbroker.available(),
                                reason="mosquitto not installed (scripts/setup.sh)")
ROOT = Path(__file__).resolve().parent.parent


class Console:
    """A subscriber as the supervisor console: reads ``coach/#`` with a persistent session
    (messages published while it is away are kept for it), decodes every message."""

    def __init__(self, broker: mqttbroker.MosquittoBroker, client_id: str = "console-t") -> None:
        self.got: list[tuple[str, dict[str, Any], bool]] = []
        self.lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=MQTTProtocolVersion.MQTTv5)
        c.tls_set(ca_certs=str(broker.ca_file))
        c.username_pw_set("console", "pwc")
        c.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("coach/#", qos=1)
        subscribed = threading.Event()  # the SUBACK: from then on nothing published is missed
        c.on_subscribe = lambda cl, u, mid, rcs, p: subscribed.set()
        c.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        c.connect_async(broker.host, broker.port, clean_start=False, properties=props)
        c.loop_start()
        self.client = c
        until_sync(subscribed.is_set, "the console subscribes")

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        _, payload = decode(msg.topic, msg.payload)
        assert_no_text(payload)
        with self.lock:
            self.got.append((msg.topic, payload, bool(msg.retain)))

    def ids(self, suffix: str = "") -> list[str]:
        with self.lock:
            return [p["id"] for t, p, _ in self.got if t.endswith(suffix)]

    def calls(self) -> list[dict[str, Any]]:
        with self.lock:
            return [p for t, p, _ in self.got if t.endswith("/event")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()



def _cfg(broker: mqttbroker.MosquittoBroker, **kw: Any) -> FleetConfig:
    base: dict[str, Any] = {"enabled": True, "broker": broker.url, "box_id": "box1",
                            "site": "site1", "username": "box1",
                            "ca_file": str(broker.ca_file), "reconnect_min_s": 0.2,
                            "reconnect_max_s": 1.0, "stop_flush_s": 5.0}
    return FleetConfig(**{**base, **kw})


def _publisher(broker: mqttbroker.MosquittoBroker, state: Path, password: str = "pw1",
               **kw: Any) -> Publisher:
    cfg = _cfg(broker, **kw)
    outbox = Outbox.open(outbox_path(state), max_messages=cfg.outbox_max_messages,
                         max_bytes=cfg.outbox_max_bytes)
    return Publisher(cfg, outbox, password=password)


def _call(sink: FleetSink, call_id: str, cues: int) -> None:
    sink(CallStarted(call_id, "en", agent_id="agent7", source="websocket"))
    for i in range(cues):
        sink(Cue(float(i), "agent", "warn", "You interrupted 'the words'",
                 Interruption(start_s=float(i), overlap_s=0.4, interrupted="customer"),
                 call_id))
    sink(CallEnded(call_id, float(cues), "source_closed"))
    sink(Summary(float(cues), {"duration_s": float(cues), "language": "en",
                               "interruptions": {"agent": cues}}, call_id))


def _check_in_order(console: Console, calls: list[str], cues: int) -> None:
    """Each call exactly new, ``cues`` updates, end, in that order, once each by id."""
    seen: dict[str, list[dict[str, Any]]] = {}
    ids: set[str] = set()
    for p in console.calls():
        if p["id"] in ids:  # a resend: the console counts it once
            continue
        ids.add(p["id"])
        seen.setdefault(p["call_id"], []).append(p)
    assert sorted(seen) == sorted(calls)
    for call_id, msgs in seen.items():
        assert [m["type"] for m in msgs] == ["new", *["update"] * cues, "end"], call_id
        assert [m["cue"]["t_s"] for m in msgs[1:-1]] == [float(i) for i in range(cues)]


def test_events_arrive_with_a_retained_status_and_a_last_will(
        broker: mqttbroker.MosquittoBroker, tmp_path: Path) -> None:
    console = Console(broker)
    pub = _publisher(broker, tmp_path / "state")
    sink = FleetSink(pub)
    pub.start()
    _call(sink, "c-1", 3)
    sink.publish_stats()
    until_sync(lambda: len(console.calls()) == 5 and console.ids("/stats"), "the call arrives")
    _check_in_order(console, ["c-1"], 3)
    end = console.calls()[-1]
    assert end["summary"]["interruptions"]["agent"] == 3 and end["box"] == "box1"
    until_sync(lambda: pub.pending == 0, "every message acknowledged")
    h = pub.health()
    assert h["state"] == "connected" and h["acked"] == h["published"] == 6
    # a console that comes later reads the retained status: online
    late = Console(broker, "console-late")
    until_sync(lambda: any(t.endswith("/status") and r for t, _, r in late.got), "retained")
    assert [p["state"] for t, p, r in late.got if t.endswith("/status") and r] == ["online"]
    late.close()
    pub.stop()
    until_sync(lambda: [p.get("state") for t, p, _ in console.got
                        if t.endswith("/status")][-1:] == ["offline"], "offline on stop")
    console.close()


def test_the_last_will_says_offline_when_the_box_dies(
        broker: mqttbroker.MosquittoBroker, tmp_path: Path) -> None:
    console = Console(broker)
    script = (
        "import sys, time\n"
        "from tests.test_fleet_broker import _publisher\n"
        "from tests import mqttbroker\n"
        "from pathlib import Path\n"
        "b = mqttbroker.MosquittoBroker.__new__(mqttbroker.MosquittoBroker)\n"
        f"b.host, b.port = {broker.host!r}, {broker.port}\n"
        f"b.ca_file = Path({str(broker.ca_file)!r})\n"
        f"p = _publisher(b, Path({str(tmp_path / 'state')!r}))\n"
        "p.start()\n"
        "while not p.connected: time.sleep(0.01)\n"
        "print('up', flush=True)\n"
        "time.sleep(600)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
        until_sync(lambda: any(p.get("state") == "online" for _, p, _ in console.got), "online")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    until_sync(lambda: [p.get("state") for t, p, _ in console.got
                        if t.endswith("/status")][-1:] == ["offline"], "the last will")
    console.close()


def test_a_box_cannot_publish_as_another(broker: mqttbroker.MosquittoBroker,
                                         tmp_path: Path) -> None:
    console = Console(broker)
    pub = _publisher(broker, tmp_path / "state", box_id="box2")  # box1's credentials
    sink = FleetSink(pub)
    pub.start()
    _call(sink, "c-9", 2)
    until_sync(lambda: pub.denied == 4, "the broker refuses every message")
    h = pub.health()
    assert h["last_error"] == FLEET_DENIED and h["acked"] == 0 and h["pending"] == 0
    # a message published afterwards by the real box1 arrives: nothing came before it
    real = _publisher(broker, tmp_path / "state1")
    real.start()
    _call(FleetSink(real), "c-1", 0)
    until_sync(lambda: len(console.calls()) == 2, "box1's own call")
    assert all("/box2/" not in t for t, _, _ in console.got)
    pub.stop(0)
    real.stop()
    console.close()


def test_wrong_credentials_are_a_clear_error_and_nothing_is_lost(
        broker: mqttbroker.MosquittoBroker, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, "appliance.sinks.fleet")
    pub = _publisher(broker, tmp_path / "state", password="wrong")
    sink = FleetSink(pub)
    pub.start()
    _call(sink, "c-1", 2)
    until_sync(lambda: pub.errors[FLEET_AUTH] >= 3, "three refused attempts")
    h = pub.health()
    assert h["state"] == "failing" and h["last_error"] == FLEET_AUTH and h["ok"]
    assert h["pending"] == 4  # kept for when the password is fixed
    logged = [r.getMessage() for r in caplog.records if FLEET_AUTH in r.getMessage()]
    assert len(logged) == 1 and "refused the connection" in logged[0]  # once, not per retry
    assert "wrong" not in caplog.text  # the password is never logged
    pub.stop(0)
    # fixed: the same outbox goes out
    console = Console(broker)
    again = _publisher(broker, tmp_path / "state")
    again.start()
    until_sync(lambda: len(console.calls()) == 4, "the kept call arrives")
    _check_in_order(console, ["c-1"], 2)
    again.stop()
    console.close()


def test_the_broker_killed_and_restarted_mid_stream_loses_nothing(
        broker: mqttbroker.MosquittoBroker, tmp_path: Path) -> None:
    """The box's stream goes on while the broker is gone (SIGKILL) and comes back: every
    message arrives, in order per call.  The kill comes once the console has what the broker
    acknowledged: what a killed broker acknowledged but had only in memory (its queue to a
    subscriber) is the broker's to lose, not the box's."""
    console = Console(broker)
    until_sync(lambda: (broker.dir / "data" / "mosquitto.db").exists(),
               "the console's session saved")
    pub = _publisher(broker, tmp_path / "state")
    sink = FleetSink(pub)
    pub.start()
    calls = [f"c-{i}" for i in range(30)]
    for call_id in calls[:10]:
        _call(sink, call_id, 3)
    until_sync(lambda: len(console.calls()) >= 50, "the stream flows")
    broker.kill()  # SIGKILL: no goodbye
    until_sync(lambda: not pub.connected, "the box sees the broker gone")
    for call_id in calls[10:]:
        _call(sink, call_id, 3)
    assert pub.health()["last_error"] == FLEET_UNREACHABLE
    assert pub.pending == 100  # 20 calls of 5 messages wait on disk
    broker.start()
    until_sync(lambda: pub.pending == 0, "the outbox drains after the restart")
    until_sync(lambda: len(set(console.ids("/event"))) == 150, "every message arrives")
    _check_in_order(console, calls, 3)
    pub.stop()
    console.close()


def test_a_box_restarted_with_a_full_outbox_sends_it_all(
        broker: mqttbroker.MosquittoBroker, tmp_path: Path) -> None:
    console = Console(broker)
    until_sync(lambda: (broker.dir / "data" / "mosquitto.db").exists(), "session saved")
    broker.stop()
    state = tmp_path / "state"
    first = _publisher(broker, state, outbox_max_messages=50)
    sink = FleetSink(first)
    first.start()
    calls = [f"c-{i}" for i in range(14)]  # 14 calls x 5 messages: 20 beyond the bound
    for call_id in calls:
        _call(sink, call_id, 3)
    assert first.pending == 50 and first.evicted == 20
    first.stop()  # the box stops with its outbox full; the broker is still down
    second = _publisher(broker, state, outbox_max_messages=50)
    h = second.health()
    assert (h["pending"], h["evicted"]) == (50, 20)  # the restart kept both figures
    registry = CollectorRegistry()
    registry.register(FleetCollector(second.health))
    metrics = generate_latest(registry).decode()
    assert "appliance_fleet_evicted_total 20.0" in metrics
    assert "appliance_fleet_pending 50.0" in metrics
    second.start()
    broker.start()
    until_sync(lambda: second.pending == 0, "the outbox drains")
    until_sync(lambda: len(set(console.ids("/event"))) == 50, "all that was kept arrives")
    _check_in_order(console, calls[4:], 3)  # the 4 oldest calls were evicted
    metrics = generate_latest(registry).decode()
    assert "appliance_fleet_acked_total 50.0" in metrics
    assert 'appliance_fleet_errors_total{code="fleet.unreachable"}' in metrics
    second.stop()
    console.close()


def test_the_payloads_are_json_objects_as_documented(broker: mqttbroker.MosquittoBroker,
                                                     tmp_path: Path) -> None:
    """What the README shows is what goes out (keys of each message type)."""
    console = Console(broker)
    pub = _publisher(broker, tmp_path / "state")
    sink = FleetSink(pub)
    pub.start()
    _call(sink, "c-1", 1)
    sink.publish_stats()
    until_sync(lambda: len(console.got) >= 5, "the messages")
    by_type = {p.get("type") or t.rsplit("/", 1)[-1]: p for t, p, _ in console.got}
    assert set(by_type) == {"status", "new", "update", "end", "stats"}
    assert json.loads(json.dumps(by_type))  # plain JSON
    assert set(by_type["update"]) == {"schema", "id", "box", "site", "at", "call_id", "type",
                                      "cue"}
    pub.stop()
    console.close()


def test_the_doctor_connects_to_the_broker_and_reports_its_answer(
        broker: mqttbroker.MosquittoBroker, tmp_path: Path) -> None:
    from appliance.config import config_from_dict
    from appliance.doctor.fleet_check import check_fleet

    def doctor(password: str, **kw: Any) -> Any:
        (tmp_path / "pw").write_text(password + "\n", encoding="utf-8")
        fleet = {"enabled": True, "broker": broker.url, "box_id": "box1", "site": "site1",
                 "username": "box1", "password_file": str(tmp_path / "pw"),
                 "ca_file": str(broker.ca_file), **kw}
        cfg = config_from_dict({"fleet": fleet, "storage": {"state_dir": str(tmp_path)}})
        return check_fleet(cfg, {})

    good = doctor("pw1")
    assert good.status == "ok" and "connected" in good.detail, good
    bad = doctor("nope")
    assert bad.status == "fail" and FLEET_AUTH in bad.detail
    other_ca = mqttbroker.TestCA(tmp_path / "other-ca")
    tls = doctor("pw1", ca_file=str(other_ca.ca_file))
    assert tls.status == "fail" and "fleet.tls" in tls.detail
    assert check_fleet(config_from_dict({}), {}).status == "ok"  # off
