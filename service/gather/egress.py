"""Connections to a FHIR server: to the address that was checked, resolved within the time budget.

A name is resolved once (``getaddrinfo`` in a thread, so a slow resolver cannot outlast the budget),
each address is checked against the ``Permit`` of the fhirServer, and the socket connects to a
checked address itself — no second lookup that DNS rebinding could answer differently. TLS (SNI and
the certificate check) still uses the host name: urllib3 wraps the socket returned here.

Which addresses a permit admits:
- ``explicit`` (the fhirServer matched a ``VCF_CDS_FHIR_ALLOWLIST`` entry or the calling issuer's
  ``fhirServers``): any — a hospital's FHIR server is often on a private network;
- otherwise (the loopback development mode): loopback only. ``public_address`` says which addresses
  a wider rule could ever admit: never private, loopback, link-local (169.254.169.254, the cloud
  metadata service, included), multicast, unspecified or reserved, nor one of these wrapped in IPv6
  (IPv4-mapped, 6to4, NAT64; Teredo refused outright).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from .origins import CheckedUrl, Origin, check_url, under

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_LOOKUPS = 8  # resolver threads at once per process; a stuck resolver holds one until it returns
_lookups = threading.BoundedSemaphore(MAX_LOOKUPS)
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


class EgressRefusedError(OSError):
    """No connection was made. The message is for the log (no URL, no token)."""


@dataclass(frozen=True)
class Permit:
    """What a checked fhirServer may be connected to: its origin, and which addresses."""

    origin: Origin
    explicit: bool  # matched an allowlist entry: any address; else loopback only
    deadline: float  # time.monotonic() after which nothing more is started
    # The caller's prefixes on this origin: every URL of the search (redirects, next links) stays under
    # one, as fhirServer had to; none (the loopback development mode): anywhere on the origin
    within: tuple[CheckedUrl, ...] = ()

    def admits(self, address: IPAddress) -> bool:
        return self.explicit or loopback_address(address)

    def allows(self, url: str) -> bool:
        """Whether a search may ask ``url`` (read by the connecting parser, service/gather/origins.py)."""
        try:
            checked = check_url(url)
        except ValueError:
            return False  # a form parsers read differently leads nowhere we have checked
        if checked.origin != self.origin:
            return False
        return not self.within or any(under(checked, prefix) for prefix in self.within)


def loopback_address(address: IPAddress) -> bool:
    # Only an IPv4-mapped address reaches this machine's IPv4 loopback; NAT64 and 6to4 ones that embed
    # 127.x are routed off it, to a gateway or relay
    inner = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return inner.is_loopback if inner is not None else address.is_loopback


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def public_address(address: IPAddress) -> bool:
    """Whether ``address`` is a public unicast address (see the module docstring)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.teredo is not None:
            return False
        inner = _embedded_ipv4(address)
        if inner is not None:
            return public_address(inner)
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or not address.is_global
    )


def _canonical(host: str) -> str:
    host = host.strip("[]").lower()
    try:
        return str(ipaddress.IPv6Address(host)) if ":" in host else host
    except ValueError:
        return host


def resolve(host: str, port: int, deadline: float) -> list[tuple[IPAddress, tuple[object, ...]]]:
    """The addresses of ``host`` with their socket addresses; ``EgressRefusedError`` when the name does
    not resolve before ``deadline`` (or at all)."""
    found: list[object] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as e:
            found.append(e)
        finally:
            _lookups.release()
            done.set()

    if not _lookups.acquire(timeout=max(0.0, deadline - time.monotonic())):
        raise EgressRefusedError("no resolver thread was free within the time budget")
    threading.Thread(target=lookup, name="vcf-cds-resolve", daemon=True).start()
    if not done.wait(max(0.0, deadline - time.monotonic())) or not isinstance(found[0], list):
        raise EgressRefusedError("the name did not resolve within the time budget")
    addresses = []
    for family, _, _, _, sockaddr in found[0]:
        if family in (socket.AF_INET, socket.AF_INET6):
            addresses.append((ipaddress.ip_address(str(sockaddr[0]).split("%")[0]), tuple(sockaddr)))
    return addresses


def connect(
    permit: Permit, host: str, port: int, timeout: float | None, options: Sequence[tuple[int, int, int | bytes]] = ()
) -> socket.socket:
    """A socket connected to a checked address of ``host`` (which must be the permit's origin)."""
    if (_canonical(host), port) != (permit.origin.host, permit.origin.port):
        raise EgressRefusedError("the connection is not to the origin that was checked")
    admitted = [(a, s) for a, s in resolve(permit.origin.host, port, permit.deadline) if permit.admits(a)]
    if not admitted:
        raise EgressRefusedError("the name resolves to no address this fhirServer may use")
    error: OSError = EgressRefusedError("no address to connect to")
    for address, sockaddr in admitted:
        remaining = permit.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the time budget was spent connecting")
        sock = socket.socket(socket.AF_INET6 if address.version == 6 else socket.AF_INET, socket.SOCK_STREAM)
        try:
            for level, name, value in options:
                sock.setsockopt(level, name, value)
            sock.settimeout(min(timeout, remaining) if timeout is not None else remaining)
            sock.connect(sockaddr)
            sock.settimeout(timeout)
            return sock
        except OSError as e:
            sock.close()
            error = e
    raise error
