"""Server URLs: ``tcp://host:port`` and ``quic://host:port``, with ``SPITFIRE_URL`` as the default.

A cluster's members are listed in one URL, ``tcp://h1:7878,h2:7878,h3:7878``, or as a list of URLs
(`parse_urls`); every address has the same scheme.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import InvalidURL

#: Used when neither ``url=`` nor ``SPITFIRE_URL`` is given (the server's default ``--listen``).
DEFAULT_URL = "tcp://127.0.0.1:7878"
#: The port of a URL that names none.
DEFAULT_PORT = 7878
SCHEMES = ("tcp", "quic")
#: Addresses one client may list at most (a cluster has a handful of members).
MAX_ADDRESSES = 16


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a server listens and how to reach it."""

    scheme: str
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        """True for localhost and loopback addresses (where a self-signed certificate is accepted)."""
        return is_loopback_host(self.host)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and 127.0.0.0/8 or ::1 addresses."""
    if host.lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_url(url: str | None) -> str:
    """``url``, else ``$SPITFIRE_URL``, else the default ``tcp://127.0.0.1:7878``."""
    if url:
        return url
    return os.environ.get("SPITFIRE_URL") or DEFAULT_URL


def parse_url(url: str | None = None) -> Endpoint:
    """Parse a server URL (None: ``SPITFIRE_URL`` or the default).

    :raises InvalidURL: not ``tcp://host[:port]`` or ``quic://host[:port]``.
    """
    text = resolve_url(url).strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        raise InvalidURL(f"server URL {text!r} has no scheme: write tcp://{text} (or quic://{text} for QUIC)")
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise InvalidURL(f"server URL {text!r}: scheme must be tcp:// or quic://, not {scheme}://")
    rest = rest.rstrip("/")
    if "/" in rest or "?" in rest or "@" in rest:
        raise InvalidURL(f"server URL {text!r}: only {scheme}://host:port is allowed (no path or user)")
    host, port = _split_host_port(rest, text)
    return Endpoint(scheme, host, port)


def _split_host_port(hostport: str, text: str) -> tuple[str, int]:
    if hostport.startswith("["):
        host, bracket, tail = hostport[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise InvalidURL(f"server URL {text!r}: an IPv6 address is written [::1]:7878")
        port_text = tail[1:] if tail else ""
    elif hostport.count(":") > 1:
        raise InvalidURL(f"server URL {text!r}: put an IPv6 address in brackets, e.g. tcp://[::1]:7878")
    else:
        host, _, port_text = hostport.partition(":")
    if not host:
        raise InvalidURL(f"server URL {text!r} names no host")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidURL(f"server URL {text!r}: port must be a number from 1 to 65535")
    return host, int(port_text)


def parse_urls(url: str | Sequence[str] | None = None) -> tuple[Endpoint, ...]:
    """Parse one server URL, a URL that lists several (``tcp://h1:p1,h2:p2,h3:p3``, the members of
    a cluster), or a list of URLs (None: ``SPITFIRE_URL`` or the default). Duplicates are dropped,
    the order is kept.

    :raises InvalidURL: an address `parse_url` refuses, an empty list or address, more than
        `MAX_ADDRESSES` addresses, or addresses of different schemes.
    """
    if url is not None and not isinstance(url, str):
        items = list(url)
        if not items:
            raise InvalidURL("no server URL given: pass a URL, e.g. tcp://127.0.0.1:7878, or a list of them")
        found = [e for item in items for e in parse_urls(item)]
        text = ",".join(items)
    else:
        text = resolve_url(url).strip()
        scheme, sep, rest = text.partition("://")
        if not sep or "," not in rest:
            return (parse_url(text),)
        parts = [part.strip() for part in rest.split(",")]
        if not all(parts):
            raise InvalidURL(f"server URL {text!r} has an empty address: write {scheme}://h1:p1,h2:p2")
        found = [parse_url(f"{scheme}://{part}") for part in parts]
    endpoints = tuple(dict.fromkeys(found))
    if len(endpoints) > MAX_ADDRESSES:
        raise InvalidURL(f"server URL {text!r} lists {len(endpoints)} addresses; at most {MAX_ADDRESSES}")
    if len({e.scheme for e in endpoints}) > 1:
        raise InvalidURL(
            f"server URL {text!r} mixes schemes: give every address the same one (tcp:// or quic://)"
        )
    return endpoints


def format_urls(endpoints: Sequence[Endpoint]) -> str:
    """One URL naming every address: ``tcp://h1:p1,h2:p2`` (just `Endpoint.url` for one)."""
    first = endpoints[0].url
    return ",".join([first, *(e.url.partition("://")[2] for e in endpoints[1:])])
