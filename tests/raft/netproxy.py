"""TCP proxies between cluster members, so that a test can cut, heal and delay their links.

How members are wired through the proxies (and why): pysyncobj opens ONE TCP connection per pair
of members and uses it both ways. The member whose address (as a string, in its own ``--cluster``)
sorts higher dials; the other identifies it by the first message it sends, its own address, which
must be how the other lists it. So each member gets its own ``--cluster`` view:

- its own entry is its real Raft address (where it binds: a member's bind address stays its own);
- a member it dials is listed at the proxy of their pair, which forwards to that member's real
  address;
- a member that dials it is listed at that member's real address (only compared, never dialled).

Proxy ports are taken below every real Raft port (all five digits, so that strings sort as
numbers): the member with the higher real port then dials in both views, through the proxy. No
change to the server is needed; ``GET /api/cluster`` shows each member's own view.

A link has two directions, named by the member that sends. Cutting a direction drops the bytes
sent that way (the proxy keeps reading them, so nothing piles up: bounded); healing it resets the
connections that lost bytes (as TCP would give up on them; pysyncobj reconnects within
``--election-timeout``/3), so no message arrives damaged. A delay holds each chunk that long before
forwarding it (chunks of one direction in order). Every proxy runs on one asyncio loop in a daemon
thread of the test process; `Proxies.close` stops them and the thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import threading
from collections.abc import Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from clusterhelpers import Cluster, free_ports

__all__ = ["Link", "Proxies", "partitioned_cluster"]

#: ``--election-timeout`` of the members of `partitioned_cluster` (see there).
ELECTION_TIMEOUT = "400ms"
#: Bytes read at once from one side (a bounded buffer: drain() holds the next read back).
CHUNK = 64 * 1024
_T = TypeVar("_T")


class _Conn:
    """One proxied connection: its two sides and whether a cut dropped bytes of it."""

    def __init__(self, down: asyncio.StreamWriter, up: asyncio.StreamWriter) -> None:
        self.down = down
        self.up = up
        self.damaged = False
        self.tasks: list[asyncio.Task[None]] = []

    def abort(self) -> None:
        for writer in (self.down, self.up):
            writer.transport.abort()
        for task in self.tasks:
            task.cancel()


@dataclass
class Link:
    """The proxy of one pair of members: ``dialer`` connects through it to ``listener``'s
    ``target`` port."""

    dialer: str
    listener: str
    port: int
    target: int
    #: Senders whose bytes are dropped now.
    cut: set[str] = field(default_factory=set)
    #: Seconds each chunk is held before it is forwarded.
    delay: float = 0.0
    dropped: int = 0
    forwarded: int = 0
    conns: set[_Conn] = field(default_factory=set)
    server: asyncio.Server | None = None

    def other(self, member: str) -> str:
        return self.listener if member == self.dialer else self.dialer

    async def serve(self) -> None:
        self.server = await asyncio.start_server(self._accepted, "127.0.0.1", self.port)

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.target), 5
            )
        except (OSError, TimeoutError):
            writer.transport.abort()
            return
        conn = _Conn(writer, up_writer)
        self.conns.add(conn)
        loop = asyncio.get_running_loop()
        conn.tasks = [
            loop.create_task(self._pump(conn, reader, up_writer, self.dialer)),
            loop.create_task(self._pump(conn, up_reader, writer, self.listener)),
        ]
        try:
            await asyncio.wait(conn.tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            conn.abort()  # one side closed: close the other (pysyncobj reconnects)
            self.conns.discard(conn)

    async def _pump(
        self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sender: str
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(CHUNK):
                if sender not in self.cut and self.delay > 0:
                    await asyncio.sleep(self.delay)
                if sender in self.cut:
                    conn.damaged = True
                    self.dropped += len(data)
                    continue
                writer.write(data)
                self.forwarded += len(data)
                await writer.drain()

    def heal(self) -> None:
        self.cut.clear()
        for conn in [c for c in self.conns if c.damaged]:
            conn.abort()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for conn in list(self.conns):
            conn.abort()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5)


class Proxies:
    """Every link of one cluster. Methods are called from the test's thread and return once the
    change is in force on the proxies' loop."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="netproxy", daemon=True)
        self._thread.start()
        self.links: list[Link] = []

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def _call(self, fn: Any, *args: Any) -> None:
        async def do() -> None:
            fn(*args)

        self._run(do())

    def add(self, dialer: str, listener: str, port: int, target: int) -> Link:
        link = Link(dialer, listener, port, target)
        self._run(link.serve())
        self.links.append(link)
        return link

    def _between(self, a: str, b: str) -> Link:
        for link in self.links:
            if {link.dialer, link.listener} == {a, b}:
                return link
        raise KeyError(f"no link between {a} and {b}")

    def _links_of(self, member: str) -> Iterable[Link]:
        return [link for link in self.links if member in (link.dialer, link.listener)]

    def cut(self, sender: str, receiver: str) -> None:
        """Drop what ``sender`` sends to ``receiver`` (one way)."""
        self._call(self._between(sender, receiver).cut.add, sender)

    def cut_both(self, a: str, b: str) -> None:
        link = self._between(a, b)
        self._call(link.cut.update, (a, b))

    def isolate(self, member: str) -> None:
        """Cut every link of ``member``, both ways."""

        def do() -> None:
            for link in self._links_of(member):
                link.cut.update((link.dialer, link.listener))

        self._call(do)

    def heal(self, *members: str) -> None:
        """Heal every link of ``members`` (every link when none is named)."""

        def do() -> None:
            for link in self.links:
                if not members or link.dialer in members or link.listener in members:
                    link.heal()

        self._call(do)

    def delay(self, a: str, b: str, seconds: float) -> None:
        link = self._between(a, b)

        def do() -> None:
            link.delay = seconds

        self._call(do)

    def close(self) -> None:
        async def close_all() -> None:
            for link in self.links:
                await link.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            self._run(close_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()


def wire(c: Cluster, proxies: Proxies) -> None:
    """Give each member of ``c`` (not started) its own ``--cluster`` view through ``proxies``."""
    members = c.members
    pairs = list(itertools.combinations(range(len(members)), 2))
    ports = sorted(free_ports(len(pairs) + len(members)))
    assert all(10000 <= p <= 65535 for p in ports), ports  # five digits: strings sort as numbers
    proxy_ports, raft_ports = ports[: len(pairs)], ports[len(pairs) :]
    for m, port in zip(members, raft_ports, strict=True):
        m.raft = port
    views: dict[str, dict[str, str]] = {m.node_id: {m.node_id: f"127.0.0.1:{m.raft}"} for m in members}
    for (i, j), port in zip(pairs, proxy_ports, strict=True):
        a, b = members[i], members[j]
        dialer, listener = (a, b) if a.raft > b.raft else (b, a)
        proxies.add(dialer.node_id, listener.node_id, port, listener.raft)
        views[dialer.node_id][listener.node_id] = f"127.0.0.1:{port}"
        views[listener.node_id][dialer.node_id] = f"127.0.0.1:{dialer.raft}"
    for m in members:
        view = views[m.node_id]
        m.members = ",".join(f"{n.node_id}={view[n.node_id]}" for n in members)


@contextlib.contextmanager
def partitioned_cluster(
    root: Path, size: int = 3, extra: list[str] | None = None
) -> Iterator[tuple[Cluster, Proxies]]:
    """A started cluster whose members talk through `Proxies` (stopped, with the proxies, after).

    The election timeout is `ELECTION_TIMEOUT` unless ``extra`` sets one: on this shared, loaded
    machine (load average 8 on 2 cores at times) the default 150 ms let a member whose loop was
    late once stand for election, and a test that cuts links must tell its own faults from those.
    """
    if not any(arg == "--election-timeout" for arg in extra or []):
        extra = [*(extra or []), "--election-timeout", ELECTION_TIMEOUT]
    c = Cluster(root, size, extra)
    proxies = Proxies()
    try:
        wire(c, proxies)
        c.start()
        yield c, proxies
    finally:
        c.close()
        proxies.close()
