"""Request-dedupe tokens: a resent enqueue answers what its first attempt did, never a second job.

An SDK that may send an enqueue twice (a client of a cluster, after a lost connection or a leader
change: it cannot know whether the first attempt committed) attaches a short random token to it
(``request_token``, protocol/PROTOCOL.md). The token travels in the JOBS_ENQUEUED record that the
request commits (wal/FORMAT.md), so every server that applies the record learns it: the one that
answered, a restarted single node (recovery), a new Raft leader (it replays the log). A request
whose token is already committed is answered with that record's jobs instead of adding any.

Tokens are not idempotency keys: they are kept `TOKEN_TTL` seconds after their record (by the
record's own time), at most `MAX_TOKENS` of them and `MAX_TOKEN_JOBS` job ids in all (the oldest are
forgotten first, so a client sending millions of tokens costs bounded memory), and they are never
shown (not in the job, not in the HTTP API, not on the dashboard). Memory holds only committed
tokens: `RequestTokens.record` is called as a record is applied (commit, then apply).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable
from typing import NamedTuple

from .errors import ValidationError

__all__ = [
    "MAX_TOKENS",
    "MAX_TOKEN_BYTES",
    "MAX_TOKEN_JOBS",
    "TOKEN_TTL",
    "RequestTokens",
    "TokenEntry",
    "check_token",
]

#: Seconds a committed token is remembered after its record's time. Minutes: an SDK resends within
#: its connect timeout (10 s by default) of the loss; the margin covers slow failovers and clocks.
TOKEN_TTL = 300.0
#: Tokens remembered at most (about 250 bytes each: ~50 MB at the bound). Beyond it the oldest go
#: first: at more than MAX_TOKENS / TOKEN_TTL (~670) tokened requests a second, a token lives as long
#: as the last MAX_TOKENS requests took, still far longer than an SDK keeps resending.
MAX_TOKENS = 200_000
#: Job ids remembered at most over all tokens (a batch's token names up to 10,000 jobs).
MAX_TOKEN_JOBS = 2_000_000
#: A token is 1 to this many bytes (the SDKs send 16 random bytes).
MAX_TOKEN_BYTES = 64


class TokenEntry(NamedTuple):
    """What a committed token's record did."""

    #: The queue and the job (handler) name of the request: a token reused for another request is
    #: refused, not answered with someone else's jobs.
    queue: str
    name: str
    #: The ids of the jobs the record created, in request order.
    job_ids: tuple[str, ...]
    #: When the token is forgotten (the record's time + `TOKEN_TTL`).
    expires_at: float


def check_token(value: object) -> bytes | None:
    """A request's ``request_token`` (None: none).

    :raises ValidationError: not 1 to `MAX_TOKEN_BYTES` bytes (``field`` is ``request_token``).
    """
    if value is None:
        return None
    if type(value) is not bytes or not 0 < len(value) <= MAX_TOKEN_BYTES:  # bytes exactly, not a subclass
        raise ValidationError(
            "request_token", f"must be 1 to {MAX_TOKEN_BYTES} bytes (the SDKs send 16 random bytes), or nil"
        )
    return value


class RequestTokens:
    """The committed tokens (filled by applied records only) and the requests in flight per token.

    Kept in apply order, which is time order per queue: expiry and the bounds forget from the front.
    """

    def __init__(
        self, ttl: float = TOKEN_TTL, max_tokens: int = MAX_TOKENS, max_jobs: int = MAX_TOKEN_JOBS
    ) -> None:
        if ttl <= 0 or max_tokens < 1 or max_jobs < 1:
            raise ValueError("RequestTokens: ttl, max_tokens and max_jobs must be above zero")
        self.ttl = ttl
        self.max_tokens = max_tokens
        self.max_jobs = max_jobs
        # Ordered (a linked list): the oldest is found in O(1) however many were forgotten before
        # it (a plain dict's iteration first skips the slots of deleted entries).
        self._entries: OrderedDict[bytes, TokenEntry] = OrderedDict()
        #: Job ids over all entries.
        self._jobs = 0
        #: Tokens of the requests in flight on this server -> the future done when that request has
        #: finished (None until a second request with the token waits for it).
        self._inflight: dict[bytes, asyncio.Future[None] | None] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def job_count(self) -> int:
        """Job ids remembered over all tokens."""
        return self._jobs

    def record(self, token: bytes, queue: str, name: str, job_ids: Iterable[str], at: float) -> None:
        """A record carrying ``token`` was applied (live or at recovery): remember what it created
        until ``at`` (the record's time) + the TTL, then forget the expired and over-bound ones."""
        entries = self._entries
        old = entries.pop(token, None)
        if old is not None:
            self._jobs -= len(old.job_ids)
        ids = tuple(job_ids)
        entries[token] = TokenEntry(queue, name, ids, at + self.ttl)
        self._jobs += len(ids)
        self._trim(at)

    def _trim(self, now: float) -> None:
        entries = self._entries
        while entries:
            first = entries[next(iter(entries))]
            if first.expires_at > now and len(entries) <= self.max_tokens and self._jobs <= self.max_jobs:
                return
            entries.popitem(last=False)
            self._jobs -= len(first.job_ids)

    def lookup(self, token: bytes, queue: str, name: str, now: float) -> TokenEntry | None:
        """What the committed request with ``token`` created (None: none, or it expired).

        :raises ValidationError: the token was committed by a request to another queue or job name.
        """
        entry = self._entries.get(token)
        if entry is None or entry.expires_at <= now:
            return None
        if entry.queue != queue or entry.name != name:
            raise ValidationError(
                "request_token",
                f"was already used by an enqueue of {entry.name!r} to queue {entry.queue!r}: "
                "send a new random token with every request (resend the same one only with the same request)",
            )
        return entry

    def of_queue(self, queue: str) -> list[tuple[bytes, TokenEntry]]:
        """(token, entry) of every token of ``queue``, oldest first (what its snapshot keeps)."""
        return [(t, e) for t, e in self._entries.items() if e.queue == queue]

    def restore(self, token: bytes, entry: TokenEntry) -> None:
        """Remember a token read from a snapshot (its expiry as written)."""
        self.record(token, entry.queue, entry.name, entry.job_ids, entry.expires_at - self.ttl)

    def exclusive(self, token: bytes) -> _Held:
        """Hold ``token`` while its request is handled (``async with``): a second request with it (a
        resend that overtook a first attempt still committing on this server) waits for the first to
        finish, then finds its committed token instead of enqueueing again."""
        return _Held(self._inflight, token)


class _Held:
    """`RequestTokens.exclusive`: a plain async context manager, not a generator-based one, since
    every enqueue that carries a token (every SDK enqueue) enters one. The future that a second
    request waits on is made only when there is one (a resend overtaking its first attempt)."""

    __slots__ = ("_inflight", "_token")

    def __init__(self, inflight: dict[bytes, asyncio.Future[None] | None], token: bytes) -> None:
        self._inflight = inflight
        self._token = token

    async def __aenter__(self) -> None:
        inflight, token = self._inflight, self._token
        while token in inflight:
            first = inflight[token]
            if first is None:  # the holder made no future yet: make the one it resolves on exit
                first = inflight[token] = asyncio.get_running_loop().create_future()
            await asyncio.shield(first)
        inflight[token] = None

    async def __aexit__(self, *exc: object) -> None:
        first = self._inflight.pop(self._token)
        if first is not None:
            first.set_result(None)
