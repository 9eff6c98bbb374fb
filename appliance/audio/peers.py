"""Who may send to the PBX tap's listeners (AudioSocket, RTP): an allow-list of addresses.

AudioSocket and RTP carry no token, so the peer's address is the only check:

* ``allow`` empty: loopback peers only (the listeners bind ``127.0.0.1`` by default, and a
  listener beyond loopback without ``allow`` is refused by the config check);
* ``allow`` given (``10.1.2.3``, ``10.1.2.0/24``, IPv6 alike): exactly those peers, loopback
  included only if listed.

An IPv4 peer seen through a dual-stack IPv6 socket (``::ffff:10.1.2.3``) is checked as the
IPv4 address.  A peer address that does not parse is refused.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from appliance.config.tap import parse_allow


class PeerFilter:
    """``allows(host)``: whether a peer address may send (see the module docstring)."""

    def __init__(self, allow: list[str]) -> None:
        self.networks: list[Any] = parse_allow(allow)  # ValueError: a bad entry

    def allows(self, host: object) -> bool:
        return _allows(tuple(self.networks), str(host))


@lru_cache(maxsize=1024)
def _allows(networks: tuple[Any, ...], host: str) -> bool:
    try:
        addr: Any = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if not networks:
        return bool(addr.is_loopback)
    return any(addr.version == n.version and addr in n for n in networks)
