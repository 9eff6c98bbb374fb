"""Test helpers for "offline by construction": a network guard and a write recorder on one
Python audit hook, directory snapshots, a network-namespace wrapper, and a parser for
``strace`` output (the check that also sees native code).

**The audit hook.**  ``sys.addaudithook`` hooks can never be removed, so this module adds
exactly one, the first time a guard is entered, and the hook returns at once unless a
:func:`network_guard` or :func:`write_recorder` block is active (one truthiness test per
audit event; the audio path raises none of the events watched here anyway).  Guards are
process-wide, not per thread: the event loop's resolver threads and the recognizer's worker
thread are covered too.

:func:`network_guard` records every socket ``connect``/``sendto``/``sendmsg``/``bind`` and every
name lookup (``getaddrinfo``, ``gethostbyname``, ``gethostbyname_ex``, ``gethostbyaddr``,
``getnameinfo``; ``connect_ex`` raises ``socket.connect`` too), and every child process
(``subprocess.Popen``, ``os.system``, ``os.exec*``, ``os.posix_spawn``, ``os.spawn*``,
``os.fork``, ``os.forkpty``): a child is beyond an in-process hook, so it counts as a
violation unless allowed.  Loopback means AF_UNIX, or AF_INET/AF_INET6 to 127.0.0.0/8, ::1,
::ffff:127.x.x.x or the name ``localhost``; a lookup of no host (``None`` or ``""``, a
passive bind) is allowed too.  A violation is recorded *and* raised as
:class:`NetworkGuardError` (a ``PermissionError``) in the calling thread; code may swallow
the exception, so tests must assert on :attr:`NetworkGuard.violations`.

:func:`write_recorder` records every file opened for writing (the ``open`` event of
``open()``, ``io.open``, ``os.open`` and ``pathlib``: write mode or O_WRONLY / O_RDWR / O_CREAT
/ O_TRUNC / O_APPEND flags), every ``mkdir``, ``rename``/``replace`` (destination), ``link``,
``symlink``, ``truncate``, ``shutil`` copy, ``tempfile`` file or folder and SQLite database.

**What an audit hook cannot see**: what native libraries do in C or C++ (onnxruntime, Vosk
and Kaldi, a statically linked libcurl, SQLite's own journal files) and what child processes
do.  For those, :func:`parse_strace` reads the system calls of a whole process tree
(``strace -f``), and :func:`netns_argv` runs a command in a network namespace that has only
loopback, so that even a violation the test catches cannot reach the network.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# -- the one audit hook -------------------------------------------------------------------


class _Monitor:
    watched: frozenset[str] = frozenset()

    def observe(self, event: str, args: tuple[Any, ...]) -> BaseException | None:
        raise NotImplementedError


_monitors: tuple[_Monitor, ...] = ()
"""The active guards.  Rebound (never mutated) so the hook can read it without a lock."""
_installed = False
_install_lock = threading.Lock()
_busy = threading.local()


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not _monitors:  # the inactive fast path
        return
    if getattr(_busy, "on", False):  # an event raised by a monitor itself
        return
    _busy.on = True
    try:
        errors = [err for m in _monitors if event in m.watched
                  for err in (m.observe(event, args),) if err is not None]
    finally:
        _busy.on = False
    if errors:
        raise errors[0]


def install() -> None:
    """Add the process's audit hook (once; later calls do nothing)."""
    global _installed
    with _install_lock:
        if not _installed:
            sys.addaudithook(_hook)
            _installed = True


@contextmanager
def _monitoring(monitor: _Monitor) -> Iterator[None]:
    global _monitors
    install()
    with _install_lock:
        _monitors = (*_monitors, monitor)
    try:
        yield
    finally:
        with _install_lock:
            _monitors = tuple(m for m in _monitors if m is not monitor)


# -- addresses ------------------------------------------------------------------------------


def is_loopback_host(host: object) -> bool:
    """``localhost`` or a loopback IP literal (IPv4-mapped and scoped IPv6 included)."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    h = host.strip().rstrip(".").lower()
    if h == "localhost":
        return True
    h = h.strip("[]").split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(h)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _family_name(family: object) -> str:
    name = getattr(family, "name", None)
    return name if isinstance(name, str) else str(family)


@dataclass(frozen=True)
class NetEvent:
    """One audit event the network guard saw."""

    event: str
    target: str
    """``host:port``, a socket path, a host name, or the command of a child process."""
    family: str = ""
    allowed: bool = True
    thread: str = ""

    def __str__(self) -> str:
        verdict = "ok" if self.allowed else "VIOLATION"
        fam = f" {self.family}" if self.family else ""
        return f"{verdict}: {self.event}{fam} -> {self.target} (thread {self.thread})"


class NetworkGuardError(PermissionError):
    """Raised in the calling thread for a non-loopback network operation."""


_CONNECTS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg", "socket.bind"})
_LOOKUPS = frozenset({"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
                      "socket.gethostbyaddr", "socket.getnameinfo"})
_CHILDREN = frozenset({"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn",
                       "os.spawn", "os.fork", "os.forkpty"})


def _sockaddr(family: object, address: object) -> tuple[str, bool]:
    """(printable target, loopback?) of a socket address of ``family``."""
    if family == socket.AF_UNIX:
        return repr(address), True  # a local socket file or abstract name
    if family in (socket.AF_INET, socket.AF_INET6) and isinstance(address, tuple) and address:
        host, port = address[0], (address[1] if len(address) > 1 else None)
        return f"{host}:{port}", is_loopback_host(host)
    return repr(address), False  # AF_PACKET, AF_NETLINK, ...: not something we vouch for


class NetworkGuard(_Monitor):
    """What one :func:`network_guard` block saw.  ``events`` holds everything, in order."""

    def __init__(self, *, allow_wildcard_bind: bool = False,
                 allow_subprocess: bool = False) -> None:
        self.watched = _CONNECTS | _LOOKUPS | _CHILDREN
        self.allow_wildcard_bind = allow_wildcard_bind
        self.allow_subprocess = allow_subprocess
        self.events: list[NetEvent] = []
        self._lock = threading.Lock()

    @property
    def violations(self) -> list[NetEvent]:
        with self._lock:
            return [e for e in self.events if not e.allowed]

    def allowed(self, *events: str) -> list[NetEvent]:
        """The allowed (loopback) events, of the given audit events if any are named."""
        with self._lock:
            return [e for e in self.events if e.allowed and (not events or e.event in events)]

    def report(self) -> str:
        with self._lock:
            return "\n".join(str(e) for e in self.events) or "(no network events)"

    def observe(self, event: str, args: tuple[Any, ...]) -> BaseException | None:
        family = ""
        if event in _CONNECTS:
            sock, address = args[0], args[1]
            family = _family_name(getattr(sock, "family", ""))
            if event == "socket.sendmsg" and address is None:
                target, ok = "(connected socket)", True  # its connect was checked
            else:
                target, ok = _sockaddr(getattr(sock, "family", None), address)
                if event == "socket.bind" and not ok and self.allow_wildcard_bind:
                    ok = True
        elif event in _LOOKUPS:
            host = args[0]
            if event == "socket.getaddrinfo":
                target = f"{host!r}:{args[1]}"
                ok = host is None or host in ("", b"") or is_loopback_host(host)
            elif event == "socket.getnameinfo":
                target, ok = repr(host), isinstance(host, tuple) and is_loopback_host(host[0])
            else:
                target, ok = repr(host), is_loopback_host(host)
        else:  # a child process: out of this hook's sight
            target = " ".join(map(str, args[:2])) if args else event
            ok = self.allow_subprocess
        ev = NetEvent(event, target, family, ok, threading.current_thread().name)
        with self._lock:
            self.events.append(ev)
        if ok:
            return None
        return NetworkGuardError(f"network guard: {ev}")


@contextmanager
def network_guard(*, allow_wildcard_bind: bool = False,
                  allow_subprocess: bool = False) -> Iterator[NetworkGuard]:
    """Inside the block, non-loopback network operations (and child processes) are
    recorded and refused with :class:`NetworkGuardError`; loopback ones are recorded."""
    guard = NetworkGuard(allow_wildcard_bind=allow_wildcard_bind,
                         allow_subprocess=allow_subprocess)
    with _monitoring(guard):
        yield guard


# -- writes ---------------------------------------------------------------------------------

_WRITE_FLAGS = (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
                | getattr(os, "O_TMPFILE", 0))
AUDIO_SUFFIXES = frozenset({".wav", ".wave", ".raw", ".pcm", ".au", ".snd", ".ulaw", ".alaw",
                            ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".aif",
                            ".aiff", ".caf", ".w64", ".rf64", ".npy", ".npz", ".sph"})
"""File names a recording (or a numpy dump of one) would have."""


@dataclass(frozen=True)
class WriteEvent:
    event: str
    path: str
    """Absolute, normalised (``<fd N>`` for a descriptor)."""
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.event} {self.path}" + (f" ({self.detail})" if self.detail else "")


def _abspath(p: object) -> str:
    if isinstance(p, int):
        return f"<fd {p}>"
    if not isinstance(p, str | bytes | os.PathLike):
        return repr(p)
    s = os.fsdecode(os.fspath(p))
    return os.path.normpath(os.path.join(os.getcwd(), s))


def _real(pattern: str | Path) -> str:
    head, tail = os.path.split(os.fspath(pattern))
    return os.path.join(os.path.realpath(head), tail) if tail else os.path.realpath(head)


def is_allowed(path: str, allowed: Iterable[str | Path]) -> bool:
    """True when ``path`` matches one of ``allowed``: exact paths, or shell patterns in the
    last component (``state/summaries.sqlite3*``; ``dir/*`` for everything under ``dir``,
    ``*`` crossing ``/``).  Symlinks are resolved on both sides."""
    if path.startswith("<"):
        return False
    real = os.path.realpath(path)
    return any(fnmatch.fnmatchcase(real, _real(a)) for a in allowed)


def is_audio_name(path: str) -> bool:
    return Path(path).suffix.lower() in AUDIO_SUFFIXES


class WriteRecorder(_Monitor):
    """What one :func:`write_recorder` block wrote (or tried to)."""

    def __init__(self) -> None:
        self.watched = frozenset({
            "open", "os.mkdir", "os.rename", "os.link", "os.symlink", "os.truncate",
            "os.mkfifo", "os.mknod", "shutil.copyfile", "shutil.copytree",
            "shutil.make_archive", "sqlite3.connect", "tempfile.mkstemp", "tempfile.mkdtemp"})
        self.events: list[WriteEvent] = []
        self._lock = threading.Lock()

    def observe(self, event: str, args: tuple[Any, ...]) -> BaseException | None:
        if event == "open":
            path, mode, flags = args
            writes = (flags & _WRITE_FLAGS) if isinstance(flags, int) else \
                isinstance(mode, str) and bool(set(mode) & set("wax+"))
            if not writes:
                return None
            ev = WriteEvent(event, _abspath(path), f"mode={mode!r} flags={flags:#o}"
                            if isinstance(flags, int) else f"mode={mode!r}")
        elif event in ("os.rename", "os.link", "os.symlink", "shutil.copyfile",
                       "shutil.copytree"):
            ev = WriteEvent(event, _abspath(args[1]), f"from {_abspath(args[0])}")
        elif event == "sqlite3.connect":
            db = args[0]
            if db in (":memory:", "", b":memory:", b"") or "mode=memory" in str(db):
                return None
            ev = WriteEvent(event, _abspath(db))
        else:
            ev = WriteEvent(event, _abspath(args[0]))
        with self._lock:
            self.events.append(ev)
        return None

    def outside(self, allowed: Iterable[str | Path] = ()) -> list[WriteEvent]:
        """Writes to any path not ``allowed`` (see :func:`is_allowed`)."""
        allowed = list(allowed)
        with self._lock:
            return [e for e in self.events if not is_allowed(e.path, allowed)]

    def audio(self) -> list[WriteEvent]:
        """Writes of audio-like files, wherever they are (no folder allows those)."""
        with self._lock:
            return [e for e in self.events if is_audio_name(e.path)]


@contextmanager
def write_recorder() -> Iterator[WriteRecorder]:
    """Record file writes made through Python inside the block.

    ``sys.dont_write_bytecode`` is set for the block: a module imported lazily inside it would
    otherwise write its ``.pyc`` (compiled code, not audio, but a write this recorder would
    rightly report, and only on the first run after a source change: a flaky test).
    """
    rec = WriteRecorder()
    saved = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        with _monitoring(rec):
            yield rec
    finally:
        sys.dont_write_bytecode = saved


# -- directory snapshots (catch native writers too) ------------------------------------------


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``roots``: path -> (size, mtime_ns); folders have size -1."""
    out: dict[str, tuple[int, int]] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                try:
                    st = os.lstat(p)
                except FileNotFoundError:
                    continue
                out[p] = (-1 if name in dirnames else st.st_size, st.st_mtime_ns)
    return out


def changed(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]],
            allowed: Iterable[str | Path] = ()) -> list[str]:
    """Paths created, modified or removed between two snapshots, except ``allowed`` ones
    (see :func:`is_allowed`; audio-like names are reported even there)."""
    allowed = list(allowed)
    diff = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p)
                  and (is_audio_name(p) or not is_allowed(p, allowed)))
    return [f"{'new' if p not in before else 'gone' if p not in after else 'modified'}: {p}"
            for p in diff]


# -- network namespaces -----------------------------------------------------------------------


def _unshare_flags() -> list[str]:
    return ["-n"] if os.geteuid() == 0 else ["-r", "-n"]


def netns_unavailable() -> str | None:
    """Why a network namespace cannot be made here (None when it can)."""
    exe = shutil.which("unshare")
    if exe is None:
        return "unshare (util-linux) is not installed"
    try:
        p = subprocess.run([exe, *_unshare_flags(), "true"], capture_output=True, text=True,
                           timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare {' '.join(_unshare_flags())} true: {exc}"
    if p.returncode != 0:
        return (f"unshare {' '.join(_unshare_flags())} true exited {p.returncode}: "
                f"{p.stderr.strip()}")
    return None


_NETNS_SH = """\
if command -v ip >/dev/null 2>&1; then
    ip link set lo up || { [ "$NETNS_NEED_LO" = 1 ] && exit 97; }
elif [ "$NETNS_NEED_LO" = 1 ]; then
    exit 97
fi
exec "$@"
"""
NETNS_NO_LOOPBACK = 97
"""Exit status of :func:`netns_argv`'s wrapper when loopback was required but is down."""


def netns_argv(argv: Sequence[str], *, need_loopback: bool = False) -> list[str]:
    """``argv`` run in a new network namespace with only the loopback interface (brought up
    when ``ip`` exists; with ``need_loopback`` a missing ``ip`` exits 97 instead)."""
    return ["unshare", *_unshare_flags(), "env", f"NETNS_NEED_LO={int(need_loopback)}",
            "sh", "-c", _NETNS_SH, "netns", *argv]


# -- strace: the native-level view -----------------------------------------------------------

STRACE_SYSCALLS = ("connect,sendto,sendmsg,sendmmsg,bind,"
                   "open,openat,openat2,creat,mkdir,mkdirat,rename,renameat,renameat2,"
                   "link,linkat,symlink,symlinkat,truncate,mknod,mknodat")


def strace_argv(trace_file: Path, argv: Sequence[str]) -> list[str]:
    """``argv`` under ``strace -f`` writing the network and file-creating calls of the whole
    process tree to ``trace_file`` (``-y``: descriptors shown with their paths;
    ``--seccomp-bpf``: only those calls stop the process, so it runs at nearly full speed)."""
    return ["strace", "-f", "--seccomp-bpf", "-qq", "-y", "-s", "80", "-o", str(trace_file),
            "-e", f"trace={STRACE_SYSCALLS}", "-e", "signal=none", "--", *argv]


def strace_unavailable() -> str | None:
    """Why ``strace -f`` cannot trace here (None when it can)."""
    exe = shutil.which("strace")
    if exe is None:
        return "strace is not installed"
    try:
        p = subprocess.run([exe, "-f", "--seccomp-bpf", "-qq", "-o", os.devnull, "true"],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"strace -f true: {exc}"
    if p.returncode != 0:
        return (f"strace -f true exited {p.returncode} (ptrace not permitted?): "
                f"{p.stderr.strip()}")
    return None


@dataclass(frozen=True)
class TraceNet:
    pid: int
    syscall: str
    family: str
    host: str
    port: int | None
    allowed: bool
    line: str

    def __str__(self) -> str:
        verdict = "ok" if self.allowed else "VIOLATION"
        return f"{verdict}: {self.syscall} {self.family} {self.host}:{self.port}  <- {self.line}"


@dataclass(frozen=True)
class TraceWrite:
    pid: int
    syscall: str
    path: str
    line: str

    def __str__(self) -> str:
        return f"{self.syscall} {self.path}  <- {self.line}"


@dataclass
class Trace:
    network: list[TraceNet] = field(default_factory=list)
    writes: list[TraceWrite] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    """Names in DNS queries sent (from the payloads strace shows), to name a culprit."""
    lines: int = 0

    @property
    def violations(self) -> list[TraceNet]:
        return [n for n in self.network if not n.allowed]

    def writes_outside(self, allowed: Iterable[str | Path] = ()) -> list[TraceWrite]:
        """Writes to paths not ``allowed`` (see :func:`is_allowed`), and audio-like files
        wherever they are."""
        allowed = list(allowed)
        return [w for w in self.writes
                if is_audio_name(w.path) or not is_allowed(w.path, allowed)]


_LINE = re.compile(r"^(\d+)\s+(\w+)\((.*)$")
_STR = re.compile(r'"((?:[^"\\]|\\.)*)"')
_SOCKADDR = re.compile(r"\{sa_family=(\w+)(.*?)\}")
_INET = re.compile(r'sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]*)"\)')
_INET6 = re.compile(r'sin6_port=htons\((\d+)\).*?inet_pton\(AF_INET6, "([^"]*)"')
_DIRFD = re.compile(r"^(AT_FDCWD|-?\d+)(?:<([^>]*)>)?")
_NET_CALLS = frozenset({"connect", "sendto", "sendmsg", "sendmmsg", "bind"})
_LOCAL_FAMILIES = frozenset({"AF_UNIX", "AF_LOCAL", "AF_NETLINK", "AF_UNSPEC"})
"""Families that never leave the machine (UNSPEC: a datagram socket's disconnect)."""
_WRITE_FLAG_NAMES = ("O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND", "O_TMPFILE")


def _unescape_bytes(s: str) -> bytes:
    try:
        return s.encode("latin-1", "backslashreplace").decode("unicode_escape") \
            .encode("latin-1")
    except UnicodeError:
        return s.encode("utf-8", "replace")


def _unescape(s: str) -> str:
    return _unescape_bytes(s).decode("utf-8", "replace")


def _dns_query_name(payload: bytes) -> str | None:
    """The first question's name of a DNS query message (possibly cut short by strace)."""
    if len(payload) < 14 or payload[2] & 0x80 or payload[4:6] != b"\0\1":
        return None
    labels, i = [], 12
    while i < len(payload) and 0 < payload[i] < 64:
        labels.append(payload[i + 1:i + 1 + payload[i]].decode("ascii", "replace"))
        i += 1 + payload[i]
    return ".".join(labels) if len(labels) >= 2 else None


def _resolve(cwd: str, dirfd: str, name: str) -> str:
    if name.startswith("/"):
        return os.path.normpath(name)
    base = cwd
    m = _DIRFD.match(dirfd.strip())
    if m and m.group(2):
        base = m.group(2)  # strace -y shows the descriptor's path
    elif m and m.group(1) != "AT_FDCWD":
        base = f"<fd {m.group(1)}>"
    return os.path.normpath(os.path.join(base, name))


def parse_strace(text: str, cwd: str) -> Trace:
    """The network and file-writing calls in ``strace -f -y`` output (see :func:`strace_argv`)
    of processes started in ``cwd``.  Failed calls count: an attempt is what matters."""
    trace = Trace()
    for raw in text.splitlines():
        m = _LINE.match(raw)
        if m is None:
            continue  # "<... resumed>" tails, signals, exits
        trace.lines += 1
        pid, call = int(m.group(1)), m.group(2)
        args = m.group(3).split(" <unfinished ...>", 1)[0]
        if ") = " in args:
            args = args.rsplit(") = ", 1)[0]  # the result (with -y: a path) is not an argument
        line = raw if len(raw) < 300 else raw[:300] + "..."
        if call in _NET_CALLS:
            if call.startswith("send"):
                trace.dns += [n for p in _STR.findall(args)
                              if (n := _dns_query_name(_unescape_bytes(p)))]
            for fam, body in _SOCKADDR.findall(args):
                host, port = "", None
                a = _INET.search(body) if fam == "AF_INET" else \
                    _INET6.search(body) if fam == "AF_INET6" else None
                if a is not None:
                    port, host = int(a.group(1)), a.group(2)
                ok = fam in _LOCAL_FAMILIES or (
                    fam in ("AF_INET", "AF_INET6") and is_loopback_host(host))
                trace.network.append(TraceNet(pid, call, fam, host or body.strip(", "), port,
                                              ok, line))
            continue
        strings = list(_STR.finditer(args))
        if not strings:
            continue
        first, last = strings[0], strings[-1]
        path_first, path_last = _unescape(first.group(1)), _unescape(last.group(1))
        if call in ("open", "openat", "openat2"):
            if not any(f in args[first.end():] for f in _WRITE_FLAG_NAMES):
                continue
            dirfd = "AT_FDCWD" if call == "open" else args[:first.start()]
            trace.writes.append(TraceWrite(pid, call, _resolve(cwd, dirfd, path_first), line))
        elif call in ("creat", "truncate", "mkdir", "mknod"):
            trace.writes.append(TraceWrite(pid, call, _resolve(cwd, "AT_FDCWD", path_first),
                                           line))
        elif call in ("mkdirat", "mknodat"):
            trace.writes.append(TraceWrite(pid, call, _resolve(cwd, args[:first.start()],
                                                               path_first), line))
        else:  # rename*, link*, symlink*: the destination is the last path, after its dirfd
            before = args[:last.start()].rstrip(", ").rsplit(", ", 1)[-1]
            trace.writes.append(TraceWrite(pid, call, _resolve(cwd, before, path_last), line))
    return trace
