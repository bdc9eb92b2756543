"""Where a URL leads, decided by the parser that connects — and refused when parsers could disagree.

requests hands URLs to urllib3, whose ``parse_url`` decides the host and port a connection goes to.
``urllib.parse.urlsplit`` reads some URLs differently: in ``http://127.0.0.1:1\\@127.0.0.1:2/`` it
sees userinfo and port 2, urllib3 sees port 1. So every origin decision (fhirServer, redirects,
``next`` links, ``jwks_url``, ``jku``) goes through ``check_url``: urllib3's reading, accepted only
when the URL is plain — printable ASCII, no backslash, no userinfo, no percent-encoded or trailing-dot
host, no shorthand IPv4 (``127.1``, ``0x7f.1``), no IPv6 zone — and ``urlsplit`` reads the same
scheme, host and port. Anything else is refused, not repaired.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

MAX_URL_CHARS = 4096
DEFAULT_PORTS = {"http": 80, "https": 443}
_PLAIN = re.compile(r"[\x21-\x7e]+")  # visible ASCII: no space, control or non-ASCII character
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)")


class UrlRefusedError(ValueError):
    """The URL is not one whose destination every parser agrees on. The message names no URL."""


@dataclass(frozen=True)
class Origin:
    scheme: str  # "http" or "https"
    host: str  # lowercase name, dotted IPv4, or IPv6 without brackets
    port: int  # the default port of the scheme when the URL names none


@dataclass(frozen=True)
class CheckedUrl:
    url: str
    origin: Origin
    path: str  # as urllib3 sends it: dot segments removed, "" for none
    query: str | None
    fragment: str | None


def check_url(url: object) -> CheckedUrl:
    """``url`` read by urllib3, if it is an http(s) URL that no other parser reads differently."""
    if not isinstance(url, str) or len(url) > MAX_URL_CHARS:
        raise UrlRefusedError("not a URL")
    if not _PLAIN.fullmatch(url) or "\\" in url:
        raise UrlRefusedError("it holds a space, control, non-ASCII character or backslash")
    try:
        parsed = parse_url(url)
        split = urlsplit(url)
        split_port = split.port
    except (LocationParseError, ValueError):
        raise UrlRefusedError("it is malformed") from None
    scheme = (parsed.scheme or "").lower()
    if scheme not in DEFAULT_PORTS:
        raise UrlRefusedError("it is not an http(s) URL")
    if parsed.auth is not None or split.username is not None or "@" in split.netloc:
        raise UrlRefusedError("it carries userinfo")
    host = _host(parsed.host or "", split.netloc)
    port = parsed.port if parsed.port is not None else DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        raise UrlRefusedError("its port is out of range")
    split_host = (split.hostname or "").lower()
    if ":" in split_host:
        split_host = _ipv6(split_host)
    agreed = (split.scheme.lower(), split_host, split_port or DEFAULT_PORTS[scheme])
    if agreed != (scheme, host, port) or (split_port is None) != (parsed.port is None):
        raise UrlRefusedError("parsers disagree on where it leads")
    return CheckedUrl(url, Origin(scheme, host, port), parsed.path or "", parsed.query, parsed.fragment)


def _host(host: str, netloc: str) -> str:
    if "%" in netloc:  # urllib3 decodes "a%2eb" to "a.b"; other parsers do not
        raise UrlRefusedError("its host is percent-encoded")
    host = host.lower()
    if host.startswith("["):
        return _ipv6(host[1:-1] if host.endswith("]") else "")
    if not _NAME.fullmatch(host):
        return _bad()  # empty, trailing dot, "_", IDNA-decoded non-ASCII …
    if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        # A numeric last label makes resolvers read the whole host as IPv4: only the dotted quad
        try:
            if str(ipaddress.IPv4Address(host)) == host:
                return host
        except ValueError:
            pass
        return _bad()
    return host


def _ipv6(text: str) -> str:
    try:
        return str(ipaddress.IPv6Address(text))  # canonical: "::ffff:127.0.0.1" is "::ffff:7f00:1"
    except ValueError:  # zone ids ("fe80::1%eth0") included
        return _bad()


def _bad() -> str:
    raise UrlRefusedError("its host is not a plain name or IP address")


def origin_of(url: object) -> Origin | None:
    """The origin of ``url``, or None when ``check_url`` refuses it."""
    try:
        return check_url(url).origin
    except UrlRefusedError:
        return None


def under(url: CheckedUrl, prefix: CheckedUrl) -> bool:
    """Whether ``url`` is at or below ``prefix``: same origin, path at a segment boundary.

    Paths are compared as urllib3 sends them (``/fhir/../admin`` is ``/admin``). Percent-encoded
    dots, slashes and backslashes could be decoded by the server into a path outside the prefix, so
    a URL holding one is under nothing."""
    if url.origin != prefix.origin or re.search(r"%(2e|2f|5c)", url.path, re.IGNORECASE):
        return False
    path, base = url.path.rstrip("/"), prefix.path.rstrip("/")
    return path == base or path.startswith(base + "/")
