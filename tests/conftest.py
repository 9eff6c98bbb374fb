"""Shared fixtures and the test layers.

Every test module belongs to one layer, given here (a module missing from :data:`LAYERS`
fails the collection), and each layer is a registered marker, so ``pytest -m unit`` runs
the fast pure tests and ``pytest -m "not system"`` skips the ones that need the machine:

* ``unit``: pure functions and small state machines, parsers, config; no audio models;
* ``engine``: the per-call engine and the streaming path on real audio (Silero, corpora);
* ``e2e``: the command line, the runner, the dashboard, the service loop, the stores;
* ``system``: what needs the machine itself (sound server, browser, systemd, strace).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.engine.vad import SileroModel
from tests.mqttbroker import TEST_USERS, MosquittoBroker

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = ROOT / "appliance" / "demo"

LAYERS: dict[str, tuple[str, ...]] = {
    "unit": ("test_asr_pool", "test_call_numbers", "test_config_env", "test_events",
             "test_features", "test_floor",
             "test_filesource", "test_filled_pause", "test_fleet_outbox", "test_fleet_sink",
             "test_fuzz",
             "test_hold", "test_layout",
             "test_legs", "test_logs", "test_marks", "test_metrics", "test_music",
             "test_notify", "test_nuclei", "test_pbx_proto", "test_phrases", "test_rtp",
             "test_rules", "test_store", "test_tap_config", "test_tone_rate", "test_turns",
             "test_wavfile", "test_words", "test_console_unit"),
    "engine": ("test_call_control", "test_corpus", "test_corpus_real", "test_engine",
               "test_quality", "test_quality_ko", "test_quality_real", "test_session",
               "test_tap_quality"),
    "e2e": ("test_asr", "test_asr_cli", "test_cli", "test_fleet_broker", "test_fleet_console",
            "test_console_cli", "test_fleet_tap",
            "test_dashboard",
            "test_dashboard_views",
            "test_health",
            "test_live", "test_models", "test_retention", "test_service_run", "test_shards",
            "test_summaries_cli", "test_tap", "test_tap_service", "test_control_api",
            "test_ws_listener",
            "test_ws_tap", "test_audiosocket_listener", "test_rtp_listener",
            "test_console_store", "test_console_ingest", "test_console_web",
            "test_fleet_service"),
    "system": ("test_capture", "test_dashboard_e2e", "test_doctor", "test_floor_page",
               "test_gst_interop",
               "test_install_service", "test_privacy", "test_privacy_fleet",
               "test_service_unit",
               "test_console_page"),
}
_LAYER_OF = {module: layer for layer, modules in LAYERS.items() for module in modules}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.path.stem
        layer = _LAYER_OF.get(module)
        if layer is None:
            raise pytest.UsageError(f"{item.path.name} is in no test layer: add it to "
                                    "LAYERS in tests/conftest.py")
        item.add_marker(getattr(pytest.mark, layer))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A real Mosquitto on loopback for the fleet and console tests (TLS with a test CA, the
    users of :data:`tests.mqttbroker.TEST_USERS`, the per-box ACL for site ``site1``),
    stopped after the test.  Modules using it skip when mosquitto is not installed."""
    b = MosquittoBroker(tmp_path / "broker", users=TEST_USERS)
    b.start()
    yield b
    b.stop()


@pytest.fixture(autouse=True)
def _no_mqtt_client_left() -> Iterator[None]:
    """A paho client a test leaves running keeps reconnecting during later tests (and the
    privacy tests see it as network use): fail in the test that leaked it instead."""
    before = set(_mqtt_clients())
    yield
    deadline = time.monotonic() + 5.0
    for t in _mqtt_clients():
        if t not in before:
            t.join(max(0.0, deadline - time.monotonic()))
    left = [t.name for t in _mqtt_clients() if t not in before and t.is_alive()]
    if left:
        pytest.fail(f"MQTT clients left running after the test: {left}")


def _mqtt_clients() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("paho-mqtt-client-")]


@pytest.fixture(scope="session")
def silero() -> SileroModel:
    """One Silero session for the tests that only need to run it (it is stateless between
    calls: each call keeps its own recurrent state)."""
    return SileroModel()


@pytest.fixture(scope="session")
def demo_call() -> Path:
    return DEMO_DIR / "demo_call.wav"


@pytest.fixture(scope="session")
def demo_marks() -> Path:
    return DEMO_DIR / "demo_marks.jsonl"


class VirtualClock:
    """Seconds that move only when someone sleeps on them: pacing tested without the wall
    clock.  ``sleep`` advances the time and yields to the event loop once."""

    def __init__(self, start_s: float = 1000.0) -> None:
        self.t = start_s
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)


@pytest.fixture
def virtual_clock() -> Iterator[VirtualClock]:
    yield VirtualClock()
