"""The address of the client that sent a request: the peer, or, behind proxies the configuration
trusts, the nearest address in X-Forwarded-For that is not one of theirs; and its network, for
keeping addresses anonymous."""

import ipaddress

# Kept of an anonymised address: the /24 of IPv4, the /48 of IPv6 (the last 80 bits zeroed).
_NETWORK_BITS = {4: 24, 6: 48}


def client_address(request, trusted_proxies) -> str | None:
    """The client's address as text; None when it cannot be known (a unix socket peer, with no
    X-Forwarded-For).

    A peer on a unix socket counts as a trusted proxy: only processes of this machine reach it.
    """
    host = getattr(request.getClientAddress(), "host", None)
    client = _address(host) if host is not None else None
    if host is not None and not _trusted(client, trusted_proxies):
        return str(client) if client is not None else None
    for hop in reversed(_forwarded_for(request)):
        client = _address(hop)
        if client is None:  # not an address: who sent it cannot be known
            return None
        if not _trusted(client, trusted_proxies):
            break
    return str(client) if client is not None else None


def scheme_of(request, trusted_proxies) -> str:
    """The scheme the client used: https on a TLS connection; behind a proxy the configuration
    trusts (or on a unix socket), what its X-Forwarded-Proto says; else http."""
    if request.isSecure():
        return "https"
    host = getattr(request.getClientAddress(), "host", None)
    if host is not None and not _trusted(_address(host), trusted_proxies):
        return "http"
    forwarded = (request.getHeader(b"x-forwarded-proto") or b"").decode("latin-1").strip().lower()
    return forwarded if forwarded in ("http", "https") else "http"


def network_of(address: str | None) -> str | None:
    """The address with its host part zeroed: 203.0.113.7 gives 203.0.113.0."""
    if address is None:
        return None
    ip = ipaddress.ip_address(address)
    return str(ipaddress.ip_network(f"{ip}/{_NETWORK_BITS[ip.version]}", strict=False).network_address)


def _forwarded_for(request) -> list[str]:
    """The hops of every X-Forwarded-For header, in order (the nearest proxy's last)."""
    values = request.requestHeaders.getRawHeaders(b"x-forwarded-for") or []
    hops = (hop.strip() for value in values for hop in value.decode("latin-1").split(","))
    return [hop for hop in hops if hop]  # "a, b," from a careless proxy names a and b


def _address(text: str):
    """An IP address from a peer or a hop: bare, [IPv6]:port or IPv4:port; IPv4 when it is an
    IPv4-mapped IPv6 address; None when it is not an address."""
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.version == 6 and address.scope_id is not None:  # fe80::1%eth0: PostgreSQL has no zones
        return ipaddress.ip_address(str(address).partition("%")[0])
    return address


def _trusted(address, trusted_proxies) -> bool:
    return address is not None and any(address in network for network in trusted_proxies)
