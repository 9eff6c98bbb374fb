"""The ``[tap]`` tables: routes, listeners, allow-lists and static RTP mappings load into
frozen dataclasses, and every broken relation is refused at load naming its key."""

from __future__ import annotations

import pytest

from appliance.config import config_from_dict, defaults_toml
from appliance.config.tap import parse_codecs, parse_ports
from appliance.errors import ApplianceError


def _refused(raw: dict) -> str:
    with pytest.raises(ApplianceError) as e:
        config_from_dict(raw)
    assert e.value.code == "config.invalid"
    return e.value.message


def test_routes_listeners_and_mappings_load() -> None:
    cfg = config_from_dict({"tap": {
        "enabled": True,
        "routes": [{"name": "fs1", "agent_channel": 1, "language": "de"},
                   {"name": "jambonz", "mix_type": "stereo", "sample_rate_hz": 16000}],
        "audiosocket": {"enabled": True, "host": "0.0.0.0", "allow": ["10.1.2.0/24"]},
        "rtp": {"enabled": True, "ports": ["40000-40003", "41000"],
                "codecs": ["96 L16/16000"],
                "streams": [{"port": 40000, "call_id": "mirror-1", "party": "agent",
                             "agent_id": "a-7"},
                            {"port": 40001, "ssrc": 1234, "call_id": "mirror-1",
                             "party": "customer"}]}}})
    tap = cfg.tap
    assert tap.route("fs1").agent_channel == 1 and tap.route("fs1").language == "de"
    assert tap.route("default").agent_channel == 0  # built in
    assert tap.route("nope") is None
    assert [s.party for s in tap.rtp.streams] == ["agent", "customer"]
    assert parse_ports(tap.rtp.ports) == [40000, 40001, 40002, 40003, 41000]
    assert parse_codecs(tap.rtp.codecs) == {96: ("L16", 16000)}


@pytest.mark.parametrize(("raw", "where"), [
    ({"routes": [{"name": "Bad Name"}]}, "[tap.routes] name"),
    ({"routes": [{"name": "a"}, {"name": "a"}]}, "listed twice"),
    ({"routes": [{"agent_channel": 2}]}, "[tap.routes] agent_channel"),
    ({"routes": [{"mix_type": "quad"}]}, "[tap.routes] mix_type"),
    ({"routes": [{"sample_rate_hz": 11025}]}, "[tap.routes] sample_rate_hz"),
    ({"routes": {"name": "x"}}, "array of tables"),
    ({"audiosocket": {"enabled": True, "host": "0.0.0.0"}}, "[tap.audiosocket] host"),
    ({"audiosocket": {"allow": ["10.1.2.300"]}}, "[tap.audiosocket] allow"),
    ({"rtp": {"enabled": True, "host": "192.0.2.1"}}, "[tap.rtp] host"),
    ({"rtp": {"ports": ["40010-40000"]}}, "[tap.rtp] ports"),
    ({"rtp": {"ports": ["1-9999"]}}, "[tap.rtp] ports"),
    ({"rtp": {"ports": ["40000", "40000"]}}, "[tap.rtp] ports"),
    ({"rtp": {"codecs": ["8 PCMA/8000"]}}, "[tap.rtp] codecs"),
    ({"rtp": {"codecs": ["96 OPUS/48000"]}}, "[tap.rtp] codecs"),
    ({"rtp": {"streams": [{"port": 40000, "call_id": "x", "party": "boss"}]}},
     "[tap.rtp.streams] party"),
    ({"rtp": {"streams": [{"port": 40000, "call_id": "a b"}]}}, "[tap.rtp.streams] call_id"),
    ({"rtp": {"streams": [{"port": 50000, "call_id": "x"}]}}, "not in [tap.rtp] ports"),
    ({"rtp": {"streams": [{"port": 40000, "call_id": "x"},
                          {"port": 40000, "call_id": "y"}]}}, "mapped twice"),
    ({"rtp": {"streams": [{"port": 40000, "call_id": "x", "colour": "red"}]}},
     "[tap.rtp.streams] colour"),
    ({"rtp": {"streams": [{"port": 40000, "call_id": "x", "agent_id": "a b"}]}},
     "[tap.rtp.streams] agent_id"),
    ({"idle_timeout_s": float("nan")}, "[tap] idle_timeout_s"),
])
def test_broken_tap_settings_are_refused_naming_the_key(raw: dict, where: str) -> None:
    assert where in _refused({"tap": raw})


def test_the_defaults_file_lists_the_tap_tables_and_loads_back() -> None:
    import tomllib

    text = defaults_toml()
    for header in ("[tap]", "[tap.websocket]", "[tap.audiosocket]", "[tap.rtp]",
                   "# [[tap.routes]]", "# [[tap.rtp.streams]]"):
        assert header in text
    assert config_from_dict(tomllib.loads(text)) == config_from_dict({})
