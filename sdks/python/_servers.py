"""Which server a client talks to: one address, or a cluster's members and its leader.

Sans-I/O: the clients (`AsyncClient`, `Client`, `Worker`) ask it where to connect and tell it what
they learned (a connection made, a ``NOT_LEADER`` answer naming the leader or none); it never
touches the network or a clock. With one address it always names that one, as before clusters.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ._url import Endpoint, format_urls, parse_url
from .errors import InvalidURL

__all__ = ["FAILOVER_BACKOFF_MAX", "FAILOVER_CONNECT_TIMEOUT", "TOKEN_BYTES", "Servers", "new_token"]

#: Longest pause between two tries while a cluster has no leader (elections take ~0.3 s on a LAN).
FAILOVER_BACKOFF_MAX = 0.5
#: Seconds one connection attempt to one member may take before the next member is tried.
FAILOVER_CONNECT_TIMEOUT = 2.0
#: Bytes of a request-dedupe token (random: two clients never pick the same one).
TOKEN_BYTES = 16


def new_token() -> bytes:
    """A fresh request-dedupe token (``request_token`` of ENQUEUE and ENQUEUE_MANY)."""
    return os.urandom(TOKEN_BYTES)


class Servers:
    """The addresses of one client and the one to try first.

    ``multi`` (several addresses: a cluster) turns on leader following: a ``NOT_LEADER`` answer
    moves the client to the leader it names (`follow`), or to the next address while none is known.
    The leader may be an address not in the list (a member's ``--listen`` as the cluster knows it).
    """

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        if not endpoints:
            raise ValueError("Servers needs at least one address")
        self.endpoints = tuple(endpoints)
        #: Several addresses: follow the leader, make enqueues safe to resend with tokens.
        self.multi = len(self.endpoints) > 1
        self._next = 0
        #: The leader a member named, when it is none of ``endpoints``.
        self._leader: Endpoint | None = None

    @property
    def url(self) -> str:
        """Every address as one URL (``tcp://h1:p1,h2:p2``; the address itself for one)."""
        return format_urls(self.endpoints)

    @property
    def current(self) -> Endpoint:
        """The address tried first."""
        return self._leader or self.endpoints[self._next]

    def order(self) -> list[Endpoint]:
        """The addresses in the order to try them now: the current one, then the others in turn."""
        n = len(self.endpoints)
        rest = [self.endpoints[(self._next + i) % n] for i in range(n)]
        if self._leader is not None:
            return [self._leader, *rest]
        return rest

    def connected(self, endpoint: Endpoint) -> None:
        """A connection to ``endpoint`` was made: try it first from now on."""
        if endpoint in self.endpoints:
            self._next = self.endpoints.index(endpoint)
            self._leader = None
        else:
            self._leader = endpoint

    def follow(self, leader: str | None) -> None:
        """A member answered ``NOT_LEADER``: next, try ``leader`` (its ``host:port``), or the next
        address when no leader is known (or the one named cannot be parsed)."""
        endpoint = self._leader_endpoint(leader) if leader else None
        if endpoint is None:
            self._leader = None
            self._next = (self._next + 1) % len(self.endpoints)
        else:
            self.connected(endpoint)

    def _leader_endpoint(self, leader: str) -> Endpoint | None:
        scheme = self.endpoints[0].scheme
        try:
            endpoint = parse_url(f"{scheme}://{leader}")
        except InvalidURL:
            return None
        if endpoint.host in ("0.0.0.0", "::", ""):
            # A leader listening on every interface: reach it where we reached the member that named it.
            endpoint = Endpoint(scheme, self.current.host, endpoint.port)
        return endpoint
