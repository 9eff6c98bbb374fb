"""The few environment overrides IT scripts set, and where the service keeps its files.

Only these variables are read (besides systemd's own ``STATE_DIRECTORY``,
``CREDENTIALS_DIRECTORY``, ``NOTIFY_SOCKET``, ``WATCHDOG_USEC``, ``WATCHDOG_PID`` and
``JOURNAL_STREAM``):

========================== ================================
variable                   overrides
========================== ================================
``APPLIANCE_CONFIG``       the config file when ``--config`` is not given
``APPLIANCE_LANGUAGE``     ``language``
``APPLIANCE_DASHBOARD_HOST`` ``[dashboard] host``
``APPLIANCE_DASHBOARD_PORT`` ``[dashboard] port``
``APPLIANCE_DASHBOARD_TOKEN`` ``[dashboard] token``
``APPLIANCE_AUDIO_DEVICE`` ``[audio] device``
``APPLIANCE_LOG_LEVEL``    ``[logging] level``
``APPLIANCE_STATE_DIR``    ``[storage] state_dir``
``APPLIANCE_MODELS_DIR``   ``[asr] models_dir`` (read in :mod:`appliance.asr.models`)
========================== ================================

A systemd credential named ``dashboard-token`` (``LoadCredential=dashboard-token:/etc/...``)
sets the token without putting it in the environment or the config file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from appliance.errors import CONFIG_INVALID, ApplianceError

SYSTEM_CONFIG = Path("/etc/appliance/appliance.toml")
"""The config file ``appliance install-service`` creates and the service reads."""

ENV_OVERRIDES: dict[str, tuple[str, str, type]] = {
    "APPLIANCE_LANGUAGE": ("", "language", str),
    "APPLIANCE_DASHBOARD_HOST": ("dashboard", "host", str),
    "APPLIANCE_DASHBOARD_PORT": ("dashboard", "port", int),
    "APPLIANCE_DASHBOARD_TOKEN": ("dashboard", "token", str),
    "APPLIANCE_AUDIO_DEVICE": ("audio", "device", str),
    "APPLIANCE_LOG_LEVEL": ("logging", "level", str),
    "APPLIANCE_STATE_DIR": ("storage", "state_dir", str),
}
TOKEN_CREDENTIAL = "dashboard-token"
ENV_MODELS_DIR = "APPLIANCE_MODELS_DIR"
"""Read where the models are resolved (:func:`appliance.asr.models.resolve_models_dir`)."""


def apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """A copy of the parsed TOML ``raw`` with the environment overrides applied.

    Values are only converted here; range checks happen in the normal validation, whose
    message then names the variable (``APPLIANCE_DASHBOARD_PORT (= [dashboard] port)``).
    """
    out = dict(raw)  # the caller's tables are copied where they change (_table), never deep:
    for var, (section, key, kind) in ENV_OVERRIDES.items():
        if var not in env:
            continue
        text = env[var].strip()
        value: Any = text
        if kind is int:
            try:
                value = int(text)
            except ValueError:
                raise ApplianceError(CONFIG_INVALID, f"{var}: must be a whole number, "
                                     f"not {text!r}") from None
        if var == "APPLIANCE_LOG_LEVEL":
            value = text.lower()
        _table(out, section)[key] = value
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        cred = Path(cred_dir) / TOKEN_CREDENTIAL
        try:
            token = cred.read_text(encoding="utf-8").strip() if cred.is_file() else ""
        except (OSError, UnicodeDecodeError) as exc:
            raise ApplianceError(CONFIG_INVALID, f"credential {TOKEN_CREDENTIAL}: cannot "
                                 f"read it ({type(exc).__name__})") from None
        if token:
            _table(out, "dashboard")["token"] = token
    return out


MAX_SECRET_BYTES = 4096
"""A secret file longer than this is refused (a password, a token or a DSN is one line)."""


def read_secret(path: str, credential: str, env: Mapping[str, str], what: str,
                code: str) -> str:
    """A secret's first line, from the systemd credential ``credential``
    (``$CREDENTIALS_DIRECTORY/<name>``, given by ``LoadCredential=``) or else the file
    ``path``; '' when neither is configured.  Raises :class:`ApplianceError` with ``code``
    when it cannot be read, is empty or is too long; the message names ``what`` and the
    file, never its content."""
    if credential:
        cred_dir = env.get("CREDENTIALS_DIRECTORY", "")
        if not cred_dir:
            raise ApplianceError(code, f"{what}: credential {credential!r} configured, but no "
                                 f"$CREDENTIALS_DIRECTORY (add LoadCredential={credential}:"
                                 "/etc/appliance/... to the unit)")
        file = Path(cred_dir) / credential
    elif path:
        file = Path(path).expanduser()
    else:
        return ""
    try:
        with file.open("rb") as f:
            data = f.read(MAX_SECRET_BYTES + 1)
        text = data.decode("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or type(exc).__name__
        raise ApplianceError(code, f"{what}: cannot read {file} ({why})") from None
    if len(data) > MAX_SECRET_BYTES or not text:
        raise ApplianceError(code, f"{what}: {file} is empty or too long")
    return text.splitlines()[0].strip()


def _table(raw: dict[str, Any], section: str) -> dict[str, Any]:
    """``raw[section]`` as a fresh dict that ``raw`` now holds (a shallow copy: a value
    nested hundreds deep must not be walked)."""
    if not section:
        return raw
    table = raw.get(section, {})
    if not isinstance(table, dict):
        raise ApplianceError(CONFIG_INVALID, f"[{section}] must be a table")
    raw[section] = dict(table)
    return raw[section]


def overridden_by(env: Mapping[str, str]) -> list[str]:
    """The config-key override variables set in ``env`` (names only, never values)."""
    return [v for v in ENV_OVERRIDES if v in env]


def overrides_in_effect(env: Mapping[str, str]) -> list[str]:
    """Every override in effect, for the startup log and the doctor: the config-key
    variables, the models directory, and the token credential (names only)."""
    names = overridden_by(env)
    if env.get(ENV_MODELS_DIR):
        names.append(ENV_MODELS_DIR)
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir and (Path(cred_dir) / TOKEN_CREDENTIAL).is_file():
        names.append(f"credential {TOKEN_CREDENTIAL}")
    return names


def default_config_path(env: Mapping[str, str]) -> Path | None:
    """``APPLIANCE_CONFIG``, else /etc/appliance/appliance.toml if it exists, else None."""
    if env.get("APPLIANCE_CONFIG"):
        return Path(env["APPLIANCE_CONFIG"])
    return SYSTEM_CONFIG if SYSTEM_CONFIG.is_file() else None


SERVICE_UNIT = Path("/etc/systemd/system/appliance.service")
"""Where ``appliance install-service`` puts the unit."""
SERVICE_STATE_DIR = Path("/var/lib/appliance")
"""The unit's ``StateDirectory=appliance`` (with DynamicUser a link into /var/lib/private)."""


def resolve_state_dir(config_value: str, env: Mapping[str, str]) -> Path:
    """``[storage] state_dir`` (already env-overridden), else systemd's STATE_DIRECTORY
    (the first entry), else the service's /var/lib/appliance when the service is installed
    (so ``summaries export`` and ``doctor`` run by IT look where the service writes), else
    ~/.local/state/appliance."""
    if config_value:
        return Path(config_value).expanduser()
    if env.get("STATE_DIRECTORY"):
        return Path(env["STATE_DIRECTORY"].split(":")[0])
    if SERVICE_UNIT.is_file():
        return SERVICE_STATE_DIR
    return Path.home() / ".local" / "state" / "appliance"
