"""Pairing the two one-direction AudioSockets of a call into one call (pure, no clock).

An AudioSocket carries one direction of one channel, so a call tapped for coaching arrives
as two sockets, each announcing its own UUID first: the agent's voice (a snoop ``spy=in`` on
the agent's channel) and the customer's (``spy=in`` on the customer's channel, or
``spy=out`` on the agent's).  :class:`LegPairer` tells which socket is which leg of which
call, in this order:

1. **Registered** through the control API: ``expect(call_id, agent_uuid=…,
   customer_uuid=…)`` names both UUIDs before the sockets connect (the ARI application that
   creates the snoops and the ``externalMedia`` channels with ``encapsulation=audiosocket``
   passes each UUID as ``data``).
2. **Convention** (the fallback; off with ``convention=False``): the two UUIDs are the same
   except for their last hex digit, ``a`` for the agent's leg and ``c`` for the customer's.
   The call id is that UUID with the last digit ``0``.  In a dialplan::

       same => n,Set(TAP=${UUID()})
       same => n,Set(TAP=${TAP:0:35})
       ; agent leg: ${TAP}a   customer leg: ${TAP}c

Any other UUID is refused (``unknown_leg``), as is a UUID that is already connected
(``leg_twice``) or more than ``max_pending`` half-paired calls (``too_many_pending``).  A leg
that waits longer than ``max_wait_s`` for its partner is handed back by :meth:`expire`, given
the listener's clock reading.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass
from enum import StrEnum

from appliance.audio.pbx.errors import PbxProtocolError
from appliance.errors import shown

AGENT_DIGIT = "a"
CUSTOMER_DIGIT = "c"
MAX_PENDING = 1000
MAX_WAIT_S = 10.0


class Leg(StrEnum):
    AGENT = "agent"
    CUSTOMER = "customer"


@dataclass(frozen=True, slots=True)
class LegOf:
    """Which call a socket belongs to and which party it carries."""

    call_id: str
    leg: Leg


@dataclass(frozen=True, slots=True)
class Paired:
    """Both legs of ``call_id`` are connected."""

    call_id: str
    agent_uuid: str
    customer_uuid: str


def by_convention(uuid: str) -> LegOf | None:
    """The call and leg a UUID names under the last-hex-digit convention, or None."""
    try:
        canonical = str(uuidlib.UUID(uuid))
    except ValueError:
        return None
    last = canonical[-1]
    if last == AGENT_DIGIT:
        return LegOf(canonical[:-1] + "0", Leg.AGENT)
    if last == CUSTOMER_DIGIT:
        return LegOf(canonical[:-1] + "0", Leg.CUSTOMER)
    return None


@dataclass(slots=True)
class _Pending:
    call_id: str
    since_s: float
    legs: dict[Leg, str]


class LegPairer:
    """Sockets in (``arrive``/``leave``), calls out (:class:`Paired`)."""

    def __init__(self, *, convention: bool = True, max_pending: int = MAX_PENDING,
                 max_wait_s: float = MAX_WAIT_S) -> None:
        self.convention = convention
        self.max_pending = max_pending
        self.max_wait_s = max_wait_s
        self._registered: dict[str, LegOf] = {}
        self._pending: dict[str, _Pending] = {}
        self._connected: dict[str, LegOf] = {}

    def expect(self, call_id: str, *, agent_uuid: str, customer_uuid: str) -> None:
        """Register the two UUIDs of ``call_id`` (the control API)."""
        agent, customer = _canonical(agent_uuid), _canonical(customer_uuid)
        if agent == customer:
            raise PbxProtocolError("same_uuid", f"both legs of {shown(call_id)} use one UUID")
        self._registered[agent] = LegOf(call_id, Leg.AGENT)
        self._registered[customer] = LegOf(call_id, Leg.CUSTOMER)

    def forget(self, call_id: str) -> None:
        """Drop the registration of ``call_id`` (the call ended or was never tapped)."""
        self._registered = {u: leg for u, leg in self._registered.items()
                            if leg.call_id != call_id}

    def leg_of(self, uuid: str) -> LegOf:
        """The call and leg of a socket's UUID, or a refusal (``unknown_leg``)."""
        try:
            canonical = _canonical(uuid)
        except PbxProtocolError:
            canonical = uuid
        found = self._registered.get(canonical)
        if found is None and self.convention:
            found = by_convention(canonical)
        if found is None:
            raise PbxProtocolError("unknown_leg", f"AudioSocket UUID {shown(uuid)} is neither "
                                   "registered nor in the a/c last-digit convention")
        return found

    def arrive(self, uuid: str, now_s: float) -> tuple[LegOf, Paired | None]:
        """A socket announced ``uuid``: its leg, and the pairing if this completes one."""
        leg = self.leg_of(uuid)
        canonical = _canonical(uuid)
        if canonical in self._connected:
            raise PbxProtocolError("leg_twice", f"AudioSocket UUID {uuid} is already connected")
        pending = self._pending.get(leg.call_id)
        if pending is None:
            if len(self._pending) >= self.max_pending:
                raise PbxProtocolError("too_many_pending",
                                       f"{len(self._pending)} calls wait for their second leg")
            pending = self._pending[leg.call_id] = _Pending(leg.call_id, now_s, {})
        if leg.leg in pending.legs:
            raise PbxProtocolError("leg_twice", f"call {shown(leg.call_id)} already has its "
                                   f"{leg.leg} leg")
        pending.legs[leg.leg] = canonical
        self._connected[canonical] = leg
        if len(pending.legs) < 2:
            return leg, None
        del self._pending[leg.call_id]
        return leg, Paired(leg.call_id, pending.legs[Leg.AGENT], pending.legs[Leg.CUSTOMER])

    def leave(self, uuid: str) -> LegOf | None:
        """A socket closed: forget it (and its half-pair); its leg, or None if unknown."""
        try:
            canonical = _canonical(uuid)
        except PbxProtocolError:
            return None
        leg = self._connected.pop(canonical, None)
        if leg is not None:
            pending = self._pending.get(leg.call_id)
            if pending is not None:
                pending.legs.pop(leg.leg, None)
                if not pending.legs:
                    del self._pending[leg.call_id]
        return leg

    def expire(self, now_s: float) -> list[str]:
        """The UUIDs of legs that waited more than ``max_wait_s`` for their partner; they are
        forgotten here, and the listener closes their sockets."""
        stale = [p for p in self._pending.values() if now_s - p.since_s > self.max_wait_s]
        out: list[str] = []
        for pending in stale:
            del self._pending[pending.call_id]
            for uuid in pending.legs.values():
                self._connected.pop(uuid, None)
                out.append(uuid)
        return out

    @property
    def waiting(self) -> int:
        """Calls with one leg connected."""
        return len(self._pending)


def _canonical(uuid: str) -> str:
    try:
        return str(uuidlib.UUID(uuid))
    except (ValueError, TypeError, AttributeError):
        raise PbxProtocolError("bad_uuid", f"not a UUID: {shown(uuid)}") from None
