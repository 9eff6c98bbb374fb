"""``appliance run`` (live at the desk, or as the systemd service) and ``appliance devices``.

Under systemd (``Type=notify``) the process says READY once audio flows and the speech
model (if any) is loaded (or, degraded, after ``NO_AUDIO_READY_S`` without audio), pings the
watchdog from the analysis loop, keeps a one-line STATUS, and says STOPPING while it saves
the call in progress.  SIGHUP re-reads the config file: a valid one applies from the next
call (see :mod:`appliance.service.reload`), an invalid one is refused with its error in the log and
the STATUS line, and the box keeps running as it was.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.audio.marks_file import load_marks
from appliance.audio.replay import ReplaySource
from appliance.config import Config, load_config
from appliance.config_env import default_config_path, overrides_in_effect
from appliance.engine.vad import SileroModel
from appliance.errors import ApplianceError
from appliance.service.logs import set_level, setup_logging
from appliance.service.notify import Notifier
from appliance.service.reload import restart_needed
from appliance.sinks.archive import CallArchive
from appliance.sinks.call_numbers import CallNumbers
from appliance.sinks.fleet.sink import FleetSink, open_fleet
from appliance.stream.live import LiveRunner, LiveSource

log = logging.getLogger(__name__)

STATUS_EVERY_S = 10.0
NO_AUDIO_READY_S = 90.0
"""Without audio this long after start the service says READY anyway, degraded (below the
unit's TimeoutStartSec=120): the dashboard stays up showing "No audio" and capture keeps
retrying, instead of systemd restarting the whole box every two minutes while the headset
is unplugged."""


def add_run_parsers(sub: Any) -> None:
    r = sub.add_parser("run", help="live coaching: capture the headset, serve the dashboard",
                       description="Capture the agent and customer audio live, analyse it, "
                       "and serve the agent's dashboard (default http://127.0.0.1:8765).  "
                       "SIGHUP reloads the config file.")
    r.add_argument("--config", type=Path, help="TOML configuration file (default: "
                   "$APPLIANCE_CONFIG, else /etc/appliance/appliance.toml if present)")
    r.add_argument("--lang", help="call language (default from the config)")
    r.add_argument("--models-dir", type=Path, help="speech models folder")
    r.add_argument("--no-asr", action="store_true", help="acoustic cues only")
    r.add_argument("--host", help="dashboard address (overrides [dashboard] host)")
    r.add_argument("--port", type=int,
                   help="dashboard port (overrides [dashboard] port; 0 = any free port)")
    r.add_argument("--replay", type=Path, metavar="CALL.wav",
                   help="replay a recording at real-time pace instead of capturing")
    r.add_argument("--speed", type=float, default=1.0, help="replay speed (1 = real time)")
    r.add_argument("--marks", type=Path, metavar="M.jsonl",
                   help="hold marks of the replayed recording (as for analyze)")
    r.add_argument("--loop", action="store_true", help="replay the recording again and again, "
                   "each pass a new call (default: stop when it ends)")
    r.add_argument("--tap", action="store_true", help="serve the PBX tap (as [tap] enabled): "
                   "analyse the calls the PBX streams instead of capturing a headset")
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
        if not (math.isfinite(args.speed) and 0 < args.speed <= 1000):
            raise ApplianceError("usage", f"--speed {args.speed:g}: give a factor above 0 and "
                                 "at most 1000")
        return ReplaySource(args.replay, speed=args.speed, block_s=cfg.audio.block_s,
                            at_end="loop" if args.loop else "stop")
    if args.marks is not None or args.loop:
        raise ApplianceError("usage", "--marks and --loop go with --replay")
    from appliance.audio.capture import CaptureSource

    return CaptureSource(cfg.audio)


class Service:
    """The running box: runner, dashboard, notifier, archive, and the reload path."""

    def __init__(self, args: argparse.Namespace, cfg: Config, config_path: Path | None,
                 runner: LiveRunner, notifier: Notifier, archive: CallArchive) -> None:
        self.args = args
        self.cfg = cfg
        self.config_path = config_path
        self.runner = runner
        self.notifier = notifier
        self.archive = archive
        self.host = args.host or cfg.dashboard.host
        self.port = cfg.dashboard.port if args.port is None else args.port
        self.url = ""
        self.reloads = 0
        self.reload_error = ""
        self.no_audio_ready_s = NO_AUDIO_READY_S
        self.clock: Callable[[], float] = time.monotonic
        """Seconds, monotonic: the READY deadline's clock (a test injects its own, with the
        event loop's for the polls)."""
        self.started_s = self.clock()
        """When the process started (the READY deadline counts the model load too)."""
        self.stopping = False
        self.fleet: FleetSink | None = None if not cfg.fleet.enabled else open_fleet(
            cfg.fleet, archive.state_dir, os.environ, figures=self._fleet_figures,
            version=__version__)
        """The site's MQTT broker (``[fleet]``), None when off."""
        if self.fleet is not None:
            runner.subscribe(self.fleet)  # from the first call's start

    def health(self) -> dict[str, Any]:
        """The runner's health (``/healthz``) with the ``fleet`` section: a publisher
        that stopped inside the box is unhealthy; a broker away or refusing is reported
        (``fleet.last_error``) while coaching goes on."""
        h = self.runner.health()
        if self.fleet is None:
            return h
        fleet = self.fleet.health()
        h["fleet"] = fleet
        if not fleet["ok"]:
            h["healthy"] = False
            h["problems"] = [*h["problems"], "fleet.stopped"]
        return h

    def _fleet_figures(self) -> dict[str, Any]:
        h = self.runner.health()
        storage = h["storage"] or {}
        return {"healthy": h["healthy"], "problems": h["problems"],
                "calls_open": 0 if h["call"] is None else 1,
                "drops": {"queue_drops": h["queue_drops"],
                          "input_overflows": h["input_overflows"],
                          "asr_dropped_blocks": h["asr_dropped_blocks"],
                          "storage_dropped": storage.get("dropped", 0)}}

    def reload(self) -> bool:
        """SIGHUP: re-read and validate the config file; True when it was taken.  Whatever
        happens, READY=1 follows RELOADING=1 (systemd would otherwise wait in "reloading")."""
        self.notifier.reloading()
        try:
            return self._reload()
        except Exception as exc:  # a bug must not leave the unit "reloading" or kill the box
            log.error("config reload failed: %s; running on with the previous configuration",
                      type(exc).__name__)
            self.notifier.ready("Reload failed; running with the previous configuration")
            return False

    def _reload(self) -> bool:
        try:
            new = load_config(self.config_path, os.environ)
        except ApplianceError as exc:
            self.reload_error = exc.code
            log.error("config reload refused, running on with the previous configuration: %s",
                      exc)
            self.notifier.ready(f"Reload refused ({exc.code}); running with the previous "
                                "configuration")
            return False
        pending = restart_needed(self.cfg, new)
        if pending:
            log.warning("reload: these settings apply only after a restart "
                        "(systemctl restart appliance): %s", ", ".join(pending))
        if self.args.log_level is None:
            set_level(new.logging.level)
        self.archive.update(new.storage)
        self.runner.reload(new)
        self.cfg = new
        self.reloads += 1
        self.reload_error = ""
        log.info("configuration reloaded; cue settings apply from the next call",
                 extra={"fields": {"reloads": self.reloads}})
        self.notifier.ready(self.status_line())
        return True

    def status_line(self) -> str:
        return "; ".join([*self._trouble(), self._activity()])

    def _trouble(self) -> list[str]:
        """What has stopped inside the box, first on the STATUS line (``systemctl status``)."""
        h = self.runner.health()
        out = []
        if h["analysis_stalled"]:
            out.append(f"ANALYSIS STALLED ({h['analysis_age_s']:.0f} s)")
        st = h["storage"]
        if st is not None and not st["ok"]:
            why = f": {st['last_error']}" if st["last_error"] else ""
            out.append(f"STORAGE {st['state'].upper()}{why} (summaries not kept)")
        fleet = self.fleet.health() if self.fleet is not None else None
        if fleet is not None and fleet["last_error"]:
            out.append(f"FLEET {fleet['state'].upper()}: {fleet['last_error']} "
                       f"({fleet['pending']} messages waiting)")
        return out

    def _activity(self) -> str:
        r = self.runner
        if not r.source.flowing:
            where = self.args.replay or self.cfg.audio.device or self.cfg.audio.agent_device \
                or "the default input"
            return f"Waiting for audio from {where}"
        mins, secs = divmod(int(r.engine.t_s), 60)
        model = r.lang if r.asr is not None else "none (acoustic cues only)"
        doing = ("Between calls, waiting for the line" if r.idle
                 else f"Coaching {r.engine.call_id} {mins:02d}:{secs:02d}")
        parts = [doing, f"speech model {model}", f"{sum(r.cue_counts.values())} cues"]
        if r.queue.dropped:
            parts.append(f"{r.queue.dropped} blocks dropped")
        if self.url:
            parts.append(f"dashboard {self.url}")
        return "; ".join(parts)

    async def _readiness(self) -> None:
        """READY once audio flows; then a STATUS line every few seconds."""
        self.notifier.status(self.status_line())
        give_up = self.started_s + self.no_audio_ready_s  # from process start (model load)
        while True:  # the sources have no "flowing" event; this is a cheap poll
            if self.runner.source.flowing:
                self.notifier.ready(self.status_line())
                log.info("ready: audio flowing",
                         extra={"fields": {"call": self.runner.engine.call_id}})
                break
            if self.clock() >= give_up:
                self.notifier.ready("Degraded: " + self.status_line()
                                    + " (check the headset; appliance doctor)")
                log.error("no audio %.0f s after start: running degraded until it arrives "
                          "(check the headset and [audio] wiring; appliance doctor)",
                          self.no_audio_ready_s)
                break
            await asyncio.sleep(0.1)
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            self.notifier.status(self.status_line())

    async def serve(self) -> None:
        server = None
        if self.cfg.dashboard.enabled:
            from appliance.sinks.dashboard.server import DashboardServer
            from appliance.sinks.metrics import RunnerCollector

            collectors: list[Any] = [RunnerCollector(self.runner)]
            if self.fleet is not None:
                from appliance.sinks.fleet.collector import FleetCollector

                collectors.append(FleetCollector(self.fleet.health))
            server = DashboardServer(self.host, self.port, token=self.cfg.dashboard.token,
                                     on_hold=self.runner.hold_key,
                                     on_end_call=self.runner.end_call,
                                     health=self.health, collectors=collectors)
            await server.start()
            self.runner.publish = server.publish
            self.url = f"http://{self.host}:{server.port}/"
            log.warning("dashboard on %s", self.url)
        loop = asyncio.get_running_loop()
        if self.fleet is not None:
            await self.fleet.start()
        task = asyncio.create_task(self.runner.run())
        ready = asyncio.create_task(self._readiness())
        def stop() -> None:  # the first SIGTERM/SIGINT only: a second one must not cut
            if self.stopping:  # short the saving of the call in progress
                log.warning("already stopping: saving the call in progress")
                return
            self.stopping = True
            self.notifier.stopping("Stopping: saving the call in progress")
            log.warning("stopping")
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop)
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        try:
            await task
        except asyncio.CancelledError:
            pass
        finally:
            ready.cancel()
            if not self.stopping:
                self.notifier.stopping("Stopping")
            if self.fleet is not None:  # after the call in progress ended with its summary
                await self.fleet.stop()
            if server is not None:
                await server.stop()


def run_live(args: argparse.Namespace) -> int:
    started_s = time.monotonic()
    env = os.environ
    config_path = args.config or default_config_path(env)
    cfg = load_config(config_path, env)
    setup_logging(args.log_level or cfg.logging.level, cfg.logging.format)
    log.info("appliance %s starting", __version__, extra={"fields": {
        "config": str(config_path) if config_path else "defaults",
        "env_overrides": ",".join(overrides_in_effect(env)) or "none"}})
    notifier = Notifier.from_env(env)
    if args.tap or cfg.tap.enabled:
        return run_tap(args, cfg, config_path, notifier)
    lang = args.lang or cfg.language
    from appliance.asr.session import check_language

    check_language(lang, args.models_dir, cfg.asr)
    notifier.status(f"Loading the speech model ({lang})")
    source = _make_source(args, cfg)
    archive = CallArchive(cfg.storage, env)
    marks = load_marks(args.marks) if args.marks is not None else []
    archive.start()
    runner = LiveRunner(cfg, source, SileroModel(), lang=lang,
                        make_asr=_make_asr_factory(args, cfg, lang), archive=archive,
                        ticker=notifier, marks=marks,
                        source_name="replay" if args.replay is not None else "headset",
                        call_numbers=CallNumbers(archive.state_dir).next)
    service = Service(args, cfg, config_path, runner, notifier, archive)
    service.started_s = started_s
    try:
        asyncio.run(service.serve())
    finally:
        archive.close()
        notifier.close()
    return 0


def run_tap(args: argparse.Namespace, cfg: Config, config_path: Path | None,
            notifier: Notifier) -> int:
    """The box at the PBX (:mod:`appliance.service.tap_service`)."""
    from appliance.service.tap_service import TapService

    if args.replay is not None or args.marks is not None or args.loop:
        raise ApplianceError("usage", "--replay, --marks and --loop are for the desk; the PBX "
                             "tap takes its calls from the PBX")
    from dataclasses import replace

    if args.no_asr and cfg.asr.enabled:
        cfg = replace(cfg, asr=replace(cfg.asr, enabled=False))
    if args.lang:  # the calls' default language (a route's or the control API's wins)
        cfg = replace(cfg, language=args.lang)
    archive = CallArchive(cfg.storage, os.environ)
    archive.start()
    service = TapService(cfg, notifier=notifier, archive=archive, host=args.host,
                         port=args.port, models_dir=args.models_dir, config_path=config_path)
    try:
        asyncio.run(service.serve())
    finally:
        archive.close()
        notifier.close()
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
