"""The ``[tap]`` tables: the box attached at the PBX, which streams each call's two
directions to it (WebSocket audio forks, Asterisk AudioSocket, RTP).  Relations between keys
are checked in :func:`check_tap`; the listeners themselves live in :mod:`appliance.audio`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

PARTIES = ("agent", "customer")
ROUTE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
CALL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
"""What a call id may be (ids come from PBXs: UUIDs, Asterisk's ``1712345678.42``, SIP
Call-IDs with ``@``); anything else is refused at the boundary."""
AGENT_ID = re.compile(r"[A-Za-z0-9._@-]{1,64}")
"""What an agent id may be (a login, an extension, an e-mail address)."""
LANGUAGE = re.compile(r"[a-z]{2,3}")
"""A call's language: an ISO 639 code (en, de, fr)."""
CODEC_SPEC = re.compile(r"(\d{1,3})\s+(PCMU|PCMA|L16)/(8000|16000)")


def _f(default: Any, lo: float | None = None, hi: float | None = None, unit: str = "") -> Any:
    return field(default=default, metadata={"min": lo, "max": hi, "unit": unit})


@dataclass(frozen=True, slots=True)
class TapRoute:
    """One ``[[tap.routes]]`` entry: how the streams of one PBX (or one dialplan) are read.
    A WebSocket stream names its route in its URL (``/tap/ws/<name>``); ``/tap/ws`` is the
    route named ``default`` (built in unless the config lists one of that name)."""

    name: str = "default"
    """The route's name in the URL: lower-case letters, digits, ``-`` and ``_``."""
    agent_channel: int = _f(0, 0, 1)
    """Which channel of a stereo stream carries the agent (0 = left, the usual
    ``mod_audio_fork`` caller leg; set 1 when the legs arrive swapped)."""
    mix_type: str = ""
    """What to assume when the stream's metadata names no mix type: ``stereo``, ``mono``,
    ``mixed`` or empty (the metadata must say; stereo when it gives two channels)."""
    sample_rate_hz: int = _f(0, 0, 16000, "Hz")
    """The stream's rate when its metadata names none (8000 or 16000; 0: the metadata must
    say, else 8000)."""
    language: str = ""
    """The calls' language on this route (empty: the top-level ``language``)."""
    agent_id_field: str = "agent_id"
    """The metadata key holding the agent's id (for the per-agent page and the store)."""


@dataclass(frozen=True, slots=True)
class TapWebSocketConfig:
    enabled: bool = True
    """Accept WebSocket audio streams (FreeSWITCH ``mod_audio_fork``/``mod_audio_stream``,
    jambonz ``listen``) on the dashboard's HTTP server at ``/tap/ws/<route>``."""
    max_streams: int = _f(512, 1, 10000)
    """Open WebSocket streams at most; one more is refused (HTTP 503)."""
    max_frame_bytes: int = _f(65536, 1024, 1048576, "bytes")
    """The largest WebSocket message accepted (a 20 ms stereo 16 kHz frame is 1280 bytes)."""


@dataclass(frozen=True, slots=True)
class TapAudioSocketConfig:
    enabled: bool = False
    """Listen for Asterisk AudioSocket connections (TCP, one per direction of a call)."""
    host: str = "127.0.0.1"
    """Address to listen on; beyond loopback needs ``allow``."""
    port: int = _f(9092, 0, 65535)
    """TCP port (0: any free port, for tests)."""
    allow: list[str] = field(default_factory=list)
    """Peer addresses or networks (``10.1.2.3``, ``10.1.2.0/24``) that may connect; needed
    when ``host`` is beyond loopback (AudioSocket has no token)."""
    convention: bool = True
    """Pair the two sockets of a call by the UUID naming convention (last hex digit ``a`` for
    the agent's leg, ``c`` for the customer's) when the control API named neither."""
    max_connections: int = _f(1024, 2, 20000)
    """Open AudioSocket connections at most (two per call); one more is closed at once and
    counted."""


@dataclass(frozen=True, slots=True)
class TapRtpStream:
    """One ``[[tap.rtp.streams]]`` entry: a static mapping of a port (and optionally an
    SSRC) to one party of one call, for mirror ports and SBC forks without signalling."""

    port: int = _f(0, 1, 65535)
    """The box's UDP port the stream arrives on."""
    ssrc: int = _f(-1, -1, 4294967295)
    """The stream's SSRC (-1: any SSRC on that port)."""
    call_id: str = ""
    """The call the stream belongs to (a new call each time the stream starts again after
    it stopped: the id gets ``-2``, ``-3``, ...)."""
    party: str = "agent"
    """``agent`` or ``customer``."""
    agent_id: str = ""
    """The agent's id for the per-agent page and the store."""


@dataclass(frozen=True, slots=True)
class TapRtpConfig:
    enabled: bool = False
    """Listen for RTP streams (Asterisk ExternalMedia, SBC forks, mirror ports)."""
    host: str = "127.0.0.1"
    """Address to listen on; beyond loopback needs ``allow``."""
    ports: list[str] = field(default_factory=lambda: ["40000-40063"])
    """UDP ports to listen on, each a number or a range ``first-last`` (one port per leg)."""
    allow: list[str] = field(default_factory=list)
    """Peer addresses or networks that may send; needed beyond loopback."""
    codecs: list[str] = field(default_factory=list)
    """Dynamic payload types, each ``"<pt> <codec>/<rate>"``, e.g. ``"96 L16/16000"``
    (0 = PCMU, 8 = PCMA and 13 = comfort noise are built in; L16 has no static type at
    8 or 16 kHz, so a site names the dynamic one its PBX uses)."""
    jitter_s: float = _f(0.06, 0.0, 1.0, "s")
    """How long a packet may wait for the ones before it (reordering) before the gap is
    concealed."""
    max_depth_s: float = _f(0.5, 0.02, 5.0, "s")
    """The jitter buffer's bound per stream; beyond it the oldest packets are released."""
    stream_timeout_s: float = _f(5.0, 0.5, 600.0, "s")
    """A stream that sent nothing this long has ended (its leg closes)."""
    streams: list[TapRtpStream] = field(default_factory=list)
    """Static mappings (``[[tap.rtp.streams]]``); streams can also be announced through the
    control API."""


@dataclass(frozen=True, slots=True)
class TapConfig:
    enabled: bool = False
    """Serve the PBX tap instead of capturing a headset: ``appliance run`` then analyses
    every call the PBX streams (on the ``[workers]`` processes)."""
    idle_timeout_s: float = _f(10.0, 1.0, 3600.0, "s")
    """A call whose legs sent no audio this long ends (a sender that vanished)."""
    max_skew_s: float = _f(0.3, 0.02, 5.0, "s")
    """How far one leg may run ahead of the other before the late leg is filled with
    silence."""
    plan_ttl_s: float = _f(300.0, 5.0, 86400.0, "s")
    """A call announced through the control API whose audio never came is forgotten after
    this long."""
    pair_wait_s: float = _f(10.0, 1.0, 600.0, "s")
    """An AudioSocket leg waits this long for the other leg of its call."""
    routes: list[TapRoute] = field(default_factory=list)
    """``[[tap.routes]]``: per-PBX stream settings (the ``default`` route is built in)."""
    websocket: TapWebSocketConfig = field(default_factory=TapWebSocketConfig)
    audiosocket: TapAudioSocketConfig = field(default_factory=TapAudioSocketConfig)
    rtp: TapRtpConfig = field(default_factory=TapRtpConfig)

    def route(self, name: str) -> TapRoute | None:
        """The route called ``name`` (``default`` is always there)."""
        for r in self.routes:
            if r.name == name:
                return r
        return TapRoute() if name == "default" else None


def parse_ports(specs: list[str]) -> list[int]:
    """``["40000-40003", "41000"]`` → the ports (ValueError with the bad entry)."""
    out: list[int] = []
    for spec in specs:
        first, _, last = spec.strip().partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise ValueError(f"{spec!r} is not a port or a range first-last")
        lo, hi = int(first), int(last or first)
        if not (1 <= lo <= hi <= 65535) or hi - lo >= 4096:
            raise ValueError(f"{spec!r}: ports 1..65535, a range of at most 4096")
        out.extend(range(lo, hi + 1))
    if len(set(out)) != len(out):
        raise ValueError("a port is listed twice")
    if len(out) > 8192:
        raise ValueError("at most 8192 ports")
    return out


def parse_codecs(specs: list[str]) -> dict[int, tuple[str, int]]:
    """``["96 L16/16000"]`` → ``{96: ("L16", 16000)}`` (ValueError with the bad entry);
    dynamic payload types are 96..127."""
    out: dict[int, tuple[str, int]] = {}
    for spec in specs:
        m = CODEC_SPEC.fullmatch(spec.strip())
        if m is None:
            raise ValueError(f"{spec!r} is not \"<payload type> PCMU|PCMA|L16/8000|16000\"")
        pt = int(m.group(1))
        if not 96 <= pt <= 127:
            raise ValueError(f"{spec!r}: dynamic payload types are 96..127")
        out[pt] = (m.group(2), int(m.group(3)))
    return out


def parse_allow(specs: list[str]) -> list[Any]:
    """Addresses and networks → ``ipaddress`` networks (ValueError with the bad entry)."""
    import ipaddress

    out = []
    for spec in specs:
        try:
            out.append(ipaddress.ip_network(spec.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{spec!r} is not an address or a network") from exc
    return out


def check_tap(tap: TapConfig, is_loopback: Any) -> tuple[str, str] | None:
    """The first relation broken in ``[tap]`` as ``(where, message)``, or None."""
    names = [r.name for r in tap.routes]
    for r in tap.routes:
        if not ROUTE_NAME.fullmatch(r.name):
            return ("[tap.routes] name", f"{r.name[:40]!r}: lower-case letters, digits, - and _ "
                    "(at most 32)")
        if r.mix_type not in ("", "stereo", "mono", "mixed"):
            return ("[tap.routes] mix_type", f"{r.mix_type[:20]!r}: allowed stereo, mono, mixed")
        if r.sample_rate_hz not in (0, 8000, 16000):
            return ("[tap.routes] sample_rate_hz", "allowed 0, 8000, 16000")
        if r.language and not LANGUAGE.fullmatch(r.language):
            return ("[tap.routes] language", "a language code like en, de, fr")
    if len(set(names)) != len(names):
        return ("[tap.routes] name", "a route name is listed twice")
    for what, sub in (("audiosocket", tap.audiosocket), ("rtp", tap.rtp)):
        try:
            allow = parse_allow(sub.allow)
        except ValueError as exc:
            return (f"[tap.{what}] allow", str(exc))
        if sub.enabled and not is_loopback(sub.host) and not allow:
            return (f"[tap.{what}] host", f"{sub.host[:60]!r} is beyond loopback: list the "
                    f"PBX's addresses in [tap.{what}] allow, or bind 127.0.0.1")
    try:
        ports = parse_ports(tap.rtp.ports)
        parse_codecs(tap.rtp.codecs)
    except ValueError as exc:
        return ("[tap.rtp] ports" if "port" in str(exc) else "[tap.rtp] codecs", str(exc))
    seen: set[tuple[int, int]] = set()
    for s in tap.rtp.streams:
        if s.party not in PARTIES:
            return ("[tap.rtp.streams] party", f"{s.party[:20]!r}: allowed agent, customer")
        if not CALL_ID.fullmatch(s.call_id):
            return ("[tap.rtp.streams] call_id", "letters, digits and ._:@- (at most 128)")
        if s.agent_id and not AGENT_ID.fullmatch(s.agent_id):
            return ("[tap.rtp.streams] agent_id", "letters, digits and ._@- (at most 64)")
        if s.port not in ports:
            return ("[tap.rtp.streams] port", f"{s.port} is not in [tap.rtp] ports")
        if (s.port, s.ssrc) in seen:
            return ("[tap.rtp.streams] port", f"port {s.port} (ssrc {s.ssrc}) is mapped twice")
        seen.add((s.port, s.ssrc))
    return None
