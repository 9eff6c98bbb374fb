"""The sd_notify protocol, spoken directly: one AF_UNIX datagram of ``KEY=value`` lines.

systemd sets ``NOTIFY_SOCKET`` for a ``Type=notify`` service: a filesystem path, or an
abstract socket name written with a leading ``@``.  Each message is one datagram sent with
``sendto`` (no connection), e.g. ``READY=1\\nSTATUS=Coaching call-1\\nMAINPID=1234``.
``WATCHDOG_USEC`` (with ``WATCHDOG_PID``, which must be us when set) asks for
``WATCHDOG=1`` more often than that period; systemd recommends every half period.

The pings come from the analysis loop (:meth:`Notifier.tick` on every block, paced by
:class:`WatchdogPacer`), never from a timer of their own: a stuck pipeline stops pinging and
systemd restarts the service.

Without ``NOTIFY_SOCKET`` (a terminal, the tests) the notifier is disabled and every method
does nothing.  Sending never raises into the caller: a vanished socket or a full queue is
counted in :attr:`Notifier.send_errors` and logged once at warning level.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

"""Longest a send may block (systemd's queue full): bounded, so the loop never hangs on it."""
MAX_STATUS_CHARS = 1000
"""STATUS is cut to this length: systemd drops datagrams beyond its 4 KiB buffer."""

Clock = Callable[[], float]


def one_line(text: str) -> str:
    """``text`` as one line (a newline in a value would start another assignment)."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, the clock systemd compares MONOTONIC_USEC with."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def socket_address(value: str) -> bytes | None:
    """The ``sendto`` address of a ``NOTIFY_SOCKET`` value; ``None`` if unsupported.

    ``/run/systemd/notify`` is a path; ``@name`` is the abstract socket ``\\0name``.
    (``vsock:`` addresses, used by systemd ≥ 254 inside VMs, are not supported.)"""
    if value.startswith("/"):
        return os.fsencode(value)
    if value.startswith("@") and len(value) > 1:
        return b"\0" + os.fsencode(value[1:])
    return None


class WatchdogPacer:
    """Says when a watchdog ping is due: at most once per ``every_s`` of ``clock``."""

    __slots__ = ("_clock", "_last", "every_s")

    def __init__(self, every_s: float, clock: Clock = time.monotonic) -> None:
        self.every_s = every_s
        self._clock = clock
        self._last: float | None = None

    def due(self) -> bool:
        """True (and the period restarts) when ``every_s`` has passed since the last ping;
        the first call is always due."""
        now = self._clock()
        if self._last is not None and now - self._last < self.every_s:
            return False
        self._last = now
        return True


class Notifier:
    """Messages to the service manager.  Build it with :meth:`from_env`."""

    __slots__ = ("_address", "_pacer", "_sock", "_warned", "send_errors", "sent",
                 "watchdog_interval_s")

    def __init__(self, address: bytes | None = None, *, watchdog_usec: int | None = None,
                 clock: Clock = time.monotonic) -> None:
        self._address = address
        self._sock: socket.socket | None = None
        self._warned = False
        self.send_errors = 0
        """Datagrams that could not be sent (socket gone, queue full)."""
        self.sent = 0
        """Datagrams sent."""
        self.watchdog_interval_s: float | None = (
            watchdog_usec / 1e6 if address is not None and watchdog_usec else None)
        """The watchdog period (WATCHDOG_USEC) in seconds; None when there is no watchdog."""
        self._pacer = (WatchdogPacer(self.watchdog_interval_s / 2, clock)
                       if self.watchdog_interval_s else None)
        if address is not None:
            try:
                self._sock = socket.socket(socket.AF_UNIX,
                                           socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # never block the event loop: a full queue at the manager is a counted drop
                self._sock.setblocking(False)
            except OSError as exc:  # out of descriptors, AF_UNIX filtered: carry on silent
                log.warning("cannot open a socket to notify the service manager: %s", exc)
                self._address = None
                self.watchdog_interval_s = None
                self._pacer = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, clock: Clock = time.monotonic,
                 pid: int | None = None) -> Notifier:
        """The notifier the environment asks for (``NOTIFY_SOCKET``, ``WATCHDOG_USEC``,
        ``WATCHDOG_PID``); disabled without ``NOTIFY_SOCKET``.  ``pid`` defaults to ours."""
        raw = env.get("NOTIFY_SOCKET", "")
        if not raw:
            return cls(None)
        address = socket_address(raw)
        if address is None:
            log.warning("NOTIFY_SOCKET %r is not a path or @abstract name; "
                        "not notifying the service manager", raw)
            return cls(None)
        return cls(address, watchdog_usec=_watchdog_usec(env, os.getpid() if pid is None
                                                           else pid), clock=clock)

    # -- state ---------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        """True when there is a service manager to tell (``NOTIFY_SOCKET`` was set)."""
        return self._address is not None

    @property
    def ping_every_s(self) -> float | None:
        """How often :meth:`tick` pings: half the watchdog period; None without one."""
        return None if self._pacer is None else self._pacer.every_s

    # -- messages ------------------------------------------------------------------------
    def send(self, text: str = "", /, **fields: str | int) -> bool:
        """Send ``text`` (``KEY=value`` lines, as is) and ``fields`` (``KEY=value``, each
        value made one line) as one datagram.  True if it was sent; never raises."""
        lines = [text] if text else []
        lines += [f"{key}={one_line(str(value))}" for key, value in fields.items()]
        if self._sock is None or self._address is None or not lines:
            return False
        try:
            self._sock.sendto("\n".join(lines).encode("utf-8"), self._address)
        except OSError as exc:
            self.send_errors += 1
            if not self._warned:
                self._warned = True
                log.warning("cannot notify the service manager (%s: %s); "
                            "further failures are only counted", type(exc).__name__, exc)
            else:
                log.debug("sd_notify failed again: %s", exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str) -> bool:
        """Start-up (or a reload) is complete: READY=1 with a STATUS line and MAINPID."""
        return self.send(READY=1, STATUS=_status(status), MAINPID=os.getpid())

    def status(self, text: str) -> bool:
        """A one-line STATUS for ``systemctl status``."""
        return self.send(STATUS=_status(text))

    def reloading(self) -> bool:
        """A reload begins: RELOADING=1 with MONOTONIC_USEC (systemd ≥ 253 wants both; older
        ones ignore them).  Say :meth:`ready` when it is done."""
        return self.send(RELOADING=1, MONOTONIC_USEC=monotonic_usec())

    def stopping(self, status: str) -> bool:
        """Shutdown begins: STOPPING=1 with a STATUS line."""
        return self.send(STOPPING=1, STATUS=_status(status))

    def watchdog(self) -> bool:
        """WATCHDOG=1 now (unpaced; the analysis loop calls :meth:`tick` instead)."""
        return self.send(WATCHDOG=1)

    def tick(self) -> None:
        """Called by the analysis loop on every block: WATCHDOG=1 at most once per
        :attr:`ping_every_s`.  Nothing without a watchdog."""
        if self._pacer is not None and self._pacer.due():
            self.watchdog()

    def close(self) -> None:
        """Close the socket; later messages are dropped silently."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status(text: str) -> str:
    line = one_line(text)
    return line if len(line) <= MAX_STATUS_CHARS else line[: MAX_STATUS_CHARS - 1] + "…"


def _watchdog_usec(env: Mapping[str, str], pid: int) -> int | None:
    """WATCHDOG_USEC when it is for ``pid`` (WATCHDOG_PID unset or equal), else None."""
    raw_pid = env.get("WATCHDOG_PID", "")
    if raw_pid:
        try:
            if int(raw_pid) != pid:
                log.debug("WATCHDOG_PID %s is not us (%d): no watchdog", raw_pid, pid)
                return None
        except ValueError:
            log.warning("WATCHDOG_PID %r is not a number: no watchdog", raw_pid)
            return None
    raw = env.get("WATCHDOG_USEC", "")
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        log.warning("WATCHDOG_USEC %r is not a number: no watchdog", raw)
        return None
    return usec if usec > 0 else None
