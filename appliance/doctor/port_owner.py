"""Who listens on a TCP port, read from /proc (no connection is made: the doctor, like the
rest of the box, never acts as a network client).

``/proc/net/tcp`` and ``tcp6`` list listening sockets with their inode; ``/proc/PID/fd``
links name the socket inodes a process holds.  Another user's descriptors are only visible
to root, so an owner may stay unknown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_LISTEN = "0A"


@dataclass(frozen=True, slots=True)
class PortOwner:
    pid: int
    argv: tuple[str, ...]

    @property
    def is_appliance(self) -> bool:
        """``appliance run`` (the console script) or ``python -m appliance[.cli] run``."""
        for i, arg in enumerate(self.argv):
            name = os.path.basename(arg)
            if name == "appliance" or name.startswith("appliance."):
                return "run" in self.argv[i + 1:]
        return False

    @property
    def command(self) -> str:
        text = " ".join(self.argv)
        return text if len(text) <= 80 else text[:79] + "…"


def listening_inodes(port: int, proc: Path = PROC) -> set[int]:
    """Inodes of the sockets listening on ``port`` (any address, IPv4 and IPv6)."""
    found: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) < 10 or f[3] != _LISTEN:
                continue
            try:
                if int(f[1].rsplit(":", 1)[1], 16) == port:
                    found.add(int(f[9]))
            except ValueError:
                continue
    return found


def owners(inodes: set[int], proc: Path = PROC) -> list[PortOwner]:
    """The processes (visible to this user) holding one of ``inodes``."""
    wanted = {f"socket:[{i}]" for i in inodes if i}
    out: list[PortOwner] = []
    if not wanted:
        return out
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue  # gone, or another user's
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link in wanted:
                try:
                    raw = (entry / "cmdline").read_bytes()
                except OSError:
                    raw = b""
                argv = tuple(a.decode("utf-8", "replace") for a in raw.split(b"\0") if a)
                out.append(PortOwner(int(entry.name), argv))
                break
    return out


def port_owners(port: int, proc: Path = PROC) -> tuple[bool, list[PortOwner]]:
    """(whether a listening socket was found, the processes seen holding it)."""
    inodes = listening_inodes(port, proc)
    return bool(inodes), owners(inodes, proc)
