"""The supervisor console's pages in headless Chromium (``tests/browser/console.mjs``): the
floor needs the login (a wrong token is refused), then shows both boxes, the agent's call
with a hold timer that ticks and the unhealthy box; it refreshes itself; the trends page
draws its eight SVG charts per team.  Nothing is loaded from anywhere else and the page
logs no error."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from appliance.config import config_from_dict
from appliance.console.settings import Secrets
from appliance.console.store_sqlite import SqliteStore
from appliance.service.console_service import ConsoleService
from tests.consoleutil import BoxSim
from tests.test_console_store import incoming
from tests.test_dashboard import BROWSER_DIR, _browser_ready

TOKEN = "console-page-token-0123456789"


@pytest.mark.skipif(_browser_ready() is not None, reason=str(_browser_ready()))
def test_console_pages_in_chromium(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.sqlite3")
    start = datetime.now(UTC) - timedelta(minutes=5)
    b1, b2 = BoxSim("box1", start=start), BoxSim("box2", start=start)
    store.apply(incoming(b1.status(), b1.stats(), b1.new("old", agent="agent-1"),
                         b1.end("old", interruptions=3), b1.new("c1", agent="agent-1"),
                         b1.cue("c1", "hold_started", 40.0, party=None, severity="info")))
    store.apply(incoming(b2.status(), b2.stats(healthy=False, problems=("audio.stalled",)),
                         b2.new("d0", agent="agent-2"), b2.end("d0", holds=(75.0,))))
    cfg = config_from_dict({"console": {"broker": "mqtt://127.0.0.1:1", "port": 0,
                                        "teams": {"billing": ["agent-1"]}}})
    steps: dict[str, dict[str, Any]] = {}

    async def main() -> None:
        svc = ConsoleService(cfg, env={}, store=store,
                             secrets=Secrets(password="", token=TOKEN, dsn=""))
        await svc.start()
        try:
            proc = await asyncio.create_subprocess_exec(
                "node", str(BROWSER_DIR / "console.mjs"), svc.url, TOKEN, str(tmp_path),
                cwd=BROWSER_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), 180)
            for line in out.decode().splitlines():
                msg = json.loads(line)
                steps[msg["step"]] = msg
            assert "error" not in steps, (steps.get("error"), err.decode()[-2000:])
        finally:
            await svc.stop()
    asyncio.run(main())
    store.close()
    assert "/login" in steps["redirected"]["url"] and steps["redirected"]["form"] == 1
    assert "not right" in steps["refused"]["text"]
    floor = steps["floor"]
    assert floor["url"].endswith("/floor")
    box1, box2 = floor["rows"]
    assert "agent-1" in box1 and "hold" in box1 and "hold_started" in box1
    assert "unhealthy" in box2 and "audio.stalled" in box2 and "no call" in box2
    assert floor["holdA"] != floor["holdB"]  # the hold timer ticks
    assert "2 of 2 boxes online" in floor["totals"]
    assert steps["refreshed"]["rows"] == 2
    trends = steps["trends"]
    assert trends["charts"] == 8 and trends["points"] >= 8
    assert any(r.startswith("billing") for r in trends["table"])
    errors = steps["done"]["errors"]
    # the one 401 is the refused login's answer
    assert steps["done"]["external"] == [] and [e for e in errors if "401" not in e] == []
    assert len(errors) <= 1
