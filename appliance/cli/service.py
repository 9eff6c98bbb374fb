"""``appliance install-service`` and ``appliance uninstall-service``.

Both only write or remove files (see :mod:`appliance.service.install`) and then print, in
order, the ``systemctl`` commands a person runs next; nothing is started or downloaded.
``--console`` does the same for the supervisor console's unit
(:mod:`appliance.service.install_console`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from appliance.service.install import (
    BOX,
    InstallResult,
    ServiceSpec,
    UninstallResult,
    from_prefix,
    install_service,
    this_installation,
    uninstall_service,
)
from appliance.service.install_console import CONSOLE


def add_service_parsers(sub: Any) -> None:
    i = sub.add_parser(
        "install-service", help="install the systemd unit and the config file",
        description="Write /etc/systemd/system/appliance.service (hardened, Type=notify) for "
        "this installation and, unless one exists, /etc/appliance/appliance.toml with every "
        "setting commented out.  With --console: the supervisor console's "
        "appliance-console.service and /etc/appliance/console.toml instead.  Prints the "
        "systemctl commands to run next.")
    i.add_argument("--console", action="store_true",
                   help="the supervisor console's unit instead: appliance-console.service "
                   "and /etc/appliance/console.toml")
    i.add_argument("--root", type=Path, default=Path("/"),
                   help="write under this directory instead of / (to stage an image)")
    i.add_argument("--prefix", type=Path, help="the installation the unit runs: "
                   "PREFIX/.venv/bin/appliance and PREFIX/models (default: this one)")
    i.add_argument("--force", action="store_true",
                   help="write the unit even if the installation is in a directory the "
                   "service cannot see (/home, /root, /tmp)")
    u = sub.add_parser(
        "uninstall-service", help="remove the systemd unit (and the untouched config file)",
        description="Remove /etc/systemd/system/appliance.service, and "
        "/etc/appliance/appliance.toml if it is still the untouched example.  Stop and "
        "disable the service first: systemctl disable --now appliance.  With --console: "
        "appliance-console.service and /etc/appliance/console.toml instead.")
    u.add_argument("--console", action="store_true",
                   help="the supervisor console's unit instead (appliance-console.service, "
                   "/etc/appliance/console.toml)")
    u.add_argument("--root", type=Path, default=Path("/"),
                   help="remove under this directory instead of /")
    u.add_argument("--purge", action="store_true",
                   help="also remove an edited /etc/appliance/appliance.toml and "
                   "/etc/appliance/dashboard-token (never the call summaries); with "
                   "--console: console.toml, console-token, broker-password and pg-dsn "
                   "(never the central store)")


def run_service(args: argparse.Namespace) -> int | None:
    """Dispatch for cli.main: the exit code, or None when the command is not ours."""
    if args.command not in ("install-service", "uninstall-service"):
        return None
    spec: ServiceSpec = CONSOLE if args.console else BOX
    if args.command == "install-service":
        exec_path, models_dir = (from_prefix(args.prefix) if args.prefix is not None
                                 else this_installation())
        res = install_service(args.root, exec_path, models_dir, force=args.force, spec=spec)
        write_install_report(res, args.root, sys.stdout)
        return 0
    if args.command == "uninstall-service":
        sys.stdout.write("Stop it first if it is running: "
                         f"systemctl disable --now {spec.name}\n")
        undone = uninstall_service(args.root, purge=args.purge, spec=spec)
        write_uninstall_report(undone, args.root, sys.stdout)
        return 0
    return None


def _next(root: Path) -> str:
    """The heading of the commands to run next (on the staged system when --root is set)."""
    staged = root.resolve() != Path("/")
    return f"next, on the system staged in {root}:\n" if staged else "next:\n"


_CONSOLE_NEXT = (
    "  edit /etc/appliance/console.toml ([console] broker, token_credential, host...)\n"
    "  appliance config check /etc/appliance/console.toml\n"
    "  (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(24))' "
    "> /etc/appliance/console-token)\n"
    "  systemctl daemon-reload\n"
    "  systemctl edit appliance-console    # a drop-in: LoadCredential= for the token (and the\n"
    "      # broker password, the DSN), IPAddressAllow= for the broker and the supervisors\n"
    "      # (systemd/README.md, \"The supervisor console\")\n"
    "  systemctl enable --now appliance-console\n"
    "  journalctl -u appliance-console -f\n"
    "then open http://127.0.0.1:8090/login (or the [console] host and port).  After "
    "editing the config:\n"
    "  appliance config check /etc/appliance/console.toml && "
    "systemctl restart appliance-console\n")


def write_install_report(res: InstallResult, root: Path, out: TextIO) -> None:
    for warning in res.warnings:
        out.write(f"WARNING: {warning}\n")
    spec = res.spec
    verb = "replaced" if res.unit_replaced else "wrote"
    out.write(f"{verb} {res.unit_path}\n"
              f"  ExecStart={res.exec_path} {spec.command} --config {spec.config_file}\n")
    if spec.models:
        out.write(f"  APPLIANCE_MODELS_DIR={res.models_dir}\n")
    if res.unit_replaced:
        out.write(f"  (local changes belong in a drop-in: systemctl edit {spec.name})\n")
    if res.config_created:
        out.write(f"created {res.config_path} (every setting commented out: the defaults)\n")
    else:
        out.write(f"kept {res.config_path} (it exists; never overwritten)\n")
    if spec is CONSOLE:
        out.write(_next(root) + _CONSOLE_NEXT)
        return
    out.write(_next(root) +
              "  systemctl daemon-reload && systemctl enable --now appliance\n"
              "  journalctl -u appliance -f\n"
              "then open http://127.0.0.1:8765/ on this desk.  After editing the config:\n"
              "  appliance config check /etc/appliance/appliance.toml && "
              "systemctl reload appliance\n")


def write_uninstall_report(res: UninstallResult, root: Path, out: TextIO) -> None:
    out.write(f"removed {res.unit_path}\n" if res.unit_removed
              else f"no unit at {res.unit_path}\n")
    for path in res.removed:
        if path != res.unit_path:
            out.write(f"removed {path}\n")
    if res.config_kept_reason:
        out.write(f"kept {res.config_path}: {res.config_kept_reason}\n")
    out.write(f"kept {res.spec.state_hint}\n")
    out.write(_next(root) + "  systemctl daemon-reload\n")
