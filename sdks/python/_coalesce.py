"""Client-side coalescing of concurrent enqueues: calls made in one pass of the event loop travel as
one ``ENQUEUE_MANY`` request per run of calls that share everything but the payload.

The server's cost is mostly per request (decode, engine call, commit, answer), not per job, so
64 coroutines each awaiting `AsyncClient.enqueue` cost it about 64 times what one batch of 64
costs. Like group commit on the server's side (or ioredis' auto-pipelining), nothing waits on a
timer: the first call of a pass schedules the flush with ``loop.call_soon``, so the flush runs
once every coroutine woken in that pass has made its call; a call with nothing beside it goes out
as the plain ``ENQUEUE`` it always was.

How the calls of one flush are grouped and answered (`Coalescer`'s promises):

- Order: consecutive calls with the same `batch key <same_batch>` (queue, handler name, every
  option, and whether an idempotency key is given) form one batch; a call with another key starts
  the next one. Batches (and lone calls) are queued on the connection in call order, and a
  batch's jobs are created in the order of its calls.
- Limits: at most `MAX_JOBS` jobs and half the server's ``WELCOME.max_frame`` of payload bytes
  per request; the rest goes in the next one.
- Each call gets its own `AsyncJobId` (id and ``created`` flag) from ``ENQUEUED_MANY``. Two calls
  of one batch with the same idempotency key get what two sequential calls get: the server gives
  a key repeated within a batch its first payload's job, ``created`` False for the repeat.
- Errors. ``ENQUEUE_MANY`` is all or nothing, so an answer that may concern one job only must not
  fail the others: ``BAD_REQUEST`` and ``TOO_LARGE`` (they name ``payloads[i]...``: a schema
  validation error, a payload too large), ``CONFLICT`` and ``NOT_FOUND`` (the server did nothing)
  make every call of the batch send itself again alone, as ``ENQUEUE``, and get exactly what it
  would have got alone. Errors that concern the whole request equally go to every call of the
  batch: ``BUSY`` (backpressure), ``NO_SPACE``, ``INTERNAL`` and codes this SDK does not know
  (the request may have taken effect: not sent again), ``NOT_LEADER`` once no leader was found,
  `RequestTimeout`, `NotConnected`, and `ConnectionLost` when the batch may not be resent.
- Resends: a batch is resent after a lost connection when a lone call would be: when it carries
  a request-dedupe token (several addresses: one token per batch, the same on every resend, so a
  server that committed the first attempt answers its ids), or when every job has an idempotency
  key (that is why calls with and without a key never share a batch).
- Cancellation: a caller cancelled before the flush is left out of the batch; once the batch is
  sent it is as for a lone call: its job may or may not be added, the others are not affected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

from spitfire.protocol.frames import DEFAULT_MAX_FRAME
from spitfire.protocol.messages import Enqueue, EnqueuedMany, EnqueueMany

from .errors import BadRequest, Conflict, NotFound, ProtocolError
from .models import AsyncJobId

__all__ = ["MAX_JOBS", "Coalescer", "same_batch"]

#: The most jobs one coalesced request carries (the server takes up to 10,000 by default; past a
#: thousand a batch buys little and holds its callers' answers longer).
MAX_JOBS: Final = 1000

#: Errors after which each call of a batch is sent again alone: the server did nothing, and the
#: error may be about one job only (``payloads[3].to``), or differ from a lone call's.
ALONE_AGAIN: Final = (BadRequest, Conflict, NotFound)

#: What a waiting call is told when it is to send itself as a plain ENQUEUE (alone in its pass, or
#: after an error that may concern one job of its batch).
_ALONE: Final = object()

#: Sends one ENQUEUE (resent after a lost connection when the flag says so) and returns its id.
SendOne = Callable[[Enqueue, bool], Awaitable[AsyncJobId]]
#: Sends one ENQUEUE_MANY (resent when the flag says so) and returns its answer.
SendMany = Callable[[EnqueueMany, bool], Awaitable[EnqueuedMany]]


class _Call:
    """One waiting enqueue: its request as a lone ENQUEUE would be, and its caller's future."""

    __slots__ = ("future", "message", "resend")

    def __init__(self, message: Enqueue, resend: bool, future: asyncio.Future[object]) -> None:
        self.message = message
        self.resend = resend
        self.future = future


def same_batch(a: Enqueue, b: Enqueue) -> bool:
    """Whether two enqueues may share one ENQUEUE_MANY: everything but the payload, the idempotency
    key and the request token is the same, and both or neither have a key (a batch is resendable
    like its calls only then)."""
    return (
        a.queue == b.queue
        and a.name == b.name
        and a.priority == b.priority
        and a.delay == b.delay
        and a.run_at == b.run_at
        and a.max_attempts == b.max_attempts
        and a.backoff == b.backoff
        and a.timeout == b.timeout
        and a.headers == b.headers
        and (a.idempotency_key is None) == (b.idempotency_key is None)
    )


class Coalescer:
    """Gathers the enqueues of one event-loop pass into ENQUEUE_MANY requests (see the module).

    ``send_one`` and ``send_many`` send a request the way the client sends any (connecting,
    following the leader, resending); ``max_frame`` gives the connected server's
    ``WELCOME.max_frame`` (None before the first connection: the protocol's default);
    ``token`` gives a fresh request-dedupe token, or None when the client sends none;
    ``job_id`` makes the caller's `AsyncJobId` of an id and a ``created`` flag.
    """

    def __init__(
        self,
        send_one: SendOne,
        send_many: SendMany,
        max_frame: Callable[[], int | None],
        token: Callable[[], bytes | None],
        job_id: Callable[[str, bool], AsyncJobId],
    ) -> None:
        self._send_one = send_one
        self._send_many = send_many
        self._max_frame = max_frame
        self._token = token
        self._job_id = job_id
        self._waiting: list[_Call] = []
        self._flush_scheduled = False
        #: Batches in flight (a task needs a reference until it is done).
        self._tasks: set[asyncio.Task[None]] = set()

    async def enqueue(self, message: Enqueue, resend: bool) -> AsyncJobId:
        """Send ``message`` with the other enqueues of this pass, or alone; return its job's id.

        Raises what a lone ``send_one(message, resend)`` raises, or the error of its whole batch
        (see the module for which).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[object] = loop.create_future()
        self._waiting.append(_Call(message, resend, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        result = await future
        if result is _ALONE:
            return await self._send_one(message, resend)
        assert isinstance(result, AsyncJobId)
        return result

    def _flush(self) -> None:
        self._flush_scheduled = False
        calls, self._waiting = self._waiting, []
        max_bytes = (self._max_frame() or DEFAULT_MAX_FRAME) // 2
        batch: list[_Call] = []
        size = 0
        for call in calls:
            if call.future.done():  # its caller was cancelled: left out
                continue
            n = len(call.message.payload)
            if batch and (
                len(batch) >= MAX_JOBS
                or size + n > max_bytes
                or not same_batch(batch[0].message, call.message)
            ):
                self._send(batch)
                batch, size = [], 0
            batch.append(call)
            size += n
        if batch:
            self._send(batch)

    def _send(self, batch: list[_Call]) -> None:
        """Send a batch; in call order, since every send below queues its frame on its first step."""
        if len(batch) == 1:
            batch[0].future.set_result(_ALONE)  # the caller sends its own ENQUEUE, as without coalescing
            return
        task = asyncio.get_running_loop().create_task(self._send_batch(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_batch(self, batch: list[_Call]) -> None:
        first = batch[0].message
        keys = None if first.idempotency_key is None else [c.message.idempotency_key for c in batch]
        token = self._token()
        message = EnqueueMany(
            first.queue, first.name, [c.message.payload for c in batch], first.priority, first.delay,
            first.run_at, first.max_attempts, first.backoff, first.timeout, keys, first.headers, token,
        )  # fmt: skip
        try:
            reply = await self._send_many(message, token is not None or keys is not None)
        except ALONE_AGAIN:
            # Nothing was added; each call learns its own fate from a request of its own.
            _settle(batch, _ALONE)
            return
        except asyncio.CancelledError:
            for call in batch:
                call.future.cancel()
            raise
        except Exception as exc:
            _settle(batch, exc)
            return
        if len(reply.job_ids) != len(batch) or len(reply.created) != len(batch):
            _settle(
                batch,
                ProtocolError(
                    f"the server answered {len(reply.job_ids)} ids for an ENQUEUE_MANY of {len(batch)} "
                    "jobs; report this server bug (enqueue with coalesce=False meanwhile)"
                ),
            )
            return
        for call, job_id, created in zip(batch, reply.job_ids, reply.created, strict=True):
            if not call.future.done():
                call.future.set_result(self._job_id(job_id, created))


def _settle(batch: list[_Call], outcome: object) -> None:
    """Give every call of ``batch`` still waiting the same outcome (an exception is raised)."""
    for call in batch:
        if not call.future.done():
            if isinstance(outcome, BaseException):
                call.future.set_exception(outcome)
            else:
                call.future.set_result(outcome)
