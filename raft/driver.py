"""``--raft-driver thread``: pysyncobj ticked by a thread of its own instead of the event loop.

The loop driver (`spitfire.raft.node`, the default) registers pysyncobj's sockets with the event
loop and ticks it there. This module runs the same `CompactingNode` on a thread of ours (named
``spitfire-raft``): it waits on pysyncobj's sockets with a selector, and after each wake-up (a
socket event, a proposal, a call from the loop, or `TICK` seconds) dispatches the events and ticks
pysyncobj, holding the node's lock. What stays true, and how:

- **Durability before anything leaves.** The WAL is the loop's (its group commit, appends and
  futures are loop-only), so the journal writes through `ThreadLog`: an append made on the Raft
  thread gets its LSN at once (the next one of the log, which only the journal writes) and is
  copied into the WAL on the loop, in order, one commit per batch of appends. The journal's
  durability notices reach the node on the Raft thread, where held messages are released, exactly
  as on the loop: nothing is sent before every record appended before it is durable.
- **Commit callbacks and role changes run on the loop** (``call_soon_threadsafe``): the engine stays
  single-threaded. Proposals go from the loop to pysyncobj's command queue, which takes a lock
  (``FastQueue``), and wake the Raft thread through pysyncobj's own notification pipe.
- **The read guard** (`spitfire.raft.readguard`) lives on the loop: the Raft thread stamps outgoing
  heartbeats (a pure function of the term and the clock) and hands every echo, and every change of
  term, to the loop in the order it saw them; the lease and the waiting reads are the loop's.
- **Compaction** (`spitfire.raft.compaction`) runs on the loop under the node's lock, right after
  a tick that committed entries and every `TICK`: applying entries to the replicated state and
  dropping compacted entries never interleave with a tick; the snapshot itself is written by the
  WAL's threads as with the loop driver.

Not supported with this driver: membership changes (``spitfire-server cluster add|remove`` answers
409 CONFLICT: run every member with ``--raft-driver loop`` to change membership).

docs/ha.md ("What ticks pysyncobj") gives the two drivers measured side by side, and why the loop
stays the default: the thread costs more CPU per job and, mostly, tail latency, for no gain.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import os
import random
import selectors
import threading
import time
from collections.abc import Callable
from typing import Any

from pysyncobj.poller import POLL_EVENT_TYPE, Poller  # type: ignore[import-untyped]

from spitfire.wal.api import QueueLog, Recovery, StorageError

from .batch import Batch
from .compaction import CompactingJournal, CompactingNode, Compactor
from .membership import MembershipError
from .node import TICK, ClusterConfig, Commit, RaftNode, Role
from .readguard import ReadGuard

__all__ = [
    "JOIN_TIMEOUT",
    "ThreadCompactor",
    "ThreadJournal",
    "ThreadLog",
    "ThreadNode",
    "ThreadPoller",
]

log = logging.getLogger("spitfire.raft")

#: Seconds `ThreadNode.close` waits for the Raft thread to finish its tick and stop.
JOIN_TIMEOUT = 5.0

_Call = Callable[[], Any]


def _consume(future: asyncio.Future[None]) -> None:
    """Retrieve a commit's outcome: a failure reaches the journal through the log's listener."""
    if not future.cancelled():
        future.exception()


class ThreadLog:
    """The journal's WAL log as seen from the Raft thread: `append` may be called from any thread
    and returns the record's LSN at once; the record reaches the WAL (and its group commit) on the
    loop, in LSN order. Everything else is the WAL log's own, called on the loop.

    Only the journal may write to the log (the LSNs it is given are counted here).
    """

    def __init__(self, log_: QueueLog, loop: asyncio.AbstractEventLoop) -> None:
        self._log = log_
        self._loop = loop
        self._last = int(log_.last_lsn)
        self._pending: collections.deque[tuple[int, int, bytes, bool]] = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._failure: StorageError | None = None
        self._on_failed: Callable[[StorageError], None] | None = None

    @property
    def last_lsn(self) -> int:
        """LSN of the newest record appended (copied into the WAL or about to be)."""
        return self._last

    def append(self, rtype: int, body: bytes, *, reserved: bool = False) -> int:
        """Queue one record for the WAL; its LSN. Never raises a storage error: a failure to write
        it reaches the listener's ``on_failed`` (the journal fail-stops; nothing appended after the
        failure is ever sent, since nothing of it becomes durable)."""
        with self._lock:
            self._last += 1
            lsn = self._last
            self._pending.append((lsn, rtype, body, reserved))
            schedule = not self._scheduled
            self._scheduled = True
        if schedule:
            self._loop.call_soon_threadsafe(self._drain)
        return lsn

    def commit(self, lsn: int) -> asyncio.Future[None] | None:
        """None: the loop commits each batch of appends as it copies it (see `append`)."""
        return None

    def set_listener(
        self, on_durable: Callable[[int], None], on_failed: Callable[[StorageError], None]
    ) -> None:
        """The WAL log's listener (both run on the loop)."""
        self._on_failed = on_failed
        self._log.set_listener(on_durable, on_failed)

    def drain(self) -> None:
        """Loop: copy every queued record into the WAL now and ask for its durability."""
        self._drain()

    def _drain(self) -> None:
        with self._lock:
            items = list(self._pending)
            self._pending.clear()
            self._scheduled = False
        if not items or self._failure is not None:
            return
        log_ = self._log
        try:
            for lsn, rtype, body, reserved in items:
                written = log_.append(rtype, body, reserved=reserved)
                if written != lsn:
                    raise StorageError(
                        f"the Raft journal's log gave LSN {written} to the record expected at {lsn}: "
                        "something else wrote to meta/raft; restart this member"
                    )
            future = log_.commit(items[-1][0])
        except StorageError as exc:
            self._failure = exc
            if self._on_failed is not None:
                self._on_failed(exc)
            return
        if future is not None and not future.done():
            future.add_done_callback(_consume)

    def snapshot(self, lsn: int | None = None) -> Any:
        """The WAL log's snapshot writer, once the records queued so far are in it."""
        self._drain()
        return self._log.snapshot(lsn)

    async def flush(self) -> None:
        """Wait until every record appended so far, queued ones included, is durable."""
        self._drain()
        await self._log.flush()

    def __getattr__(self, name: str) -> Any:  # queue, durable_lsn, low_on_space, ...
        return getattr(self._log, name)


class ThreadJournal(CompactingJournal):
    """`CompactingJournal` written from the Raft thread through a `ThreadLog`; what the loop does
    to it (compacting, reading an entry) holds `lock`, which the Raft thread holds while it ticks."""

    def __init__(self, log_: QueueLog, recovery: Recovery, loop: asyncio.AbstractEventLoop) -> None:
        #: Held by the Raft thread during each of its ticks, and by the loop around what it does to
        #: the node, the journal or the replicated state.
        self.lock = threading.RLock()
        super().__init__(ThreadLog(log_, loop), recovery)

    def compact(self, index: int, lsn: int) -> None:
        with self.lock:
            super().compact(index, lsn)

    def entry(self, index: int) -> tuple[bytes, int, int] | None:
        with self.lock:
            return super().entry(index)


class ThreadCompactor(Compactor):
    """`Compactor` whose entries are applied on the loop under the journal's lock."""

    journal: ThreadJournal

    def advance(self, deadline: float | None = None) -> None:
        with self.journal.lock:
            super().advance(deadline)


class ThreadPoller(Poller):  # type: ignore[misc]
    """pysyncobj's poller interface over a selector, waited on by the Raft thread (`wait`) and
    dispatched under the node's lock (`dispatch`)."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._callbacks: dict[int, tuple[Callable[[int, int], None], int]] = {}

    def subscribe(self, descr: int, callback: Callable[[int, int], None], eventMask: int) -> None:
        events = 0
        if eventMask & POLL_EVENT_TYPE.READ:
            events |= selectors.EVENT_READ
        if eventMask & POLL_EVENT_TYPE.WRITE:
            events |= selectors.EVENT_WRITE
        if descr in self._callbacks:
            self._selector.modify(descr, events)
        else:
            self._selector.register(descr, events)
        self._callbacks[descr] = (callback, eventMask)

    def unsubscribe(self, descr: int) -> None:
        if self._callbacks.pop(descr, None) is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self._selector.unregister(descr)

    def poll(self, timeout: float) -> None:
        self.dispatch(self.wait(timeout))

    def wait(self, timeout: float) -> list[tuple[int, int]]:
        """Block until a socket is ready or ``timeout`` passes: (descriptor, pysyncobj event mask)."""
        if not self._callbacks:
            time.sleep(timeout)
            return []
        ready = []
        for key, mask in self._selector.select(timeout):
            event = 0
            if mask & selectors.EVENT_READ:
                event |= POLL_EVENT_TYPE.READ
            if mask & selectors.EVENT_WRITE:
                event |= POLL_EVENT_TYPE.WRITE
            ready.append((int(key.fd), event))
        return ready

    def dispatch(self, ready: list[tuple[int, int]]) -> None:
        for descr, event in ready:
            entry = self._callbacks.get(descr)  # unsubscribed meanwhile: nothing to tell
            if entry is None or not entry[1] & event:
                continue
            try:
                entry[0](descr, event)
            except Exception:  # a bug in the transport must not stop the Raft thread
                log.exception("raft transport callback failed")

    def close(self) -> None:
        self._callbacks.clear()
        self._selector.close()


class _LoopReadGuard(ReadGuard):
    """`ReadGuard` whose leader-side bookkeeping stays on the loop: the Raft thread stamps and
    hands echoes and term changes over, in the order it saw them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stamped_term = -1

    def stamp(self, term: int) -> tuple[int, float]:
        if term != self._stamped_term:
            self._stamped_term = term
            # The reset of the previous term's echoes, on the loop before any echo of this term.
            self._loop.call_soon_threadsafe(ReadGuard.stamp, self, term)
        return (term, self._clock())

    def echoed(self, member: str, stamp: Any) -> None:
        self._loop.call_soon_threadsafe(ReadGuard.echoed, self, member, stamp)


class ThreadNode(CompactingNode):
    """`CompactingNode` ticked by a thread of its own (see the module's doc). Build it on the
    running loop, then `start` it; `close` stops the thread."""

    _journal: ThreadJournal
    _compactor: ThreadCompactor
    #: Its bookkeeping on the loop: the thread hands echoes and term changes over.
    read_guard_type = _LoopReadGuard

    def __init__(
        self,
        config: ClusterConfig,
        journal: ThreadJournal,
        compactor: ThreadCompactor,
        *,
        on_role: Callable[[Role], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.lock = journal.lock
        self._calls: collections.deque[_Call] = collections.deque()
        self._again = False
        self._stopping = False
        self._seen_commit = 0
        self._compacting_soon = False
        self._thread: threading.Thread | None = None
        self._loop_timer: asyncio.TimerHandle | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        # Before pysyncobj binds its sockets on it (`_make_poller`; pysyncobj names its own `_poller`).
        self._thread_poller = ThreadPoller()
        self._thread_poller.subscribe(self._wake_r, self._drain_wake, POLL_EVENT_TYPE.READ)
        try:
            with self.lock:
                super().__init__(config, journal, compactor, on_role=on_role, on_failure=on_failure)
        except BaseException:  # pysyncobj could not bind: nothing of ours stays open
            self._close_wake()
            raise

        def refuse(*_args: Any, **_kwargs: Any) -> Any:
            raise MembershipError(
                "CONFLICT",
                "membership changes need every member run with --raft-driver loop (this one runs "
                "--raft-driver thread)",
            )

        self.members_sync.change = refuse  # type: ignore[method-assign]

    def _make_poller(self) -> Poller:
        return self._thread_poller

    # -- the Raft thread -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the Raft thread, and compaction on the loop (the election deadline starts now)."""
        low, high = self.config.election_timeout
        with self.lock:
            self._SyncObj__raftElectionDeadline = time.monotonic() + low + (high - low) * random.random()
            self.elections.started()
        self._thread = threading.Thread(target=self._run, name="spitfire-raft", daemon=True)
        self._thread.start()
        self._loop_timer = self._loop.call_later(TICK, self._compact_periodic)

    def close(self) -> None:
        """Stop the thread (bounded wait), then close pysyncobj's sockets."""
        self._closed = True
        self._stopping = True
        if self._loop_timer is not None:
            self._loop_timer.cancel()
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT)
            if thread.is_alive():
                log.error("the raft thread did not stop within %.0f s", JOIN_TIMEOUT)
        with self.lock:
            try:
                self._doDestroy()
            finally:
                self._close_wake()

    def _close_wake(self) -> None:
        self._thread_poller.close()
        fds, self._wake_r, self._wake_w = (self._wake_r, self._wake_w), -1, -1
        for fd in fds:  # -1 from now on: a late wake-up must not write to a reused descriptor
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _run(self) -> None:
        poller = self._thread_poller
        while not self._stopped():
            try:
                ready = poller.wait(0.0 if self._again else TICK)
            except (OSError, ValueError):  # the selector was closed under us: stopping
                if self._stopped():
                    return
                raise
            with self.lock:
                if self._stopped():
                    return
                self._again = False
                try:
                    poller.dispatch(ready)
                    calls = self._calls
                    while calls:
                        calls.popleft()()
                    self._tick()
                except Exception:  # logged; the thread goes on ticking, as the loop would
                    log.exception("raft tick failed")

    def _stopped(self) -> bool:
        return self._stopping

    def _tick(self) -> None:
        RaftNode._tick(self)  # compaction is the loop's (`_compact_periodic`, `_compact_soon`)
        commit = self.raftCommitIndex
        if commit != self._seen_commit and not self._compacting_soon:
            # Entries committed: apply them on the loop now, as the loop driver does after a tick.
            self._seen_commit = commit
            self._compacting_soon = True
            self._loop.call_soon_threadsafe(self._compact_soon)

    def _compact(self) -> None:
        if self._closed or self._journal.failure is not None:
            return
        try:
            self._compactor.tick()
        except Exception:  # the node must keep ticking: a snapshot is retried later
            log.exception("raft compaction tick failed")

    def _compact_soon(self) -> None:
        self._compacting_soon = False
        self._compact()

    def _compact_periodic(self) -> None:
        if self._closed:
            return
        self._compact()
        self._loop_timer = self._loop.call_later(TICK, self._compact_periodic)

    def _on_thread(self) -> bool:
        thread = self._thread
        return thread is not None and thread.ident == threading.get_ident()

    def _kick(self) -> None:
        if self._on_thread():
            self._again = True
        else:
            self._wake()

    def _wake(self) -> None:
        if self._wake_w < 0:  # closed
            return
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:  # the pipe is full: the thread wakes anyway
            pass
        except OSError as exc:
            if exc.errno != errno.EBADF:  # closed: stopping
                raise

    def _drain_wake(self, _descr: int, _event: int) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 4096):
                pass

    def call(self, fn: _Call) -> None:
        """Run ``fn`` on the Raft thread, under the lock, before its next tick (from any thread)."""
        self._calls.append(fn)
        self._kick()

    # -- crossing between the loop and the Raft thread ------------------------------------------------

    def _released(self, durable: int) -> None:
        # The loop hears of durability; held messages leave from the Raft thread.
        self.call(lambda: RaftNode._released(self, durable))

    def _journal_failed(self, error: StorageError) -> None:
        self.call(self._held.clear)
        log.critical("the raft journal failed, this member stops: %s", error)
        if self._on_failure is not None:
            self._on_failure(f"raft journal: {error}")

    def _poke(self) -> None:
        self.call(lambda: RaftNode._poke(self))

    def _state_changed(self, old: int, new: int) -> None:
        role = Role.LEADER if new == 2 else Role.CANDIDATE if new == 1 else Role.FOLLOWER
        log.info("raft: %s is %s in term %d", self.config.node_id, role.value, self.term)
        if self._on_role is not None:
            self._loop.call_soon_threadsafe(self._on_role, role)

    def propose(self, batch: Batch, done: Commit) -> None:
        """`RaftNode.propose` from the loop; ``done`` is told on the loop."""
        if self.role is not Role.LEADER:
            done(False, "this member does not lead")
            return
        loop = self._loop

        def on_loop(ok: bool, why: str | None) -> None:
            loop.call_soon_threadsafe(done, ok, why)

        super().propose(batch, on_loop)

    def match_indexes(self) -> dict[str, int]:
        with self.lock:
            return super().match_indexes()

    def connected(self) -> set[str]:
        with self.lock:
            return super().connected()

    def committed_batches(self) -> list[Batch]:
        with self.lock:
            return super().committed_batches()

    def learn_addresses(self) -> None:
        with self.lock:
            super().learn_addresses()
