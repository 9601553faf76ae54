"""Rebuilding a queue in memory from what its log held: the snapshot's chunks, then the records.

Jobs found RESERVED or RUNNING are ready again (a single node logs no deliveries; at-least-once),
with the attempt they were on still counted; a cluster's leader (``StateMachine.keep_leases``)
keeps them leased, to their worker, until their lease ends. Jobs are indexed in the order they last
changed state (their ``seq``), so ready jobs keep their FIFO order across a restart.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Sequence
from itertools import chain, repeat
from operator import attrgetter, floordiv

import msgspec

from spitfire.index.job import LEASED_STATES, Job, JobState
from spitfire.index.minutes import ENQUEUED as _COUNT_ENQUEUED
from spitfire.wal.api import CorruptLogError, Durability, LogRecord, Recovery

from . import records as rec
from .dedupe import TokenEntry
from .history import load_history_chunk
from .state import Queue, StateMachine

_by_seq = attrgetter("seq")
_by_id = attrgetter("id")
_rtype = attrgetter("rtype")
_lsn = attrgetter("lsn")
_body = attrgetter("body")
_created = attrgetter("created_at")


class SnapshotFormatError(ValueError):
    """A snapshot chunk this build cannot read."""


class UndecodableRecordError(CorruptLogError):
    """A log record whose checksum is valid but whose type or body this build cannot decode.

    Raised at start-up instead of the decoder's own exception: it names the queue, the LSN and,
    through `Recovery.locate`, the file and byte offset, and says what the operator can do.
    """

    def __init__(self, queue: str, lsn: int, rtype: int, problem: str, where: tuple[str, int] | None) -> None:
        self.queue = queue
        self.lsn = lsn
        self.rtype = rtype
        path, offset = where if where is not None else (f"the log of queue {queue!r}", 0)
        super().__init__(
            path,
            offset,
            f"record LSN {lsn} of queue {queue!r} (type {rtype}) has a valid checksum but {problem}",
            hint="If a newer spitfire-server wrote this log, run that release. Otherwise drop just this "
            f"record with: spitfire-server repair --data-dir <DIR> --skip-record {queue}:{lsn}",
        )


#: What decoding a record body raises when the type or the bytes are not what this build knows.
_DECODE_ERRORS = (rec.UnknownRecordType, msgspec.DecodeError)


def _undecodable(q: Queue, recovery: Recovery, record: LogRecord, exc: Exception) -> UndecodableRecordError:
    problem = (
        "a record type this build does not know"
        if isinstance(exc, rec.UnknownRecordType)
        else f"a body that does not decode ({exc})"
    )
    return UndecodableRecordError(q.name, record.lsn, record.rtype, problem, recovery.locate(record.lsn))


def load_snapshot(state: StateMachine, q: Queue, lsn: int, chunks: list[bytes]) -> None:
    """Apply a snapshot's chunks: queue meta first, then the jobs."""
    meta = rec.meta_decoder.decode(chunks[0])
    if meta.version != rec.SNAPSHOT_VERSION:
        raise SnapshotFormatError(
            f"snapshot of queue {q.name!r} has version {meta.version}; "
            f"this build reads {rec.SNAPSHOT_VERSION}"
        )
    q.paused = meta.paused
    q.snapshot_lsn = q.applied_lsn = lsn
    mode = Durability(meta.durability)
    if q.log.durability is not mode:
        q.log.set_durability(mode)
    jobs: list[Job] = []
    decode = rec.chunk_decoder.decode
    if meta.history and len(chunks) > 1:
        load_history_chunk(q, chunks[1])
    for chunk in chunks[2 if meta.history else 1 :]:
        jobs.extend(decode(chunk).jobs)
    jobs.sort(key=_by_seq)  # nearly sorted already: timsort makes this linear
    name = q.name
    names: dict[str, str] = {}
    leased = LEASED_STATES
    held: list[Job] = []
    for job in jobs:
        job.queue = name
        handler = names.get(job.name)
        if handler is None:
            handler = names[job.name] = sys.intern(job.name)
        job.name = handler
        if job.state in leased:
            held.append(job)
    _snapshot_leases(state, held)
    q.index.load(jobs)
    keys = q.index.keys
    for entry in meta.keys:
        keys.restore(entry.key, entry.job_id, sys.intern(entry.name), entry.expires_at, entry.state)
    for t in meta.request_tokens:
        state.tokens.restore(t.token, TokenEntry(name, t.name, tuple(t.job_ids), t.expires_at))
    if meta.last_id:
        state.ids.observe(meta.last_id)
    if jobs:
        state.ids.observe(max(jobs, key=_by_id).id)


def _snapshot_leases(state: StateMachine, jobs: list[Job]) -> None:
    """Leased jobs of a snapshot: a cluster's leader (`keep_leases`) keeps each lease, to its worker,
    until its end; a single node makes them ready again."""
    for job in jobs:
        if state.keep_leases and job.worker is not None and job.lease_until is not None:
            state.hold(job, job.worker)
        else:
            job.state = JobState.ENQUEUED
            job.worker = None
            job.lease_until = None


def load_new_jobs(state: StateMachine, q: Queue, jobs: list[Job]) -> None:
    """Index jobs read from enqueue records (``job.lsn``, ``queue`` and interned ``name`` set),
    skipping ids already known. (What `StateMachine.apply` does for each, in bulk.)"""
    known = state.table
    fresh = [job for job in jobs if job.id not in known] if len(known) else jobs
    if not fresh:
        return
    q.index.load(fresh)
    keys = q.index.keys
    for job in fresh:
        if job.idempotency_key is not None:
            keys.add(job.idempotency_key, job.id, job.name, job.created_at)
    state.ids.observe(max(fresh, key=_by_id).id)
    q.applied_lsn = max(q.applied_lsn, fresh[-1].lsn)


_JOB_ENQUEUED = int(rec.RecordType.JOB_ENQUEUED)
_JOBS_ENQUEUED = int(rec.RecordType.JOBS_ENQUEUED)
#: Runs of consecutive JOB_ENQUEUED records in the string of record type bytes.
_ENQUEUE_RUN = re.compile(re.escape(bytes([_JOB_ENQUEUED])) + b"+")
#: Jobs whose creation minutes are compared at once when recovery counts them.
_COUNT_SLICE = 4096
#: Most records decoded in one bulk call (bounds the temporary buffer).
BULK_DECODE = 65_536


def _decode_run(q: Queue, recovery: Recovery, records: Sequence[LogRecord], out: list[Job]) -> None:
    """Decode a run of JOB_ENQUEUED records into ``out`` with their LSN, queue and interned name."""
    try:
        jobs = rec.decode_jobs(map(_body, records), len(records))
    except msgspec.DecodeError:  # find the bad record and name it
        jobs = []
        for record in records:
            try:
                jobs.append(rec.job_decoder.decode(record.body))
            except msgspec.DecodeError as exc:
                raise _undecodable(q, recovery, record, exc) from exc
    _count_enqueued(q, jobs)
    name = q.name
    intern = sys.intern
    for job, lsn in zip(jobs, map(_lsn, records), strict=True):
        job.lsn = lsn
        job.queue = name
        job.name = intern(job.name)
    out.extend(jobs)


def _count_enqueued(q: Queue, jobs: Sequence[Job]) -> None:
    """Count jobs read from JOB_ENQUEUED records in the history (what `StateMachine.apply` does for
    each), one addition per minute, in C loops (recovery reads millions of them): a slice whose jobs
    were all created in one minute (the common case: jobs are in log order) is counted at once."""
    add = q.history.add
    for i in range(0, len(jobs), _COUNT_SLICE):
        times = list(map(_created, jobs[i : i + _COUNT_SLICE]))
        lo = min(times) // 60.0
        if lo == max(times) // 60.0:
            add(lo * 60.0, _COUNT_ENQUEUED, len(times))
            continue
        for minute, n in Counter(map(floordiv, times, repeat(60.0))).items():
            add(minute * 60.0, _COUNT_ENQUEUED, n)


def _pending_batch(state: StateMachine, q: Queue, lsn: int, body: bytes, out: list[Job]) -> None:
    """Add the jobs of one JOBS_ENQUEUED record to ``out`` (and remember its request token)."""
    name = q.name
    intern = sys.intern
    record: rec.JobsEnqueued = rec.decode(_JOBS_ENQUEUED, body)  # type: ignore[assignment]
    jobs = record.jobs
    if jobs:  # one batch, one time (as `StateMachine.apply` counts it)
        q.history.add(jobs[0].created_at, _COUNT_ENQUEUED, len(jobs))
        if record.request_token is not None:  # as `StateMachine.apply` does
            state.tokens.record(
                record.request_token, name, jobs[0].name, [j.id for j in jobs], jobs[0].created_at
            )
    for job in jobs:
        job.lsn = lsn
        job.queue = name
        job.name = intern(job.name)
        out.append(job)


def load_queue(state: StateMachine, q: Queue, recovery: Recovery) -> None:
    """Apply everything recovery found for the queue, through `StateMachine.apply`.

    Runs of enqueue records are indexed in bulk (runs of JOB_ENQUEUED records are also decoded in
    bulk); any other record first flushes the run, so the order of changes is kept.

    :raises UndecodableRecordError: a record of an unknown type or whose body does not decode.
    """
    chunks = list(recovery.snapshot_chunks)
    if chunks:
        load_snapshot(state, q, recovery.snapshot_lsn, chunks)
    records = recovery.records
    if not isinstance(records, list):
        records = list(records)
    apply = state.apply
    decode = rec.decode
    pending: list[Job] = []
    rtypes = bytes(map(_rtype, records))
    done = 0
    for run in chain(_ENQUEUE_RUN.finditer(rtypes), (None,)):
        start, end = run.span() if run is not None else (len(records), len(records))
        for record in records[done:start]:  # the records between two runs, one at a time
            try:
                if record.rtype == _JOBS_ENQUEUED:
                    _pending_batch(state, q, record.lsn, record.body, pending)
                    continue
                if pending:
                    load_new_jobs(state, q, pending)
                    pending = []
                apply(q, record.lsn, record.rtype, decode(record.rtype, record.body))
            except _DECODE_ERRORS as exc:
                raise _undecodable(q, recovery, record, exc) from exc
        for i in range(start, end, BULK_DECODE):
            _decode_run(q, recovery, records[i : min(end, i + BULK_DECODE)], pending)
        done = end
    if pending:
        load_new_jobs(state, q, pending)
    if records:
        q.applied_lsn = max(q.applied_lsn, records[-1].lsn)
