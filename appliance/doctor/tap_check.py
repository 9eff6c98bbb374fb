"""Doctor check: the PBX tap as configured.

Lists what IT needs to wire the PBX: the WebSocket URL of every route with which stereo
channel it takes for the agent (users of ``mod_audio_fork`` report swapped legs: the route's
``agent_channel`` is the fix, and this is where it shows), the AudioSocket and RTP listeners
with their addresses, allow-lists and static mappings.  The listeners' ports are tried with a
real ``bind``, as for the dashboard (a port held by a running appliance is fine).
"""

from __future__ import annotations

import errno
import socket
from typing import Any

from appliance.config import Config, is_loopback
from appliance.config.tap import parse_ports
from appliance.doctor.check import Check, fail, ok, warn
from appliance.doctor.dashboard_check import try_bind
from appliance.doctor.port_owner import port_owners

NAME = "pbx tap"


def check_tap(cfg: Config) -> Check:
    tap = cfg.tap
    if not tap.enabled:
        return ok(NAME, "off (the box coaches one headset; [tap] enabled = true serves a PBX)")
    host = cfg.dashboard.host
    shown_host = "127.0.0.1" if host in ("", "0.0.0.0") else host
    notes: list[str] = []
    problems: list[tuple[str, str]] = []
    if tap.websocket.enabled:
        routes = {r.name: r for r in tap.routes}
        routes.setdefault("default", tap.route("default"))  # type: ignore[arg-type]
        for name, r in sorted(routes.items()):
            path = "/tap/ws" if name == "default" else f"/tap/ws/{name}"
            side = "left (channel 0)" if r.agent_channel == 0 else \
                "right (channel 1, swapped)"
            extra = ", ".join(x for x in (
                f"mix {r.mix_type}" if r.mix_type else "",
                f"{r.sample_rate_hz} Hz" if r.sample_rate_hz else "",
                f"language {r.language}" if r.language else "",
                f"agent id from {r.agent_id_field!r}") if x)
            notes.append(f"WebSocket route {name}: ws://{shown_host}:{cfg.dashboard.port}"
                         f"{path} — agent on the {side}; {extra}")
    else:
        notes.append("WebSocket listener off")
    subs: tuple[tuple[str, Any], ...] = (("audiosocket", tap.audiosocket), ("rtp", tap.rtp))
    for kind, sub in subs:
        if not sub.enabled:
            notes.append(f"{kind} listener off")
            continue
        peers = ", ".join(sub.allow) if sub.allow else "loopback only"
        if kind == "audiosocket":
            ports = [sub.port] if sub.port else []
            notes.append(f"AudioSocket on {sub.host}:{sub.port or 'any'} (TCP), peers: "
                         f"{peers}; pairing: control API"
                         + (" or the a/c UUID convention" if tap.audiosocket.convention
                            else " only"))
            kind_ = socket.SOCK_STREAM
        else:
            ports = parse_ports(tap.rtp.ports)
            notes.append(f"RTP on {sub.host} UDP {', '.join(tap.rtp.ports)} ({len(ports)} "
                         f"ports), peers: {peers}; {len(tap.rtp.streams)} static mappings")
            kind_ = socket.SOCK_DGRAM
        if not is_loopback(sub.host) and not sub.allow:
            problems.append((f"{kind} listens beyond loopback with no allow-list",
                             f"list the PBX's addresses in [tap.{kind}] allow"))
        for port in ports[:64]:  # a wide range: the first ones tell
            problem = _bind_problem(sub.host, port, kind_)
            if problem.startswith("held"):
                notes.append(f"{kind} port {port} is {problem}")
                break
            if problem:
                problems.append((f"{kind} port {port}: {problem}",
                                 f"free the port or change [tap.{kind}]"))
                break
    if not cfg.dashboard.token and not is_loopback(host):
        problems.append(("the control API and WebSocket listener are beyond loopback "
                         "without a token", "set [dashboard] token"))
    if problems:
        detail, fix = problems[0]
        more = [f"also: {d}" for d, _ in problems[1:]]
        return fail(NAME, detail, fix, [*notes, *more])
    if not any((tap.websocket.enabled, tap.audiosocket.enabled, tap.rtp.enabled)):
        return warn(NAME, "on, but every listener is off: no call can arrive",
                    "enable [tap.websocket], [tap.audiosocket] or [tap.rtp]", notes)
    return ok(NAME, f"on: {len(notes)} entry points (the PBX's streams come in here)", notes)


def _bind_problem(host: str, port: int, kind: int) -> str:
    if kind == socket.SOCK_STREAM:
        err = try_bind(host, port)
    else:
        err = None
        try:
            with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                               socket.SOCK_DGRAM) as s:
                s.bind((host.strip("[]"), port))
        except OSError as exc:
            err = exc
    if err is None:
        return ""
    if isinstance(err, socket.gaierror):
        return f"{host!r} does not resolve"
    if err.errno == errno.EADDRINUSE:
        if kind == socket.SOCK_DGRAM:  # /proc tells listening TCP sockets only
            return (f"held by a socket: fine if it is the running service (`ss -lunp "
                    f"'sport = :{port}'` shows which program)")
        _, holders = port_owners(port)
        if any(o.is_appliance for o in holders):
            return ""  # the running service holds it
        return "in use by another program"
    return err.strerror or str(err)
