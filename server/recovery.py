"""Rebuilding a queue in memory from what its log held: the snapshot's chunks, then the records.

Jobs found RESERVED or RUNNING are ready again (deliveries are not logged; at-least-once), with the
attempt they were on still counted. Jobs are indexed in the order they last changed state (their
``seq``), so ready jobs keep their FIFO order across a restart.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from itertools import chain
from operator import attrgetter

import msgspec

from spitfire.index.job import LEASED_STATES, Job, JobState
from spitfire.wal.api import Durability, LogRecord, Recovery

from . import records as rec
from .state import Queue, StateMachine

_by_seq = attrgetter("seq")
_by_id = attrgetter("id")
_rtype = attrgetter("rtype")
_lsn = attrgetter("lsn")
_body = attrgetter("body")


class SnapshotFormatError(ValueError):
    """A snapshot chunk this build cannot read."""


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
    for chunk in chunks[1:]:
        jobs.extend(decode(chunk).jobs)
    jobs.sort(key=_by_seq)  # nearly sorted already: timsort makes this linear
    name = q.name
    names: dict[str, str] = {}
    leased = LEASED_STATES
    for job in jobs:
        job.queue = name
        handler = names.get(job.name)
        if handler is None:
            handler = names[job.name] = sys.intern(job.name)
        job.name = handler
        if job.state in leased:
            job.state = JobState.ENQUEUED
            job.worker = None
            job.lease_until = None
    q.index.load(jobs)
    keys = q.index.keys
    for entry in meta.keys:
        keys.restore(entry.key, entry.job_id, sys.intern(entry.name), entry.expires_at)
    if meta.last_id:
        state.ids.observe(meta.last_id)
    if jobs:
        state.ids.observe(max(jobs, key=_by_id).id)


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
#: Most records decoded in one bulk call (bounds the temporary buffer).
BULK_DECODE = 65_536


def _decode_run(q: Queue, records: Sequence[LogRecord], out: list[Job]) -> None:
    """Decode a run of JOB_ENQUEUED records into ``out`` with their LSN, queue and interned name."""
    try:
        jobs = rec.decode_jobs(map(_body, records), len(records))
    except msgspec.DecodeError:  # find the bad record and raise what decoding it alone raises
        jobs = [rec.job_decoder.decode(record.body) for record in records]
    name = q.name
    intern = sys.intern
    for job, lsn in zip(jobs, map(_lsn, records), strict=True):
        job.lsn = lsn
        job.queue = name
        job.name = intern(job.name)
    out.extend(jobs)


def _pending_batch(q: Queue, lsn: int, body: bytes, out: list[Job]) -> None:
    """Add the jobs of one JOBS_ENQUEUED record to ``out``."""
    name = q.name
    intern = sys.intern
    for job in rec.decode(_JOBS_ENQUEUED, body).jobs:  # type: ignore[attr-defined]
        job.lsn = lsn
        job.queue = name
        job.name = intern(job.name)
        out.append(job)


def load_queue(state: StateMachine, q: Queue, recovery: Recovery) -> None:
    """Apply everything recovery found for the queue, through `StateMachine.apply`.

    Runs of enqueue records are indexed in bulk (runs of JOB_ENQUEUED records are also decoded in
    bulk); any other record first flushes the run, so the order of changes is kept.
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
            if record.rtype == _JOBS_ENQUEUED:
                _pending_batch(q, record.lsn, record.body, pending)
                continue
            if pending:
                load_new_jobs(state, q, pending)
                pending = []
            apply(q, record.lsn, record.rtype, decode(record.rtype, record.body))
        for i in range(start, end, BULK_DECODE):
            _decode_run(q, records[i : min(end, i + BULK_DECODE)], pending)
        done = end
    if pending:
        load_new_jobs(state, q, pending)
    if records:
        q.applied_lsn = max(q.applied_lsn, records[-1].lsn)
