"""The committed service unit: systemd's own checks (``systemd-analyze verify`` and
``security --offline``, exposure at most 2.0) and the promises the unit keeps (Type=notify
with a watchdog, loopback only, sound devices only, no capabilities)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "appliance.service"
PACKAGED = ROOT / "appliance" / "service" / "appliance.service"
MAX_EXPOSURE = 2.0
_EXPOSURE = re.compile(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)")


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze is missing: install the Debian package `systemd` "
                    "(scripts/setup.sh does) - the unit must be checked by systemd itself")
    return path


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections → key → every value in order (keys may repeat; comments and blank lines
    skipped; a trailing backslash continues the line)."""
    out: dict[str, dict[str, list[str]]] = {}
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            out.setdefault(section, {})
            continue
        key, _, value = line.partition("=")
        out.setdefault(section, {}).setdefault(key.strip(), []).append(value.strip())
    return out


def exposure(path: Path) -> tuple[float, str]:
    """The overall exposure ``systemd-analyze security --offline=true`` gives ``path``,
    and what it wrote on stderr."""
    proc = subprocess.run([systemd_analyze(), "security", "--offline=true", "--no-pager",
                           str(path)], capture_output=True, text=True, timeout=120)
    m = _EXPOSURE.search(proc.stdout)
    assert m, f"no overall exposure in the output:\n{proc.stdout}\n{proc.stderr}"
    return float(m.group(1)), proc.stderr


def verify_warnings(unit_text: str, tmp_path: Path) -> list[str]:
    """What ``systemd-analyze verify`` says about the unit, run on a copy whose ExecStart=
    names an executable that exists here (verify rejects a missing one; only that path
    differs from the committed unit)."""
    lines = unit_text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith("ExecStart=")]
    assert len(starts) == 1
    binary = lines[starts[0]].split("=", 1)[1].split()[0]
    lines[starts[0]] = lines[starts[0]].replace(binary, sys.executable, 1)
    copy = tmp_path / "appliance.service"
    copy.write_text("".join(lines))
    proc = subprocess.run([systemd_analyze(), "verify", "--man=no", str(copy)],
                          capture_output=True, text=True, timeout=120)
    said = (proc.stdout + proc.stderr).splitlines()
    return [line for line in said if "appliance.service" in line or str(tmp_path) in line]


def test_the_packaged_template_is_the_committed_unit() -> None:
    assert PACKAGED.read_bytes() == UNIT.read_bytes()


def test_exposure_is_at_most_two() -> None:
    level, stderr = exposure(UNIT)
    assert stderr == ""
    assert level <= MAX_EXPOSURE, f"exposure {level} > {MAX_EXPOSURE}"


def test_the_exposure_check_can_fail(tmp_path: Path) -> None:
    bare = tmp_path / "appliance.service"
    bare.write_text("[Service]\nType=notify\nExecStart=/bin/true\n")
    level, _ = exposure(bare)
    assert level > MAX_EXPOSURE


def test_verify_is_clean(tmp_path: Path) -> None:
    assert verify_warnings(UNIT.read_text(), tmp_path) == []


def test_verify_catches_a_misspelt_setting(tmp_path: Path) -> None:
    text = UNIT.read_text().replace("ProtectSystem=strict", "ProtectSystm=strict")
    warnings = verify_warnings(text, tmp_path)
    assert any("ProtectSystm" in w for w in warnings), warnings


def test_the_unit_keeps_its_promises() -> None:
    unit = parse_unit(UNIT.read_text())
    s = unit["Service"]

    def one(key: str) -> str:
        assert len(s.get(key, [])) == 1, (key, s.get(key))
        return s[key][0]

    # the service protocol
    assert one("Type") == "notify" and one("NotifyAccess") == "main"
    assert one("WatchdogSec") == "30"
    assert one("ExecStart").endswith("/.venv/bin/appliance run --config "
                                      "/etc/appliance/appliance.toml")
    assert one("ExecReload") == "/bin/kill -HUP $MAINPID"
    assert (one("TimeoutStartSec"), one("TimeoutStopSec")) == ("120", "20")
    assert (one("Restart"), one("RestartSec")) == ("on-failure", "5")
    assert {"StartLimitIntervalSec", "StartLimitBurst"} <= set(unit["Unit"])
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    env = s["Environment"]
    assert "APPLIANCE_MODELS_DIR=/opt/appliance/models" in env
    assert "ORT_DISABLE_TELEMETRY=1" in env  # onnxruntime stays quiet
    # nothing leaves the box: loopback only, and no way around it
    assert one("IPAddressDeny") == "any"
    assert set(one("IPAddressAllow").split()) == {"127.0.0.1", "::1"}
    assert set(one("RestrictAddressFamilies").split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "PrivateNetwork" not in s  # the dashboard must stay reachable
    # sound devices only
    assert one("DevicePolicy") == "closed" and s["DeviceAllow"] == ["char-alsa rw"]
    assert "PrivateDevices" not in s  # it would hide /dev/snd
    assert one("SupplementaryGroups") == "audio"
    # no identity, no privileges, no writable system
    assert one("DynamicUser") == "yes" and one("CapabilityBoundingSet") == ""
    assert one("NoNewPrivileges") == "yes"
    assert (one("ProtectSystem"), one("ProtectHome")) == ("strict", "yes")
    assert one("StateDirectory") == "appliance" and one("StateDirectoryMode") == "0700"
    assert one("UMask") == "0077" and one("LimitCORE") == "0"
    assert s["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    assert one("SystemCallErrorNumber") == "EPERM"  # a stray call fails, never kills
    # sounddevice's cffi callback needs W+X memory (see the comment in the unit)
    assert "MemoryDenyWriteExecute" not in s


# -- the supervisor console's unit ------------------------------------------------------------
CONSOLE_UNIT = ROOT / "systemd" / "appliance-console.service"
CONSOLE_PACKAGED = ROOT / "appliance" / "service" / "appliance-console.service"


def test_the_packaged_console_template_is_the_committed_unit() -> None:
    """install-service --console renders the packaged copy: it must be this unit."""
    assert CONSOLE_PACKAGED.read_bytes() == CONSOLE_UNIT.read_bytes()


def test_console_unit_exposure_is_at_most_two() -> None:
    level, stderr = exposure(CONSOLE_UNIT)
    assert stderr == ""
    assert level <= MAX_EXPOSURE, f"exposure {level} > {MAX_EXPOSURE}"


def test_console_unit_verify_is_clean(tmp_path: Path) -> None:
    assert verify_warnings(CONSOLE_UNIT.read_text(), tmp_path) == []


def test_console_unit_keeps_its_promises() -> None:
    s = parse_unit(CONSOLE_UNIT.read_text())["Service"]

    def one(key: str) -> str:
        assert len(s.get(key, [])) == 1, (key, s.get(key))
        return s[key][0]

    assert one("Type") == "notify" and one("NotifyAccess") == "main"
    assert one("WatchdogSec") == "30"
    assert one("ExecStart").endswith("/.venv/bin/appliance console --config "
                                      "/etc/appliance/console.toml")
    assert one("IPAddressDeny") == "any"  # a drop-in names the broker and the supervisors
    assert set(one("IPAddressAllow").split()) == {"127.0.0.1", "::1"}
    assert one("DynamicUser") == "yes" and one("CapabilityBoundingSet") == ""
    assert one("StateDirectory") == "appliance-console" and one("UMask") == "0077"
    assert one("PrivateDevices") == "yes" and one("LimitCORE") == "0"
    assert "Environment" not in s  # secrets come as credentials, never the environment
