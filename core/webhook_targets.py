"""Where binwatch may POST a webhook: the defence against server-side request forgery (an
operator's `webhook_url` of `http://127.0.0.1:8086/query?q=…` must not reach our own InfluxDB).

By default only `https` to public addresses. The address is checked after DNS resolution, on
the address the connection is actually made to (`GuardedBackend` resolves the name itself and
connects to the checked address), so a name that resolves to a private address, or that changes
between a check and the connection, is refused too. Loopback, private, link-local and other
non-public addresses, and plain `http`, need `BINWATCH_WEBHOOK_ALLOW_PRIVATE=true` (the demo
and the tests set it). The pure checks are what the fleet import uses to refuse a URL early."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

import httpcore

from core.printable import CONTROLS

ALLOW_SETTING: Final = "BINWATCH_WEBHOOK_ALLOW_PRIVATE"
_UNSENDABLE: Final = re.compile(rf"[\s{CONTROLS}]")


class AddressRefused(httpcore.ConnectError):
    """The URL's host resolves only to addresses binwatch must not call."""


def url_problem(url: str, *, allow_private: bool) -> str | None:
    """Why binwatch will not POST to `url` (before any DNS lookup), or None. A host that is an
    address literal or `localhost` is judged here; other names when connecting."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        return f"{url!r} is not a URL: {exc}"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"{url!r} is not an http(s) URL with a host"
    if parts.username is not None or parts.password is not None:
        return f"{url!r} carries credentials: the receiver checks the signature instead"
    # What the sender cannot send to (core/webhooks.py refuses it per attempt), refused here so
    # a fleet file says so with its line: urlsplit drops tabs and line breaks without a word.
    if _UNSENDABLE.search(url):
        return f"{url!r} holds a space or a control character"
    try:
        parts.hostname.encode("idna")
    except UnicodeError:
        return f"{url!r} names no host: a label of it is empty or over 63 characters"
    if allow_private:
        return None
    if parts.scheme != "https":
        return f"{url!r} is plain http: webhooks go over https (or set {ALLOW_SETTING}=true)"
    host = parts.hostname.rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return f"{url!r} names this machine (or set {ALLOW_SETTING}=true)"
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return None
    return address_problem(str(literal), allow_private=False)


# IPv6 addresses whose last 32 bits are an IPv4 address that the host or a gateway on its way
# reaches: IPv4-mapped and SIIT's IPv4-translated (RFC 4291, 2765), IPv4-compatible (deprecated,
# RFC 4291) and NAT64's well-known prefix (RFC 6052), which a DNS64 network's gateway turns into
# IPv4 (`64:ff9b::a9fe:a9fe` is 169.254.169.254, the cloud's metadata). Python calls them
# global; they are as public as the IPv4 address they carry.
_CARRY_IPV4: Final = tuple(
    ipaddress.IPv6Network(net)
    for net in ("::ffff:0:0/96", "::ffff:0:0:0/96", "::/96", "64:ff9b::/96")
)
# NAT64's local-use prefix (RFC 8215): any prefix length within it, so where the IPv4 address
# sits is the network's choice; never public.
_LOCAL_NAT64: Final = ipaddress.IPv6Network("64:ff9b:1::/48")


def address_problem(address: str, *, allow_private: bool) -> str | None:
    """Why binwatch will not connect to this IP address, or None. An IPv6 address that carries
    an IPv4 one (above; 6to4's `2002:<ipv4>::`, RFC 3056) is judged by that."""
    given = ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address):
        if int(ip) > 1 and any(ip in net for net in _CARRY_IPV4):  # :: and ::1 are themselves
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
    if allow_private or (ip.is_global and not ip.is_multicast and given not in _LOCAL_NAT64):
        return None
    carried = f" (carrying {ip})" if ip is not given else ""
    return f"{given}{carried} is not a public address (set {ALLOW_SETTING}=true to allow it)"


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's network backend, resolving names itself and connecting only to addresses
    `address_problem` allows: the check is on the address connected to, not a lookup before."""

    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"{host}: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
        refusals: list[str] = []
        last_error: Exception | None = None
        for address in addresses:
            if why := address_problem(address, allow_private=self._allow_private):
                refusals.append(why)
                continue
            try:
                return self._backend.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                last_error = exc
        if last_error is not None:
            raise last_error
        raise AddressRefused(f"{host} refused: " + "; ".join(refusals))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise AddressRefused("webhooks never go to a Unix socket")

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)
