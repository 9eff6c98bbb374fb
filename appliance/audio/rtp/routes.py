"""Which call and party an RTP stream belongs to: ``(port, ssrc)`` → route (pure).

Two sources of routes:

* **static** (``[[tap.rtp.streams]]``): mirror ports and SBC forks without signalling; the
  config names the port, optionally the SSRC (-1: any), the call id, the party and the
  agent;
* **announced** by the control API (:meth:`RtpRoutes.expect`): an ARI application that
  creates ``externalMedia`` channels names the port it pointed each direction at.

A packet's route is looked up most specific first: ``(port, ssrc)`` announced, then
static, then ``(port, any SSRC)`` announced, then static.  An announcement thus overrides a
static route of the same key while it lasts, and :meth:`RtpRoutes.forget` drops it again.
A route of any SSRC keeps one stream through an SSRC change (the jitter buffer continues
the timeline); a route of one SSRC ignores other SSRCs on its port.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from appliance.config.tap import CALL_ID, PARTIES, TapRtpStream
from appliance.errors import CALLS_FULL, ApplianceError, shown
from appliance.events import Party

Key = tuple[int, int | None]
"""``(port, ssrc)``; ``None`` for any SSRC."""
MAX_ROUTES = 16384
"""Announced routes at most (two per call; the port ranges hold at most 8192 ports)."""


@dataclass(frozen=True, slots=True)
class Route:
    call_id: str
    """The call's id as announced or configured (a static call that starts again gets
    ``-2``, ``-3``, ... appended by the listener)."""
    party: Party
    agent_id: str | None = None
    static: bool = False


class RtpRoutes:
    def __init__(self, static: Iterable[TapRtpStream] = (), *,
                 max_routes: int = MAX_ROUTES) -> None:
        self.max_routes = max_routes
        self._static: dict[Key, Route] = {}
        for s in static:
            party: Party = "customer" if s.party == "customer" else "agent"
            self._static[(s.port, None if s.ssrc < 0 else s.ssrc)] = Route(
                s.call_id, party, s.agent_id or None, static=True)
        self._api: dict[Key, Route] = {}

    def expect(self, call_id: str, party: str, *, port: int, ssrc: int | None = None) -> Key:
        """Announce that ``party`` of ``call_id`` arrives on ``port`` (from ``ssrc``, or
        any).  ValueError for a bad id, party, port or SSRC; ApplianceError ``calls.full``
        beyond ``max_routes``.  Replaces an earlier announcement of the same key."""
        if not isinstance(call_id, str) or not CALL_ID.fullmatch(call_id):
            raise ValueError(f"call id {shown(call_id)}: letters, digits and ._:@- "
                             "(at most 128)")
        if party not in PARTIES:
            raise ValueError(f"party {shown(party)}: agent or customer")
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port}: 1..65535")
        if ssrc is not None and not 0 <= ssrc <= 0xFFFFFFFF:
            raise ValueError(f"ssrc {ssrc}: 0..4294967295")
        key = (port, ssrc)
        if key not in self._api and len(self._api) >= self.max_routes:
            raise ApplianceError(CALLS_FULL, f"{self.max_routes} RTP streams announced")
        self._api[key] = Route(call_id, "agent" if party == "agent" else "customer")
        return key

    def forget(self, call_id: str) -> list[Key]:
        """Drop the announcements of ``call_id``; the keys they held."""
        keys = [k for k, r in self._api.items() if r.call_id == call_id]
        for k in keys:
            del self._api[k]
        return keys

    def find(self, port: int, ssrc: int) -> tuple[Key, Route] | None:
        """The route of a packet, with the key its stream is kept under."""
        for key in ((port, ssrc), (port, None)):
            route = self._api.get(key) or self._static.get(key)
            if route is not None:
                return key, route
        return None

    def route(self, key: Key) -> Route | None:
        """The route a stream's key has now."""
        return self._api.get(key) or self._static.get(key)

    def names(self, base: str) -> bool:
        """Whether any route still names ``base``."""
        return any(r.call_id == base for r in (*self._api.values(), *self._static.values()))

    @property
    def announced(self) -> int:
        return len(self._api)
