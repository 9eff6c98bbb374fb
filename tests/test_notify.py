"""The sd_notify protocol against real Unix datagram sockets: exact datagrams, watchdog
pacing from WATCHDOG_USEC, WATCHDOG_PID, a vanished socket, and a child process that finds
NOTIFY_SOCKET in its environment."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.service.notify import MAX_STATUS_CHARS, Notifier, WatchdogPacer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound to a path in tmp_path, and its NOTIFY_SOCKET value."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2.0)
    yield sock, str(path)
    sock.close()


def _recv(sock: socket.socket) -> bytes:
    return sock.recv(8192)


def _nothing_more(sock: socket.socket) -> None:
    sock.settimeout(0.1)
    with pytest.raises(TimeoutError):
        sock.recv(8192)
    sock.settimeout(2.0)


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_ready_is_one_datagram_with_status_and_mainpid(listener) -> None:
    sock, addr = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": addr})
    assert n.enabled and n.watchdog_interval_s is None and n.ping_every_s is None
    assert n.ready("Coaching call-1; speech model en") is True
    assert _recv(sock) == (b"READY=1\nSTATUS=Coaching call-1; speech model en\n"
                           b"MAINPID=%d" % os.getpid())
    _nothing_more(sock)
    assert (n.sent, n.send_errors) == (1, 0)
    n.close()


def test_abstract_socket_name_with_at_sign() -> None:
    name = f"appliance-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        n = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert n.enabled
        n.ready("up")
        assert _recv(sock) == b"READY=1\nSTATUS=up\nMAINPID=%d" % os.getpid()
        n.status("still up")
        assert _recv(sock) == b"STATUS=still up"
        n.close()
    finally:
        sock.close()


def test_watchdog_pings_every_half_period_from_ticks(listener) -> None:
    sock, addr = listener
    clock = FakeClock()
    n = Notifier.from_env({"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "2000000"}, clock=clock)
    assert n.watchdog_interval_s == 2.0 and n.ping_every_s == 1.0
    pings = []
    for t in (0.0, 0.3, 0.99, 1.0, 1.5, 1.99, 2.2, 2.5, 3.19, 3.2):
        clock.t = 100.0 + t
        before = n.sent
        n.tick()
        if n.sent > before:
            pings.append(t)
            assert _recv(sock) == b"WATCHDOG=1"
    assert pings == [0.0, 1.0, 2.2, 3.2]
    _nothing_more(sock)


def test_watchdog_pid_of_another_process_disables_the_watchdog(listener) -> None:
    sock, addr = listener
    env = {"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "1000000"}
    other = Notifier.from_env({**env, "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.enabled and other.watchdog_interval_s is None and other.ping_every_s is None
    other.tick()
    other.tick()
    _nothing_more(sock)
    ours = Notifier.from_env({**env, "WATCHDOG_PID": str(os.getpid())})
    assert ours.watchdog_interval_s == 1.0
    ours.tick()
    assert _recv(sock) == b"WATCHDOG=1"
    # the pid can also be given (a supervisor checking for a child)
    assert Notifier.from_env({**env, "WATCHDOG_PID": "4242"}, pid=4242).ping_every_s == 0.5


@pytest.mark.parametrize("usec", ["", "0", "-5", "soon"])
def test_no_or_bad_watchdog_usec_means_no_watchdog(listener, usec: str) -> None:
    sock, addr = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": usec})
    assert n.enabled and n.watchdog_interval_s is None
    n.tick()
    _nothing_more(sock)


def test_stopping_and_reloading(listener) -> None:
    sock, addr = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": addr})
    n.stopping("Stopping: saving the call in progress")
    assert _recv(sock) == b"STOPPING=1\nSTATUS=Stopping: saving the call in progress"
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    n.reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    first, second = _recv(sock).split(b"\n")
    assert first == b"RELOADING=1"
    key, value = second.split(b"=")
    assert key == b"MONOTONIC_USEC" and before <= int(value) <= after


def test_status_text_is_one_line_and_bounded(listener) -> None:
    sock, addr = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": addr})
    n.status("line one\nline two\r\n\n   three  ")
    assert _recv(sock) == b"STATUS=line one line two three"
    # a newline cannot smuggle another assignment into READY
    n.ready("ok\nWATCHDOG=trigger")
    assert _recv(sock) == b"READY=1\nSTATUS=ok WATCHDOG=trigger\nMAINPID=%d" % os.getpid()
    n.status("x" * (MAX_STATUS_CHARS + 500))
    got = _recv(sock).decode()
    assert got.startswith("STATUS=xxx") and len(got) == len("STATUS=") + MAX_STATUS_CHARS
    n.send("X=1", Y="a\nb")
    assert _recv(sock) == b"X=1\nY=a b"


def test_without_notify_socket_everything_is_a_quiet_no_op(caplog) -> None:
    n = Notifier.from_env({"WATCHDOG_USEC": "1000000"})
    assert not n.enabled and n.watchdog_interval_s is None and n.ping_every_s is None
    with caplog.at_level(logging.DEBUG, logger="appliance.service.notify"):
        assert n.ready("x") is False
        assert n.status("x") is False
        assert n.reloading() is False
        assert n.stopping("x") is False
        assert n.watchdog() is False
        n.tick()
        n.close()
        n.close()
    assert (n.sent, n.send_errors) == (0, 0) and caplog.records == []


def test_an_unsupported_address_is_disabled_with_a_warning(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="appliance.service.notify"):
        n = Notifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not n.enabled and "vsock:2:1234" in caplog.text


def test_a_vanished_socket_is_counted_and_logged_once(listener, caplog) -> None:
    sock, addr = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "1000"})
    assert n.status("before") is True
    assert _recv(sock) == b"STATUS=before"
    sock.close()
    os.unlink(addr)
    with caplog.at_level(logging.DEBUG, logger="appliance.service.notify"):
        assert n.status("after") is False
        assert n.ready("after") is False
        n.tick()
    assert n.send_errors == 3 and n.sent == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot notify the service manager" in warnings[0].message
    n.close()
    assert n.status("closed") is False and n.send_errors == 3  # closed: dropped, not an error


def test_a_socket_nobody_listens_on_is_an_error_not_an_exception(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.close()  # the path stays, nobody listens: ECONNREFUSED
    n = Notifier.from_env({"NOTIFY_SOCKET": str(path)})
    assert n.watchdog() is False and n.send_errors == 1


def test_no_socket_to_be_had_means_disabled_not_a_crash(monkeypatch, caplog) -> None:
    def refuse(*_: object) -> socket.socket:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(socket, "socket", refuse)
    with caplog.at_level(logging.WARNING, logger="appliance.service.notify"):
        n = Notifier.from_env({"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "1"})
    assert not n.enabled and n.ping_every_s is None and "Too many open files" in caplog.text
    assert n.ready("x") is False
    n.tick()


def test_pacer_first_call_is_due_then_once_per_period() -> None:
    clock = FakeClock()
    p = WatchdogPacer(5.0, clock)
    assert p.due() and not p.due()
    clock.t += 4.999
    assert not p.due()
    clock.t += 0.001
    assert p.due() and not p.due()


def test_a_child_process_notifies_through_its_environment(listener) -> None:
    sock, addr = listener
    code = ("import os\n"
            "from appliance.service.notify import Notifier\n"
            "n = Notifier.from_env(os.environ)\n"
            "assert n.ping_every_s == 0.25, n.ping_every_s\n"
            "n.ready('child ready'); n.tick(); n.tick(); n.stopping('child stopping')\n")
    env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_PID",)}
    env.update(NOTIFY_SOCKET=addr, WATCHDOG_USEC="500000",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert _recv(sock) == b"READY=1\nSTATUS=child ready\nMAINPID=%d" % proc.pid
    assert _recv(sock) == b"WATCHDOG=1"  # the second tick came within 0.25 s: paced away
    assert _recv(sock) == b"STOPPING=1\nSTATUS=child stopping"
    _nothing_more(sock)
