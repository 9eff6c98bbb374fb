"""Installing and removing speech models: from the official catalog by name (a download,
only when IT asks for it), from a URL, or from a ``.zip``/folder copied to the box; each
unpacked safely (no path escapes, no links), checked, given its manifest and moved into
``models/`` in one step.  Reading and loading installed models: :mod:`appliance.asr.models`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from datetime import UTC, datetime
from http.client import HTTPException
from pathlib import Path

import appliance
from appliance.asr.catalog import CatalogEntry, catalog_entry
from appliance.asr.models import (
    _LANG,
    DOWNLOAD_TIMEOUT_S,
    MANIFEST,
    InstalledModel,
    Progress,
    _check_name,
    _sample_rate_hz,
    _sha256,
    _walk_files,
    get_model,
    lang_from_name,
    read_model,
)
from appliance.errors import (
    MODEL_DOWNLOAD_FAILED,
    MODEL_EXISTS,
    MODEL_INSTALL_FAILED,
    MODEL_INVALID,
    MODEL_LANG_UNKNOWN,
    MODEL_SOURCE_NOT_FOUND,
    ApplianceError,
    shown,
)

log = logging.getLogger("appliance.asr.models")

# ---------------------------------------------------------------- installing and removing


def _is_vosk_dir(d: Path) -> bool:
    return (d / "am" / "final.mdl").is_file() and (d / "conf").is_dir()


def _model_root(d: Path, what: str) -> Path:
    """``d`` itself or its single top-level folder (Vosk zips unpack to ``<name>/``)."""
    if _is_vosk_dir(d):
        return d
    entries = [e for e in d.iterdir() if not e.name.startswith(".") and e.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir() and _is_vosk_dir(entries[0]):
        return entries[0]
    raise ApplianceError(MODEL_INVALID, f"{what} is not a Vosk model: am/final.mdl and conf/ "
                         "are neither in it nor in its single top-level folder")


def _check_member(info: zipfile.ZipInfo, dest: Path, what: str) -> None:
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    unsafe = name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) or ".." in parts
    if unsafe or not (dest / name).resolve().is_relative_to(dest.resolve()):
        raise ApplianceError(MODEL_INVALID, f"{what} contains an unsafe path {name!r} "
                             "(absolute or with '..'): refused, nothing was installed")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise ApplianceError(MODEL_INVALID, f"{what} contains a symbolic link {name!r}: "
                             "refused, nothing was installed")


def _extract_zip(zpath: Path, dest: Path, what: str) -> None:
    """Unpack ``zpath`` into ``dest`` after checking every member (no zip-slip, no links)."""
    try:
        with zipfile.ZipFile(zpath) as zf:
            infos = zf.infolist()
            for info in infos:
                _check_member(info, dest, what)
            need = sum(i.file_size for i in infos)
            free = shutil.disk_usage(dest.parent).free
            if need > free:
                raise ApplianceError(MODEL_INSTALL_FAILED, f"not enough disk space for {what}: "
                                     f"{need / 1e6:.0f} MB needed, {free / 1e6:.0f} MB free")
            for info in infos:
                zf.extract(info, dest)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ApplianceError(MODEL_INVALID, f"{what} is not a zip file or is damaged ({exc}): "
                             "copy it again") from exc


def _download(url: str, dest: Path, progress: Progress | None) -> None:
    """Fetch ``url`` into ``dest`` (explicit IT action only: ``appliance models install``)."""
    host = urllib.parse.urlsplit(url).hostname or url
    offline = "at an offline site copy the .zip to the box and install from the file"
    agent = f"appliance/{appliance.__version__}"
    request = urllib.request.Request(url, headers={"User-Agent": agent})
    log.info("downloading %s", url)
    done, total = 0, None
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as resp, \
                dest.open("wb") as out:
            length = resp.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
            while chunk := resp.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    except urllib.error.HTTPError as exc:
        raise ApplianceError(MODEL_DOWNLOAD_FAILED, f"download of {url} failed: HTTP {exc.code} "
                             f"{exc.reason} — {offline}") from exc
    except urllib.error.URLError as exc:
        raise ApplianceError(MODEL_DOWNLOAD_FAILED,
                             f"cannot reach {host} ({exc.reason}) — {offline}") from exc
    except (TimeoutError, ConnectionError, HTTPException) as exc:
        raise ApplianceError(MODEL_DOWNLOAD_FAILED, f"download from {host} broke off after "
                             f"{done} bytes ({exc or type(exc).__name__}) — {offline}") from exc
    if total is not None and done != total:
        raise ApplianceError(MODEL_DOWNLOAD_FAILED, f"download of {url} was cut short "
                             f"({done} of {total} bytes) — {offline}")
    log.info("downloaded %d bytes from %s", done, host)


def _write_manifest(root: Path, name: str, lang: str, source: str) -> None:
    files: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for rel in _walk_files(root):
        files[rel] = _sha256(root / rel)
        sizes[rel] = (root / rel).stat().st_size
    manifest = {
        "name": name, "lang": lang, "sample_rate_hz": _sample_rate_hz(root),
        "installed_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "source": source, "files": files, "file_sizes_bytes": sizes,
        "size_bytes": sum(sizes.values()),
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _exists(name: str, models_dir: Path) -> ApplianceError:
    return ApplianceError(MODEL_EXISTS, f"a model named {name} is already installed in "
                          f"{models_dir}: add --force to replace it, or give another --name")


def _move_into_place(root: Path, target: Path, force: bool) -> None:
    if not (target.exists() or target.is_symlink()):
        os.rename(root, target)
        return
    if not force:
        raise _exists(target.name, target.parent)
    trash = Path(tempfile.mkdtemp(prefix=".remove-", dir=target.parent))
    os.rename(target, trash / target.name)
    try:
        os.rename(root, target)
    except OSError:
        os.rename(trash / target.name, target)
        raise
    finally:
        shutil.rmtree(trash, ignore_errors=True)


def install_model(source: str | Path, models_dir: Path, *, lang: str | None = None,
                  name: str | None = None, force: bool = False,
                  progress: Progress | None = None) -> InstalledModel:
    """Install a Vosk model from a directory, a ``.zip``, an http(s) URL or a catalog name.

    The language is ``lang``, else the catalog's, else :func:`lang_from_name`; MODEL_EXISTS
    unless ``force`` when ``name`` is taken.  Nothing is left behind on failure."""
    src = str(source)
    path = Path(src).expanduser()
    entry: CatalogEntry | None = None
    if lang is not None and not _LANG.fullmatch(lang):
        raise ApplianceError(MODEL_LANG_UNKNOWN, f"--lang {shown(lang)}: give a language code "
                             "like en, de, fr")
    if src.startswith(("http://", "https://")):
        url: str | None = src
    elif path.exists():
        url, src = None, str(path.absolute())
    elif (entry := catalog_entry(src)) is not None and not src.endswith(".zip"):
        url = entry.url
    else:
        entry = catalog_entry(path.name)
        hint = (f"; to download it instead: `appliance models install {entry.name}`"
                if entry else "")
        raise ApplianceError(MODEL_SOURCE_NOT_FOUND, f"no such file or directory: {src} (give "
                             f"a model directory, a .zip, an http(s) URL or a catalog name){hint}")
    name = name or (entry.name if entry and url else None)
    if name is not None:
        _check_name(name)
        if not force and (models_dir / name).exists():
            raise _exists(name, models_dir)
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".install-", dir=models_dir))
    except OSError as exc:
        raise ApplianceError(MODEL_INSTALL_FAILED, f"cannot write to the models directory "
                             f"{models_dir}: {exc.strerror or exc}") from exc
    try:
        unpacked = tmp / "unpacked"
        if url is not None:
            zpath = tmp / "download.zip"
            _download(url, zpath, progress)
            stem = Path(urllib.parse.urlsplit(url).path).name.removesuffix(".zip")
            _extract_zip(zpath, unpacked, url)
            zpath.unlink()
        elif path.is_dir():
            stem = path.absolute().name
            root = _model_root(path, src)
            log.info("copying %s", root)
            shutil.copytree(root, unpacked / root.name if root != path else unpacked)
        else:
            stem = path.name.removesuffix(".zip")
            _extract_zip(path, unpacked, src)
        root = _model_root(unpacked, src)
        name = name or (root.name if root != unpacked else stem)
        _check_name(name)
        lang = lang or lang_from_name(name)
        if lang is None:
            raise ApplianceError(MODEL_LANG_UNKNOWN, f"cannot tell the language of model "
                                 f"{name}: give it with --lang (e.g. --lang de)")
        log.info("hashing the files of %s", name)
        _write_manifest(root, name, lang, src if url is None else url)
        _move_into_place(root, models_dir / name, force)
    except OSError as exc:
        raise ApplianceError(MODEL_INSTALL_FAILED, f"installing {src} into {models_dir} "
                             f"failed: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("installed %s (%s) in %s", name, lang, models_dir)
    return read_model(models_dir / name)


def remove_model(name: str, models_dir: Path) -> None:
    """Delete the installed model ``name`` (renamed away first, so never half there)."""
    model = get_model(name, models_dir)
    try:
        trash = Path(tempfile.mkdtemp(prefix=".remove-", dir=models_dir))
        os.rename(model.path, trash / name)
        shutil.rmtree(trash)
    except OSError as exc:
        raise ApplianceError(MODEL_INSTALL_FAILED, f"cannot remove {model.path}: "
                             f"{exc.strerror or exc}") from exc
    log.info("removed %s from %s", name, models_dir)
