"""``appliance console [--config FILE]``: the supervisor console (see
:mod:`appliance.service.console_service`).  The config file resolves like the box's:
``--config``, else ``$APPLIANCE_CONFIG``, else /etc/appliance/appliance.toml if present;
its ``[console]`` table configures the console."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from appliance.cli.summaries import parse_when
from appliance.config import Config, load_config
from appliance.config_env import default_config_path
from appliance.errors import CONFIG_INVALID, ApplianceError
from appliance.events import iso_utc
from appliance.service.logs import setup_logging
from appliance.service.notify import Notifier

log = logging.getLogger(__name__)


def add_console_parser(sub: Any) -> None:
    c = sub.add_parser("console", help="run the supervisor console (the site's floor and "
                       "trends, from the boxes' messages on the site's MQTT broker)",
                       description="Subscribe to the site's MQTT broker, keep every box's "
                       "calls in the central store and serve the floor and trend pages.")
    c.add_argument("--config", type=Path, metavar="FILE",
                   help="TOML configuration file with a [console] table")
    c.add_argument("--export", choices=("csv", "jsonl"),
                   help="print the central store's ended calls (figures only) to standard "
                   "output and exit, instead of running the console")
    c.add_argument("--since", metavar="WHEN", help="with --export: calls ended from then on "
                   "(2026-11-01, an ISO time, or an age: 7d, 24h)")
    c.add_argument("--until", metavar="WHEN", help="with --export: calls ended up to then "
                   "(a day is included whole)")


def run_console(args: argparse.Namespace) -> int | None:
    if args.command != "console":
        return None
    from appliance.service.console_service import ConsoleService

    env = dict(os.environ)
    cfg = load_config(args.config or default_config_path(env), env)
    setup_logging(args.log_level or cfg.logging.level, cfg.logging.format)
    if args.export:
        return _export(args, cfg, env)
    if args.since or args.until:
        raise ApplianceError(CONFIG_INVALID, "--since and --until go with --export")
    service = ConsoleService(cfg, env=env, notifier=Notifier.from_env(env))
    asyncio.run(service.serve())
    return 0


def _export(args: argparse.Namespace, cfg: Config, env: dict[str, str]) -> int:
    """The web page's export, for scripts: the store's ended calls to standard output."""
    from appliance.console.export import write_csv, write_jsonl
    from appliance.console.settings import Secrets, open_store, read_secret

    c = cfg.console
    now = datetime.now(UTC)  # the same forms as the box's `summaries export`
    since = iso_utc(parse_when(args.since, now)) if args.since else None
    until = iso_utc(parse_when(args.until, now, end_of_day=True)) if args.until else None
    dsn = (read_secret(c.dsn_file, c.dsn_credential, env, "[console] dsn")
           if c.store == "postgresql" else "")
    store = open_store(c, Secrets(password="", token="", dsn=dsn), cfg.storage.state_dir, env)
    try:
        n = (write_csv if args.export == "csv" else write_jsonl)(
            sys.stdout, store.export(since, until))
    finally:
        store.close()
    log.info("exported %d calls", n)
    return 0
