"""``appliance install-service`` / ``uninstall-service``: the unit file and the config file.

Install writes ``<root>/etc/systemd/system/appliance.service``, rendered from the packaged
template (``appliance/service/appliance.service``, the same text as ``systemd/``) with
``ExecStart=`` naming the ``appliance`` script of this installation and
``APPLIANCE_MODELS_DIR=`` the models directory it resolves; and, unless one exists,
``<root>/etc/appliance/appliance.toml``: the full default configuration with every line
commented out, so it changes nothing until edited.  Nothing is downloaded, nothing started:
the caller prints the ``systemctl`` commands to run next.

The unit hides /home, /root, /run/user (``ProtectHome=yes``) and has its own /tmp and
/var/tmp (``PrivateTmp=yes``): an installation there would not be found at start, so install
refuses it unless forced.  ``--root`` (default ``/``) stages into another tree (an image
being built, the tests).

Uninstall removes the unit, and the config file only while it is still the untouched example
(or with ``purge``).  The state directory (/var/lib/appliance: call summaries) is systemd's
and is never removed here; :data:`STATE_HINT` says how.

The same functions install the supervisor console's unit when given its :class:`ServiceSpec`
(:data:`appliance.service.install_console.CONSOLE`); :data:`BOX` is the box's.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from appliance.asr.models import resolve_models_dir
from appliance.config import defaults_toml
from appliance.config_env import SERVICE_UNIT, SYSTEM_CONFIG, TOKEN_CREDENTIAL
from appliance.errors import (
    SERVICE_INSTALL_FAILED,
    SERVICE_NEEDS_ROOT,
    SERVICE_PATH_HIDDEN,
    SERVICE_STILL_ENABLED,
    ApplianceError,
)

# The installed paths, relative to --root; config_env holds the absolute ones the box reads.
UNIT_NAME = SERVICE_UNIT.name
UNIT_DIR = PurePosixPath(SERVICE_UNIT.parent).relative_to("/")
CONFIG_DIR = PurePosixPath(SYSTEM_CONFIG.parent).relative_to("/")
CONFIG_NAME = SYSTEM_CONFIG.name
TOKEN_NAME = TOKEN_CREDENTIAL
TEMPLATE_EXEC = "/opt/appliance/.venv/bin/appliance"
TEMPLATE_MODELS = "/opt/appliance/models"
HIDDEN_DIRS: tuple[str, ...] = ("/home", "/root", "/run/user", "/tmp", "/var/tmp")
"""Invisible to the service (ProtectHome=yes, PrivateTmp=yes)."""
STATE_HINT = ("the call summaries in /var/lib/appliance (systemd's StateDirectory=; with "
              "DynamicUser=yes they live in /var/lib/private/appliance), also with --purge.  "
              "To delete them: `systemctl clean --what=state appliance` while the unit is "
              "still installed, or afterwards `rm -rf /var/lib/private/appliance "
              "/var/lib/appliance`")
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/+@:~-]*")

CONFIG_HEADER = """\
# Call-etiquette appliance: configuration of the service (appliance.service).
#
# Every setting below is commented out: this file changes nothing until you edit it.
# Uncomment a [section] line and the keys you change under it.  Then:
#
#   appliance config check /etc/appliance/appliance.toml    # validate (names the bad key)
#   systemctl reload appliance                              # apply from the next call
#
# Cue settings apply from the next call; audio wiring and dashboard address need
# `systemctl restart appliance`.  An invalid file is refused on reload (the box runs on
# with the previous settings and says so in `systemctl status appliance`).
# The service reads this file as an unprivileged user: keep it world-readable (0644) and
# put no secret here.  The dashboard token goes in /etc/appliance/dashboard-token, passed as
# a credential (systemd/README.md).
#
"""


def render_unit(template: str, exec_path: Path, models_dir: Path | None) -> str:
    """The template with this installation's ``appliance`` script and models directory
    (None: a unit without ``APPLIANCE_MODELS_DIR=``, the console's)."""
    out = []
    hits = {"exec": 0, "models": 0}
    for line in template.splitlines(keepends=True):
        if line.startswith(f"ExecStart={TEMPLATE_EXEC} "):
            line = line.replace(TEMPLATE_EXEC, _unit_path(exec_path), 1)
            hits["exec"] += 1
        elif (models_dir is not None
              and line.startswith(f"Environment=APPLIANCE_MODELS_DIR={TEMPLATE_MODELS}")):
            line = line.replace(TEMPLATE_MODELS, _unit_path(models_dir), 1)
            hits["models"] += 1
        out.append(line)
    if hits != {"exec": 1, "models": int(models_dir is not None)}:  # pragma: no cover
        raise ApplianceError(SERVICE_INSTALL_FAILED, "the packaged unit template lacks its "
                             "ExecStart= or APPLIANCE_MODELS_DIR= line; reinstall the package")
    return "".join(out)


def example_config() -> str:
    """The default configuration with every line commented out, under a short header."""
    body = [line if not line or line.startswith("#") else f"# {line}"
            for line in defaults_toml().splitlines()]
    return CONFIG_HEADER + "\n".join(body) + "\n"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One service that install-service writes: its unit, its config file, and what
    uninstall-service removes."""

    name: str
    """systemctl's name of the unit (``appliance``, ``appliance-console``)."""
    command: str
    """The ``appliance`` subcommand its ``ExecStart=`` runs (``run``, ``console``)."""
    option: str
    """The install-service / uninstall-service option that selects it ("" for the box)."""
    config_name: str
    """The config file in /etc/appliance."""
    example: Callable[[], str]
    """The commented example config written when none exists."""
    secrets: tuple[str, ...]
    """Files in /etc/appliance (credentials) that ``--purge`` removes too."""
    state_hint: str
    """What uninstall keeps, and how to delete it."""
    models: bool
    """The unit names the models directory (``APPLIANCE_MODELS_DIR=``)."""

    @property
    def unit_name(self) -> str:
        return f"{self.name}.service"

    @property
    def config_file(self) -> PurePosixPath:
        """The config file's absolute path on the installed system."""
        return PurePosixPath("/", CONFIG_DIR, self.config_name)


BOX = ServiceSpec(name=UNIT_NAME.removesuffix(".service"), command="run", option="",
                  config_name=CONFIG_NAME,
                  example=example_config, secrets=(TOKEN_NAME,), state_hint=STATE_HINT,
                  models=True)
"""The box's own service (``appliance run``)."""


def unit_template(spec: ServiceSpec = BOX) -> str:
    """The packaged unit file (the same text as ``systemd/<name>.service``)."""
    return (importlib.resources.files("appliance.service") / spec.unit_name).read_text("utf-8")


@dataclass(frozen=True, slots=True)
class InstallResult:
    unit_path: Path
    unit_replaced: bool
    """A unit file was already there (and has been rewritten)."""
    config_path: Path
    config_created: bool
    """False when a config file already existed: it is never overwritten."""
    exec_path: Path
    models_dir: Path
    warnings: tuple[str, ...] = ()
    spec: ServiceSpec = BOX


@dataclass(frozen=True, slots=True)
class UninstallResult:
    unit_path: Path
    unit_removed: bool
    config_path: Path
    config_removed: bool
    config_kept_reason: str
    """Why the config file stayed ("" when it was removed or absent)."""
    removed: tuple[Path, ...] = ()
    spec: ServiceSpec = BOX


def this_installation() -> tuple[Path, Path]:
    """The ``appliance`` script beside the running interpreter (its venv's ``bin/``; not
    resolved, so the venv's own path is kept) and the models directory it resolves."""
    return Path(sys.executable).absolute().parent / "appliance", resolve_models_dir(None, "")


def from_prefix(prefix: Path) -> tuple[Path, Path]:
    """``<prefix>/.venv/bin/appliance`` and ``<prefix>/models`` (the /opt/appliance layout)."""
    prefix = prefix.absolute()
    return prefix / ".venv" / "bin" / "appliance", prefix / "models"


def hidden_dir(path: Path) -> str | None:
    """The directory of :data:`HIDDEN_DIRS` that hides ``path`` from the service, if any."""
    for candidate in {path.absolute(), path.resolve()}:
        for hidden in HIDDEN_DIRS:
            if candidate == Path(hidden) or candidate.is_relative_to(hidden):
                return hidden
    return None


def install_service(root: Path, exec_path: Path, models_dir: Path, *,
                    force: bool = False, spec: ServiceSpec = BOX) -> InstallResult:
    """Write ``spec``'s unit and (if absent) its commented config file under ``root``."""
    _check_root(root)
    if not (exec_path.is_file() and os.access(exec_path, os.X_OK)):
        raise ApplianceError(SERVICE_INSTALL_FAILED, f"no `appliance` program at {exec_path}: "
                             "install the package into that venv first (pip install .), or "
                             "name the installation with --prefix DIR (DIR/.venv/bin/appliance)")
    warnings = []
    checked = [("the appliance program", exec_path)]
    if spec.models:
        checked.append(("the models directory", models_dir))
    for what, path in checked:
        hidden = hidden_dir(path)
        if hidden is None:
            continue
        msg = (f"{what} {path} is under {hidden}, which the service cannot see "
               "(ProtectHome=yes hides /home, /root, /run/user; PrivateTmp=yes gives it its "
               "own /tmp): install under /opt, e.g. /opt/appliance with its venv in "
               "/opt/appliance/.venv")
        if not force:
            raise ApplianceError(SERVICE_PATH_HIDDEN, msg + " (or --force to write it anyway)")
        warnings.append(msg)
    unit = render_unit(unit_template(spec), exec_path, models_dir if spec.models else None)
    unit_path = root / UNIT_DIR / spec.unit_name
    config_path = root / CONFIG_DIR / spec.config_name
    replaced = unit_path.exists()
    try:
        _write_atomic(unit_path, unit, 0o644)
        created = _create_exclusive(config_path, spec.example(), 0o644)
    except OSError as exc:
        raise ApplianceError(SERVICE_INSTALL_FAILED, f"cannot write {exc.filename}: "
                             f"{exc.strerror}") from exc
    return InstallResult(unit_path, replaced, config_path, created, exec_path, models_dir,
                         tuple(warnings), spec)


def uninstall_service(root: Path, *, purge: bool = False,
                      spec: ServiceSpec = BOX) -> UninstallResult:
    """Remove ``spec``'s unit; its config file only if untouched (or ``purge``)."""
    _check_root(root)
    unit_dir = root / UNIT_DIR
    unit_name = spec.unit_name
    enabled = sorted(str(p) for p in unit_dir.glob(f"*.wants/{unit_name}") if p.is_symlink())
    if enabled:
        raise ApplianceError(SERVICE_STILL_ENABLED, f"{unit_name} is still enabled "
                             f"({', '.join(enabled)}): run `systemctl disable --now "
                             f"{spec.name}` first, then uninstall-service again")
    unit_path = unit_dir / unit_name
    config_dir = root / CONFIG_DIR
    config_path = config_dir / spec.config_name
    removed: list[Path] = []
    reason = ""
    try:
        unit_removed = _unlink(unit_path, removed)
        if purge:
            _unlink(config_path, removed)
            for secret in spec.secrets:
                _unlink(config_dir / secret, removed)
        elif config_path.exists():
            if config_path.read_text(encoding="utf-8") == spec.example():
                _unlink(config_path, removed)
            else:
                again = " ".join(filter(None, ("uninstall-service", spec.option, "--purge")))
                reason = f"edited since install ({again} removes it)"
        emptied = any(p.parent == config_dir for p in removed)
        if emptied and config_dir.is_dir() and not any(config_dir.iterdir()):
            config_dir.rmdir()
            removed.append(config_dir)
    except (OSError, UnicodeDecodeError) as exc:
        raise ApplianceError(SERVICE_INSTALL_FAILED, f"cannot remove: {exc}") from exc
    return UninstallResult(unit_path, unit_removed, config_path, config_path in removed,
                           reason, tuple(removed), spec)


# -- helpers ---------------------------------------------------------------------------------
def _check_root(root: Path) -> None:
    if root.resolve() == Path("/") and os.geteuid() != 0:
        raise ApplianceError(SERVICE_NEEDS_ROOT,
                             "run as root (or use --root DIR to stage the files in DIR)")
    if not root.is_dir():
        raise ApplianceError(SERVICE_INSTALL_FAILED, f"--root {root} is not a directory")


def _unit_path(path: Path) -> str:
    text = str(path.absolute())
    if not _SAFE_PATH.fullmatch(text):
        raise ApplianceError(SERVICE_INSTALL_FAILED, f"{text}: a unit file would need this "
                             "path quoted (spaces, %, $ or quotes); install under a plain "
                             "path such as /opt/appliance")
    return text


def _write_atomic(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _create_exclusive(path: Path, text: str, mode: int) -> bool:
    """Create ``path`` with ``text``; False (untouched) if it already exists."""
    if not path.parent.is_dir():  # /etc/appliance: the service user must be able to enter it
        path.parent.mkdir(parents=True)
        os.chmod(path.parent, 0o755)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, mode)  # the umask may have narrowed it
    return True


def _unlink(path: Path, removed: list[Path]) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    removed.append(path)
    return True
