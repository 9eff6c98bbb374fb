"""``appliance install-service --console``: the supervisor console's unit and config file.

The console's :class:`~appliance.service.install.ServiceSpec` for the functions of
:mod:`appliance.service.install`: ``<root>/etc/systemd/system/appliance-console.service``,
rendered from the packaged copy of ``systemd/appliance-console.service`` (``ExecStart=``
naming this installation's ``appliance``; the console loads no speech model), and, unless one
exists, ``<root>/etc/appliance/console.toml``: the keys that matter to the console
(``[console]``, ``[storage] state_dir``, ``[logging]``), every line commented out, under a
header saying where the secrets go.  Uninstall keeps the central store (the state directory
/var/lib/appliance-console).
"""

from __future__ import annotations

import re

from appliance.config import defaults_toml
from appliance.service.install import ServiceSpec

CONSOLE_SECRETS = ("console-token", "broker-password", "pg-dsn")
"""The credential files in /etc/appliance that systemd/README.md names (``--purge``)."""
SECTIONS: tuple[tuple[str, frozenset[str] | None], ...] = (
    ("console", None),  # every key
    ("storage", frozenset({"state_dir"})),  # the central store's directory; the rest is a box's
    ("logging", None),
)
"""The tables of the example, and the keys of each (None: all) that the console reads."""
CONSOLE_STATE_HINT = (
    "the central store in /var/lib/appliance-console (systemd's StateDirectory=; with "
    "DynamicUser=yes it lives in /var/lib/private/appliance-console), also with --purge.  "
    "To delete it: `systemctl clean --what=state appliance-console` while the unit is still "
    "installed, or afterwards `rm -rf /var/lib/private/appliance-console "
    "/var/lib/appliance-console`")
_KEY = re.compile(r"([a-z_][a-z0-9_]*) = ")

CONSOLE_HEADER = """\
# Call-etiquette appliance: configuration of the supervisor console (appliance-console.service).
#
# Every setting below is commented out: this file changes nothing until you edit it.
# Uncomment a [section] line and the keys you change under it: at least [console] broker,
# the pages' login token (required) and, for the supervisors' desks, host.  Then:
#
#   appliance config check /etc/appliance/console.toml    # validate (names the bad key)
#   systemctl restart appliance-console                   # the console reads it at start
#
# The service reads this file as an unprivileged user: keep it world-readable (0644) and
# put no secret here.  The login token, the broker password and a PostgreSQL connection
# string go in root-only files, handed to the service as systemd credentials by a drop-in
# (`systemctl edit appliance-console`; systemd/README.md, "The supervisor console"):
#
#   drop-in: LoadCredential=console-token:/etc/appliance/console-token
#   here:    token_credential = "console-token"          (the pages' login)
#   drop-in: LoadCredential=broker-password:/etc/appliance/broker-password
#   here:    password_credential = "broker-password"     (the console's user at the broker)
#   drop-in: LoadCredential=pg-dsn:/etc/appliance/pg-dsn
#   here:    dsn_credential = "pg-dsn"                   (only with store = "postgresql")
#
# The same drop-in adds the broker's, the database's and the supervisors' addresses to
# IPAddressAllow= (as installed, the unit reaches loopback only).  The central store
# (console.sqlite3) is kept in [storage] state_dir: empty = /var/lib/appliance-console, the
# unit's state directory.  Only the keys the console reads are listed here;
# `appliance config defaults` prints them all.
#
"""


def console_example_config() -> str:
    """:data:`SECTIONS` of the default configuration, every line commented out, under
    :data:`CONSOLE_HEADER`."""
    tables = _tables(defaults_toml())
    body: list[str] = []
    for name, keys in SECTIONS:
        header, *lines = tables[name]
        body.append(header)
        if keys is None:
            body += lines
        else:
            for i, line in enumerate(lines):
                m = _KEY.match(line)
                if m and m.group(1) in keys:
                    body += lines[i - 1:i + 1]  # its doc line, then the key
        body.append("")
    return CONSOLE_HEADER + "\n".join(
        line if not line or line.startswith("#") else f"# {line}" for line in body) + "\n"


def _tables(text: str) -> dict[str, list[str]]:
    """Each ``[table]`` of ``defaults_toml()``: its header line and the lines up to the next
    one (blank lines dropped)."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("["):
            current = out.setdefault(line.strip("[]"), [line])
        elif current is not None and line:
            current.append(line)
    return out


CONSOLE = ServiceSpec(name="appliance-console", command="console", option="--console",
                      config_name="console.toml", example=console_example_config,
                      secrets=CONSOLE_SECRETS, state_hint=CONSOLE_STATE_HINT, models=False)
"""The supervisor console (``appliance console``)."""
