"""What the dashboard's pages are shown: views, each with its replay state and its pages.

A :class:`View` is one screen's worth of events: the desk's single view (``agent_id`` None,
served at ``/``) or one agent's (``/agent/<id>``, for a PBX tap where every agent opens their
own page).  Each keeps the last state snapshot, the last cues and the last summary, replayed
to a page that (re)connects; a new ``call_started`` clears the cues and the summary.

Each page (SSE connection) has a :class:`Client`: a bounded queue of encoded frames.  When it
is full the oldest frame — a stale state snapshot first — is dropped and counted, so
publishing never blocks.  :class:`Views` bounds the agents' views: beyond ``max_views`` the
view idle longest with no page open is evicted (counted).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections import OrderedDict, deque
from typing import Any

SSE_KINDS = {"state": "state", "summary": "summary", "call_started": "call",
             "call_ended": "call"}
"""Event kind -> SSE event name; every other kind is a ``cue``."""
NOT_FORWARDED = frozenset({"transcript", "word"})  # words stay in the engine's memory
AGENT_ID_CHARS = r"[A-Za-z0-9._@-]{1,64}"
AGENT_ID = re.compile(r"^(?!\.\.?$)" + AGENT_ID_CHARS + "$")
"""What an agent id for a view looks like: the page's URL carries it (so never "." nor
"..", which a browser folds away)."""


def _finite(obj: Any) -> Any:
    """NaN and infinities become null: the page parses strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def default_json(obj: Any) -> Any:
    """``json.dumps`` ``default``: numpy scalars, sets, and ``str`` for the rest."""
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item):
        return item()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    return str(obj)


def encode(event: dict[str, Any]) -> str:
    """``event`` as strict one-line JSON."""
    try:
        return json.dumps(event, separators=(",", ":"), allow_nan=False, default=default_json)
    except ValueError:
        return json.dumps(_finite(event), separators=(",", ":"), allow_nan=False,
                          default=default_json)


def frame(sse_kind: str, data: str) -> bytes:
    return f"event: {sse_kind}\ndata: {data}\n\n".encode()


class Client:
    """One SSE connection's bounded queue of encoded frames."""

    __slots__ = ("dropped", "maxlen", "queue", "wake")

    def __init__(self, maxlen: int) -> None:
        self.queue: deque[tuple[str, bytes]] = deque()
        self.maxlen = maxlen
        self.wake = asyncio.Event()
        self.dropped = 0

    def push(self, sse_kind: str, data: bytes) -> int:
        """Queue a frame; returns the frames dropped to make room (0 or 1)."""
        dropped = 0
        if len(self.queue) >= self.maxlen:
            stale = next((i for i, (k, _) in enumerate(self.queue) if k == "state"), 0)
            del self.queue[stale]
            dropped = 1
        self.queue.append((sse_kind, data))
        self.wake.set()
        self.dropped += dropped
        return dropped

    def take(self) -> bytes:
        """Every queued frame, in order, and an empty queue."""
        out = b"".join(f for _, f in self.queue)
        self.queue.clear()
        return out


class View:
    """One screen: its replay state and its connected pages."""

    __slots__ = ("clients", "cues", "last_state", "last_summary")

    def __init__(self, history: int) -> None:
        self.clients: set[Client] = set()
        self.last_state: str | None = None
        self.cues: deque[dict[str, Any]] = deque(maxlen=history)
        self.last_summary: str | None = None

    def publish(self, event: dict[str, Any]) -> int | None:
        """Remember ``event`` for the replay and queue it for every page: the frames dropped
        from full queues, or None when the kind is never sent to a page."""
        kind = str(event.get("kind", ""))
        if kind in NOT_FORWARDED:
            return None
        sse_kind = SSE_KINDS.get(kind, "cue")
        data = encode(event)
        if sse_kind == "state":
            self.last_state = data
        elif sse_kind == "summary":
            self.last_summary = data
            self.cues.clear()
        elif kind == "call_started":  # a new call: the last one's cues and summary go
            self.last_summary = None
            self.cues.clear()
        elif sse_kind == "cue":
            self.cues.append(event)
        out = frame(sse_kind, data)
        return sum(client.push(sse_kind, out) for client in self.clients)

    def replay(self) -> bytes:
        """What a page gets on connecting: the last state, the last cues (``"replay":
        true``) and the last summary."""
        frames: list[bytes] = []
        if self.last_state is not None:
            frames.append(frame("state", self.last_state))
        for cue in self.cues:
            frames.append(frame("cue", encode({**cue, "replay": True})))
        if self.last_summary is not None:
            frames.append(frame("summary", self.last_summary))
        return b"".join(frames)


class Views:
    """The desk's view and up to ``max_views`` agents' views, least recently used first."""

    def __init__(self, history: int, max_views: int) -> None:
        if max_views < 1:
            raise ValueError("max_views must be at least 1")
        self.history = history
        self.max_views = max_views
        self.desk = View(history)
        self._agents: OrderedDict[str, View] = OrderedDict()
        self.evicted = 0
        """Agents' views evicted to make room for another agent's."""

    def __len__(self) -> int:
        """Agents' views held (the desk's is always there and not counted)."""
        return len(self._agents)

    def __contains__(self, agent_id: str) -> bool:
        return agent_id in self._agents

    def get(self, agent_id: str | None) -> View | None:
        """The view (made when new, evicting the longest idle one without pages when full);
        None when every agent's view has a page open and there is no room."""
        if agent_id is None:
            return self.desk
        view = self._agents.get(agent_id)
        if view is not None:
            self._agents.move_to_end(agent_id)
            return view
        if len(self._agents) >= self.max_views:
            idle = next((k for k, v in self._agents.items() if not v.clients), None)
            if idle is None:
                return None
            del self._agents[idle]
            self.evicted += 1
        view = self._agents[agent_id] = View(self.history)
        return view

    def all(self) -> list[View]:
        return [self.desk, *self._agents.values()]
