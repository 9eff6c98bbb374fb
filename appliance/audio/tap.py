"""The PBX tap's calls: what every listener (WebSocket, AudioSocket, RTP) hands its audio to.

A listener knows a call by its own id and delivers each leg's audio as it arrives, at 8 or
16 kHz.  :class:`TapCalls` keeps, per call, a :class:`~appliance.audio.legs.LegAligner`
(two legs → one block stream at the pipeline rate) and feeds the blocks to the
:class:`~appliance.stream.shards.ShardPool` under the call's id, so a tap call takes the
same path as a file or the desk.  It turns the listeners' lifecycle into the call's:

* the first audio or an explicit :meth:`open` starts the call (``call_started`` with the
  agent id and the source), with the ring time if the signalling gave it
  (``answer_delay``);
* a leg that closes (its socket, its stream, a hang-up message) is a ``leg_ended`` signal
  (``hung_up_first`` when the agent's leg goes clearly first, the customer left listening)
  and is silence from then on; :meth:`hung_up` passes on signalling that names who hung
  up, which is what tells a PBX teardown apart (both legs close within milliseconds);
* the call ends when both legs have closed, when the control API ends it, or when no audio
  came for ``idle_timeout_s`` (a sender that vanished): the rest of its audio is analysed
  and its summary follows.

The control API may announce a call before its audio comes (:meth:`plan`: agent id,
language, ring time, source); the listener's :meth:`open` then takes what the plan says
unless the stream itself says it.  A plan whose audio never came is forgotten after
``plan_ttl_s`` (:meth:`expire`).  Hold marks (:meth:`mark`) land at the call's audio time.

No clock is read here: the caller passes ``now_s`` (monotonic seconds) where time matters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from appliance.audio.legs import LegAligner
from appliance.engine.marks import Mark
from appliance.errors import CALL_EXISTS, CALLS_FULL, ApplianceError
from appliance.events import EndReason, Party

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CallPlan:
    """What the control API says of a call before (or while) its audio arrives."""

    call_id: str
    agent_id: str | None = None
    language: str | None = None
    ring_s: float | None = None
    """Seconds from ring to answer, when the PBX knows them (``answer_delay``)."""
    source: str | None = None
    created_s: float = 0.0
    """Monotonic time of the announcement (plans expire)."""


@dataclass
class _TapCall:
    aligner: LegAligner
    last_audio_s: float
    opened_s: float
    agent_id: str | None = None
    source: str = "tap"
    legs_open: set[Party] = field(default_factory=lambda: {"agent", "customer"})
    on_hold: bool = False


class TapCalls:
    def __init__(self, pool: Any, *, idle_timeout_s: float = 10.0,
                 max_skew_s: float = 0.3, plan_ttl_s: float = 300.0,
                 max_plans: int = 10000) -> None:
        self.pool = pool
        self.idle_timeout_s = idle_timeout_s
        self.max_skew_s = max_skew_s
        self.plan_ttl_s = plan_ttl_s
        self.max_plans = max_plans
        self.calls: dict[str, _TapCall] = {}
        self.plans: dict[str, CallPlan] = {}
        self.dropped_blocks = 0

    def plan(self, plan: CallPlan) -> None:
        """Announce a call (ApplianceError ``call.exists`` when it is open or announced,
        ``calls.full`` beyond ``max_plans`` waiting announcements)."""
        if plan.call_id in self.calls or plan.call_id in self.plans:
            raise ApplianceError(CALL_EXISTS, f"call {plan.call_id!r} exists already")
        if len(self.plans) >= self.max_plans:
            raise ApplianceError(CALLS_FULL, f"{self.max_plans} calls announced and waiting "
                                 "for audio already")
        self.plans[plan.call_id] = plan

    def forget(self, call_id: str) -> bool:
        """Drop an announcement whose call has not started; False when there was none."""
        return self.plans.pop(call_id, None) is not None

    def open(self, call_id: str, *, rate_hz: int, now_s: float, lang: str | None = None,
             agent_id: str | None = None, source: str | None = None,
             ring_s: float | None = None) -> None:
        """Start the call (ApplianceError ``call.exists`` / ``calls.full`` from the pool);
        what the stream does not say comes from the call's announcement, if any."""
        aligner = LegAligner(rate_hz, max_skew_s=self.max_skew_s)  # ValueError: bad rate
        plan = self.plans.get(call_id) or CallPlan(call_id)
        lang = lang or plan.language
        agent_id = agent_id or plan.agent_id
        source = source or plan.source or "tap"
        ring_s = ring_s if ring_s is not None else plan.ring_s
        self.pool.open_call(call_id, lang=lang, agent_id=agent_id, source=source)
        self.plans.pop(call_id, None)
        self.calls[call_id] = _TapCall(aligner, now_s, now_s, agent_id, source)
        if ring_s is not None:
            self.pool.signal(call_id, "answered", ring_s=ring_s)

    def is_open(self, call_id: str) -> bool:
        return call_id in self.calls

    def mark(self, call_id: str, event: str) -> bool:
        """A hold mark (``hold_start`` / ``hold_end``) at the call's audio time so far;
        False when the call is not open."""
        call = self.calls.get(call_id)
        if call is None:
            return False
        self.pool.add_mark(call_id, Mark(call.aligner.t_s, event))
        if event in ("hold_start", "hold_end"):
            call.on_hold = event == "hold_start"
        return True

    def live(self, now_s: float) -> list[dict[str, Any]]:
        """The open calls for the floor view: id, agent, source, seconds open, hold."""
        return [{"call_id": cid, "agent_id": c.agent_id, "source": c.source,
                 "open_s": round(max(0.0, now_s - c.opened_s), 1), "on_hold": c.on_hold,
                 "audio_s": round(c.aligner.t_s, 2)}
                for cid, c in self.calls.items()]

    def audio(self, call_id: str, party: Party, samples: np.ndarray, now_s: float) -> bool:
        """A leg's audio; False when the call is not open (the listener counts a drop)."""
        call = self.calls.get(call_id)
        if call is None:
            return False
        call.last_audio_s = now_s
        self._send(call_id, call.aligner.push(party, samples, now_s))
        return True

    def leg_ended(self, call_id: str, party: Party) -> None:
        """One leg closed; the call ends when both have."""
        call = self.calls.get(call_id)
        if call is None or party not in call.legs_open:
            return
        call.legs_open.discard(party)
        self._send(call_id, call.aligner.end_leg(party))
        self.pool.signal(call_id, "leg_ended", party=party)
        if not call.legs_open:
            self.end(call_id, "source_closed")

    def hung_up(self, call_id: str, party: Party) -> None:
        """The signalling names who hung up (a hang-up cause on one leg): the reliable way
        to tell, since a PBX tears both legs down within milliseconds of each other."""
        if call_id in self.calls:
            self.pool.signal(call_id, "hung_up", party=party)

    def end(self, call_id: str, reason: EndReason) -> bool:
        """End the call now: what is left of its audio, then its end and summary."""
        call = self.calls.pop(call_id, None)
        if call is None:
            return False
        self._send(call_id, call.aligner.flush())
        stats = call.aligner.stats()
        if any(v["filled_s"] or v["late_s"] for v in stats.values()):
            log.info("tap call ended with filled legs", extra={"fields": {
                "call": call_id, **{f"{p}_{k}": v for p, d in stats.items()
                                    for k, v in d.items()}}})
        return bool(self.pool.end_call(call_id, reason))

    def expire(self, now_s: float) -> list[str]:
        """End every call whose legs sent nothing for ``idle_timeout_s`` (the sender
        vanished without a hang-up), and forget announcements older than ``plan_ttl_s``;
        returns the ids of the calls ended."""
        stale = [cid for cid, p in self.plans.items() if now_s - p.created_s >= self.plan_ttl_s]
        for cid in stale:
            log.info("announced call %s never sent audio; forgotten", cid)
            del self.plans[cid]
        gone = [cid for cid, c in self.calls.items()
                if now_s - c.last_audio_s >= self.idle_timeout_s]
        for cid in gone:
            log.warning("tap call %s: no audio for %.0f s, ended", cid, self.idle_timeout_s)
            self.end(cid, "source_closed")
        return gone

    def _send(self, call_id: str, blocks: list[Any]) -> None:
        for b in blocks:
            if not self.pool.push(call_id, b):
                self.dropped_blocks += 1
