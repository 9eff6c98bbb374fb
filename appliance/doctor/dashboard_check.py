"""Doctor check 4: can the dashboard be served where the config says?

The port is tried with a real ``bind`` (as the server does, ``SO_REUSEADDR``).  When it is
taken, /proc tells a running ``appliance run`` (fine: it serves the dashboard) from another
program (not fine); no connection is made to find out (:mod:`appliance.doctor.port_owner`).
"""

from __future__ import annotations

import contextlib
import errno
import socket

from appliance.config import DashboardConfig, is_loopback
from appliance.doctor.check import Check, fail, ok, warn
from appliance.doctor.port_owner import port_owners

NAME = "dashboard"
_WILDCARD = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}


def _url_host(host: str) -> str:
    h = _WILDCARD.get(host, host).strip("[]")
    return f"[{h}]" if ":" in h else h


def try_bind(host: str, port: int) -> OSError | None:
    """Bind (and release) every address ``host`` resolves to; the first error, or None."""
    try:
        infos = socket.getaddrinfo(host.strip("[]") or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return exc
    for family, kind, proto, _, addr in infos:
        try:
            with socket.socket(family, kind, proto) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                    with contextlib.suppress(OSError):
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind(addr)
        except OSError as exc:
            return exc
    return None


def check_dashboard(cfg: DashboardConfig) -> Check:
    """Enabled?, the address bindable (or held by a running appliance), the URL."""
    if not cfg.enabled:
        return ok(NAME, "off ([dashboard] enabled = false)")
    url = f"http://{_url_host(cfg.host)}:{cfg.port}/"
    loopback = is_loopback(cfg.host)
    if not loopback and not cfg.token:
        return fail(NAME, f"{cfg.host} is beyond loopback without a token",
                    "set [dashboard] token (or the dashboard-token credential), or bind "
                    "[dashboard] host = \"127.0.0.1\"")
    reach = "this machine only" if loopback else "the network, token required (set)"
    err = try_bind(cfg.host, cfg.port)
    if err is None:
        return ok(NAME, f"{url} can be served (port {cfg.port} is free; {reach})")
    if isinstance(err, socket.gaierror):
        return fail(NAME, f"[dashboard] host {cfg.host!r} does not resolve ({err})",
                    "set [dashboard] host to 127.0.0.1 or an address of this machine")
    if err.errno == errno.EADDRINUSE:
        return _in_use(cfg, url)
    if err.errno == errno.EADDRNOTAVAIL:
        return fail(NAME, f"{cfg.host} is not an address of this machine ({err.strerror})",
                    "set [dashboard] host to 127.0.0.1 or one of `ip -br addr`")
    if err.errno == errno.EACCES:
        return fail(NAME, f"port {cfg.port} needs privileges ({err.strerror})",
                    "choose a [dashboard] port above 1023 (default 8765)")
    return fail(NAME, f"cannot bind {cfg.host}:{cfg.port} ({err.strerror or err})",
                "check [dashboard] host and [dashboard] port")


def _in_use(cfg: DashboardConfig, url: str) -> Check:
    listening, holders = port_owners(cfg.port)
    mine = [o for o in holders if o.is_appliance]
    if mine:
        return ok(NAME, f"{url} served by a running appliance (pid {mine[0].pid})")
    if holders:
        o = holders[0]
        return fail(NAME, f"port {cfg.port} on {cfg.host} is in use by another process "
                    f"(pid {o.pid}: {o.command})",
                    "port in use by another process; change [dashboard] port or stop it")
    seen = "a listening socket this user cannot attribute" if listening else "a socket"
    return warn(NAME, f"port {cfg.port} on {cfg.host} is held by {seen}: if it is the "
                "appliance service, that is fine",
                "run `sudo appliance doctor` to see which process holds it, or "
                f"`ss -ltnp 'sport = :{cfg.port}'`; otherwise change [dashboard] port")
