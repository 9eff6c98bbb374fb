"""A real Mosquitto broker for the fleet tests: loopback only, TLS with a test CA, a password
file, and an ACL that lets each box write only its own topics.

    broker = MosquittoBroker(tmp_path, users={"box1": "pw1", "console": "pwc"})
    broker.start()
    ... broker.url ("mqtts://127.0.0.1:<port>"), broker.ca_file ...
    broker.kill()       # SIGKILL: the broker vanishes mid-stream
    broker.start()      # same port, same persistence directory
    broker.stop()

The ACL: a user named like a box writes ``coach/<site>/<user>/#`` (``%u`` pattern) and
reads nothing; the ``console`` user (``console_users``) reads ``coach/#`` and writes
nothing.  A second listener (:attr:`cert_port`) takes client certificates instead of
passwords: the certificate's CN is the user name (``use_identity_as_username``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


TEST_USERS = {"box1": "pw1", "box2": "pw2", "console": "pwc"}
"""The users of the tests' broker (the ``broker`` fixture in tests/conftest.py)."""


def available() -> bool:
    """Mosquitto and openssl are installed (scripts/setup.sh installs them)."""
    return (os.access(MOSQUITTO, os.X_OK) and os.access(MOSQUITTO_PASSWD, os.X_OK)
            and shutil.which("openssl") is not None)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _raise_nofile() -> None:
    """Let the broker hold as many connections as the hard limit allows (the benchmark
    connects a thousand simulated boxes)."""
    import resource

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class TestCA:
    """A throw-away certificate authority with a server certificate for 127.0.0.1 and
    ``localhost``, and for each address of ``ips`` (a broker bound beyond loopback)."""

    __test__ = False

    def __init__(self, root: Path, ips: Iterable[str] = ()) -> None:
        self.dir = root
        root.mkdir(parents=True, exist_ok=True)
        self.ca_file = root / "ca.crt"
        self.server_cert = root / "server.crt"
        self.server_key = root / "server.key"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                 "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=appliance test CA",
                 cwd=root)
        extra = "".join(f",IP:{ip}" for ip in ips if ip != "127.0.0.1")
        self._sign("server", "localhost",
                   san=f"subjectAltName=IP:127.0.0.1,DNS:localhost{extra}")

    def _sign(self, name: str, cn: str, san: str | None = None) -> tuple[Path, Path]:
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=self.dir)
        ext = self.dir / f"{name}.ext"
        ext.write_text((san or "") + "\n", encoding="utf-8")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
                 *(["-extfile", str(ext)] if san else []), cwd=self.dir)
        return self.dir / f"{name}.crt", self.dir / f"{name}.key"

    def client_cert(self, user: str) -> tuple[Path, Path]:
        """A client certificate (cert, key) whose CN is ``user``."""
        return self._sign(f"client-{user}", user)


class MosquittoBroker:
    def __init__(self, root: Path, users: Mapping[str, str], *, site: str = "site1",
                 console_users: Iterable[str] = ("console",), plain: bool = False,
                 host: str = "127.0.0.1") -> None:
        """``users``: name -> password.  ``plain`` adds a plain (no TLS) loopback listener
        at :attr:`plain_port` with the same password file and ACL.  ``host``: the IPv4
        address the TLS listeners bind (an address of this machine beyond loopback for the
        privacy proof with fleet on; the server certificate names it too)."""
        self.dir = Path(root)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.ca = TestCA(self.dir / "pki", ips=[host])
        self.ca_file = self.ca.ca_file
        self.port = free_port(host)
        self.cert_port = free_port(host)
        self.plain_port = free_port() if plain else None
        self.site = site
        self.users = dict(users)
        self.console_users = tuple(console_users)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_file = self.dir / "mosquitto.log"
        self._write_files()

    # -- files ------------------------------------------------------------------------------
    def _write_files(self) -> None:
        pw = self.dir / "passwd"  # plain `user:password` lines, hashed in place in one go
        pw.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()), encoding="utf-8")
        subprocess.run([MOSQUITTO_PASSWD, "-U", str(pw)], check=True, capture_output=True)
        acl = [f"user {u}\ntopic read coach/#\n" for u in self.console_users]
        acl.append(f"pattern write coach/{self.site}/%u/#\n")
        (self.dir / "acl").write_text("\n".join(acl), encoding="utf-8")
        (self.dir / "data").mkdir(exist_ok=True)
        tls = (f"cafile {self.ca_file}\ncertfile {self.ca.server_cert}\n"
               f"keyfile {self.ca.server_key}\n")
        lines = [
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {pw}",
            f"acl_file {self.dir / 'acl'}",
            "persistence true",
            f"persistence_location {self.dir / 'data'}/",
            "autosave_interval 1",
            "log_dest stderr",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "connection_messages true",
            f"listener {self.port} {self.host}", tls.rstrip(),
            f"listener {self.cert_port} {self.host}", tls.rstrip(),
            "require_certificate true", "use_identity_as_username true",
        ]
        if self.plain_port is not None:
            lines.append(f"listener {self.plain_port} 127.0.0.1")
        if os.geteuid() == 0:
            lines.insert(0, "user root")  # else it drops to `mosquitto`, who cannot read tmp
        (self.dir / "mosquitto.conf").write_text("\n".join(lines) + "\n", encoding="utf-8")

    # -- addresses --------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"mqtts://{self.host}:{self.port}"

    @property
    def cert_url(self) -> str:
        return f"mqtts://{self.host}:{self.cert_port}"

    @property
    def plain_url(self) -> str:
        assert self.plain_port is not None, "start the broker with plain=True"
        return f"mqtt://127.0.0.1:{self.plain_port}"

    # -- life -------------------------------------------------------------------------------
    def start(self, timeout_s: float = 20.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = self.log_file.open("ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.dir / "mosquitto.conf")],
                                     stdout=log, stderr=log, preexec_fn=_raise_nofile)
        log.close()
        deadline = time.monotonic() + timeout_s  # a hang guard, not a speed assertion
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen: {self.log()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no goodbye to anyone, no last save."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_file.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
