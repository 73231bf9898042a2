"""The client's address behind reverse proxies: ``X-Forwarded-For`` and ``Forwarded`` are believed
only from the addresses and networks of ``http.trusted_proxies``; otherwise (the default) the
address of the TCP peer is the client. Used for the per-address login limits and the access log.

With trusted proxies, the forwarded chain is read from the right (the hop nearest to us) and the
first address that is not itself a trusted proxy is the client: a client cannot forge its way past
the proxy by sending its own X-Forwarded-For (the proxy appends the real peer after it).
"""

from __future__ import annotations

import functools
import ipaddress
import re

from aiohttp import web

# Where the dispatcher keeps the address for the access log (a typed key where aiohttp has them).
CLIENT_KEY = web.RequestKey("tigase_rest.client", str) if hasattr(web, "RequestKey") else "tigase_rest.client"

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_FORWARDED_FOR = re.compile(r'for="?([^;,"]+)"?', re.I)


@functools.lru_cache(maxsize=64)
def _networks(trusted: tuple[str, ...]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(t, strict=False) for t in trusted)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("["):  # Forwarded: for="[2001:db8::1]:4711"
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:  # 192.0.2.1:4711
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_address(request: web.BaseRequest, trusted: tuple[str, ...]) -> str:
    peer = request.remote or ""
    if not trusted:
        return peer
    networks = _networks(trusted)

    def is_trusted(address) -> bool:
        return address is not None and any(address in n for n in networks)

    if not is_trusted(_address(peer)):
        return peer
    hops: list[str] = []
    for value in request.headers.getall("Forwarded", ()):
        hops.extend(m.group(1) for m in _FORWARDED_FOR.finditer(value))
    if not hops:
        for value in request.headers.getall("X-Forwarded-For", ()):
            hops.extend(h for h in value.split(",") if h.strip())
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return peer  # garbage in the chain: believe only what we saw ourselves
        if not is_trusted(address):
            return str(address)
    return str(_address(hops[0])) if hops else peer
