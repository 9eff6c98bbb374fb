"""The ``[fleet]`` table: the box publishes its calls' cues and figures (never words) to the
site's MQTT broker, for the supervisor console.  Off by default.  Relations between keys are
checked in :func:`check_fleet`; the client lives in :mod:`appliance.sinks.fleet`.

Credentials never sit in the config file: a password comes from ``password_file`` or from
a systemd credential (``password_credential``: the unit's
``LoadCredential=fleet-password:/etc/appliance/fleet-password`` makes it readable at
``$CREDENTIALS_DIRECTORY/fleet-password``); a client certificate from ``client_cert`` and
``client_key``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from appliance.config_env import read_secret
from appliance.errors import FLEET_CREDENTIALS, ApplianceError

NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
"""A box or site name (a topic level: no ``/``, ``+``, ``#`` or spaces); the same rule as
:func:`appliance.sinks.fleet.messages.valid_name`."""
CREDENTIAL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
PROTOCOLS = ("5", "3.1.1")
DEFAULT_PORTS = {"mqtts": 8883, "mqtt": 1883}


def _f(default: Any, lo: float | None = None, hi: float | None = None, unit: str = "") -> Any:
    return field(default=default, metadata={"min": lo, "max": hi, "unit": unit})


@dataclass(frozen=True, slots=True)
class FleetConfig:
    enabled: bool = False
    """Publish this box's calls (start, each cue's kind/party/severity/time, the summary's
    figures: never words, never audio) and its health to the site's MQTT broker."""
    broker: str = "mqtts://localhost:8883"
    """The broker: ``mqtts://host:port`` (TLS); plain ``mqtt://`` only to a loopback
    address."""
    box_id: str = ""
    """This box's name in the topics (required when enabled): letters, digits and
    ``._:@-``; the broker's ACL should let this box's user write only its own topics."""
    site: str = ""
    """The site's name in the topics (required when enabled), same characters."""
    topic_prefix: str = "coach/{site}/{box}"
    """Where the box's topics live; ``{site}`` and ``{box}`` are filled in."""
    username: str = ""
    """The MQTT user name (empty: none, e.g. with a client certificate)."""
    password_file: str = ""
    """A file holding the MQTT password (its first line); readable by the service only."""
    password_credential: str = ""
    """A systemd credential holding the password: its name, read from
    ``$CREDENTIALS_DIRECTORY/<name>`` (``LoadCredential=<name>:/path`` in a drop-in)."""
    client_cert: str = ""
    """A client certificate (PEM) for brokers that authenticate boxes by certificate."""
    client_key: str = ""
    """The client certificate's private key (PEM)."""
    ca_file: str = ""
    """The CA certificate(s) (PEM) that signed the broker's certificate; empty: the
    system's CAs."""
    protocol: str = "5"
    """MQTT protocol version: ``5`` (an ACL refusal is reported as ``fleet.denied``) or
    ``3.1.1`` (a refused publish is dropped silently by the broker)."""
    keepalive_s: int = _f(60, 5, 3600, "s")
    """The MQTT keep-alive: the broker publishes the box's last will (``offline``) after
    about 1.5 times this without a word from the box."""
    stats_interval_s: float = _f(60.0, 1.0, 3600.0, "s")
    """How often the box's figures (health, drops, open calls, cue counts) are published."""
    outbox_max_messages: int = _f(100000, 10, 10000000)
    """Unsent messages kept on disk while the broker is unreachable; beyond this the
    oldest are evicted (and counted)."""
    outbox_max_bytes: int = _f(64 * 1024 * 1024, 65536, 16 * 1024 ** 3, "bytes")
    """Bytes of unsent messages kept on disk at most (topic and payload); beyond this the
    oldest are evicted (and counted)."""
    max_inflight: int = _f(32, 1, 1000)
    """Messages sent and not yet acknowledged by the broker at most (QoS 1)."""
    reconnect_min_s: float = _f(1.0, 0.1, 600.0, "s")
    """First wait before reconnecting to a broker that went away (doubles each time)."""
    reconnect_max_s: float = _f(60.0, 1.0, 3600.0, "s")
    """Longest wait between two connection attempts."""
    stop_flush_s: float = _f(2.0, 0.0, 60.0, "s")
    """On a clean stop, how long the box waits for the outbox to drain before it
    disconnects (what is left is sent after the next start)."""

    def prefix(self) -> str:
        """The box's topic prefix."""
        return self.topic_prefix.format(site=self.site, box=self.box_id).rstrip("/")


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    tls: bool
    host: str
    port: int


def parse_broker(url: str) -> BrokerAddress:
    """``mqtts://host:8883`` → its parts (ValueError with the reason)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url[:80]!r} is not a broker address ({exc})") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"{url[:80]!r}: mqtts://host:port (or mqtt:// on loopback)")
    if not parts.hostname:
        raise ValueError(f"{url[:80]!r} names no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{url[:80]!r}: only scheme, host and port (credentials go in "
                         "username and password_file)")
    return BrokerAddress(parts.scheme == "mqtts", parts.hostname,
                         port or DEFAULT_PORTS[parts.scheme])


def check_fleet(fleet: FleetConfig, is_loopback: Callable[[str], bool]) -> tuple[str, str] | None:
    """The first relation broken in ``[fleet]`` as ``(where, message)``, or None."""
    try:
        addr = parse_broker(fleet.broker)
    except ValueError as exc:
        return ("[fleet] broker", str(exc))
    if not addr.tls and not is_loopback(addr.host):
        return ("[fleet] broker", f"{addr.host[:60]!r} is beyond loopback: use mqtts:// "
                "(TLS); plain mqtt:// is allowed to a loopback broker only")
    if fleet.protocol not in PROTOCOLS:
        return ("[fleet] protocol", f"{fleet.protocol[:20]!r}: allowed 5, 3.1.1")
    if fleet.reconnect_min_s > fleet.reconnect_max_s:
        return ("[fleet] reconnect_min_s", "must not exceed reconnect_max_s")
    if bool(fleet.client_cert) != bool(fleet.client_key):
        return ("[fleet] client_cert", "client_cert and client_key go together")
    if fleet.password_file and fleet.password_credential:
        return ("[fleet] password_file", "give password_file or password_credential, "
                "not both")
    if fleet.password_credential and not CREDENTIAL_NAME.fullmatch(fleet.password_credential):
        return ("[fleet] password_credential", "a credential name: letters, digits, ._-")
    if (fleet.password_file or fleet.password_credential) and not fleet.username:
        return ("[fleet] username", "a password needs a username")
    for key, value in (("box_id", fleet.box_id), ("site", fleet.site)):
        if (value or fleet.enabled) and not NAME.fullmatch(value):
            return (f"[fleet] {key}", "required when enabled: 1-128 letters, digits and ._:@-")
    try:
        prefix = fleet.topic_prefix.format(site="s", box="b")
    except (KeyError, IndexError, ValueError) as exc:
        return ("[fleet] topic_prefix", f"only {{site}} and {{box}} may be filled in ({exc})")
    if ("{box}" not in fleet.topic_prefix or not prefix.strip("/")
            or any(c in prefix for c in "+#\0") or "//" in prefix.strip("/")):
        return ("[fleet] topic_prefix", "must hold {box}, no + or # and no empty levels")
    return None


def read_password(fleet: FleetConfig, env: Mapping[str, str]) -> str | None:
    """The MQTT password from ``password_credential`` or ``password_file`` (None when
    neither is set).  Raises :class:`ApplianceError` ``fleet.credentials`` when it cannot
    be read (the message names the file, never its content)."""
    return read_secret(fleet.password_file, fleet.password_credential, env,
                       "[fleet] password", FLEET_CREDENTIALS) or None


def check_files(fleet: FleetConfig) -> None:
    """The certificate files exist and are readable (``fleet.credentials`` otherwise)."""
    for key in ("ca_file", "client_cert", "client_key"):
        value = getattr(fleet, key)
        if not value:
            continue
        path = Path(value).expanduser()
        try:
            with path.open("rb") as f:
                f.read(1)
        except OSError as exc:
            raise ApplianceError(FLEET_CREDENTIALS, f"[fleet] {key} {path}: "
                                 f"{exc.strerror or type(exc).__name__}") from None
