"""The console service end to end, in process: a real Mosquitto, two boxes publishing, the
central store (SQLite, and PostgreSQL on a real server), the pages behind the login, the
JSON APIs, export, /healthz and /metrics; and ``appliance console`` as a process that says
READY and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from appliance.config import config_from_dict
from appliance.service.console_service import ConsoleService
from tests import mqttbroker, pgserver
from tests.test_console_ingest import Box
from tests.waiting import until, until_sync

pytestmark = pytest.mark.skipif(not mqttbroker.available(), reason="no mosquitto")
TOKEN = "console-test-token-0123456789"
HANG_S = 60.0
ROOT = Path(__file__).resolve().parent.parent



def console_toml(tmp_path: Path, broker: mqttbroker.MosquittoBroker,
                 **extra: Any) -> dict[str, Any]:
    (tmp_path / "pw").write_text("pwc\n")
    (tmp_path / "token").write_text(TOKEN + "\n")
    return {"storage": {"state_dir": str(tmp_path / "state")}, "console": {
        "broker": broker.url, "ca_file": str(broker.ca_file), "username": "console",
        "password_file": str(tmp_path / "pw"), "token_file": str(tmp_path / "token"),
        "port": 0, "client_id": f"console-{tmp_path.name[-12:]}",
        "teams": {"billing": ["agent-1"], "support": ["agent-2"]}, **extra}}


def publish_day(broker: mqttbroker.MosquittoBroker) -> tuple[Box, Box]:
    b1, b2 = Box(broker, "box1"), Box(broker, "box2")
    b1.send(b1.sim.status(), b1.sim.stats(), b1.sim.new("c1", agent="agent-1"),
            b1.sim.cue("c1", "interruption", 5.0), b1.sim.end("c1", interruptions=2),
            b1.sim.new("c2", agent="agent-1"),
            b1.sim.cue("c2", "hold_started", 20.0, party=None, severity="info"))
    b2.send(b2.sim.status(), b2.sim.stats(healthy=False, problems=("audio.stalled",)),
            b2.sim.new("d1", agent="agent-2"), b2.sim.end("d1", interruptions=4,
                                                          holds=(70.0,), greeting=False))
    return b1, b2


async def exercise(svc: ConsoleService) -> None:
    url = svc.url
    async with aiohttp.ClientSession() as anon:
        r = await anon.get(url + "/api/floor")
        assert r.status == 401  # every API needs the login
        r = await anon.get(url + "/trends", headers={"Accept": "text/html"},
                           allow_redirects=False)
        assert r.status == 303 and r.headers["Location"].startswith("/login")
        r = await anon.post(url + "/login", data={"token": "nope"})
        assert r.status == 401
        r = await anon.get(url + "/healthz")
        assert r.status == 401
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as s:
        r = await s.post(url + "/login", data={"token": TOKEN, "next": "/floor"})
        assert r.status == 200 and str(r.url).endswith("/floor")
        cookie = r.history[0].headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
        page = await r.text()
        assert "box1" in page and "box2" in page and "agent-1" in page
        floor = await (await s.get(url + "/api/floor")).json()
        by = {b["box"]: b for b in floor["boxes"]}
        assert by["box1"]["online"] and by["box1"]["healthy"] is True
        assert by["box2"]["healthy"] is False and by["box2"]["problems"] == ["audio.stalled"]
        [call] = by["box1"]["calls"]
        assert call["agent_id"] == "agent-1" and call["on_hold"]
        assert call["last_cue"] == "hold_started" and by["box2"]["calls"] == []
        t = await (await s.get(url + "/api/trends?by=team&period=week&days=3650")).json()
        teams = {p["group"]: p for p in t["points"]}
        assert teams["billing"]["interruptions_per_call"] == 2.0
        assert teams["support"]["holds_over_60s"] == 1
        assert teams["support"]["greeting_done_pct"] == 0.0
        page = await (await s.get(url + "/trends?by=agent&period=day&days=3650")).text()
        assert page.count("<svg") == 8 and "agent-2" in page
        text = await (await s.get(url + "/export.csv")).text()
        rows = list(csv.DictReader(io.StringIO(text)))
        assert {r["call_id"] for r in rows} == {"c1", "d1"}
        lines = (await (await s.get(url + "/export.jsonl")).text()).splitlines()
        assert len(lines) == 2 and json.loads(lines[0])["summary"]
        h = await s.get(url + "/healthz")
        health = await h.json()
        assert h.status == 200 and health["healthy"] and health["broker"]["connected"]
        assert health["ingest"]["queue_depth"] == 0 and health["ingest"]["writer_alive"]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:
        m = await (await s.get(url + "/metrics")).text()
        assert "appliance_console_messages_stored_total 11.0" in m
        assert "appliance_console_bad_messages_total 0.0" in m
        assert 'appliance_console_event_latency_seconds{quantile="0.95"}' in m
        r = await s.post(url + "/logout", headers={"Origin": "http://evil.example"})
        assert r.status == 403


def run_service(cfg: dict[str, Any], broker: mqttbroker.MosquittoBroker) -> None:
    async def main() -> None:
        svc = ConsoleService(config_from_dict(cfg), env={})
        await svc.start()
        boxes: tuple[Box, Box] | None = None
        try:
            await until(lambda: svc.ingest.connected, "connected", HANG_S)
            boxes = await asyncio.to_thread(publish_day, broker)
            await until(lambda: svc.ingest.stored == 11, "stored", HANG_S)
            await exercise(svc)
        finally:
            for b in boxes or ():
                b.close()
            await svc.stop()
    asyncio.run(asyncio.wait_for(main(), 4 * HANG_S))


def test_console_on_sqlite(broker: mqttbroker.MosquittoBroker, tmp_path: Path) -> None:
    run_service(console_toml(tmp_path, broker), broker)
    assert (tmp_path / "state" / "console.sqlite3").is_file()


@pytest.mark.skipif(pgserver.available() is not None, reason=str(pgserver.available()))
def test_console_on_postgresql(broker: mqttbroker.MosquittoBroker, tmp_path: Path) -> None:
    with pgserver.PgServer() as pg:
        (tmp_path / "dsn").write_text(pg.tcp_dsn + "\n")
        run_service(console_toml(tmp_path, broker, store="postgresql",
                                 dsn_file=str(tmp_path / "dsn")), broker)
        import psycopg
        with psycopg.connect(pg.dsn) as conn:
            assert conn.execute("SELECT count(*) FROM calls").fetchone() == (3,)
            assert conn.execute("SELECT count(*) FROM messages").fetchone() == (11,)


def test_the_command_says_ready_and_stops_on_sigterm(broker: mqttbroker.MosquittoBroker,
                                                     tmp_path: Path) -> None:
    cfg = console_toml(tmp_path, broker)
    lines = ["[storage]", f'state_dir = "{cfg["storage"]["state_dir"]}"', "[console]"]
    for k, v in cfg["console"].items():
        if k != "teams":
            lines.append(f"{k} = {json.dumps(v)}")
    (tmp_path / "console.toml").write_text("\n".join(lines) + "\n")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(HANG_S)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "console", "--config",
                             str(tmp_path / "console.toml")], env=env,
                            stderr=subprocess.PIPE, text=True)
    try:
        said = ""
        while "READY=1" not in said:
            said = notify.recv(4096).decode()
        assert "STATUS=" in said
        until_sync(lambda: (tmp_path / "state" / "console.sqlite3").is_file(), "db", HANG_S)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(HANG_S) == 0
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()
