"""``appliance run`` (live at the desk) and ``appliance devices``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Any

from appliance.config import Config, load_config
from appliance.live import LiveRunner, LiveSource, ReplaySource
from appliance.vad import SileroModel

log = logging.getLogger(__name__)


def add_run_parsers(sub: Any) -> None:
    r = sub.add_parser("run", help="live coaching: capture the headset, serve the dashboard",
                       description="Capture the agent and customer audio live, analyse it, "
                       "and serve the agent's dashboard (default http://127.0.0.1:8765).")
    r.add_argument("--config", type=Path, help="TOML configuration file")
    r.add_argument("--lang", help="call language (default from the config)")
    r.add_argument("--models-dir", type=Path, help="speech models folder")
    r.add_argument("--no-asr", action="store_true", help="acoustic cues only")
    r.add_argument("--host", help="dashboard address (overrides [dashboard] host)")
    r.add_argument("--port", type=int, help="dashboard port (overrides [dashboard] port)")
    r.add_argument("--replay", type=Path, metavar="CALL.wav",
                   help="replay a recording at real-time pace instead of capturing")
    r.add_argument("--speed", type=float, default=1.0, help="replay speed (1 = real time)")
    sub.add_parser("devices", help="list audio inputs (index, channels, default rate, name)")


def _make_asr_factory(args: argparse.Namespace, cfg: Config, lang: str) -> Any:
    if args.no_asr or not cfg.asr.enabled:
        return None
    from appliance.asr.session import AsrSession, load_call_model
    from appliance.asr.worker import vosk_recognizer_factory

    model = load_call_model(lang, args.models_dir, cfg.asr)
    if model is None:
        return None
    make = vosk_recognizer_factory(model)
    return lambda: AsrSession(make, cfg.asr, block_when_full=False)


def _make_source(args: argparse.Namespace, cfg: Config) -> LiveSource:
    if args.replay is not None:
        return ReplaySource(args.replay, speed=args.speed, block_s=cfg.audio.block_s)
    from appliance.audio.capture import CaptureSource

    return CaptureSource(cfg.audio)


async def _serve(runner: LiveRunner, cfg: Config, host: str, port: int) -> None:
    server = None
    if cfg.dashboard.enabled:
        from appliance.dashboard.server import DashboardServer

        server = DashboardServer(host, port, token=cfg.dashboard.token,
                                 on_hold=runner.hold_key, on_end_call=runner.end_call,
                                 health=runner.health, metrics=runner.metrics)
        await server.start()
        runner.publish = server.publish
        log.warning("dashboard on http://%s:%d/", host, server.port)
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(runner.run())
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        log.warning("stopping")
    finally:
        if server is not None:
            await server.stop()


def run_live(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    lang = args.lang or cfg.language
    host = args.host or cfg.dashboard.host
    port = args.port or cfg.dashboard.port
    source = _make_source(args, cfg)
    runner = LiveRunner(cfg, source, SileroModel(), lang=lang,
                        make_asr=_make_asr_factory(args, cfg, lang))
    asyncio.run(_serve(runner, cfg, host, port))
    return 0


def run_devices() -> int:
    from appliance.audio.capture import devices_command

    return int(devices_command())


def main_hook(args: argparse.Namespace) -> int | None:
    """Dispatch for cli.main: the exit code, or None when the command is not ours."""
    if args.command == "run":
        return run_live(args)
    if args.command == "devices":
        return run_devices()
    return None

