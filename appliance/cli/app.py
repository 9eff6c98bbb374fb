"""Command line: ``appliance analyze`` and ``appliance config``.

Every failure a person can fix ends in one line on stderr (``appliance: error: ... [code]``)
and a non-zero exit; tracebacks only with ``--log-level debug``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.resources
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from appliance import __version__
from appliance.audio.filesource import FileSource
from appliance.audio.marks_file import load_marks
from appliance.cli.console import add_console_parser, run_console
from appliance.cli.doctor import add_doctor_parser, run_doctor
from appliance.cli.models import add_models_parser, run_models
from appliance.cli.run import add_run_parsers, main_hook
from appliance.cli.service import add_service_parsers, run_service
from appliance.cli.summaries import add_summaries_parser, run_summaries
from appliance.config import Config, defaults_toml, load_config
from appliance.engine.marks import Mark
from appliance.errors import ApplianceError
from appliance.service.logs import setup_logging
from appliance.sinks.output import JsonlWriter, TextWriter
from appliance.stream.blocks import PartyBlock
from appliance.stream.pipeline import analyse_blocks
from appliance.stream.session import CallSession

if TYPE_CHECKING:
    from appliance.asr.session import AsrSession
from appliance.engine.vad import SileroModel

log = logging.getLogger("appliance")

EXIT_USAGE = 2
EXIT_INTERNAL = 70


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="appliance", description="Offline call-etiquette coach.")
    p.add_argument("--version", action="version", version=f"appliance {__version__}")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                   help="stderr log level (default: warning; `run` uses [logging] level)")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("analyze", help="analyse a recorded call and print its cues",
                       description="Analyse a two-party call recording through the same "
                       "streaming path as live audio, and print the cues and a summary.")
    a.add_argument("call", nargs="?", type=Path, help="stereo WAV (agent and customer "
                   "channels); - reads it from standard input (a pipe streams)")
    a.add_argument("--demo", action="store_true", help="analyse the bundled demo call")
    a.add_argument("--agent-channel", type=int, default=0, help="channel of the agent (0)")
    a.add_argument("--customer-channel", type=int, default=1, help="channel of the customer (1)")
    a.add_argument("--agent", type=Path, help="mono WAV of the agent (with --customer)")
    a.add_argument("--customer", type=Path, help="mono WAV of the customer (with --agent)")
    a.add_argument("--marks", type=Path, help="JSONL hold marks: {\"t\": 40.0, \"event\": ...}")
    a.add_argument("--lang", help="call language (en, de, fr, ...); default from the config")
    a.add_argument("--config", type=Path, help="TOML configuration file")
    a.add_argument("--format", choices=["text", "jsonl"], default="text", help="output format")
    a.add_argument("--models-dir", type=Path,
                   help="speech models folder (default: config, $APPLIANCE_MODELS_DIR, models/)")
    a.add_argument("--no-asr", action="store_true",
                   help="acoustic cues only, even if a speech model is installed")
    a.add_argument("--transcript", action="store_true",
                   help="add a transcript event per recognised utterance (digit runs masked)")

    c = sub.add_parser("config", help="check a configuration file or print the defaults")
    csub = c.add_subparsers(dest="config_command", required=True)
    chk = csub.add_parser("check", help="validate a TOML configuration file")
    chk.add_argument("file", type=Path)
    csub.add_parser("defaults", help="print the full default configuration")
    add_models_parser(sub)
    add_run_parsers(sub)
    add_service_parsers(sub)
    add_doctor_parser(sub)
    add_summaries_parser(sub)
    add_console_parser(sub)
    return p


def _demo_paths() -> tuple[Path, Path]:
    base = importlib.resources.files("appliance") / "demo"
    return Path(str(base / "demo_call.wav")), Path(str(base / "demo_marks.jsonl"))


class _Progress:
    """A one-line progress indication on stderr, only when stderr is a terminal."""

    def __init__(self, total_s: float, stream: TextIO) -> None:
        self.total_s = total_s
        """0 when the length is not known in advance (a stream): seconds, no percentage."""
        self.stream = stream
        self.enabled = stream.isatty()
        self._next = 0.0

    def wrap(self, blocks: Iterator[PartyBlock]) -> Iterator[PartyBlock]:
        for b in blocks:
            self.update(b.t_s)
            yield b
        self.done()

    def update(self, t_s: float) -> None:
        now = time.monotonic()
        if not self.enabled or now < self._next:
            return
        self._next = now + 0.25
        if self.total_s > 0:
            pct = min(100.0, 100.0 * t_s / self.total_s)
            self.stream.write(f"\ranalysing {pct:5.1f}%  ({t_s:.0f} of {self.total_s:.0f} s)")
        else:
            self.stream.write(f"\ranalysing {t_s:.0f} s of the stream")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 50 + "\r")
            self.stream.flush()


def _analyze(args: argparse.Namespace) -> int:
    cfg: Config = load_config(args.config)
    lang = args.lang or cfg.language
    from appliance.asr.session import check_language

    check_language(lang, args.models_dir, cfg.asr)
    marks_path = args.marks
    if args.demo:
        call, demo_marks = _demo_paths()
        source = FileSource(call)
        marks_path = marks_path or demo_marks
    elif args.agent or args.customer:
        if args.call or not (args.agent and args.customer):
            raise ApplianceError("usage", "give either CALL.wav, or both --agent and --customer")
        source = FileSource(agent_path=args.agent, customer_path=args.customer)
    elif args.call:
        source = FileSource(args.call, agent_channel=args.agent_channel,
                            customer_channel=args.customer_channel)
    else:
        raise ApplianceError("usage", "give a call recording (CALL.wav), --agent/--customer, "
                             "or --demo")
    marks: list[Mark] = load_marks(marks_path) if marks_path else []
    asr = None if args.no_asr or not cfg.asr.enabled else _asr_session(args, cfg, lang)
    writer = JsonlWriter(sys.stdout) if args.format == "jsonl" else TextWriter(sys.stdout)
    session = CallSession(cfg, SileroModel(), writer.event, call_id=_call_id(args), lang=lang,
                          marks=marks, asr=asr,
                          transcripts=args.transcript or cfg.words.transcript, source="file")
    progress = _Progress(source.duration_s, sys.stderr)
    _, error = asyncio.run(analyse_blocks(progress.wrap(source.blocks()), session))
    progress.done()
    if error is not None:
        raise error
    return 0


def _call_id(args: argparse.Namespace) -> str:
    """A file's call is named after the file (``-``: stdin)."""
    path = "demo_call" if args.demo else (args.call or args.agent)
    name = Path(str(path)).stem
    return "stdin" if str(path) == "-" else (name or "call")


def _asr_session(args: argparse.Namespace, cfg: Config, lang: str) -> AsrSession | None:
    """The call's recognizer, or None (with one clear line) when no model is installed."""
    from appliance.asr.session import AsrSession, load_call_model
    from appliance.asr.worker import vosk_recognizer_factory

    model = load_call_model(lang, args.models_dir, cfg.asr)
    if model is None:
        return None
    return AsrSession(vosk_recognizer_factory(model), cfg.asr, block_when_full=True)


def _config(args: argparse.Namespace) -> int:
    if args.config_command == "defaults":
        sys.stdout.write(defaults_toml() + "\n")
        return 0
    load_config(args.file)
    sys.stdout.write(f"{args.file}: ok\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level or "warning", "text")
    try:
        if args.command == "analyze":
            return _analyze(args)
        if args.command == "config":
            return _config(args)
        if args.command == "models":
            return run_models(args)
        for hook in (main_hook, run_service, run_doctor, run_summaries, run_console):
            code = hook(args)
            if code is not None:
                return code
    except ApplianceError as exc:
        sys.stderr.write(f"appliance: error: {exc.message} [{exc.code}]\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: one line unless debugging
        if log.isEnabledFor(logging.DEBUG):
            log.exception("internal error")
        sys.stderr.write(f"appliance: internal error: {type(exc).__name__}: {exc} "
                         "(run with --log-level debug for details)\n")
        return EXIT_INTERNAL
    return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
