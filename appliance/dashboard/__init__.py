"""The agent's local web dashboard (stdlib asyncio HTTP + Server-Sent Events).

See :class:`~appliance.dashboard.server.DashboardServer`.  Every asset ships in
``static/``: the page works with no network beyond the box.
"""

from appliance.dashboard.http import is_loopback
from appliance.dashboard.server import DashboardServer

__all__ = ["DashboardServer", "is_loopback"]
