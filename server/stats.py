"""Monitoring figures the engine and the service keep for /metrics: plain counters and fixed
`Buckets` (``spitfire.wal.Buckets``) updated on the loop thread, read at scrape time (also on the
loop thread: no lock, no torn read). The dashboard turns them into Prometheus families.

Each costs a clock read and a bucket increment per request (or per snapshot), never per job of a
batch, and never a Prometheus call on the hot path. `JobTimings` is the exception that proves the
rule: per job, but it reads no clock (the engine's own times of START and of the outcome's record)
and costs two dict lookups and a bucket increment at each.
"""

from __future__ import annotations

from bisect import bisect_left

from spitfire.protocol.messages import ErrorCode
from spitfire.wal import Buckets

#: Upper bounds of enqueue latency, in seconds (0.1 ms to 1 s): the same for HTTP and the protocol.
ENQUEUE_BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
#: Upper bounds of snapshot durations, in seconds (a small queue's 10 ms to a huge one's minutes).
SNAPSHOT_BOUNDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
#: Why an enqueue may be refused for lack of room: backpressure, over a size limit, disk full.
REFUSALS = (ErrorCode.BUSY, ErrorCode.TOO_LARGE, ErrorCode.NO_SPACE)


class SnapshotStats:
    """Snapshots written since the server started (every queue together)."""

    __slots__ = ("failed", "last_at", "last_seconds", "seconds")

    def __init__(self) -> None:
        #: Duration of each finished snapshot, from its start to its rename being durable.
        self.seconds = Buckets(SNAPSHOT_BOUNDS)
        #: Epoch seconds when the last snapshot finished (0: none yet).
        self.last_at = 0.0
        #: Duration of the last finished snapshot.
        self.last_seconds = 0.0
        #: Snapshots that failed (aborted by an error; the previous one stays in use).
        self.failed = 0

    def finished(self, seconds: float, at: float) -> None:
        self.seconds.observe(seconds)
        self.last_seconds = seconds
        self.last_at = at


class Refusals:
    """Enqueues refused for lack of room, by protocol (``http``, ``binary``) and `REFUSALS` code."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        #: (protocol, code) -> requests refused (a refused batch counts once).
        self.counts: dict[tuple[str, str], int] = {}

    def count(self, protocol: str, code: str) -> None:
        """Count one refusal if ``code`` is one of `REFUSALS` (other errors are not refusals)."""
        if code in REFUSALS:
            key = (protocol, str(code))
            self.counts[key] = self.counts.get(key, 0) + 1


class EnqueueLatency:
    """Protocol enqueue latency: request handed to the service to answer queued (after the commit)."""

    __slots__ = ("batch", "single")

    def __init__(self) -> None:
        #: ENQUEUE requests (one job).
        self.single = Buckets(ENQUEUE_BOUNDS)
        #: ENQUEUE_MANY requests (one observation per request, whatever its size).
        self.batch = Buckets(ENQUEUE_BOUNDS)


#: Upper bounds of job run and queue-wait times, in seconds: 1 ms (a no-op handler, a job taken at
#: once) to an hour (a long report, a backlog), about 2.5x apart, plus +Inf.
JOB_BOUNDS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
    300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip
#: Distinct (queue, job name) pairs that get series of their own; jobs of later pairs are counted
#: under `OTHER_JOB` of their queue (Prometheus slows down with unbounded label values).
MAX_JOB_SERIES = 1000
#: The name label of the series that gathers the pairs past `MAX_JOB_SERIES` (a job named so too).
OTHER_JOB = "other"


class JobSeries:
    """One (queue, job name) pair's figures: run and queue-wait seconds."""

    __slots__ = ("run", "wait")

    def __init__(self) -> None:
        #: Each started attempt that ended (ack, failure, retry-after, lost lease): START to its
        #: record's time.
        self.run = Buckets(JOB_BOUNDS)
        #: Each START: the job becoming ready (enqueued, or promoted when due) to the START.
        self.wait = Buckets(JOB_BOUNDS)


class JobTimings:
    """Run and queue-wait seconds per queue and job name since the server started (memory only).

    Written by the engine on the loop thread (the START of a job, the application of the record
    that ends a started attempt), read at scrape time on the same thread. At most ``limit`` pairs
    have series of their own; any later pair of a queue shares that queue's `OTHER_JOB` series, so
    the series are bounded by ``limit`` plus the number of queues (a deleted queue's are dropped).
    """

    __slots__ = ("limit", "other", "pairs", "queues")

    def __init__(self, limit: int = MAX_JOB_SERIES) -> None:
        if limit < 0:
            raise ValueError("JobTimings.limit must not be negative")
        self.limit = limit
        #: queue -> job name -> its series (pairs within the limit).
        self.queues: dict[str, dict[str, JobSeries]] = {}
        #: queue -> the series of its jobs past the limit (and of a job named `OTHER_JOB`).
        self.other: dict[str, JobSeries] = {}
        #: Pairs with series of their own.
        self.pairs = 0

    def series(self, queue: str, job: str) -> JobSeries:
        """The series ``job`` of ``queue`` is counted in (made on first use)."""
        jobs = self.queues.get(queue)
        found = jobs.get(job) if jobs is not None else None
        return found if found is not None else self._new(queue, job)

    # `waited` and `ran` are on the path of every job: the lookup and the bucket increment are
    # written out (not `series` and `Buckets.observe`), which halves their cost.

    def waited(self, queue: str, job: str, seconds: float) -> None:
        """Count one job's queue wait (a negative one, from a clock stepped back, as 0)."""
        jobs = self.queues.get(queue)
        found = jobs.get(job) if jobs is not None else None
        b = (found if found is not None else self._new(queue, job)).wait
        if seconds < 0.0:
            seconds = 0.0
        b.counts[bisect_left(JOB_BOUNDS, seconds)] += 1
        b.sum += seconds

    def ran(self, queue: str, job: str, seconds: float) -> None:
        """Count one attempt's run time (a negative one, from a clock stepped back, as 0)."""
        jobs = self.queues.get(queue)
        found = jobs.get(job) if jobs is not None else None
        b = (found if found is not None else self._new(queue, job)).run
        if seconds < 0.0:
            seconds = 0.0
        b.counts[bisect_left(JOB_BOUNDS, seconds)] += 1
        b.sum += seconds

    def _new(self, queue: str, job: str) -> JobSeries:
        if job != OTHER_JOB and self.pairs < self.limit:
            made = self.queues.setdefault(queue, {})[job] = JobSeries()
            self.pairs += 1
            return made
        # Past the limit, names are not kept: a stream of new names costs no memory.
        other = self.other.get(queue)
        if other is None:
            other = self.other[queue] = JobSeries()
        return other

    def forget_queue(self, queue: str) -> None:
        """Drop a deleted queue's series (freeing its pairs for others)."""
        jobs = self.queues.pop(queue, None)
        if jobs:
            self.pairs -= len(jobs)
        self.other.pop(queue, None)

    def rows(self) -> list[tuple[str, str, JobSeries]]:
        """(queue, job label, series) of every series, for /metrics."""
        out = [(queue, job, s) for queue, jobs in self.queues.items() for job, s in jobs.items()]
        out.extend((queue, OTHER_JOB, s) for queue, s in self.other.items())
        return out
