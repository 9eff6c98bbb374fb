"""The agent's local web dashboard (stdlib asyncio HTTP + Server-Sent Events).

See :class:`~appliance.sinks.dashboard.server.DashboardServer`.  Every asset ships in
``static/``: the page works with no network beyond the box.
"""

from appliance.sinks.dashboard.http import is_loopback
from appliance.sinks.dashboard.server import DashboardServer

__all__ = ["DashboardServer", "is_loopback"]
