"""``appliance install-service`` / ``uninstall-service`` into a staging root: the rendered
unit (this installation's paths, accepted by ``systemd-analyze verify``), the commented
config file (parses, passes ``config check``, gives the defaults, never overwritten), the
refusals (not root, an installation the sandbox hides), and what uninstall keeps; the same
with ``--console`` for the supervisor console's unit and its console.toml."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import asdict, dataclass
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
from appliance.service.install_console import CONSOLE, CONSOLE_HEADER, console_example_config

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

    @property
    def console_unit(self) -> Path:
        return self.root / "etc/systemd/system/appliance-console.service"

    @property
    def console_config(self) -> Path:
        return self.root / "etc/appliance/console.toml"


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


# -- the supervisor console (--console) ------------------------------------------------------
def test_install_console_writes_its_unit_for_this_installation(staging: Staging,
                                                               capsys) -> None:
    assert _install(staging, "--console") == 0
    out = capsys.readouterr().out
    unit = staging.console_unit.read_text()
    exec_line = (f"ExecStart={staging.venv_bin}/appliance console --config "
                 "/etc/appliance/console.toml")
    assert exec_line in unit.splitlines()
    assert "APPLIANCE_MODELS_DIR" not in unit  # the console loads no speech model
    changed = [(a, b) for a, b in zip(unit_template(CONSOLE).splitlines(), unit.splitlines(),
                                      strict=True) if a != b]
    assert changed == [(exec_line.replace(str(staging.venv_bin), "/opt/appliance/.venv/bin"),
                        exec_line)]
    assert unit_template(CONSOLE).startswith("# The supervisor console")
    assert staging.console_unit.stat().st_mode & 0o777 == 0o644
    assert staging.console_config.stat().st_mode & 0o777 == 0o644
    # the box's files are not the console's business
    assert not staging.unit.exists() and not staging.config.exists()
    assert f"wrote {staging.console_unit}" in out and f"created {staging.console_config}" in out
    assert f"  {exec_line}" in out
    assert "systemctl enable --now appliance-console" in out
    assert "journalctl -u appliance-console -f" in out
    assert "systemctl edit appliance-console" in out and "LoadCredential=" in out
    assert not re.search(r"systemctl \S+( --now)? appliance(?!-console)", out), out


def test_the_rendered_console_unit_passes_systemd_analyze_verify(staging: Staging) -> None:
    assert _install(staging, "--console") == 0
    proc = subprocess.run([_systemd_analyze(), "verify", "--man=no",
                           str(staging.console_unit)],
                          capture_output=True, text=True, timeout=120)
    said = [line for line in (proc.stdout + proc.stderr).splitlines()
            if "appliance-console.service" in line]
    assert said == [] and proc.returncode == 0


def test_the_verify_check_sees_a_broken_console_unit(staging: Staging) -> None:
    assert _install(staging, "--console") == 0
    text = staging.console_unit.read_text()
    staging.console_unit.write_text(text.replace("ProtectSystem=strict", "ProtectSystm=strict"))
    proc = subprocess.run([_systemd_analyze(), "verify", "--man=no",
                           str(staging.console_unit)],
                          capture_output=True, text=True, timeout=120)
    assert "ProtectSystm" in proc.stdout + proc.stderr


def _uncommented_keys(text: str) -> dict:
    """The example's tables and keys with their comment marks taken off (not the
    ``[console.teams]`` example: its entry is a placeholder)."""
    lines = [line[2:] for line in text.splitlines()
             if re.fullmatch(r"# \[\w+\]", line) or re.match(r"# [a-z_]+ = ", line)]
    return tomllib.loads("\n".join(line for line in lines if not line.startswith("name = ")))


def test_the_console_config_changes_nothing_and_names_what_the_console_reads(
        staging: Staging, capsys) -> None:
    assert _install(staging, "--console") == 0
    text = staging.console_config.read_text()
    assert text == console_example_config() and text.startswith(CONSOLE_HEADER)
    assert tomllib.loads(text) == {}
    assert load_config(staging.console_config) == Config()
    capsys.readouterr()
    assert main(["config", "check", str(staging.console_config)]) == 0
    assert capsys.readouterr().out == f"{staging.console_config}: ok\n"
    # the keys, uncommented, are the console's, the store's directory and logging, at their
    # defaults: every key of [console], and nothing of the box's
    defaults = asdict(Config())
    assert _uncommented_keys(text) == {
        "console": {k: v for k, v in defaults["console"].items() if k != "teams"},
        "storage": {"state_dir": defaults["storage"]["state_dir"]},
        "logging": defaults["logging"]}
    assert "# [console.teams]" in text and "# The central store: " in text  # docs kept
    # where the secrets go
    for cred in ("console-token", "broker-password", "pg-dsn"):
        assert f"LoadCredential={cred}:/etc/appliance/{cred}" in CONSOLE_HEADER
    assert "systemd/README.md" in CONSOLE_HEADER and "put no secret here" in CONSOLE_HEADER
    assert "systemctl restart appliance-console" in CONSOLE_HEADER


def test_box_and_console_side_by_side(staging: Staging, capsys) -> None:
    assert _install(staging) == 0 and _install(staging, "--console") == 0
    assert {p.name for p in staging.unit.parent.iterdir()} == {"appliance.service",
                                                                "appliance-console.service"}
    assert staging.config.read_text() == example_config()
    staging.console_config.write_text('[console]\nbroker = "mqtts://10.1.2.50:8883"\n')
    capsys.readouterr()
    assert _install(staging, "--console") == 0  # again: the unit replaced, the config kept
    out = capsys.readouterr().out
    assert f"replaced {staging.console_unit}" in out and f"kept {staging.console_config}" in out
    assert "systemctl edit appliance-console" in out
    assert staging.console_config.read_text().startswith('[console]\nbroker = "mqtts://10')
    # uninstalling the console leaves the box alone (and /etc/appliance with its config)
    assert main(["uninstall-service", "--console", "--root", str(staging.root)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == ("Stop it first if it is running: "
                                   "systemctl disable --now appliance-console")
    assert not staging.console_unit.exists()
    assert staging.unit.exists() and staging.config.exists()
    assert (f"kept {staging.console_config}: edited since install (uninstall-service "
            "--console --purge removes it)") in out
    assert "/var/lib/appliance-console" in out
    assert "systemctl clean --what=state appliance-console" in out


def test_uninstall_console_removes_an_untouched_config_and_purges_its_secrets(
        staging: Staging, capsys) -> None:
    assert _install(staging, "--console") == 0
    etc = staging.console_config.parent
    assert main(["uninstall-service", "--console", "--root", str(staging.root)]) == 0
    assert not staging.console_unit.exists() and not etc.exists()  # held only the example
    assert _install(staging, "--console") == 0
    secrets = [etc / name for name in ("console-token", "broker-password", "pg-dsn")]
    for path in secrets:
        path.write_text("s3cret\n")
    (etc / "dashboard-token").write_text("the box's\n")
    assert main(["uninstall-service", "--console", "--root", str(staging.root)]) == 0
    assert all(p.exists() for p in secrets)  # not without --purge
    capsys.readouterr()
    assert main(["uninstall-service", "--console", "--root", str(staging.root),
                 "--purge"]) == 0
    out = capsys.readouterr().out
    assert not any(p.exists() for p in secrets)
    assert (etc / "dashboard-token").exists()  # the box's credential is not the console's
    assert f"no unit at {staging.console_unit}" in out and f"removed {secrets[0]}" in out


def test_uninstall_console_refuses_while_it_is_enabled(staging: Staging, capsys) -> None:
    assert _install(staging) == 0 and _install(staging, "--console") == 0
    wants = staging.unit.parent / "multi-user.target.wants"
    wants.mkdir()
    (wants / "appliance.service").symlink_to(staging.unit)  # the box's: not in the way
    assert main(["uninstall-service", "--console", "--root", str(staging.root)]) == 0
    assert _install(staging, "--console") == 0
    (wants / "appliance-console.service").symlink_to(staging.console_unit)
    capsys.readouterr()
    assert main(["uninstall-service", "--console", "--root", str(staging.root)]) == 2
    err = capsys.readouterr().err
    assert "appliance-console.service is still enabled" in err
    assert "systemctl disable --now appliance-console" in err
    assert staging.console_unit.exists() and staging.console_config.exists()


def test_the_console_checks_only_its_program_for_hidden_dirs(tmp_path: Path) -> None:
    venv_bin, models = _fake_installation(tmp_path / "inst")  # under /tmp: PrivateTmp hides it
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(ApplianceError) as exc:
        install_service(root, venv_bin / "appliance", models, spec=CONSOLE)
    assert exc.value.code == SERVICE_PATH_HIDDEN and "the appliance program" in str(exc.value)
    assert not (root / "etc").exists()
    res = install_service(root, venv_bin / "appliance", models, force=True, spec=CONSOLE)
    assert len(res.warnings) == 1  # the models directory is not the console's concern
    assert res.unit_path == root / "etc/systemd/system/appliance-console.service"
