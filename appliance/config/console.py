"""The ``[console]`` table: the supervisor console (``appliance console``), which subscribes
to the site's MQTT broker, keeps every box's calls in a central store and serves the floor
and trend pages.  A box's own service ignores this table.

Secrets never sit in the TOML: the broker password, the page's login token and a PostgreSQL
DSN are read from files (``*_file``) or from systemd credentials (``*_credential``: the
name of a file in ``$CREDENTIALS_DIRECTORY``).  Relations between keys are checked in
:func:`check_console`; the service resolves the secrets when it starts."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

TEAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
"""A team's name in ``[console.teams]``."""
AGENT_ID = re.compile(r"[A-Za-z0-9._@-]{1,64}")
CLIENT_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
CREDENTIAL_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
STORES = ("sqlite", "postgresql")


def _f(default: Any, lo: float | None = None, hi: float | None = None, unit: str = "") -> Any:
    return field(default=default, metadata={"min": lo, "max": hi, "unit": unit})


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    broker: str = "mqtts://127.0.0.1:8883"
    """The site's MQTT broker: ``mqtts://host:port`` (TLS); plain ``mqtt://`` only on
    loopback."""
    username: str = "console"
    """The console's user name at the broker (its ACL must let it read the topic filter)."""
    password_file: str = ""
    """A file holding the broker password (one line); or use password_credential."""
    password_credential: str = ""
    """The name of a systemd credential holding the broker password
    (``$CREDENTIALS_DIRECTORY/<name>``, from ``LoadCredential=``)."""
    cert_file: str = ""
    """A client certificate (PEM) for brokers that authenticate by certificate."""
    key_file: str = ""
    """The client certificate's private key (PEM)."""
    ca_file: str = ""
    """The CA certificate (PEM) that signed the broker's certificate; empty: the system's
    trusted CAs."""
    client_id: str = "appliance-console"
    """The console's MQTT client id: the broker keeps its session (subscriptions and the
    messages that arrive while the console restarts) under this name."""
    session_expiry_s: int = _f(604800, 0, 4294967295, "s")
    """How long the broker keeps the console's session while it is away (MQTT 5 session
    expiry; the broker's own queue limit, ``max_queued_messages``, applies too)."""
    keepalive_s: int = _f(30, 5, 3600, "s")
    """MQTT keep-alive: a broker that says nothing this long is taken for gone."""
    topic: str = "coach/+/+/#"
    """The topic filter the console subscribes to (QoS 1)."""
    reconnect_max_s: float = _f(60.0, 1.0, 3600.0, "s")
    """Longest wait between two attempts to reach the broker (backoff from 1 s)."""
    queue_size: int = _f(10000, 10, 1000000, "messages")
    """Messages received and not yet stored at most; beyond it the broker waits (it holds
    unacknowledged messages), nothing is lost."""
    batch_size: int = _f(500, 1, 100000, "messages")
    """Messages written to the store in one transaction at most."""
    store: str = "sqlite"
    """The central store: ``sqlite`` (one file) or ``postgresql``."""
    sqlite_path: str = ""
    """The SQLite file; empty: ``console.sqlite3`` in the state directory."""
    dsn_file: str = ""
    """PostgreSQL: a file holding the connection string (``postgresql://...`` or
    ``host=... dbname=...``); or use dsn_credential."""
    dsn_credential: str = ""
    """PostgreSQL: the name of a systemd credential holding the connection string."""
    host: str = "127.0.0.1"
    """Address the console's web pages listen on."""
    port: int = _f(8090, 0, 65535)
    """TCP port of the console's web pages (0: any free port, for tests)."""
    token_file: str = ""
    """A file holding the login token of the pages (required: they show many agents' data);
    or use token_credential."""
    token_credential: str = ""
    """The name of a systemd credential holding the login token."""
    keep_days: float = _f(365.0, 1.0, 3650.0, "days")
    """Calls, cues and message ids older than this are deleted from the central store."""
    silent_after_s: float = _f(180.0, 10.0, 86400.0, "s")
    """A box that sent nothing this long is shown as silent (boxes send stats every
    minute)."""
    teams: dict[str, list[str]] = field(default_factory=dict)
    """``[console.teams]``: team name -> the agent ids in it, e.g. ``billing = ["agent-1",
    "agent-2"]`` (the per-team trends)."""


def _secret_source(where: str, path: str, cred: str) -> tuple[str, str] | None:
    if path and cred:
        return (f"[console] {where}_file", f"give {where}_file or {where}_credential, not both")
    if cred and not CREDENTIAL_NAME.fullmatch(cred):
        return (f"[console] {where}_credential", "a credential name: letters, digits, . _ -")
    return None


def check_console(c: ConsoleConfig, is_loopback: Any) -> tuple[str, str] | None:
    """The first relation broken in ``[console]`` as ``(where, message)``, or None."""
    try:
        url = urlsplit(c.broker)
        port = url.port
    except ValueError as exc:
        return ("[console] broker", f"not a broker address: {exc}")
    if url.scheme not in ("mqtts", "mqtt") or not url.hostname or url.path not in ("", "/"):
        return ("[console] broker", "mqtts://host:port (or mqtt://127.0.0.1:port on loopback)")
    if url.username or url.password:
        return ("[console] broker", "no credentials in the address: use username and "
                "password_file or password_credential")
    if url.scheme == "mqtt" and not is_loopback(url.hostname):
        return ("[console] broker", f"plain mqtt:// to {url.hostname} would send the site's "
                "data in clear: use mqtts:// (plain only on loopback)")
    if port == 0:
        return ("[console] broker", "port 1..65535")
    if bool(c.cert_file) != bool(c.key_file):
        return ("[console] cert_file", "give cert_file and key_file together")
    if not CLIENT_ID.fullmatch(c.client_id):
        return ("[console] client_id", "1-64 letters, digits, . _ -")
    if not _valid_filter(c.topic):
        return ("[console] topic", f"{c.topic[:80]!r} is not an MQTT topic filter")
    for where, path, cred in (("password", c.password_file, c.password_credential),
                              ("token", c.token_file, c.token_credential),
                              ("dsn", c.dsn_file, c.dsn_credential)):
        broken = _secret_source(where, path, cred)
        if broken:
            return broken
    if c.store not in STORES:
        return ("[console] store", f"{c.store[:20]!r}: allowed {', '.join(STORES)}")
    if c.store == "postgresql" and not (c.dsn_file or c.dsn_credential):
        return ("[console] store", "postgresql needs dsn_file or dsn_credential (the "
                "connection string never goes in the TOML)")
    if c.batch_size > c.queue_size:
        return ("[console] batch_size", "must not exceed queue_size")
    seen: dict[str, str] = {}
    for team, agents in c.teams.items():
        if not TEAM_NAME.fullmatch(team):
            return ("[console.teams]", f"{team[:40]!r}: letters, digits, . _ - (at most 64)")
        for a in agents:
            if not AGENT_ID.fullmatch(a):
                return (f"[console.teams] {team}", f"{a[:40]!r} is not an agent id")
            if a in seen and seen[a] != team:
                return (f"[console.teams] {team}", f"{a!r} is already in team {seen[a]!r}")
            seen[a] = team
    return None


def _valid_filter(topic: str) -> bool:
    if not topic or len(topic) > 256 or "\0" in topic:
        return False
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True
