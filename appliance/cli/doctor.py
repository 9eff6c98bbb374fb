"""``appliance doctor``: one command IT runs on the box to see what is wrong and how to fix
it.  Exit status 0 when nothing failed (warnings allowed), 1 when a check failed."""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

MAX_LISTEN_S = 60.0


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_LISTEN_S:
        raise argparse.ArgumentTypeError(f"give 0 to {MAX_LISTEN_S:g} seconds, not {text}")
    return value


def add_doctor_parser(sub: Any) -> None:
    d = sub.add_parser(
        "doctor", help="check the box and say how to fix what is wrong",
        description="Check the configuration, the audio wiring (with a short listen), the "
        "speech and VAD models, the dashboard port, the state directory, memory and the "
        "service.  Exit status 1 when a check fails.")
    d.add_argument("--config", type=Path, help="TOML configuration file (default: "
                   "$APPLIANCE_CONFIG, then /etc/appliance/appliance.toml, then the defaults)")
    d.add_argument("--lang", help="call language whose speech model to check (default: config)")
    d.add_argument("--models-dir", type=Path, help="speech models folder")
    d.add_argument("--listen-s", type=_seconds, default=3.0, metavar="SECONDS",
                   help="seconds to listen to the input(s) for the level meter (3)")
    d.add_argument("--no-audio", action="store_true",
                   help="do not open the audio input(s) (devices are still checked)")
    d.add_argument("--format", choices=["text", "json"], default="text", help="report format")


def run_doctor(args: argparse.Namespace) -> int | None:
    """Dispatch for cli.main: the exit code, or None when the command is not ``doctor``."""
    if args.command != "doctor":
        return None
    from appliance.doctor import DoctorOptions, run_checks
    from appliance.doctor.report import exit_code, write_json, write_text

    opts = DoctorOptions(config=args.config, lang=args.lang, models_dir=args.models_dir,
                         listen_s=args.listen_s, no_audio=args.no_audio)
    checks = run_checks(opts, os.environ, progress=sys.stderr)
    (write_json if args.format == "json" else write_text)(checks, sys.stdout)
    return exit_code(checks)
