"""The console's secrets and store, resolved from ``[console]`` when it starts.

A secret (the broker password, the login token, the PostgreSQL connection string) comes
from a file (``*_file``) or a systemd credential (``*_credential``:
``$CREDENTIALS_DIRECTORY/<name>``, from ``LoadCredential=``), never from the TOML; its
value never appears in a message."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from appliance.config.console import ConsoleConfig
from appliance.config_env import read_secret as read_env_secret
from appliance.config_env import resolve_state_dir
from appliance.console.store import CentralStore
from appliance.errors import CONSOLE_SECRET_UNREADABLE, CONSOLE_TOKEN_REQUIRED, ApplianceError

MIN_TOKEN_CHARS = 16


def read_secret(path: str, credential: str, env: Mapping[str, str], what: str) -> str:
    """The console's secret's first line ('' when neither a file nor a credential is
    configured); ``console.secret_unreadable`` when it cannot be used."""
    return read_env_secret(path, credential, env, what, CONSOLE_SECRET_UNREADABLE)


@dataclass(frozen=True, slots=True)
class Secrets:
    password: str
    token: str
    dsn: str

    def __repr__(self) -> str:  # never in a log
        return "Secrets(...)"


def resolve_secrets(c: ConsoleConfig, env: Mapping[str, str]) -> Secrets:
    token = read_secret(c.token_file, c.token_credential, env, "[console] token")
    if not token:
        raise ApplianceError(CONSOLE_TOKEN_REQUIRED, "the console shows many agents' figures: "
                             "set [console] token_file or token_credential (a file with a "
                             f"random token of at least {MIN_TOKEN_CHARS} characters)")
    if len(token) < MIN_TOKEN_CHARS:
        raise ApplianceError(CONSOLE_TOKEN_REQUIRED, f"the console's token is shorter than "
                             f"{MIN_TOKEN_CHARS} characters")
    return Secrets(
        password=read_secret(c.password_file, c.password_credential, env,
                             "[console] password"),
        token=token,
        dsn=read_secret(c.dsn_file, c.dsn_credential, env, "[console] dsn")
        if c.store == "postgresql" else "")


def sqlite_path(c: ConsoleConfig, state_dir: str, env: Mapping[str, str]) -> Path:
    from appliance.console.store_sqlite import DB_NAME

    return Path(c.sqlite_path) if c.sqlite_path else resolve_state_dir(state_dir, env) / DB_NAME


def open_store(c: ConsoleConfig, secrets: Secrets, state_dir: str,
               env: Mapping[str, str]) -> CentralStore:
    """The configured backend, opened (and created or migrated)."""
    if c.store == "postgresql":
        from appliance.console.store_pg import PostgresStore

        return PostgresStore(secrets.dsn, keep_days=c.keep_days)
    from appliance.console.store_sqlite import SqliteStore

    return SqliteStore(sqlite_path(c, state_dir, env), keep_days=c.keep_days)
