"""Doctor check 1: which configuration file is used, and whether it loads with the
environment overrides.  Only the names of the override variables are shown, never their
values (one of them is the dashboard token)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from appliance.config import Config, load_config
from appliance.config_env import (
    ENV_OVERRIDES,
    SYSTEM_CONFIG,
    default_config_path,
    overrides_in_effect,
)
from appliance.doctor.check import Check, fail, guarded, ok
from appliance.errors import CONFIG_NOT_FOUND, ApplianceError

NAME = "config"


@dataclass(frozen=True, slots=True)
class ConfigResult:
    """The check, and the configuration the later checks use (the defaults if it failed)."""

    check: Check
    config: Config
    loaded: bool
    path: Path | None


def _which_file(cli_path: Path | None, env: Mapping[str, str]) -> tuple[Path | None, str]:
    if cli_path is not None:
        return cli_path, "--config"
    path = default_config_path(env)
    if path is None:
        return None, f"no --config, no APPLIANCE_CONFIG, no {SYSTEM_CONFIG}"
    return path, "APPLIANCE_CONFIG" if env.get("APPLIANCE_CONFIG") else "the system config"


def _suspects(message: str, overrides: list[str]) -> list[str]:
    """The override variables the error is about (by name, or by the key they set)."""
    out = []
    for var in overrides:
        section, key, _ = ENV_OVERRIDES.get(var, ("", "", str))
        where = f"[{section}] {key}" if section else f": {key}:"
        if message.startswith(var) or (key and where in message):
            out.append(var)
    return out


def _fix(exc: ApplianceError, path: Path | None, overrides: list[str]) -> str:
    bad_vars = _suspects(exc.message, overrides)
    if bad_vars:
        where = f", or edit {path}" if path else ""
        return (f"fix or unset {', '.join(bad_vars)} (for the service: Environment= or "
                f"EnvironmentFile= of appliance.service){where}")
    if path is None:
        return "fix the environment overrides listed above"
    if exc.code == CONFIG_NOT_FOUND:
        return (f"create it (`appliance config defaults > {path}`, then edit) or point "
                "--config / APPLIANCE_CONFIG at the right file")
    return f"edit {path}; appliance config check {path}"


def _fallback(env: Mapping[str, str]) -> Config:
    """The defaults with the environment overrides, or the plain defaults if those fail."""
    try:
        return load_config(None, env)
    except ApplianceError:
        return Config()


def _check(cli_path: Path | None, env: Mapping[str, str]) -> ConfigResult:
    path, origin = _which_file(cli_path, env)
    overrides = overrides_in_effect(env)
    shown = ", ".join(overrides) if overrides else "none"
    what = f"{path} ({origin})" if path else f"built-in defaults ({origin})"
    try:
        cfg = load_config(path, env)
    except ApplianceError as exc:
        check = fail(NAME, f"{what} does not load: {exc.message} [{exc.code}]; "
                     f"env overrides: {shown}; the checks below use the default settings (with the "
                     "overrides if they are valid)",
                     _fix(exc, path, overrides))
        return ConfigResult(check, _fallback(env), False, path)
    check = ok(NAME, f"{what} loads; env overrides: {shown}")
    return ConfigResult(check, cfg, True, path)


def check_config(cli_path: Path | None, env: Mapping[str, str]) -> ConfigResult:
    """Check 1 (never raises): the file, whether it loads, the override names."""
    box: list[ConfigResult] = []

    def run() -> Check:
        box.append(_check(cli_path, env))
        return box[0].check

    checks = guarded(NAME, run)
    if box:
        return box[0]
    return ConfigResult(checks[0], Config(), False, cli_path)
