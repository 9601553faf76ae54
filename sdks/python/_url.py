"""Server URLs: ``tcp://host:port`` and ``quic://host:port``, with ``SPITFIRE_URL`` as the default."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

from .errors import InvalidURL

#: Used when neither ``url=`` nor ``SPITFIRE_URL`` is given (the server's default ``--listen``).
DEFAULT_URL = "tcp://127.0.0.1:7878"
#: The port of a URL that names none.
DEFAULT_PORT = 7878
SCHEMES = ("tcp", "quic")


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
