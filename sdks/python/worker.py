"""`Worker`: runs an App's jobs as the server pushes them.

Flow (protocol/PROTOCOL.md, section 9): the worker subscribes with credits equal to its free
concurrency plus its prefetch; the server pushes DELIVER frames; the worker starts what its free
slots allow and keeps the rest in a small local buffer (highest priority first), sends START for
the jobs it starts, runs each job (async handlers as tasks on the loop, sync handlers on a pool of
threads), and reports outcomes in batches: every START, ACK, FAIL and CREDIT produced during one
loop iteration leaves in one write. Worker level heartbeats keep every held lease alive, buffered
ones included. CANCEL_JOBS cancels the named jobs (a buffered one is dropped unrun); GOAWAY or a
lost connection makes the worker reconnect with backoff and subscribe again, resuming its earlier
worker id (SUBSCRIBE ``resume``): when the server gives that id back, the jobs still running from
the lost connection report their outcomes on the new one (see `Worker._resumed`).

Why prefetch: a credit goes back only when a job ends, so without a buffer every free slot waits a
full round trip (CREDIT out, DELIVER back) for its next job; with short jobs that round trip, not
the jobs, bounds the rate (at concurrency 10 both the worker and the server were mostly idle).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
import itertools
import logging
import os
import queue as queue_mod
import random
import signal
import socket
import threading
import time
import traceback as tb_mod
from collections.abc import Iterable
from typing import Any, TypeAlias

import msgspec

from spitfire.protocol.logs import configure_logging
from spitfire.protocol.messages import (
    Ack,
    AckItem,
    Credit,
    Delivery,
    ErrorCode,
    Fail,
    FailItem,
    Heartbeat,
    JobIds,
    MessageType,
    Progress,
    Subscribe,
    Unsubscribe,
)
from spitfire.protocol.session import Response

from . import tracing as _tracing
from ._connection import Connection
from ._context import JobContext, _reset, _set
from ._context import context as _current_context
from ._servers import FAILOVER_BACKOFF_MAX
from .app import App, JobFunction
from .client import BACKOFF_FACTOR, BACKOFF_FIRST, BACKOFF_MAX
from .errors import (
    BadRequest,
    Conflict,
    ConnectionLost,
    NotConnected,
    SpitfireError,
    TLSVerificationFailed,
    Unauthorized,
    UnsupportedVersion,
    error_from_frame,
)
from .models import enc_hook
from .outcomes import Permanent, RetryAfter

__all__ = ["Worker", "configure_logging"]

log = logging.getLogger("spitfire.worker")

#: Seconds without a delivery after which a burst worker asks the server whether its queues are empty.
BURST_QUIET = 0.5
#: How often a burst worker re-checks once it is quiet.
BURST_POLL = 0.25
#: Longest wait for the server's answers (UNSUBSCRIBE, RELEASE, outstanding outcomes) at shutdown.
SHUTDOWN_IO_TIMEOUT = 10.0
#: Shortest interval between heartbeats, whatever the jobs' timeouts.
MIN_HEARTBEAT = 0.05
#: Default concurrency of a worker.
DEFAULT_CONCURRENCY = 10

_encode = msgspec.msgpack.Encoder(enc_hook=enc_hook).encode
#: Shortest interval between two PROGRESS frames of one job: reports in between are coalesced (the
#: latest wins, and is sent when the interval is up).
PROGRESS_INTERVAL = 0.25
#: While the server stays unreachable at the longest backoff, how often the worker says so again.
UNREACHABLE_REPEAT = 60.0
#: Outcomes cut by a lost connection are kept this many seconds, at most this many: sent again when
#: the worker resumes its id, or (several addresses: a cluster) answering the redelivery of their job
#: by the new leader (see `Worker._carry`).
CARRY_FOR, MAX_CARRIED = 300.0, 10_000


class _Run:
    """One job this worker is running."""

    __slots__ = ("cancelled", "ctx", "gen", "job_id", "owed", "released", "resumed", "task")

    def __init__(self, job_id: str, gen: int, ctx: JobContext) -> None:
        self.job_id = job_id
        #: The connection generation it was delivered on: outcomes of older ones are dropped,
        #: because the server took those jobs back when that connection ended.
        self.gen = gen
        self.ctx = ctx
        self.task: asyncio.Task[None] | None = None
        #: Cancelled by the server (CANCEL_JOBS): no outcome is sent.
        self.cancelled = False
        #: Handed back with RELEASE at shutdown: no outcome is sent.
        self.released = False
        #: Kept across a lost connection (the worker resumed its id, or its job was delivered
        #: again meanwhile): a delivery of the same job answers with this run, not a second one.
        self.resumed = False
        #: Credits deliveries of this job that this run answers took (each comes back as it ends).
        self.owed = 0


Outcome: TypeAlias = AckItem | FailItem | None


def _elapsed() -> float:
    """Seconds the running job has run (it is the current context's)."""
    try:
        return time.time() - _current_context().started_at
    except RuntimeError:
        return 0.0


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _traceback(exc: BaseException) -> str:
    return "".join(tb_mod.format_exception(exc))


#: Jobs a worker holds (running plus buffered) by default, at least. Credits in hand must cover the
#: jobs that finish during one credit -> delivery round trip (~1-2 ms here), or slots sit empty:
#: no-op jobs, one worker at concurrency 10, 20,000 jobs, medians of 3 interleaved runs on a 2-core
#: VM: prefetch 10 / 40 / 90 drained 27,900 / 35,400 / 45,800 jobs/s with a sync handler and
#: 36,400 / 44,900 / 52,300 with an async one.
DEFAULT_IN_HAND = 100


def default_prefetch(concurrency: int) -> int:
    """The prefetch a worker uses unless told: enough that it holds `DEFAULT_IN_HAND` jobs, and
    never fewer than ``concurrency`` (so that a wide worker still has one job ready per slot)."""
    return max(concurrency, DEFAULT_IN_HAND - concurrency)


class Worker:
    """Runs the jobs of ``app`` from ``queues`` (default: every queue the app's jobs go to).

    ``concurrency`` jobs run at once at most; sync handlers get that many threads. ``prefetch``
    more jobs (default: `default_prefetch`; 0 turns the buffer off) may be held delivered
    but not started, so that a slot that frees starts its next job at once instead of waiting a
    round trip to the server: ``concurrency + prefetch`` credits are granted. A buffered job is
    ``reserved`` on the server (START is sent when it starts), its lease is kept alive by the
    worker's heartbeats like a running job's, the buffer starts the highest priority first (FIFO
    within one), so a job can be overtaken by at most ``prefetch`` jobs of lower priority that were
    buffered before it reached this worker. A buffered job cancelled on the server is dropped
    without running; a graceful shutdown hands buffered jobs back at once with RELEASE (no attempt
    counted); a lost connection drops them, and the server puts them back as it does running ones
    (attempt counted), or, when the worker resumes its id on a cluster's new leader that still
    leases them to it, the worker hands them back with RELEASE at once (no attempt counted). Jobs
    running when the connection dropped go on; resumed, their outcomes go to the new connection
    (and outcomes the drop cut are sent again); not resumed, a cluster's redelivery of such a job to
    this worker is answered by that run (`_carry`). With long jobs and several workers, a buffer
    holds jobs another worker could have run: set ``prefetch=0`` there. ``grace`` is how long a
    graceful shutdown (SIGTERM, SIGINT, `stop`) waits for running jobs before handing the rest
    back to the server with RELEASE (no attempt counted; async handlers are cancelled, sync ones
    see ``ctx.cancelled``).

    Burst mode (``burst=True``, ``spitfire worker --burst``) exits once the work is done. The rule:
    the worker has nothing running and no outcome awaiting the server's answer, no job was
    delivered for `BURST_QUIET` seconds, no job it deferred with `RetryAfter` is still due, and
    STATS shows none of its (unpaused) queues holding a job that is enqueued, reserved, running or
    retrying (waiting for its backoff). Jobs merely scheduled for later (``delay``/``run_at``) do not
    keep it alive; jobs retrying with a long backoff do, so give such jobs few attempts in tests.

    At start, before subscribing, the worker upserts the app's ``@app.cron`` schedules by name
    (`App.register_schedules`); one the server refuses (a bad cron expression or timezone) is logged
    with its name and field and the worker exits with 1.

    `run` (blocking) or ``await worker.serve()`` return the exit code: 0 after a graceful stop, 1 when
    it cannot start (auth, version, TLS, a refused schedule).
    """

    def __init__(
        self,
        app: App,
        queues: Iterable[str] | None = None,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        prefetch: int | None = None,
        burst: bool = False,
        grace: float = 25.0,
        name: str | None = None,
        handle_signals: bool = True,
    ) -> None:
        self.app = app
        self.queues = list(queues) if queues is not None else app.queues
        if not self.queues:
            raise ValueError("the worker has no queues: declare jobs with @app.job or pass queues=[...]")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        if prefetch is not None and prefetch < 0:
            raise ValueError("prefetch must be 0 (no buffer) or more")
        #: Jobs held delivered but not started, beyond ``concurrency``.
        self.prefetch = default_prefetch(concurrency) if prefetch is None else prefetch
        self.burst = burst
        self.grace = grace
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.handle_signals = handle_signals
        self.handlers: dict[str, JobFunction[Any, Any]] = dict(app.jobs)
        #: Each job runs in a CONSUMER span (spitfire.tracing; ``App(tracing=False)`` turns it off).
        self.tracing = app.tracing and _tracing.AVAILABLE
        #: The id the server gave this worker on its current connection.
        self.worker_id: str | None = None
        #: Counters, for logs and tests.
        self.processed = 0
        self.failed = 0
        self._running: dict[str, _Run] = {}
        #: Delivered, not started: id -> run; the heap orders them (highest priority, then arrival).
        self._buffered: dict[str, _Run] = {}
        self._buffer: list[tuple[int, int, _Run, Delivery]] = []
        self._arrivals = itertools.count()
        self._starts: list[str] = []
        self._gen = 0
        self._conn: Connection | None = None
        self._acks: list[AckItem] = []
        self._fails: list[FailItem] = []
        self._credits = 0
        self._flush_scheduled = False
        self._outstanding = 0
        self._done: collections.deque[tuple[_Run, Outcome]] = collections.deque()
        self._wake_scheduled = False
        self._snoozed: dict[str, float] = {}
        self._last_delivery = 0.0
        self._hb_interval = 5.0
        self._accepting = True
        self._force = False
        self._schedules_registered = False
        self._jobs_registered = False
        self._threads: list[threading.Thread] = []
        #: Progress reported and not sent yet (job id -> value, message), written from any thread.
        self._progress: dict[str, tuple[float | None, str | None]] = {}
        #: When each running job's last PROGRESS left (monotonic).
        self._progress_sent: dict[str, float] = {}
        self._progress_scheduled = False
        self._jobs_q: queue_mod.SimpleQueue[tuple[JobFunction[Any, Any], Delivery, _Run] | None] = (
            queue_mod.SimpleQueue()
        )
        #: Several addresses: outcomes outlive a failover (`_carry`).
        self._multi = False
        #: Job id -> (when, outcome) of jobs whose outcome a lost connection cut (`_carry`).
        self._carried: dict[str, tuple[float, AckItem | FailItem]] = {}
        #: The worker id of the connection lost, until the next SUBSCRIBED says whether it resumed.
        self._resuming: str | None = None
        #: Buffered jobs (never started) the lost connection held: RELEASEd if the id resumes.
        self._unstarted: list[str] = []
        #: Some run was kept across a lost connection (`_Run.resumed`): deliveries are checked.
        self._kept = False

    # -- public -----------------------------------------------------------------------------------

    def run(self) -> int:
        """Run until stopped (or, in burst mode, until the work is done); returns the exit code.

        Runs on uvloop when it is installed (tcp:// and quic:// alike), else on asyncio's loop.
        """
        try:
            import uvloop
        except ImportError:  # uvloop is optional for the SDK; asyncio's loop works too
            return asyncio.run(self.serve())
        return uvloop.run(self.serve())

    def stop(self) -> None:
        """Ask for a graceful shutdown; a second call shortens the grace period to nothing.

        Safe to call from any thread and from signal handlers.
        """
        loop = getattr(self, "_loop", None)
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: already stopped
                loop.call_soon_threadsafe(self._request_stop)

    async def serve(self) -> int:
        """The worker's main coroutine (see `run`)."""
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._settled = asyncio.Event()
        self._settled.set()
        self._hb_wake = asyncio.Event()
        self._control = self.app.new_async_client()
        self._multi = self._control.servers.multi
        self._start_threads()
        signals = self._install_signals()
        heartbeat = asyncio.create_task(self._heartbeat_loop())
        try:
            if not await self._reconnect(first=True):
                return 0
            await self._supervise()
            await self._shutdown()
            return 0
        except (Unauthorized, UnsupportedVersion, TLSVerificationFailed) as exc:
            log.error("worker cannot connect: %s", exc)
            return 1
        except _ScheduleRefused as exc:
            log.error("worker cannot register the app's schedules: %s", exc)
            return 1
        finally:
            heartbeat.cancel()
            for sig in signals:
                self._loop.remove_signal_handler(sig)
            self._stop_threads()
            if self._conn is not None:
                await self._conn.aclose()
            await self._control.close()

    # -- connection -------------------------------------------------------------------------------

    def _install_signals(self) -> list[signal.Signals]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return []
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self._loop.add_signal_handler(sig, self._request_stop)
                installed.append(sig)
        return installed

    def _request_stop(self) -> None:
        if self._stop_event.is_set():
            log.warning("second stop request: handing running jobs back now")
            self._force = True
            self._idle.set()  # wakes the grace wait; _shutdown sees _force
            return
        log.info("stopping: no new jobs; waiting up to %.1f s for %d running", self.grace, len(self._running))
        self._stop_event.set()

    async def _reconnect(self, first: bool = False) -> bool:
        """Connect and subscribe, with backoff, until it works or a stop is requested."""
        wait = BACKOFF_FIRST
        # A cluster elects a new leader within a second: look for it often.
        longest = FAILOVER_BACKOFF_MAX if self._control.servers.multi else BACKOFF_MAX
        failures = 0
        said_at, said_wait = 0.0, 0.0
        while not self._stop_event.is_set():
            try:
                if not self._jobs_registered:
                    await self._register_jobs()
                if not self._schedules_registered:
                    await self._register_schedules()
                await self._subscribe()
                if failures:
                    log.info("reached the server at %s after %d failed attempts", self._control.url, failures)
                return True
            except (Unauthorized, UnsupportedVersion, TLSVerificationFailed, _ScheduleRefused):
                raise
            except (NotConnected, ConnectionLost, SpitfireError) as exc:
                failures += 1
                # Once per backoff step (each longer wait), then once a minute at the longest one:
                # loud enough to notice, never a line every two seconds.
                now = time.monotonic()
                if wait != said_wait or now - said_at >= UNREACHABLE_REPEAT:
                    said_at, said_wait = now, wait
                    log.warning(
                        "cannot reach the server at %s (%s); attempt %d, retrying in %.2f s",
                        self._control.url, exc, failures, wait,
                    )  # fmt: skip
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_event.wait(), wait * random.uniform(0.8, 1.2))
            wait = min(longest, wait * BACKOFF_FACTOR)
        return False

    async def _register_jobs(self) -> None:
        """Register the app's job definitions, once per worker start, before its schedules (their
        payloads are checked against them) and before subscribing. Not being able to is logged, never
        fatal: the jobs still run, only enqueues made elsewhere then get the server's defaults."""
        try:
            known = await self.app.register_jobs_async(self._control)
        except (BadRequest, Conflict) as exc:  # TooLarge too: refused, all or nothing (retrying won't help)
            log.error(
                "the server refused the app's job definitions: %s; enqueues of its jobs from elsewhere "
                "get the server's defaults", exc,
            )  # fmt: skip
        else:
            if not known:
                log.warning(
                    "the server at %s does not keep job definitions (an older version): enqueues of "
                    "this app's jobs from elsewhere get the server's defaults", self._control.url,
                )  # fmt: skip
            elif self.app.jobs:
                log.info(
                    "registered %d job definition(s): %s",
                    len(self.app.jobs),
                    ", ".join(sorted(self.app.jobs)),
                )
        self._jobs_registered = True

    async def _register_schedules(self) -> None:
        """Upsert the app's ``@app.cron`` schedules by name, once per worker start (before subscribing).

        :raises _ScheduleRefused: the server refused one (a bad expression, a conflict): retrying
            does not help, so the worker does not start.
        """
        try:
            registered = await self.app.register_schedules_async(self._control)
        except (BadRequest, Conflict) as exc:
            raise _ScheduleRefused(exc.message) from None
        self._schedules_registered = True
        for s in registered:
            log.info(
                "schedule %r registered: %s (%s) -> %s on %s", s.name, s.cron, s.timezone, s.job, s.queue
            )

    async def _subscribe(self) -> None:
        self._gen += 1
        gen = self._gen
        c = self._control
        # Where the control client last found the server (a cluster's leader, once known).
        conn = await c.open_any(lambda r: self._on_push(r, gen), " worker", c.connect_timeout, None)
        # The buffer is empty here (a lost connection dropped it); old jobs still running hold slots
        # (resumed, they count against none of the new credits: only free slots are granted).
        credits = max(0, self.concurrency + self.prefetch - len(self._running))
        # host, pid and concurrency are shown on the dashboard's Workers page (PROTOCOL.md SUBSCRIBE);
        # resume asks for the id (and the leases) of the connection this worker lost.
        previous = self.worker_id
        subscribe = Subscribe(
            self.queues, credits, self.name,
            host=socket.gethostname()[:255], pid=os.getpid(), concurrency=self.concurrency,
            resume=previous,
        )  # fmt: skip
        _, fut = conn.request(MessageType.SUBSCRIBE, subscribe)
        self._conn = conn
        self._credits = 0
        self._hb_interval = conn.welcome.heartbeat_interval
        self._hb_wake.set()  # the heartbeat loop may be waiting out the previous, longer interval
        try:
            async with asyncio.timeout(c.timeout):
                reply = await fut
        except TimeoutError:
            conn.close()
            raise NotConnected("the server did not answer SUBSCRIBE in time") from None
        if reply.type is MessageType.ERROR:
            conn.close()
            if reply.message.code == ErrorCode.NOT_LEADER and c.servers.multi:
                # A cluster member that does not lead: the next try goes to the leader it named.
                c.servers.follow(reply.message.field)
            raise error_from_frame(reply.message)
        self.worker_id = reply.message.worker_id
        if previous is not None:
            if self.worker_id == previous:
                self._resumed(conn, gen)
            else:
                self._not_resumed(previous)
        log.info(
            "worker %s subscribed to %s at %s (concurrency %d, prefetch %d)",
            self.worker_id,
            ",".join(self.queues),
            c.endpoint.url,
            self.concurrency,
            self.prefetch,
        )

    async def _supervise(self) -> None:
        """Wait for a stop, reconnect after a lost connection, and (burst) notice the end of work."""
        stop = asyncio.ensure_future(self._stop_event.wait())
        try:
            while not self._stop_event.is_set():
                conn = self._conn
                assert conn is not None
                waiters: set[asyncio.Future[Any]] = {stop, conn.closed}
                timeout = BURST_POLL if self.burst else None
                await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if self._stop_event.is_set():
                    break
                if not conn.usable:
                    self._lost(conn)
                    if not await self._reconnect():
                        break
                elif self.burst and await self._burst_finished():
                    log.info("burst: queues %s are empty; stopping", ",".join(self.queues))
                    self._stop_event.set()
        finally:
            stop.cancel()

    def _lost(self, conn: Connection) -> None:
        reason = "the server said GOAWAY" if conn.draining else "the connection was lost"
        log.warning(
            "%s; reconnecting to resume worker %s with %d running jobs",
            reason,
            self.worker_id,
            len(self._running),
        )
        # Outcomes not sent yet are kept until the next SUBSCRIBED says whether this worker resumed
        # its id (`_resumed`: sent again) or not (`_not_resumed`: the server took the jobs back).
        # Buffered jobs never start on their own: handed back if the id resumes, else dropped.
        self._resuming = self.worker_id
        self._carry([*self._acks, *self._fails])
        self._acks.clear()
        self._fails.clear()
        self._starts.clear()
        self._unstarted.extend(r.job_id for r in self._drop_buffer())
        del self._unstarted[:-MAX_CARRIED]
        conn.close()

    def _resumed(self, conn: Connection, gen: int) -> None:
        """SUBSCRIBED gave back the lost connection's id: the jobs still leased to it are this
        connection's. Runs from the lost connection are kept (their outcomes go here; START says
        they run, for a cluster's new leader that only knew them reserved); outcomes the drop cut
        are sent again at once (an item whose lease is gone is answered CONFLICT and dropped); and
        the buffered jobs are handed back with RELEASE (no attempt counted) rather than run: a
        delivery whose lease record had not reached the new leader before the old one died is
        ready there again and may be delivered to another worker, and a job that never started is
        worth nothing but a redelivery, which RELEASE makes at once (instead of when its lease ends)."""
        self._resuming = None
        kept = [r for r in self._running.values() if r.gen != gen]
        for run in kept:
            # Credits the lost connection owed are moot: the new one granted only free slots.
            run.gen, run.resumed, run.owed = gen, True, 0
        self._kept = self._kept or bool(kept)
        carried, self._carried = self._carried, {}
        for _, outcome in carried.values():
            self._queue_outcome(outcome, count=False)  # counted when the run ended
        unstarted, self._unstarted = self._unstarted, []
        log.info(
            "worker %s resumed: %d running jobs kept, %d outcomes sent again, %d buffered jobs handed back",
            self.worker_id, len(kept), len(carried), len(unstarted),
        )  # fmt: skip
        try:
            if kept:
                conn.send(MessageType.START, JobIds([r.job_id for r in kept]))
                # Extend the leases now: the new leader counts them from the old one's last beat.
                _, fut = conn.request(MessageType.HEARTBEAT, Heartbeat(None, None))
                fut.add_done_callback(_ignore)
            if unstarted:
                self._track(conn.request(MessageType.RELEASE, JobIds(unstarted))[1])
        except ConnectionLost:
            return  # lost again: the supervisor reconnects and resumes again
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _not_resumed(self, previous: str) -> None:
        """SUBSCRIBED gave a new id (a live connection holds the old one): the lost connection's
        jobs are not this connection's. Buffered ones are dropped; kept outcomes wait for a
        redelivery with several addresses (`_carry`), and are dropped with one (as the server took
        those jobs back)."""
        log.info("worker %s could not resume %s: its jobs went back to the server", self.worker_id, previous)
        self._resuming = None
        self._unstarted.clear()
        if not self._multi:
            self._carried.clear()

    def _queue_outcome(self, outcome: AckItem | FailItem, count: bool = True) -> None:
        """Queue an outcome for the next flush (``count``: a run's first report of it)."""
        if isinstance(outcome, AckItem):
            self._acks.append(outcome)
            self.processed += count
        else:
            self._fails.append(outcome)
            self.failed += count

    # -- pushes -----------------------------------------------------------------------------------

    def _on_push(self, response: Response, gen: int) -> None:
        if gen != self._gen:
            return  # from a connection we have left: the server takes those jobs back itself
        mtype = response.type
        if mtype is MessageType.DELIVER:
            self._deliver(response.message.jobs, gen)
        elif mtype is MessageType.CANCEL_JOBS:
            self._cancel_jobs(response.message.job_ids)
        elif mtype is MessageType.GOAWAY:
            log.info("server going away: %s", response.message.reason)
            conn = self._conn
            if conn is not None:
                # Wake the supervisor now rather than when the server finally closes.
                conn.close()

    def _carry(self, outcomes: Iterable[AckItem | FailItem]) -> None:
        """Keep outcomes a lost connection cut (not sent, or sent and not answered, or of a job that
        ended after the drop). If the worker resumes its id they are sent again (`_resumed`);
        otherwise, with several addresses, they wait for the new leader to deliver their job again
        (a lease its log did not hold), and `_deliver` answers such a delivery with the outcome at
        once instead of running the job again. At most `MAX_CARRIED`, for `CARRY_FOR` seconds
        (oldest dropped)."""
        carried, now = self._carried, time.monotonic()
        for outcome in outcomes:
            carried.pop(outcome.job_id, None)
            carried[outcome.job_id] = (now, outcome)
        while len(carried) > MAX_CARRIED or (carried and now - next(iter(carried.values()))[0] > CARRY_FOR):
            del carried[next(iter(carried))]

    def _redelivered(self, d: Delivery) -> bool:
        """A delivery of a job whose run this worker already finished, or still runs, on a lost
        connection: its outcome answers this delivery (True); the job does not run twice here."""
        held = self._carried.pop(d.job_id, None)
        if held is not None and time.monotonic() - held[0] <= CARRY_FOR:
            log.info(
                "job %s was delivered again after a failover: reporting its finished run's outcome", d.job_id
            )
            self._queue_outcome(held[1], count=False)
            self._credits += 1  # the delivery took one; nothing runs
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)
            return True
        run = self._running.get(d.job_id)
        # A run from a lost connection, while SUBSCRIBED's verdict is pending too: the DELIVER may
        # be read with SUBSCRIBED, before `_resumed` runs (a single node after its restart).
        pending = self._multi or self._resuming is not None
        if run is not None and (run.resumed or (pending and run.gen != self._gen)):
            # Its outcome answers this delivery, on this connection; the delivery's credit comes
            # back when it ends (the run's own too).
            run.gen, run.resumed = self._gen, True
            run.owed += 1
            self._kept = True
            self._starts.append(d.job_id)  # it is running: say so, as for a job started now
            return True
        return False

    def _deliver(self, jobs: list[Delivery], gen: int) -> None:
        conn = self._conn
        assert conn is not None
        if self._carried or (self._running and (self._multi or self._kept or self._resuming is not None)):
            jobs = [d for d in jobs if not self._redelivered(d)]
        if not self._accepting:
            # Pushed before the server saw our UNSUBSCRIBE: hand them straight back.
            with contextlib.suppress(ConnectionLost):
                self._track(conn.request(MessageType.RELEASE, JobIds([d.job_id for d in jobs]))[1])
            return
        self._last_delivery = time.monotonic()
        self._idle.clear()
        hb = self._hb_interval
        running, concurrency = self._running, self.concurrency
        for d in jobs:
            ctx = JobContext(
                d.job_id, d.queue, d.name, d.attempt, d.max_attempts, d.headers or {}, d.timeout,
                d.created_at, d.priority,
            )  # fmt: skip
            ctx._reporter = self._report_progress
            run = _Run(d.job_id, gen, ctx)
            if self._snoozed:
                self._snoozed.pop(d.job_id, None)
            if d.timeout < hb * 3:
                hb = max(MIN_HEARTBEAT, d.timeout / 3)
            if len(running) < concurrency and not self._buffered:
                self._begin(run, d)  # the common case: a free slot and nothing waiting before it
            else:
                # Jobs arrive highest priority first; the heap keeps that order across deliveries.
                self._buffered[d.job_id] = run
                heapq.heappush(self._buffer, (-d.priority, next(self._arrivals), run, d))
        if self._buffered:
            self._fill_slots()
        if self._starts:
            # Now rather than with the next flush: the jobs are marked running as they start.
            starts, self._starts = self._starts, []
            conn.send(MessageType.START, JobIds(starts))
        if hb < self._hb_interval:
            self._hb_interval = hb
            self._hb_wake.set()

    def _begin(self, run: _Run, d: Delivery) -> None:
        """Start a delivered job: it takes a slot, and its START leaves with the next flush."""
        self._running[d.job_id] = run
        self._starts.append(d.job_id)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        fn = self.handlers.get(d.name)
        if fn is None:
            outcome = self._unknown(d)
            if self.tracing and _tracing.configured():
                _tracing.start_process(d, self.name).finish(outcome, None)
            self._complete(run, outcome)
        elif fn.is_async:
            run.task = self._loop.create_task(self._run_async(fn, d, run))
        else:
            self._jobs_q.put((fn, d, run))

    def _fill_slots(self) -> None:
        """Start buffered jobs, highest priority first, while slots are free. Not once the worker
        stops taking jobs (they went back with RELEASE) nor while its connection is down (the
        server takes them back: they must not run)."""
        buffer, buffered, running = self._buffer, self._buffered, self._running
        conn = self._conn
        if not self._accepting or conn is None or not conn.usable:
            return
        while buffer and len(running) < self.concurrency:
            _, _, run, d = heapq.heappop(buffer)
            if buffered.pop(d.job_id, None) is run:  # else dropped meanwhile (cancelled): skip it
                run.ctx.started_at = time.time()  # it was made at delivery
                self._begin(run, d)

    def _drop_buffer(self) -> list[_Run]:
        """Forget every buffered job (never started); returns them."""
        dropped = list(self._buffered.values())
        self._buffered.clear()
        self._buffer.clear()
        return dropped

    def _unknown(self, d: Delivery) -> FailItem:
        """A job this worker has no handler for: dead at once (Permanent), since every retry would
        land on a worker like this one; logged loudly, since it is a deployment mistake."""
        known = ", ".join(sorted(self.handlers)) or "none"
        error = (
            f"LookupError: this worker has no job named {d.name!r} (it has: {known}); "
            "run a worker whose App declares it, then retry the job"
        )
        log.error("job %s (%s) on queue %s is dead: %s", d.job_id, d.name, d.queue, error)
        return FailItem(d.job_id, error, None, False)

    def _cancel_jobs(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            buffered = self._buffered.pop(job_id, None)
            if buffered is not None:
                # Never started: it must not run. Its heap entry is skipped when reached; its
                # credit goes back at once, since the server no longer counts it as held.
                log.info("job %s was cancelled before it started", job_id)
                buffered.cancelled = True
                self._complete(buffered, None)
                continue
            run = self._running.get(job_id)
            if run is None:
                continue
            log.info("job %s was cancelled while running", job_id)
            run.cancelled = True
            run.ctx._cancel()
            if run.task is not None:
                run.task.cancel()

    # -- running jobs -----------------------------------------------------------------------------

    async def _run_async(self, fn: JobFunction[Any, Any], d: Delivery, run: _Run) -> None:
        token = _set(run.ctx)
        # The job's span is current in this task while the handler runs (jobs it enqueues join it).
        span = _tracing.start_process(d, self.name) if self.tracing and _tracing.configured() else None
        error: BaseException | None = None
        try:
            kwargs = self._arguments(fn, d, run)
            if isinstance(kwargs, FailItem):
                outcome: Outcome = kwargs
            else:
                outcome = self._success(d, await fn.fn(**kwargs))
        except asyncio.CancelledError as exc:
            # Cancelled by CANCEL_JOBS or a shutdown: no outcome. Anything else is a failure.
            outcome = None if (run.cancelled or run.released) else self._failure(d, asyncio.CancelledError())
            error = exc
        except Exception as exc:
            outcome = self._failure(d, exc)
            error = exc
        finally:
            _reset(token)
        if span is not None:
            span.finish(outcome, error, cancelled=run.cancelled, released=run.released)
        self._complete(run, outcome)

    def _run_sync(self, fn: JobFunction[Any, Any], d: Delivery, run: _Run) -> None:
        """Runs on a pool thread; hands the outcome to the loop."""
        token = _set(run.ctx)
        span = (
            _tracing.start_process(d, self.name) if self.tracing and _tracing.configured() else None
        )  # current in this thread
        error: Exception | None = None
        try:
            kwargs = self._arguments(fn, d, run)
            outcome: Outcome = kwargs if isinstance(kwargs, FailItem) else self._success(d, fn.fn(**kwargs))
        except Exception as exc:
            outcome = self._failure(d, exc)
            error = exc
        finally:
            _reset(token)
        if span is not None:
            span.finish(outcome, error, cancelled=run.cancelled, released=run.released)
        self._done.append((run, outcome))
        # One wake-up per batch of completions, not per job. The flag is cleared by the loop before
        # it drains, so an append it might miss always schedules a new wake-up.
        if not self._wake_scheduled:
            self._wake_scheduled = True
            with contextlib.suppress(RuntimeError):  # the loop is closed: the worker has exited
                self._loop.call_soon_threadsafe(self._drain_done)

    def _drain_done(self) -> None:
        self._wake_scheduled = False
        done = self._done
        while done:
            run, outcome = done.popleft()
            self._complete(run, outcome)

    def _arguments(self, fn: JobFunction[Any, Any], d: Delivery, run: _Run) -> dict[str, Any] | FailItem:
        try:
            kwargs = fn.spec.decode(d.payload)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            # Retrying cannot fix a payload that does not fit the function: dead at once.
            error = f"JobArgumentError: the payload does not fit {fn.name}{fn.spec.signature}: {exc}"
            log.error("job %s (%s) on queue %s is dead: %s", d.job_id, d.name, d.queue, error)
            return FailItem(d.job_id, error, None, False)
        if fn.spec.ctx_param is not None:
            kwargs[fn.spec.ctx_param] = run.ctx
        return kwargs

    def _success(self, d: Delivery, result: Any) -> AckItem | FailItem:
        if log.isEnabledFor(logging.INFO):
            log.info("job %s (%s) succeeded in %.3fs", d.job_id, d.name, _elapsed())
        if result is None:
            return AckItem(d.job_id, None)
        try:
            data = _encode(result)
        except (TypeError, msgspec.EncodeError) as exc:
            return FailItem(
                d.job_id,
                f"TypeError: the job ran, but its return value cannot be encoded as msgpack ({exc}); "
                "return msgpack-able data (dicts, lists, str, numbers, dataclasses, msgspec Structs, "
                "pydantic models) or None",
                None,
                False,
            )
        return AckItem(d.job_id, data)

    def _failure(self, d: Delivery, exc: BaseException) -> FailItem:
        if isinstance(exc, RetryAfter):
            retry_at = time.time() + exc.seconds
            self._snoozed[d.job_id] = retry_at
            return FailItem(d.job_id, _error_text(exc), None, True, retry_at)
        permanent = isinstance(exc, Permanent)
        if permanent:
            then, level = "Permanent: dead, not retried", logging.ERROR
        elif d.attempt >= d.max_attempts:
            then, level = "no attempts left: dead", logging.ERROR
        else:
            then, level = f"will retry after its backoff (attempt {d.attempt + 1} next)", logging.WARNING
        log.log(
            level,
            "job %s (%s) failed on attempt %d/%d in %.3fs: %s; %s",
            d.job_id, d.name, d.attempt, d.max_attempts, _elapsed(), _error_text(exc), then,
        )  # fmt: skip
        return FailItem(d.job_id, _error_text(exc), _traceback(exc), not permanent)

    def _complete(self, run: _Run, outcome: Outcome) -> None:
        """A job finished (or was dropped): free its slot and queue its outcome."""
        running = self._running
        if running.get(run.job_id) is run:
            del running[run.job_id]
        if self._progress_sent or self._progress:
            self._progress_sent.pop(run.job_id, None)
            self._progress.pop(run.job_id, None)
        current = run.gen == self._gen
        if current and run.owed:
            self._credits += run.owed  # deliveries it answers (the run's own comes back below)
        elif (
            not current
            and outcome is not None
            and (self._multi or self._resuming is not None)
            and not (run.cancelled or run.released)
        ):
            # Ended after its connection dropped: kept for a resume or a redelivery.
            self._carry([outcome])
            if isinstance(outcome, AckItem):
                self.processed += 1
            else:
                self.failed += 1
        if outcome is not None and current and not (run.cancelled or run.released):
            self._queue_outcome(outcome)
        if self._accepting:
            self._credits += 1
            if self._buffered:
                self._fill_slots()
        if not running:
            self._idle.set()
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Send every outcome and credit gathered this loop iteration (one write for all)."""
        self._flush_scheduled = False
        conn = self._conn
        if conn is None or not conn.usable:
            return  # outcomes of a lost connection are dropped in _lost
        try:
            if self._starts:
                starts, self._starts = self._starts, []
                conn.send(MessageType.START, JobIds(starts))
            if self._acks:
                acks, self._acks = self._acks, []
                self._track(conn.request(MessageType.ACK, Ack(acks))[1], acks)
            if self._fails:
                fails, self._fails = self._fails, []
                self._track(conn.request(MessageType.FAIL, Fail(fails))[1], fails)
        except ConnectionLost:
            return
        if self._credits and self._accepting:
            conn.send(MessageType.CREDIT, Credit(self._credits))
            self._credits = 0

    def _track(self, fut: asyncio.Future[Response], outcomes: list[Any] | None = None) -> None:
        self._outstanding += 1
        self._settled.clear()
        if outcomes is not None:
            fut.add_done_callback(lambda f: self._on_done(f, outcomes))
        else:
            fut.add_done_callback(self._on_done)

    def _on_done(self, fut: asyncio.Future[Response], outcomes: list[Any] | None = None) -> None:
        self._outstanding -= 1
        if self._outstanding == 0:
            self._settled.set()
        if fut.cancelled() or fut.exception() is not None:
            # Connection lost (or no answer in time): sent again if the worker resumes its id; else
            # a cluster's new leader delivers those jobs again and these outcomes answer that; a
            # single node took them back (`_carry`, `_not_resumed`).
            if outcomes is not None:
                self._carry(outcomes)
            return
        response = fut.result()
        if response.type is MessageType.ERROR:
            err = response.message
            log.warning("the server refused outcomes: %s: %s", err.code, err.message)
            return
        for err in response.message.errors:
            # CONFLICT or NOT_FOUND: the lease was gone (the job was cancelled, deleted or expired
            # meanwhile, or, sent again after a resume, taken back by the server): not ours now.
            if err.code in (ErrorCode.CONFLICT, ErrorCode.NOT_FOUND):
                log.debug("item %d not taken (the lease was gone): %s: %s", err.index, err.code, err.message)
            else:
                log.warning("item %d not taken: %s: %s", err.index, err.code, err.message)

    # -- progress ---------------------------------------------------------------------------------

    def _report_progress(self, job_id: str, value: float | None, message: str | None) -> None:
        """`JobContext.progress`'s sink, from any thread: keep the latest, send it soon."""
        self._progress[job_id] = (value, message)
        if not self._progress_scheduled:
            self._progress_scheduled = True
            with contextlib.suppress(RuntimeError):  # the loop is closed: the worker has exited
                self._loop.call_soon_threadsafe(self._send_progress)

    def _send_progress(self) -> None:
        """Send the reports of jobs whose interval is up; come back for the others (coalesced)."""
        self._progress_scheduled = False
        conn = self._conn
        now = time.monotonic()
        sent, pending = self._progress_sent, self._progress
        due: float | None = None
        for job_id in list(pending):
            last = sent.get(job_id)
            if last is not None and now - last < PROGRESS_INTERVAL:
                at = last + PROGRESS_INTERVAL
                due = at if due is None else min(due, at)
                continue
            value, message = pending.pop(job_id)
            if job_id in self._running and conn is not None and conn.usable:
                conn.send(MessageType.PROGRESS, Progress(job_id, value, message))
                sent[job_id] = now
        if due is not None and not self._progress_scheduled:
            self._progress_scheduled = True
            self._loop.call_later(due - now, self._send_progress)

    # -- threads and heartbeats -------------------------------------------------------------------

    def _start_threads(self) -> None:
        if not any(not fn.is_async for fn in self.handlers.values()):
            return
        # Daemon threads of our own (not ThreadPoolExecutor): no Future per job, and a handler that
        # never returns cannot keep the process alive after the grace period.
        for i in range(self.concurrency):
            t = threading.Thread(target=self._thread_main, name=f"spitfire-job-{i}", daemon=True)
            t.start()
            self._threads.append(t)

    def _thread_main(self) -> None:
        get = self._jobs_q.get
        while (item := get()) is not None:
            self._run_sync(*item)

    def _stop_threads(self) -> None:
        for _ in self._threads:
            self._jobs_q.put(None)

    async def _heartbeat_loop(self) -> None:
        """Worker-level heartbeats every min(Welcome.heartbeat_interval, smallest held timeout / 3)."""
        last = time.monotonic()
        while True:
            self._hb_wake.clear()
            wait = last + self._hb_interval - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hb_wake.wait(), wait)
                if time.monotonic() < last + self._hb_interval:
                    continue
            last = time.monotonic()
            self._beat()

    def _beat(self) -> None:
        conn = self._conn
        if not (self._running or self._buffered) or conn is None or not conn.usable:
            return
        # A worker-level heartbeat extends every lease this worker holds: buffered jobs (reserved
        # on the server) as well as running ones, however long they wait for a slot.
        with contextlib.suppress(ConnectionLost):
            _, fut = conn.request(MessageType.HEARTBEAT, Heartbeat(None, None))
            fut.add_done_callback(_ignore)
        # Recomputed from the jobs held now, so the interval grows again after short-lease jobs end.
        held = itertools.chain(self._running.values(), self._buffered.values())
        shortest = min(r.ctx.timeout for r in held) / 3
        self._hb_interval = max(MIN_HEARTBEAT, min(conn.welcome.heartbeat_interval, shortest))

    # -- burst and shutdown -----------------------------------------------------------------------

    async def _burst_finished(self) -> bool:
        if self._running or self._buffered or self._outstanding or self._acks or self._fails:
            return False
        if time.monotonic() - self._last_delivery < BURST_QUIET:
            return False
        now = time.time()
        # A job deferred with RetryAfter is "scheduled" on the server; wait for it until it is due
        # (plus a margin for its redelivery), since this worker will run it.
        self._snoozed = {j: t for j, t in self._snoozed.items() if t + 10.0 > now}
        if any(t + BURST_QUIET > now for t in self._snoozed.values()):
            return False
        try:
            stats = await self._control.stats()
        except SpitfireError as exc:
            log.debug("burst check failed: %s", exc)
            return False
        for name in self.queues:
            q = stats.queues.get(name)
            if q is None or q.paused:
                continue
            c = q.counts
            if c.get("enqueued", 0) + c.get("reserved", 0) + c.get("running", 0) + c.get("retrying", 0):
                return False
        return not self._running

    async def _shutdown(self) -> None:
        """Stop taking jobs, RELEASE buffered ones, wait up to ``grace`` for running ones, RELEASE
        the rest, flush outcomes."""
        self._accepting = False
        self._release_buffered()
        conn = self._conn
        if conn is not None and conn.usable:
            with contextlib.suppress(SpitfireError, TimeoutError):
                _, fut = conn.request(MessageType.UNSUBSCRIBE, Unsubscribe())
                async with asyncio.timeout(SHUTDOWN_IO_TIMEOUT):
                    await fut
        if self._running and not self._force:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.grace):
                    while self._running and not self._force:
                        self._idle.clear()
                        await self._idle.wait()
        await self._release_rest()
        self._flush()
        if self._outstanding:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHUTDOWN_IO_TIMEOUT):
                    await self._settled.wait()
        log.info("worker stopped: %d jobs succeeded, %d failed", self.processed, self.failed)

    def _release_buffered(self) -> None:
        """Hand the jobs that never started back now (no attempt counted): they are not worth the
        grace period, and another worker can take them at once."""
        rest = [r.job_id for r in self._drop_buffer() if r.gen == self._gen]
        conn = self._conn
        if not rest or conn is None or not conn.usable:
            return
        log.info("stopping: handing %d buffered jobs back to the server", len(rest))
        with contextlib.suppress(ConnectionLost):
            self._track(conn.request(MessageType.RELEASE, JobIds(rest))[1])

    async def _release_rest(self) -> None:
        rest = [r for r in self._running.values() if r.gen == self._gen]
        if not rest:
            return
        log.warning("grace period over: handing %d running jobs back to the server", len(rest))
        for run in rest:
            run.released = True
            run.ctx._cancel()
            if run.task is not None:
                run.task.cancel()
        conn = self._conn
        if conn is None or not conn.usable:
            return
        with contextlib.suppress(SpitfireError, TimeoutError):
            _, fut = conn.request(MessageType.RELEASE, JobIds([r.job_id for r in rest]))
            async with asyncio.timeout(SHUTDOWN_IO_TIMEOUT):
                await fut


class _ScheduleRefused(SpitfireError):
    """The server refused a schedule of the app at the worker's start."""


def _ignore(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved: a lost connection is handled by the supervisor
