"""Simulated boxes for the fleet benchmark: each one a real MQTT client (TLS, its own user,
MQTT v5, QoS 1) publishing the contract's messages at a desk's pace.

A desk takes calls of 2-7 minutes with 10-60 s between them; a call carries about ten cues
spread over it (``new``, the cues as ``update``, ``end`` with a summary); every desk sends its
``stats`` once a minute.  ``speed`` multiplies every rate (a stress run).  Each process runs
a slice of the boxes and returns, per message, its id and the wall time it was handed to the
client (the latency is measured against the time the console stored it).
"""

from __future__ import annotations

import heapq
import random
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from appliance.events import iso_utc
from appliance.sinks.fleet import messages as m

CUE_MIX = (("interruption", "agent", "warn"), ("filler", "agent", "info"),
           ("speaking_rate", "agent", "warn"), ("dead_air", None, "info"),
           ("hold_started", "agent", "info"), ("hold_ended", "agent", "info"),
           ("tone", "customer", "warn"), ("talk_ratio", "agent", "info"))


@dataclass(frozen=True)
class BoxPlan:
    host: str
    port: int
    ca_file: str
    site: str
    boxes: tuple[str, ...]
    password: str
    seconds: float
    speed: float
    seed: int


def _now() -> str:
    return iso_utc(datetime.now(UTC))


def _summary(duration_s: float, rng: random.Random) -> dict[str, Any]:
    holds = [{"duration_s": rng.uniform(10, 90), "leaks": []} for _ in range(rng.randint(0, 2))]
    talk_a, talk_c = rng.uniform(0.3, 0.6) * duration_s, rng.uniform(0.2, 0.5) * duration_s
    return {"duration_s": duration_s, "language": "en",
            "interruptions": {"agent": rng.randint(0, 3), "customer": rng.randint(0, 2)},
            "talk_s": {"agent": talk_a, "customer": talk_c},
            "agent_share": talk_a / (talk_a + talk_c),
            "dead_air": {"count": rng.randint(0, 2), "intervals": []},
            "fillers": {"agent": rng.randint(0, 8), "customer": 0,
                        "per_min": {"agent": rng.uniform(0, 3), "customer": 0.0}},
            "holds": holds,
            "greeting": {"name": True, "company": rng.random() > 0.2, "offer": True},
            "closing": {"question": rng.random() > 0.3, "thanks": True},
            "cues": {"interruption": 1}}


class _Box:
    def __init__(self, plan: BoxPlan, box: str, rng: random.Random) -> None:
        self.plan, self.box, self.rng = plan, box, rng
        self.prefix = m.topic_prefix(plan.site, box)
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{box}",
                        protocol=MQTTProtocolVersion.MQTTv5)
        c.tls_set(ca_certs=plan.ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.username_pw_set(box, plan.password)
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        self.client = c
        self.call: str | None = None
        self.calls = 0

    def publish(self, topic: str, payload: dict[str, Any], sent: list[tuple[str, float]],
                retain: bool = False) -> None:
        sent.append((payload["id"], time.time()))
        self.client.publish(topic, m.encode(payload), qos=1, retain=retain)

    def start_call(self, sent: list[tuple[str, float]]) -> None:
        self.calls += 1
        self.call = f"{self.box}-c{self.calls}"
        p = m.call_new_payload(self.box, self.plan.site, _now(), self.call,
                               agent_id=f"agent-{self.box}", language="en", source="headset",
                               started_at=_now())
        self.publish(m.call_topic(self.prefix, self.call), p, sent)

    def cue(self, t_s: float, sent: list[tuple[str, float]]) -> None:
        assert self.call is not None
        kind, party, severity = self.rng.choice(CUE_MIX)
        p = m.cue_update_payload(self.box, self.plan.site, _now(), self.call, kind=kind,
                                 party=party, severity=severity, t_s=t_s)
        self.publish(m.call_topic(self.prefix, self.call), p, sent)

    def end_call(self, duration_s: float, sent: list[tuple[str, float]]) -> None:
        assert self.call is not None
        p = m.call_end_payload(self.box, self.plan.site, _now(), self.call,
                               reason="source_closed", ended_at=_now(),
                               summary=_summary(duration_s, self.rng))
        self.publish(m.call_topic(self.prefix, self.call), p, sent)
        self.call = None

    def stats(self, sent: list[tuple[str, float]]) -> None:
        p = m.stats_payload(self.box, self.plan.site, _now(), healthy=True, problems=[],
                            calls_open=int(self.call is not None), cues={"interruption": 1},
                            drops={}, outbox_pending=0, outbox_evicted=0)
        self.publish(m.stats_topic(self.prefix), p, sent)


def run_boxes(plan: BoxPlan) -> dict[str, Any]:
    """Connect this slice's boxes, publish for ``plan.seconds``, wait for every PUBACK,
    disconnect.  Returns the sent messages (id, wall time) and failures."""
    rng = random.Random(plan.seed)
    boxes = [_Box(plan, b, random.Random(rng.random())) for b in plan.boxes]
    connected = threading.Semaphore(0)
    failed: list[str] = []
    for b in boxes:
        def on_connect(client: Any, ud: Any, flags: Any, rc: Any, props: Any,
                       name: str = b.box) -> None:
            if rc.is_failure:
                failed.append(f"{name}: {rc}")
            connected.release()
        b.client.on_connect = on_connect
        b.client.connect_async(plan.host, plan.port, keepalive=60)
        b.client.loop_start()
    for _ in boxes:
        connected.acquire(timeout=60)
    sent: list[tuple[str, float]] = []
    t0 = time.monotonic()
    heap: list[tuple[float, int, str, int]] = []  # (due, box index, what, tie)
    tie = 0
    for i, b in enumerate(boxes):
        b.publish(m.status_topic(b.prefix), m.status_payload(b.box, plan.site, "online", _now()),
                  sent, retain=True)
        heap.append((rng.uniform(0, 60) / plan.speed, i, "call", tie))
        heap.append((rng.uniform(0, 60) / plan.speed, i, "stats", tie))
    heapq.heapify(heap)
    call_start: dict[int, float] = {}
    while heap:
        due, i, what, _ = heapq.heappop(heap)
        if due > plan.seconds:
            continue
        delay = t0 + due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        b, tie = boxes[i], tie + 1
        if what == "stats":
            b.stats(sent)
            heapq.heappush(heap, (due + 60 / plan.speed, i, "stats", tie))
        elif what == "call":
            b.start_call(sent)
            call_start[i] = due
            length = b.rng.uniform(120, 420) / plan.speed
            for _ in range(10):
                heapq.heappush(heap, (due + b.rng.uniform(0, length), i, "cue", tie))
            heapq.heappush(heap, (due + length + 1e-3, i, "end", tie))
        elif what == "cue" and b.call is not None:
            b.cue((due - call_start[i]) * plan.speed, sent)
        elif what == "end" and b.call is not None:
            b.end_call((due - call_start[i]) * plan.speed, sent)
            heapq.heappush(heap, (due + b.rng.uniform(10, 60) / plan.speed, i, "call", tie))
    deadline = time.monotonic() + 60
    for b in boxes:
        while b.client.want_write() and time.monotonic() < deadline:
            time.sleep(0.05)
    time.sleep(1.0)
    for b in boxes:
        b.client.disconnect()
        b.client.loop_stop()
    return {"sent": sent, "failed": failed}
