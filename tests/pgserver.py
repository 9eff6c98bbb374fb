"""A throw-away PostgreSQL server for the console's store tests.

PostgreSQL refuses to run as root, so the server runs as the ``postgres`` user (``runuser``)
in a temporary directory it owns; it listens on a Unix socket in that directory and on a
free loopback port, trusts local connections (a test database, never a real one), and is
stopped (fast shutdown) and removed afterwards.

    with PgServer(tmp_path) as pg:
        dsn = pg.dsn          # "host=<socket dir> port=<port> dbname=postgres user=postgres"

:func:`available` says whether the binaries (Debian's postgresql-15) are installed.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def available() -> str | None:
    """None when a test server can be started, else why not (for a skip)."""
    if not (BIN / "initdb").exists() or not (BIN / "pg_ctl").exists():
        return f"no PostgreSQL binaries in {BIN} (apt-get install postgresql-15)"
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "no postgres user"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "no runuser"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    def __init__(self, root: Path | None = None) -> None:
        # a short path: a Unix socket's path is limited to ~107 bytes
        self.dir = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.log_file = self.dir / "pg.log"
        self.user = pwd.getpwnam("postgres")

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> None:
        os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        os.chmod(self.dir, 0o700)
        r = self._run(str(BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                      "--auth=trust", "-E", "UTF8", "--no-sync")
        if r.returncode:
            raise RuntimeError(f"initdb failed: {r.stderr[-2000:]}")
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                f"-c unix_socket_directories={self.dir} -c fsync=off")
        r = self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_file),
                      "-o", opts, "-w", "-t", "60", "start")
        if r.returncode:
            raise RuntimeError(f"pg_ctl start failed: {r.stderr[-2000:]} {self.log()[-2000:]}")

    def stop(self) -> None:
        if self.data.exists():
            self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def dsn(self) -> str:
        return f"host={self.dir} port={self.port} dbname=postgres user=postgres"

    @property
    def tcp_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> PgServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
