"""``appliance console [--config FILE]``: the supervisor console (see
:mod:`appliance.service.console_service`).  The config file resolves like the box's:
``--config``, else ``$APPLIANCE_CONFIG``, else /etc/appliance/appliance.toml if present;
its ``[console]`` table configures the console."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from appliance.config import load_config
from appliance.config_env import default_config_path
from appliance.service.logs import setup_logging
from appliance.service.notify import Notifier


def add_console_parser(sub: Any) -> None:
    c = sub.add_parser("console", help="run the supervisor console (the site's floor and "
                       "trends, from the boxes' messages on the site's MQTT broker)",
                       description="Subscribe to the site's MQTT broker, keep every box's "
                       "calls in the central store and serve the floor and trend pages.")
    c.add_argument("--config", type=Path, metavar="FILE",
                   help="TOML configuration file with a [console] table")


def run_console(args: argparse.Namespace) -> int | None:
    if args.command != "console":
        return None
    from appliance.service.console_service import ConsoleService

    env = dict(os.environ)
    cfg = load_config(args.config or default_config_path(env), env)
    setup_logging(args.log_level or cfg.logging.level, cfg.logging.format)
    service = ConsoleService(cfg, env=env, notifier=Notifier.from_env(env))
    asyncio.run(service.serve())
    return 0
