"""Rebuilding a queue in memory from what its log held: the snapshot's chunks, then the records.

Jobs found RESERVED or RUNNING are ready again (deliveries are not logged; at-least-once), with the
attempt they were on still counted. Jobs are indexed in the order they last changed state (their
``seq``), so ready jobs keep their FIFO order across a restart.
"""

from __future__ import annotations

import sys
from operator import attrgetter
from typing import TYPE_CHECKING

from spitfire.index.job import LEASED_STATES, Job, JobState
from spitfire.wal.api import Durability, Recovery

from . import records as rec

if TYPE_CHECKING:
    from .engine import Engine, Queue

_by_seq = attrgetter("seq")
_by_id = attrgetter("id")


class SnapshotFormatError(ValueError):
    """A snapshot chunk this build cannot read."""


def load_snapshot(engine: Engine, q: Queue, lsn: int, chunks: list[bytes]) -> None:
    """Apply a snapshot's chunks: queue meta first, then the jobs."""
    meta = rec.meta_decoder.decode(chunks[0])
    if meta.version != rec.SNAPSHOT_VERSION:
        raise SnapshotFormatError(
            f"snapshot of queue {q.name!r} has version {meta.version}; "
            f"this build reads {rec.SNAPSHOT_VERSION}"
        )
    q.paused = meta.paused
    q.snapshot_lsn = lsn
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
        engine.ids.observe(meta.last_id)
    if jobs:
        engine.ids.observe(max(jobs, key=_by_id).id)


def load_new_jobs(engine: Engine, q: Queue, jobs: list[Job]) -> None:
    """Index jobs read from enqueue records (``job.lsn`` set), skipping ids already known."""
    table = engine.table
    fresh = [job for job in jobs if job.id not in table]
    if not fresh:
        return
    name = q.name
    names: dict[str, str] = {}
    for job in fresh:
        job.queue = name
        handler = names.get(job.name)
        if handler is None:
            handler = names[job.name] = sys.intern(job.name)
        job.name = handler
    q.index.load(fresh)
    keys = q.index.keys
    for job in fresh:
        if job.idempotency_key is not None:
            keys.add(job.idempotency_key, job.id, job.name, job.created_at)
    engine.ids.observe(max(fresh, key=_by_id).id)


_NEW = frozenset({rec.RecordType.JOB_ENQUEUED, rec.RecordType.JOBS_ENQUEUED})


def load_queue(engine: Engine, q: Queue, recovery: Recovery) -> None:
    """Apply everything recovery found for the queue.

    Runs of enqueue records are indexed in bulk; any other record first flushes the run, so the
    order of changes is kept.
    """
    chunks = list(recovery.snapshot_chunks)
    if chunks:
        load_snapshot(engine, q, recovery.snapshot_lsn, chunks)
    apply = engine.apply_record
    pending: list[Job] = []
    decode = rec.decode
    for record in recovery.records:
        if record.rtype in _NEW:
            body = decode(record.rtype, record.body)
            batch = body.jobs if isinstance(body, rec.JobsEnqueued) else [body]
            for job in batch:
                assert isinstance(job, Job)
                job.lsn = record.lsn
            pending.extend(batch)  # type: ignore[arg-type]
            continue
        if pending:
            load_new_jobs(engine, q, pending)
            pending = []
        apply(q, record.lsn, record.rtype, record.body)
    if pending:
        load_new_jobs(engine, q, pending)
