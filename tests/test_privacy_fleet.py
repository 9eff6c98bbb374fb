"""Offline by construction, with ``[fleet]`` on: the running service, traced with
``strace -f`` (native code and children included), reaches beyond loopback only to the
site's broker, and writes nothing but its summary store, call number and fleet outbox.

The broker is a real Mosquitto (tests/mqttbroker.py) bound to this machine's own address
beyond loopback when it has one, so the box's connection to it is a non-loopback connect
the trace must see, and the only one.  Unlike tests/test_privacy.py's traced service this
one runs in the machine's network namespace (it must reach that address): a violation
could really leave, which is why the trace, not a sealed namespace, is the proof here; the
harness's ability to see native connects and writes is proven there
(``test_strace_view_catches_native_connects_and_writes``).  A console subscriber counts
what the broker delivered: without messages the proof would be empty.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import mqttbroker
from tests.netguard import (
    Trace,
    TraceNet,
    changed,
    is_loopback_host,
    parse_strace,
    snapshot,
    strace_argv,
    strace_unavailable,
)
from tests.test_fleet_service import BOX_PASSWORD, RawConsole, outbox_rows, write_config
from tests.test_privacy import (
    DEMO,
    KO,
    BoxDirs,
    TracedService,
    _drive_dashboard,
    allowed_writes,
    ko_models_dir,  # noqa: F401  (the fixture, installed the way IT installs a model)
    subprocess_env,
)
from tests.waiting import until_sync

SERVICE_S = 18.0
"""As tests/test_privacy.py's traced service (long enough for a library's background
uploader), plus time for the fleet's flush at the stop."""
SPEED = 8.0
PROBES = ("192.0.2.1", "198.51.100.1", "10.255.255.255")
"""Where a UDP socket is pointed to learn the machine's primary address: ``connect`` on a
datagram socket only picks a route and a source address, it sends nothing."""


def primary_ipv4() -> str | None:
    """This machine's primary IPv4 address beyond loopback (None when it has none): the
    source address of the route to a documentation address, else ``hostname -I``'s first
    IPv4 address; only an address a socket can bind here is taken."""
    found: list[str] = []
    for probe in PROBES:
        with contextlib.suppress(OSError), \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((probe, 9))
            found.append(s.getsockname()[0])
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        p = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10)
        found += [a for a in p.stdout.split() if a.count(".") == 3]
    for addr in found:
        if is_loopback_host(addr) or addr.startswith("0."):
            continue
        try:
            with socket.socket() as s:
                s.bind((addr, 0))
        except OSError:
            continue
        return addr
    return None


def fleet_allowed_writes(dirs: BoxDirs) -> tuple[str, ...]:
    """:func:`tests.test_privacy.allowed_writes`, and with ``[fleet]`` on the outbox (the
    SQLite database in the state dir and its journal)."""
    return (*allowed_writes(dirs), str(dirs.state / "fleet-outbox.sqlite3*"))


_SOCKET = re.compile(r"^\d+\s+\w+\(\d+<socket:\[(\d+)\]>")


def _socket_of(n: TraceNet) -> str | None:
    """The socket's inode in a traced call (``strace -y``: ``13<socket:[3105766]>``)."""
    m = _SOCKET.match(n.line)
    return m.group(1) if m else None


def beyond_loopback(trace: Trace, broker: tuple[str, int]) -> tuple[list[TraceNet],
                                                                   list[TraceNet]]:
    """(calls to the broker, every other call beyond loopback).  To the broker counts the
    ``connect`` to its address and, on the same socket, paho's ``bind`` to the wildcard
    address and port 0 before it (``socket.create_connection``'s ``source_address``: the
    kernel's own choice of address and port, what a connect does unasked; no listening)."""
    connects = [n for n in trace.network if n.syscall == "connect" and (n.host, n.port) == broker]
    socks = {_socket_of(n) for n in connects} - {None}
    to_broker, others = [], []
    for n in trace.network:
        if n in connects or (n.syscall == "bind" and n.host in ("0.0.0.0", "::")
                             and n.port == 0 and _socket_of(n) in socks):
            to_broker.append(n)
        elif not n.allowed:
            others.append(n)
    return to_broker, others


@dataclass
class FleetTrace(TracedService):
    """The traced service's run, and what reached the broker."""

    broker: tuple[str, int]
    events: list[dict[str, Any]]
    messages: int


@pytest.fixture(scope="module")
def fleet_trace(tmp_path_factory: pytest.TempPathFactory,
                request: pytest.FixtureRequest) -> Iterator[FleetTrace]:
    reason = strace_unavailable()
    if reason is not None:
        pytest.skip(f"cannot trace: {reason}")
    if not mqttbroker.available():
        pytest.skip("mosquitto not installed (scripts/setup.sh)")
    base = tmp_path_factory.mktemp("fleet-service")
    host = primary_ipv4() or "127.0.0.1"
    broker = mqttbroker.MosquittoBroker(base / "broker",
                                        users={"box1": BOX_PASSWORD, "console": "pwc"},
                                        host=host)
    broker.start()
    console = None
    try:
        console = RawConsole(broker)
        models = request.getfixturevalue("ko_models_dir") if KO is not None else None
        dirs = BoxDirs.make(base)
        conf = write_config(base / "etc", broker, BOX_PASSWORD)
        port = mqttbroker.free_port()
        run = [sys.executable, "-m", "appliance", "run", "--config", str(conf), "--replay",
               str(DEMO), "--loop", "--speed", str(SPEED), "--host", "127.0.0.1", "--port",
               str(port)]
        run += ["--lang", "ko", "--models-dir", str(models)] if models else ["--no-asr"]
        trace = base / "trace.txt"
        stop = ["timeout", "--preserve-status", "-s", "TERM", "-k", "20", str(SERVICE_S)]
        spec: dict[str, Any] = {
            "argv": strace_argv(trace, [*stop, *run]), "cwd": str(dirs.cwd),
            "env": subprocess_env(dirs), "port": port, "client_s": SERVICE_S - 2.5,
            "service_s": SERVICE_S, "stderr": str(base / "service.err"),
            "out": str(base / "client.json")}
        before = snapshot(dirs.root)
        _drive_dashboard(spec)  # here, not in a namespace: the box must reach the broker
        after = snapshot(dirs.root)
        client = json.loads(Path(spec["out"]).read_text())
        # what the box published reached the broker and the console: at least the first
        # call, from its start to its end
        until_sync(lambda: any(e["type"] == "end" and e["call_id"] == "call-1"
                               for e in console.events()), "the first call's end")
        yield FleetTrace(client, trace.read_text(), Path(spec["stderr"]).read_text(), dirs,
                         before, after, asr=models is not None, broker=(host, broker.port),
                         events=console.events(), messages=len(console.messages()))
    finally:
        if console is not None:
            console.close()
        broker.stop()


def test_the_broker_is_told_from_any_other_address() -> None:
    """:func:`beyond_loopback` can fail: a wildcard bind on another socket, a connect to
    another address or port are the rest."""
    def line(call: str, fd: int, inode: int, host: str, port: int, res: str = "0") -> str:
        return (f"100 {call}({fd}<socket:[{inode}]>, {{sa_family=AF_INET, sin_port=htons("
                f"{port}), sin_addr=inet_addr(\"{host}\")}}, 16) = {res}")

    text = "\n".join([
        line("bind", 13, 1, "0.0.0.0", 0), line("connect", 13, 1, "192.0.2.2", 8883, "-1"),
        line("bind", 14, 2, "0.0.0.0", 0), line("connect", 15, 3, "192.0.2.2", 8884),
        line("connect", 16, 4, "192.0.2.9", 8883), line("connect", 17, 5, "127.0.0.1", 80)])
    to_broker, others = beyond_loopback(parse_strace(text, "/"), ("192.0.2.2", 8883))
    assert [(n.syscall, n.port) for n in to_broker] == [("bind", 0), ("connect", 8883)]
    assert [(n.syscall, n.host, n.port) for n in others] == [
        ("bind", "0.0.0.0", 0), ("connect", "192.0.2.2", 8884), ("connect", "192.0.2.9", 8883)]


def test_with_fleet_the_only_connection_beyond_loopback_is_the_broker(
        fleet_trace: FleetTrace) -> None:
    ft = fleet_trace
    host, port = ft.broker
    if is_loopback_host(host):
        pytest.skip("this machine has no IPv4 address beyond loopback (no route, nothing in "
                    "`hostname -I`): the broker listens on loopback, and the next test "
                    "checks that every connect stays there")
    trace = parse_strace(ft.trace_text, str(ft.dirs.cwd))
    to_broker, others = beyond_loopback(trace, (host, port))
    assert not others, (
        "the traced service reached beyond loopback elsewhere than the broker:\n"
        + "\n".join(map(str, others))
        + f"\nDNS queries sent: {sorted(set(trace.dns)) or 'none'}")
    beyond = [n for n in trace.network if not n.allowed]
    assert beyond == to_broker
    assert {(n.host, n.port) for n in beyond if n.syscall != "bind"} == {(host, port)}
    assert {n.syscall for n in beyond} <= {"connect", "bind"}  # no datagram out there
    assert not trace.dns
    print(f"fleet on: {len(beyond)} call(s) beyond loopback, all to the broker "
          f"{host}:{port}; {len(trace.network)} network calls traced; "
          f"{ft.messages} messages delivered to the console")


def test_with_fleet_every_other_connect_is_loopback_and_messages_arrived(
        fleet_trace: FleetTrace) -> None:
    ft = fleet_trace
    c = ft.client
    assert c.get("exit") == 0, f"service: {c.get('exit')}\n{ft.stderr}"
    assert {"interruption", "hold_started", "hold_ended"} <= set(c["cues"]), c["cues"]
    assert c["posts"] == [["/hold", 200], ["/hold", 200], ["/end", 200]]
    assert c["health"]["model_loaded"] is ft.asr
    fleet = c["health"]["fleet"]
    assert fleet["state"] == "connected" and fleet["acked"] >= 3, fleet
    trace = parse_strace(ft.trace_text, str(ft.dirs.cwd))
    to_broker, others = beyond_loopback(trace, ft.broker)
    assert any(n.syscall == "connect" for n in to_broker), "the trace missed the broker"
    assert not others, "beyond loopback:\n" + "\n".join(map(str, others))
    # the proof is not empty: the call went out, from its start to its end, once each
    first = [e for e in ft.events if e["call_id"] == "call-1"]
    kinds = [e["type"] for e in first]
    assert kinds[0] == "new" and kinds[-1] == "end" and kinds.count("end") == 1, kinds
    sent = Counter(e["cue"]["kind"] for e in first if e["type"] == "update")
    assert sent == Counter(first[-1]["summary"]["cues"])
    assert sent["interruption"] == 1 and sent["hold_started"] == 1
    assert ft.messages >= len(ft.events) >= 5


def test_with_fleet_the_service_writes_only_its_stores_and_outbox(
        fleet_trace: FleetTrace) -> None:
    ft = fleet_trace
    trace = parse_strace(ft.trace_text, str(ft.dirs.cwd))
    outbox = [w.path for w in trace.writes if w.path.endswith("fleet-outbox.sqlite3")]
    assert outbox, "the trace missed the outbox's writes"
    assert outbox_rows(ft.dirs.state) == 0  # everything was acknowledged
    allowed = fleet_allowed_writes(ft.dirs)
    writes = trace.writes_outside(allowed)
    assert not writes, "the running service wrote files:\n" + "\n".join(map(str, writes))
    # the outbox is allowed for this case only
    assert trace.writes_outside(allowed_writes(ft.dirs))
    new = changed(ft.before, ft.after, allowed)
    assert not new, "files changed in HOME / TMPDIR / cwd / XDG / state:\n" + "\n".join(new)
