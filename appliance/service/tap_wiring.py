"""What a :class:`~appliance.service.tap_service.TapService` is made of: its HTTP server
(pages, control API, WebSocket listener, health, metrics) and its socket listeners, built
from the configuration.  Kept apart so the service's lifecycle reads on its own."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from appliance.sinks.metrics import TapCollector, WorkerCollector

if TYPE_CHECKING:
    from appliance.service.tap_service import TapService

RTP_TICK_S = 0.06
"""How often the RTP listener plays its streams' due audio into the calls (seconds): 60 ms
keeps its per-call cost a quarter lower than 20 ms (measured with bench_tap) for at most 40 ms
more cue latency."""
MAX_PAGES = 2048
"""Dashboard pages (agents' and team leads') open at once on a tap (a desk allows 16)."""


def make_listeners(svc: TapService) -> dict[str, Any]:
    """The socket listeners ``[tap.audiosocket]`` and ``[tap.rtp]`` enable (the WebSocket
    listener lives on the HTTP server: :func:`make_server`)."""
    cfg = svc.cfg.tap
    out: dict[str, Any] = {}
    if cfg.audiosocket.enabled:
        from appliance.audio.pbx.audiosocket_listener import AudioSocketListener

        out["audiosocket"] = AudioSocketListener(svc.tap, cfg.audiosocket,
                                                 pair_wait_s=cfg.pair_wait_s, clock=svc.clock)
    if cfg.rtp.enabled:
        from appliance.audio.rtp.listener import RtpListener

        out["rtp"] = RtpListener(svc.tap, cfg.rtp, clock=svc.clock, tick_s=RTP_TICK_S)
    return out


def make_server(svc: TapService) -> Any:
    """The HTTP server: agents' pages (``/agent/<id>``), the floor (``/floor``), the control
    API (``/api/calls``), the WebSocket listener (``/tap/ws``), ``/healthz``, ``/metrics``."""
    from appliance.audio.pbx.ws_listener import WsTapListener
    from appliance.service.control_api import ControlApi
    from appliance.sinks.dashboard.server import DashboardServer

    ws = WsTapListener(svc.tap, svc.cfg.tap, clock=svc.clock)
    svc.ws = ws
    if svc.cfg.tap.websocket.enabled:
        svc.listeners["websocket"] = ws
    api = ControlApi(svc.tap, clock=svc.clock, audiosocket=svc.listeners.get("audiosocket"),
                     rtp=svc.listeners.get("rtp"))
    svc.api = api
    collectors: list[Any] = [TapCollector(svc.figures), WorkerCollector(svc.pool.stats)]
    if svc.fleet is not None:
        from appliance.sinks.fleet.collector import FleetCollector

        collectors.append(FleetCollector(svc.fleet.health))
    return DashboardServer(
        svc.host, svc.port, token=svc.cfg.dashboard.token,
        on_agent_hold=svc.agent_hold, on_agent_end=svc.agent_end, health=svc.health,
        collectors=collectors,
        routes=[*ws.routes(), *api.routes(), *svc.floor_routes()],
        max_clients=MAX_PAGES)
