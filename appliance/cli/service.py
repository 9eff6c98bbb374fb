"""``appliance install-service`` and ``appliance uninstall-service``.

Both only write or remove files (see :mod:`appliance.service.install`) and then print, in
order, the ``systemctl`` commands a person runs next; nothing is started or downloaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from appliance.service.install import (
    STATE_HINT,
    InstallResult,
    UninstallResult,
    from_prefix,
    install_service,
    this_installation,
    uninstall_service,
)


def add_service_parsers(sub: Any) -> None:
    i = sub.add_parser(
        "install-service", help="install the systemd unit and the config file",
        description="Write /etc/systemd/system/appliance.service (hardened, Type=notify) for "
        "this installation and, unless one exists, /etc/appliance/appliance.toml with every "
        "setting commented out.  Prints the systemctl commands to run next.")
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
        "disable the service first: systemctl disable --now appliance.")
    u.add_argument("--root", type=Path, default=Path("/"),
                   help="remove under this directory instead of /")
    u.add_argument("--purge", action="store_true",
                   help="also remove an edited /etc/appliance/appliance.toml and "
                   "/etc/appliance/dashboard-token (never the call summaries)")


def run_service(args: argparse.Namespace) -> int | None:
    """Dispatch for cli.main: the exit code, or None when the command is not ours."""
    if args.command == "install-service":
        exec_path, models_dir = (from_prefix(args.prefix) if args.prefix is not None
                                 else this_installation())
        res = install_service(args.root, exec_path, models_dir, force=args.force)
        write_install_report(res, args.root, sys.stdout)
        return 0
    if args.command == "uninstall-service":
        sys.stdout.write("Stop it first if it is running: systemctl disable --now appliance\n")
        undone = uninstall_service(args.root, purge=args.purge)
        write_uninstall_report(undone, args.root, sys.stdout)
        return 0
    return None


def _next(root: Path) -> str:
    """The heading of the commands to run next (on the staged system when --root is set)."""
    staged = root.resolve() != Path("/")
    return f"next, on the system staged in {root}:\n" if staged else "next:\n"


def write_install_report(res: InstallResult, root: Path, out: TextIO) -> None:
    for warning in res.warnings:
        out.write(f"WARNING: {warning}\n")
    verb = "replaced" if res.unit_replaced else "wrote"
    out.write(f"{verb} {res.unit_path}\n"
              f"  ExecStart={res.exec_path} run --config /etc/appliance/appliance.toml\n"
              f"  APPLIANCE_MODELS_DIR={res.models_dir}\n")
    if res.unit_replaced:
        out.write("  (local changes belong in a drop-in: systemctl edit appliance)\n")
    if res.config_created:
        out.write(f"created {res.config_path} (every setting commented out: the defaults)\n")
    else:
        out.write(f"kept {res.config_path} (it exists; never overwritten)\n")
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
    out.write(f"kept {STATE_HINT}\n")
    out.write(_next(root) + "  systemctl daemon-reload\n")
