"""The console's pure parts: the [console] config, the trends and the floor, the SVG
charts, and the store's handling of what decode() lets through."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from appliance.config import config_from_dict, defaults_toml
from appliance.console.settings import read_secret, resolve_secrets
from appliance.console.store import figure_values
from appliance.console.svg import line_chart, nice_max
from appliance.console.trends import NO_TEAM, floor_view, period_of, series, trends
from appliance.errors import CONFIG_INVALID, CONSOLE_TOKEN_REQUIRED, ApplianceError
from appliance.events import iso_utc
from appliance.sinks.fleet.messages import BadMessage, decode, encode, fleet_summary
from tests.consoleutil import BoxSim, box_summary


# -- config -----------------------------------------------------------------------------------
def test_console_config_defaults_and_teams() -> None:
    c = config_from_dict({"console": {"teams": {"billing": ["a-1", "a-2"]}}}).console
    assert c.broker.startswith("mqtts://") and c.topic == "coach/+/+/#"
    assert (c.host, c.port, c.store) == ("127.0.0.1", 8090, "sqlite")
    assert c.teams == {"billing": ["a-1", "a-2"]}
    assert "[console]" in defaults_toml() and "# [console.teams]" in defaults_toml()


@pytest.mark.parametrize(("raw", "where"), [
    ({"broker": "mqtt://10.0.0.5:1883"}, "[console] broker"),  # plain beyond loopback
    ({"broker": "http://h:1"}, "[console] broker"),
    ({"broker": "mqtts://u:p@h:8883"}, "[console] broker"),  # no secret in the TOML
    ({"store": "mysql"}, "[console] store"),
    ({"store": "postgresql"}, "[console] store"),  # a DSN from a file or credential
    ({"topic": "coach/#/x"}, "[console] topic"),
    ({"cert_file": "/c.pem"}, "[console] cert_file"),
    ({"token_file": "/t", "token_credential": "t"}, "[console] token_file"),
    ({"teams": {"a b": ["x"]}}, "[console.teams]"),
    ({"teams": {"t1": ["a-1"], "t2": ["a-1"]}}, "[console.teams] t2"),
    ({"teams": {"t1": "a-1"}}, "[console] teams"),
    ({"keep_days": 0}, "[console] keep_days"),
    ({"silent_after_s": float("nan")}, "[console] silent_after_s"),
])
def test_console_config_is_checked_at_load(raw: dict[str, Any], where: str) -> None:
    with pytest.raises(ApplianceError) as e:
        config_from_dict({"console": raw})
    assert e.value.code == CONFIG_INVALID and where in e.value.message


def test_plain_mqtt_on_loopback_is_fine() -> None:
    assert config_from_dict({"console": {"broker": "mqtt://127.0.0.1:1883"}}).console


def test_secrets_from_files_and_credentials(tmp_path: Any) -> None:
    (tmp_path / "tok").write_text("a-token-long-enough-1234\n")
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "console-pw").write_text("s3cret\n")
    c = config_from_dict({"console": {"token_file": str(tmp_path / "tok"),
                                      "password_credential": "console-pw"}}).console
    s = resolve_secrets(c, {"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")})
    assert (s.token, s.password) == ("a-token-long-enough-1234", "s3cret")
    assert "s3cret" not in repr(s)
    with pytest.raises(ApplianceError) as e:
        resolve_secrets(config_from_dict({}).console, {})
    assert e.value.code == CONSOLE_TOKEN_REQUIRED
    assert read_secret("", "", {}, "x") == ""


# -- decode: what the store may rely on -------------------------------------------------------
def test_decode_refuses_what_the_store_could_not_use() -> None:
    box = BoxSim("box1")
    topic, payload = box.cue("c1", "filler", 3.0)
    decode(topic, encode(payload))
    for bad in ({**payload, "cue": {**payload["cue"], "kind": "shouting"}},
                {**payload, "call_id": "other"}, {**payload, "schema": 99},
                {k: v for k, v in payload.items() if k != "id"}):
        with pytest.raises(BadMessage):
            decode(topic, encode(bad))
    with pytest.raises(BadMessage):
        decode("coach/site1/box1/nothing", encode(payload))
    with pytest.raises(BadMessage):
        decode(topic, b"\xff\xfe")


def test_figures_of_a_summary() -> None:
    s = fleet_summary(box_summary(120.0, interruptions=3, holds=(30.0, 61.0), dead_air=2,
                                  greeting=False, closing=None))
    f = dict(zip(("duration_s", "interruptions_agent"), figure_values(s), strict=False))
    assert f == {"duration_s": 120.0, "interruptions_agent": 3}
    vals = figure_values(s)
    from appliance.console.store import FIGURE_COLUMNS
    row = dict(zip(FIGURE_COLUMNS, vals, strict=True))
    assert row["holds"] == 2 and row["holds_over_60s"] == 1 and row["hold_s"] == 91.0
    assert row["dead_air_count"] == 2 and row["dead_air_s"] == 24.0
    assert row["greeting_done"] == 0 and row["closing_done"] is None
    assert figure_values({"incomplete": True})[-1] == 1


# -- trends -----------------------------------------------------------------------------------
def _call(agent: str | None, day: int, **f: Any) -> dict[str, Any]:
    t = datetime(2026, 11, 2, 9, tzinfo=UTC) + timedelta(days=day)
    return {"agent_id": agent, "started_at": iso_utc(t), "ended_at": iso_utc(t), **f}


def test_period_of_day_and_iso_week() -> None:
    t = datetime(2026, 1, 1, 12, tzinfo=UTC)  # a Thursday in ISO week 1 of 2026
    assert period_of(t, "day") == "2026-01-01" and period_of(t, "week") == "2026-W01"
    assert period_of(datetime(2026, 12, 31, tzinfo=UTC), "week") == "2026-W53"


def test_trends_per_agent_and_team() -> None:
    rows = [_call("a-1", 0, interruptions_agent=2, hold_s=30.0, holds_over_60s=0,
                  agent_share=0.5, dead_air_s=0.0, fillers_per_min=2.0, greeting_done=1,
                  closing_done=1),
            _call("a-1", 0, interruptions_agent=4, hold_s=90.0, holds_over_60s=1,
                  agent_share=0.7, dead_air_s=12.0, fillers_per_min=4.0, greeting_done=0,
                  closing_done=None),
            _call("a-2", 1, interruptions_agent=0, greeting_done=1),
            _call("a-9", 8, interruptions_agent=1),
            _call(None, 0, interruptions_agent=5)]
    by_day = {(p.group, p.period): p for p in trends(rows, by="agent", period="day")}
    p = by_day[("a-1", "2026-11-02")]
    assert p.calls == 2 and p.interruptions_per_call == 3.0 and p.hold_s_per_call == 60.0
    assert p.holds_over_60s == 1 and p.talk_share_pct == 60.0 and p.fillers_per_min == 3.0
    assert p.dead_air_s_per_call == 6.0
    assert p.greeting_done_pct == 50.0 and p.closing_done_pct == 100.0  # None left out
    assert by_day[("a-2", "2026-11-03")].hold_s_per_call is None
    assert ("(unknown agent)", "2026-11-02") in by_day
    teams = {"front": ["a-1", "a-2"]}
    by_week = {(p.group, p.period): p for p in trends(rows, by="team", period="week",
                                                      teams=teams)}
    assert by_week[("front", "2026-W45")].calls == 3
    assert by_week[(NO_TEAM, "2026-W46")].calls == 1
    s = series(by_week.values(), "interruptions_per_call")
    assert s["front"] == [("2026-W45", 2.0)]


def test_the_floor_now() -> None:
    now = datetime(2026, 11, 2, 10, tzinfo=UTC)
    boxes: list[dict[str, Any]] = [{"site": "s", "box": "b1", "state": "online", "healthy": True,
              "last_seen": iso_utc(now - timedelta(seconds=20)), "stats": {"problems": []}},
             {"site": "s", "box": "b2", "state": "online", "healthy": False,
              "last_seen": iso_utc(now - timedelta(seconds=400)),
              "stats": {"problems": ["audio.stalled"]}},
             {"site": "s", "box": "b3", "state": "offline", "healthy": None,
              "last_seen": iso_utc(now - timedelta(seconds=5)), "stats": None}]
    calls: list[dict[str, Any]] = [{"site": "s", "box": "b1", "call_id": "c1", "agent_id": "a-1",
              "started_at": iso_utc(now - timedelta(seconds=95)),
              "hold_started_at": iso_utc(now - timedelta(seconds=65)),
              "last_cue_kind": "hold_started", "cue_count": 3},
             {"site": "s", "box": "b3", "call_id": "c9", "agent_id": "a-3",
              "started_at": iso_utc(now), "hold_started_at": None, "last_cue_kind": None}]
    v = floor_view(boxes, calls, now, silent_after_s=180.0)
    b1, b2, b3 = v["boxes"]
    [c] = b1["calls"]
    assert c["duration_s"] == 95.0 and c["on_hold"] and c["hold_s"] == 65.0
    assert c["last_cue"] == "hold_started" and not b1["silent"]
    assert b2["silent"] and b2["problems"] == ["audio.stalled"]
    assert not b3["online"] and b3["calls"] == []  # an offline box has no call in progress
    assert v["totals"] == {"boxes": 3, "online": 2, "silent": 1, "unhealthy": 1, "calls": 1}


# -- svg --------------------------------------------------------------------------------------
def test_chart_is_valid_svg_with_escaped_text() -> None:
    svg = line_chart({"<script>": [("2026-W45", 1.0), ("2026-W46", None), ("2026-W47", 3.0)],
                      "a-2": [("2026-W45", 2.0), ("2026-W46", 2.5)]},
                     title="Holds & more", unit="s")
    root = ET.fromstring(svg)  # well-formed XML
    assert root.tag.endswith("svg") and "<script>" not in svg
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}circle")) == 4  # the gap (None) has no point
    assert len(root.findall(f"{ns}polyline")) == 1  # a-2's line; <script>'s is broken up
    titles = [t.text for t in root.iter(f"{ns}title")]
    assert "a-2 2026-W46: 2.5s" in titles
    empty = line_chart({}, title="Nothing")
    assert "no calls in this period" in empty and ET.fromstring(empty) is not None


@pytest.mark.parametrize(("v", "top"), [(0.0, 1.0), (0.7, 1.0), (3.2, 5.0), (17.0, 20.0),
                                        (240.0, 250.0), (float("inf"), 1.0)])
def test_nice_max(v: float, top: float) -> None:
    assert nice_max(v) == top
