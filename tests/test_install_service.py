"""``appliance install-service`` / ``uninstall-service`` into a staging root: the rendered
unit (this installation's paths, accepted by ``systemd-analyze verify``), the commented
config file (parses, passes ``config check``, gives the defaults, never overwritten), the
refusals (not root, an installation the sandbox hides), and what uninstall keeps."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.cli.app import main
from appliance.config import Config, defaults_toml, load_config
from appliance.errors import SERVICE_PATH_HIDDEN, ApplianceError
from appliance.service import install
from appliance.service.install import (
    CONFIG_HEADER,
    example_config,
    hidden_dir,
    install_service,
    render_unit,
    unit_template,
)

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Staging:
    root: Path
    venv_bin: Path
    models: Path

    @property
    def unit(self) -> Path:
        return self.root / "etc/systemd/system/appliance.service"

    @property
    def config(self) -> Path:
        return self.root / "etc/appliance/appliance.toml"


def _fake_installation(base: Path) -> tuple[Path, Path]:
    """``base/.venv/bin/{python,appliance}`` (the script executable) and ``base/models``."""
    venv_bin = base / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)
    script = venv_bin / "appliance"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    models = base / "models"
    models.mkdir()
    return venv_bin, models


@pytest.fixture
def staging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Staging:
    """An installation in tmp_path/inst (its venv's python is "the running interpreter")
    and an empty staging root.  tmp_path is under /tmp, which the unit's PrivateTmp hides:
    these tests take /tmp off the hidden list; test_hidden_* use the real one."""
    venv_bin, models = _fake_installation(tmp_path / "inst")
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    monkeypatch.setenv("APPLIANCE_MODELS_DIR", str(models))
    monkeypatch.setattr(install, "HIDDEN_DIRS", ("/home", "/root", "/run/user"))
    root = tmp_path / "root"
    root.mkdir()
    return Staging(root, venv_bin, models)


def _install(s: Staging, *extra: str) -> int:
    return main(["install-service", "--root", str(s.root), *extra])


def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze is missing: install the Debian package `systemd`")
    return path


def test_install_writes_the_unit_for_this_installation(staging: Staging, capsys) -> None:
    assert _install(staging) == 0
    out = capsys.readouterr().out
    unit = staging.unit.read_text()
    exec_line = (f"ExecStart={staging.venv_bin}/appliance run --config "
                 "/etc/appliance/appliance.toml")
    assert exec_line in unit.splitlines()
    assert f"Environment=APPLIANCE_MODELS_DIR={staging.models}" in unit.splitlines()
    # nothing else differs from the packaged template
    changed = [(a, b) for a, b in zip(unit_template().splitlines(), unit.splitlines(),
                                      strict=True) if a != b]
    assert len(changed) == 2
    assert not [line for line in unit.splitlines()
                if "/opt/appliance" in line and not line.startswith("#")]
    assert staging.unit.stat().st_mode & 0o777 == 0o644
    assert "systemctl daemon-reload && systemctl enable --now appliance" in out
    assert "journalctl -u appliance -f" in out
    assert f"created {staging.config}" in out


def test_the_rendered_unit_passes_systemd_analyze_verify(staging: Staging) -> None:
    assert _install(staging) == 0
    # ExecStart= names the (existing, executable) script of the fake installation as it is
    proc = subprocess.run([_systemd_analyze(), "verify", "--man=no", str(staging.unit)],
                          capture_output=True, text=True, timeout=120)
    said = [line for line in (proc.stdout + proc.stderr).splitlines()
            if "appliance.service" in line]
    assert said == [] and proc.returncode == 0


def test_the_config_file_changes_nothing_until_edited(staging: Staging, capsys) -> None:
    assert _install(staging) == 0
    text = staging.config.read_text()
    assert staging.config.stat().st_mode & 0o777 == 0o644
    assert staging.config.parent.stat().st_mode & 0o777 == 0o755
    assert tomllib.loads(text) == {}
    assert load_config(staging.config) == Config()
    capsys.readouterr()
    assert main(["config", "check", str(staging.config)]) == 0
    assert capsys.readouterr().out == f"{staging.config}: ok\n"
    assert "appliance config check" in text and "systemctl reload appliance" in text
    # every line of the defaults is there, in order, commented out
    body = text[len(CONFIG_HEADER):].splitlines()
    assert text.startswith(CONFIG_HEADER)
    assert body == [line if not line or line.startswith("#") else f"# {line}"
                    for line in defaults_toml().splitlines()]
    assert sum(1 for line in body if line.startswith("# [")) >= 10  # the sections too


def test_a_second_install_keeps_an_edited_config(staging: Staging, capsys) -> None:
    assert _install(staging) == 0
    staging.config.write_text('[dashboard]\nport = 9000\n')
    staging.unit.write_text("# stale\n")
    capsys.readouterr()
    assert _install(staging) == 0
    out = capsys.readouterr().out
    assert staging.config.read_text() == '[dashboard]\nport = 9000\n'
    assert f"kept {staging.config}" in out and f"replaced {staging.unit}" in out
    assert staging.unit.read_text().startswith("# The call-etiquette appliance")


def test_prefix_names_another_installation(staging: Staging, tmp_path: Path) -> None:
    other_bin, other_models = _fake_installation(tmp_path / "opt-appliance")
    assert _install(staging, "--prefix", str(tmp_path / "opt-appliance")) == 0
    lines = staging.unit.read_text().splitlines()
    assert f"ExecStart={other_bin}/appliance run --config /etc/appliance/appliance.toml" in lines
    assert f"Environment=APPLIANCE_MODELS_DIR={other_models}" in lines


def test_without_the_appliance_script_nothing_is_written(staging: Staging, capsys) -> None:
    (staging.venv_bin / "appliance").unlink()
    assert _install(staging) == 2
    err = capsys.readouterr().err
    assert "no `appliance` program at" in err and "[service.install_failed]" in err
    assert not staging.unit.exists() and not staging.config.exists()


def test_not_root_on_the_real_system_is_refused(staging: Staging, capsys,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["install-service"]) == 2
    err = capsys.readouterr().err
    assert "run as root (or use --root DIR to stage" in err and "[service.needs_root]" in err
    assert main(["uninstall-service"]) == 2
    assert "[service.needs_root]" in capsys.readouterr().err
    assert _install(staging) == 0  # staging needs no root


def test_hidden_dirs_are_the_sandboxed_ones() -> None:
    assert hidden_dir(Path("/home/alice/appliance/.venv/bin/appliance")) == "/home"
    assert hidden_dir(Path("/root/appliance/models")) == "/root"
    assert hidden_dir(Path("/tmp/x/.venv/bin/appliance")) == "/tmp"
    assert hidden_dir(Path("/var/tmp/models")) == "/var/tmp"
    assert hidden_dir(Path("/opt/appliance/.venv/bin/appliance")) is None
    assert hidden_dir(Path("/homework/appliance")) is None  # a prefix is not a parent
    assert hidden_dir(Path("/work/main/models")) is None


def test_hidden_installation_is_refused_unless_forced(tmp_path: Path, capsys) -> None:
    venv_bin, models = _fake_installation(tmp_path / "inst")  # under /tmp: PrivateTmp hides it
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(ApplianceError) as exc:
        install_service(root, venv_bin / "appliance", models)
    assert exc.value.code == SERVICE_PATH_HIDDEN
    assert "install under /opt" in exc.value.message and "--force" in exc.value.message
    assert not (root / "etc").exists()
    res = install_service(root, venv_bin / "appliance", models, force=True)
    assert res.unit_path.is_file() and len(res.warnings) == 2
    assert all("/tmp" in w for w in res.warnings)


def test_paths_a_unit_would_need_quoted_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ApplianceError, match="quoted"):
        render_unit(unit_template(), Path("/opt/my appliance/.venv/bin/appliance"),
                    Path("/opt/models"))
    with pytest.raises(ApplianceError, match="quoted"):
        render_unit(unit_template(), Path("/opt/a/.venv/bin/appliance"), Path("/opt/100%"))


def test_uninstall_removes_the_unit_and_only_an_untouched_config(staging: Staging,
                                                                 capsys) -> None:
    assert _install(staging) == 0
    capsys.readouterr()
    assert main(["uninstall-service", "--root", str(staging.root)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == ("Stop it first if it is running: "
                                   "systemctl disable --now appliance")
    assert not staging.unit.exists() and not staging.config.exists()
    assert not staging.config.parent.exists()  # it held only the example: gone too
    assert f"removed {staging.unit}" in out and f"removed {staging.config}" in out
    assert "/var/lib/appliance" in out and "systemctl clean --what=state appliance" in out
    assert "systemctl daemon-reload" in out


def test_uninstall_keeps_an_edited_config_unless_purged(staging: Staging, capsys) -> None:
    assert _install(staging) == 0
    staging.config.write_text(example_config() + '\n[dashboard]\nport = 9000\n')
    token = staging.config.parent / "dashboard-token"
    token.write_text("s3cret\n")
    capsys.readouterr()
    assert main(["uninstall-service", "--root", str(staging.root)]) == 0
    out = capsys.readouterr().out
    assert not staging.unit.exists() and staging.config.exists() and token.exists()
    assert f"kept {staging.config}: edited since install" in out and "--purge" in out
    assert main(["uninstall-service", "--root", str(staging.root), "--purge"]) == 0
    out = capsys.readouterr().out
    assert not staging.config.exists() and not token.exists()
    assert not staging.config.parent.exists()  # /etc/appliance was left empty: removed
    assert f"no unit at {staging.unit}" in out


def test_uninstall_refuses_while_the_unit_is_enabled(staging: Staging, capsys) -> None:
    assert _install(staging) == 0
    wants = staging.unit.parent / "multi-user.target.wants"
    wants.mkdir()
    (wants / "appliance.service").symlink_to(staging.unit)
    capsys.readouterr()
    assert main(["uninstall-service", "--root", str(staging.root)]) == 2
    err = capsys.readouterr().err
    assert "still enabled" in err and "systemctl disable --now appliance" in err
    assert "[service.still_enabled]" in err
    assert staging.unit.exists() and staging.config.exists()
