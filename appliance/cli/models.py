"""``appliance models``: list, install, verify and remove speech models.

The models directory is ``--models-dir``, else ``[asr] models_dir`` of ``--config``, else
``$APPLIANCE_MODELS_DIR``, else ``models/`` of the project (see :mod:`appliance.asr.models`).
Results go to stdout; an :class:`~appliance.errors.ApplianceError` propagates to
:func:`appliance.cli.app.main`, which prints it as one line on stderr and exits non-zero.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from appliance.asr.catalog import CATALOG
from appliance.asr.model_install import install_model, remove_model
from appliance.asr.models import (
    InstalledModel,
    get_model,
    list_models,
    model_problems,
    resolve_models_dir,
)
from appliance.config import load_config
from appliance.errors import MODEL_CORRUPT, MODEL_MISSING, ApplianceError


def add_models_parser(subparsers: Any) -> None:
    """Add the ``models`` command and its subcommands to the top-level subparsers."""
    dir_help = ("models directory (default: [asr] models_dir of --config, then "
                "$APPLIANCE_MODELS_DIR, then models/ of the project)")
    config_help = "TOML configuration file (for [asr] models_dir)"
    # accepted before and after the subcommand; the subcommand's copy never hides the other
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models-dir", type=Path, default=argparse.SUPPRESS, help=dir_help)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=config_help)
    m = subparsers.add_parser(
        "models", help="list, install, verify or remove speech models",
        description="Manage the Vosk speech models on the box.  Nothing is downloaded unless "
        "you install from a URL or a catalog name.")
    m.add_argument("--models-dir", type=Path, default=None, help=dir_help)
    m.add_argument("--config", type=Path, default=None, help=config_help)
    msub = m.add_subparsers(dest="models_command", required=True)
    msub.add_parser("list", parents=[common], help="installed models (quick check, no hashing)")
    names = ", ".join(e.name for e in CATALOG)
    i = msub.add_parser(
        "install", parents=[common], help="install a model from a directory, .zip or URL",
        description="Install a Vosk model from a model directory, a .zip (the normal case at "
        "an offline site: copy it to the box first), an http(s) URL, or a catalog name "
        f"({names}), which downloads it from the official Vosk site.")
    i.add_argument("source", metavar="PATH_OR_URL",
                   help="model directory, .zip file, http(s) URL or catalog name")
    i.add_argument("--lang", help="language code (en, de, fr, ...); needed when the model's "
                   "name does not tell it")
    i.add_argument("--name", help="name of the installed model (default: the model's own)")
    i.add_argument("--force", action="store_true", help="replace a model of the same name")
    v = msub.add_parser("verify", parents=[common],
                        help="re-hash every file of a model (all models without NAME)")
    v.add_argument("name", nargs="?", help="model name (see `appliance models list`)")
    r = msub.add_parser("remove", parents=[common], help="delete an installed model")
    r.add_argument("name", help="model name (see `appliance models list`)")


def _size(n_bytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} B"


class _DownloadProgress:
    """``downloading 42% (19.0 of 45.2 MB)`` on stderr, only when stderr is a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self._next = 0.0

    def __call__(self, done_bytes: int, total_bytes: int | None) -> None:
        now = time.monotonic()
        if not self.enabled or now < self._next:
            return
        self._next = now + 0.25
        if total_bytes:
            pct = 100.0 * done_bytes / total_bytes
            text = f"downloading {pct:3.0f}% ({_size(done_bytes)} of {_size(total_bytes)})"
        else:
            text = f"downloading {_size(done_bytes)}"
        self.stream.write(f"\r{text:<50}")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled and self._next:
            self.stream.write("\r" + " " * 50 + "\r")
            self.stream.flush()


def _list(models_dir: Path, out: TextIO) -> int:
    models = list_models(models_dir)
    if not models:
        out.write(f"no models installed in {models_dir}\n"
                  "install one with `appliance models install vosk-model-small-de-0.15.zip "
                  "--lang de` (copy the .zip to the box first at an offline site)\n")
        return 0
    out.write(f"models in {models_dir}\n")
    width = max(len("NAME"), *(len(m.name) for m in models))
    out.write(f"{'NAME':<{width}}  LANG  RATE_HZ       SIZE  STATE\n")
    for m in models:
        problems = model_problems(m, "quick")
        state = "ok (quick check)" if not problems else f"DAMAGED: {problems[0]}"
        out.write(f"{m.name:<{width}}  {m.lang or '?':<4}  {m.sample_rate_hz:>7}  "
                  f"{_size(m.size_bytes):>9}  {state}\n")
    return 0


def _verify(models_dir: Path, name: str | None, out: TextIO) -> int:
    models = [get_model(name, models_dir)] if name else list_models(models_dir)
    if not models:
        raise ApplianceError(MODEL_MISSING, f"no models installed in {models_dir}: nothing "
                             "to verify")
    failed: list[tuple[InstalledModel, list[str]]] = []
    for m in models:
        problems = model_problems(m, "full")
        if problems:
            failed.append((m, problems))
            out.write("".join(f"{m.name}: FAILED: {p}\n" for p in problems))
        else:
            out.write(f"{m.name}: ok ({len(m.files)} files, {_size(m.size_bytes)}, "
                      "SHA-256 checked)\n")
    if not failed:
        return 0
    m, problems = failed[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    others = f"; {len(failed) - 1} more models failed" if len(failed) > 1 else ""
    again = f"{m.source or 'PATH_OR_URL'} --name {m.name} --lang {m.lang or 'xx'}"
    raise ApplianceError(MODEL_CORRUPT, f"model {m.name} failed verification: {problems[0]}"
                         f"{more}{others}; reinstall it with "
                         f"`appliance models install {again} --force`")


def run_models(args: argparse.Namespace) -> int:
    """Run ``appliance models ...``; returns the exit status."""
    config_dir = load_config(args.config).asr.models_dir if args.config else ""
    models_dir = resolve_models_dir(args.models_dir, config_dir)
    out = sys.stdout
    if args.models_command == "list":
        return _list(models_dir, out)
    if args.models_command == "verify":
        return _verify(models_dir, args.name, out)
    if args.models_command == "remove":
        remove_model(args.name, models_dir)
        out.write(f"removed {args.name} from {models_dir}\n")
        return 0
    progress = _DownloadProgress(sys.stderr)
    try:
        m = install_model(args.source, models_dir, lang=args.lang, name=args.name,
                          force=args.force, progress=progress)
    finally:
        progress.done()
    out.write(f"installed {m.name} ({m.lang}, {m.sample_rate_hz} Hz, {len(m.files)} files, "
              f"{_size(m.size_bytes)}) in {models_dir}\n")
    return 0
