"""Reads and deliveries a leader may serve: confirmed by a heartbeat round from a majority, or
within a lease shorter than the election timeout's lower bound (ReadIndex-style).

pysyncobj has no ReadIndex, so the check is built on its heartbeats (``append_entries``):

- the leader stamps every ``append_entries`` it sends with ``(term, monotonic time of sending)``;
- a follower that accepts one (its term is not older than the follower's) echoes that stamp in its
  answer (``next_node_idx``);
- the leader keeps, per member, the newest stamp echoed in its current term. `ReadGuard.confirmed`
  is the newest time a majority (the leader counted) has echoed: at that time a majority still
  took this member for the leader of its term.

A request may then be served

- at once while ``now < confirmed + lease``: followers refuse votes for the election timeout's lower
  bound after they last heard a leader (`spitfire.raft.prevote.Elections`), and the leader's stamp
  precedes what they heard, so no other member can be elected before ``confirmed + low``; the lease
  is shorter than ``low`` by a margin (`LEASE_FRACTION`) for clock rate drift; or
- once a round sent after it arrived is confirmed (``confirmed >= arrival``): no other leader could
  have been elected, and have committed anything, before that round was acknowledged.

Otherwise the request waits, in arrival order, for such a round (the node is asked to send one at
once); it is refused once ``wait`` seconds pass or the member stops leading. Nothing here depends on
clocks agreeing between members: every time compared is one this member's monotonic clock gave.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["LEASE_FRACTION", "MAX_WAITING", "Proceed", "ReadGuard"]

#: The lease is this fraction of the election timeout's lower bound.
LEASE_FRACTION = 0.9
#: Requests waiting for a confirmation at most; more are refused at once (memory stays bounded).
MAX_WAITING = 10_000
#: The key of the stamp in pysyncobj's messages (``append_entries`` and ``next_node_idx``).
STAMP = "spitfire_read"

#: Told once whether a request that could not be served at once may be served (True) or must be
#: refused (False: this member could not confirm it still leads).
Proceed = Callable[[bool], None]


class ReadGuard:
    """One member's read check (see the module's doc). Build it on the running loop.

    ``members()`` is how many members vote (this one included); ``leading()`` whether this member
    leads now; ``poke()`` asks the node to send a heartbeat round at once.
    """

    def __init__(
        self,
        members: Callable[[], int],
        lease: float,
        wait: float,
        *,
        leading: Callable[[], bool],
        poke: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self.lease = lease
        self.wait = wait
        self.max_waiting = max_waiting
        self._members = members
        self._leading = leading
        self._poke = poke
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self._term = -1
        #: Member -> the newest stamp it echoed in `_term`.
        self._echoed: dict[str, float] = {}
        #: The newest time a majority echoed (-inf: none yet in this term).
        self.confirmed = -math.inf
        #: ``confirmed + lease``: requests are served at once before it.
        self._until = -math.inf
        self._waiting: collections.deque[tuple[float, float, Proceed]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        #: The echo a follower owes each leader: member -> the stamp of its last accepted message.
        self._owed: dict[str, Any] = {}

    # -- the leader's side ----------------------------------------------------------------------------

    def stamp(self, term: int) -> tuple[int, float]:
        """The stamp of an ``append_entries`` leaving now in ``term``."""
        if term != self._term:
            self._term = term
            self._echoed.clear()
            self.confirmed = self._until = -math.inf
        return (term, self._clock())

    def echoed(self, member: str, stamp: Any) -> None:
        """``member`` echoed ``stamp``; stamps of another term (or malformed ones) count nothing."""
        if not (isinstance(stamp, tuple | list) and len(stamp) == 2):
            return
        term, sent = stamp
        if term != self._term or not isinstance(sent, float) or sent <= self._echoed.get(member, -math.inf):
            return
        self._echoed[member] = sent
        need = self._members() // 2  # echoes of others that make a majority with the leader
        if need <= 0:
            return
        newest = sorted(self._echoed.values(), reverse=True)
        if len(newest) >= need and newest[need - 1] > self.confirmed:
            self.confirmed = newest[need - 1]
            self._until = self.confirmed + self.lease
            if self._waiting:
                self._release()

    def held(self) -> bool:
        """This member leads and its lease holds now (a request may be served at once)."""
        if self._clock() < self._until:
            return self._leading()
        return self._members() <= 1 and self._leading()  # alone, it is its own majority

    def check(self, proceed: Proceed) -> bool:
        """True: serve now. False: ``proceed`` is told later, exactly once (at once if this member
        does not lead or too many requests wait already)."""
        if not self._waiting and self.held():
            return True
        if not self._leading() or len(self._waiting) >= self.max_waiting:
            proceed(False)
            return False
        now = self._clock()
        self._waiting.append((now, now + self.wait, proceed))
        if len(self._waiting) == 1:
            self._arm()
        self._poke()
        return False

    async def confirm(self) -> bool:
        """`check` for a coroutine: True once the request may be served, False if it must not."""
        if not self._waiting and self.held():
            return True
        future: asyncio.Future[bool] = self._loop.create_future()

        def proceed(ok: bool) -> None:
            if not future.done():
                future.set_result(ok)

        self.check(proceed)
        return await future

    def http_gate(self, refused: Callable[[], T]) -> Callable[[], Awaitable[T | None]]:
        """A listener's gate over this check: None to serve a request, else what ``refused`` gives
        (the body of an HTTP 503, the text of a RESP error)."""

        async def gate() -> T | None:
            return None if await self.confirm() else refused()

        return gate

    def refuse_all(self) -> None:
        """Refuse every waiting request (this member stopped leading)."""
        waiting, self._waiting = self._waiting, collections.deque()
        for _arrival, _deadline, proceed in waiting:
            proceed(False)

    @property
    def waiting(self) -> int:
        """Requests waiting for a confirmation now."""
        return len(self._waiting)

    def _release(self) -> None:
        held = self.held()
        waiting = self._waiting
        while waiting and (held or waiting[0][0] <= self.confirmed):
            _arrival, _deadline, proceed = waiting.popleft()
            proceed(True)
        if not waiting and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, self._waiting[0][1] - self._clock())
        self._timer = self._loop.call_later(delay, self._expire)

    def _expire(self) -> None:
        self._timer = None
        now = self._clock()
        waiting = self._waiting
        while waiting and waiting[0][1] <= now:
            _arrival, _deadline, proceed = waiting.popleft()
            proceed(False)
        if waiting:
            self._arm()

    # -- the follower's side --------------------------------------------------------------------------

    def accepted(self, leader: str, message: dict[str, Any]) -> None:
        """This member accepted ``append_entries`` ``message`` from ``leader``: owe it its stamp."""
        stamp = message.get(STAMP)
        if stamp is not None:
            self._owed[leader] = stamp

    def answer(self, leader: str, message: dict[str, Any]) -> None:
        """``message`` (a ``next_node_idx``) goes to ``leader``: carry the stamp owed to it."""
        stamp = self._owed.pop(leader, None)
        if stamp is not None:
            message[STAMP] = stamp
