"""The agent's local web dashboard (aiohttp.web + Server-Sent Events).

See :class:`~appliance.sinks.dashboard.server.DashboardServer`; the access checks and the
bounded body readers other routes use are in :mod:`appliance.sinks.dashboard.access`, the
views and their pages' queues in :mod:`appliance.sinks.dashboard.views`.  Every asset ships
in ``static/``: the page works with no network beyond the box.
"""

from appliance.sinks.dashboard.access import API_MAX_BODY, is_loopback, read_body, read_json
from appliance.sinks.dashboard.server import DashboardServer

__all__ = ["API_MAX_BODY", "DashboardServer", "is_loopback", "read_body", "read_json"]
