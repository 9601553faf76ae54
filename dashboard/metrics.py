"""GET /metrics: Prometheus text format (prometheus-client), in a registry of this server's own.

Gauges are read from the engine at scrape time (jobs per queue and state, paused queues,
connections, workers); job totals come from the job observer (`live.LiveEvents` counters since
the server started); HTTP enqueue latency is measured by the HTTP layer. WAL segments and bytes,
and snapshot files, are counted on disk at scrape time (the data directory layout of wal/FORMAT.md:
``queues/<queue>/{wal,snapshots}/``).

Histograms of the hot paths are never Prometheus objects: the flusher thread (``wal.FlushStats``:
records, bytes and fdatasync seconds per flush round, commit latency per group), the engine
(``server.stats.SnapshotStats``) and the protocol service (``server.stats.EnqueueLatency`` and
``Refusals``) add to plain fixed-bucket counters, and `EngineCollector` turns their counts into
histogram families at scrape time. Refusals (BUSY, TOO_LARGE, NO_SPACE) of both protocols are
counted by the service; the HTTP layer reports its own there. Per-handler run and queue-wait times
are the engine's (``server.stats.JobTimings``), one series per (queue, job name) up to a cap.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from spitfire.index.job import JobState
from spitfire.server.backpressure import Backpressure
from spitfire.server.dispatcher import Dispatcher
from spitfire.server.engine import Engine
from spitfire.server.service import Service
from spitfire.server.stats import ENQUEUE_BOUNDS, MAX_JOB_SERIES, OTHER_JOB, REFUSALS, JobTimings
from spitfire.wal import Buckets, FlushStats

from .live import CREATED, DELETED, LiveEvents

#: Queue directories scanned per scrape at most (the scan is a few stat calls per queue).
MAX_SCANNED_QUEUES = 10_000

#: Histogram buckets of HTTP enqueue latency, in seconds: the protocol's (0.1 ms to 1 s).
LATENCY_BUCKETS = ENQUEUE_BOUNDS
#: The protocols whose refusals are counted.
PROTOCOLS = ("http", "binary")

_TOTALS = (
    ("enqueued", "Jobs created (enqueued or scheduled).", (CREATED,)),
    ("delivered", "Jobs delivered to a worker (attempts started).", (int(JobState.RESERVED),)),
    ("succeeded", "Jobs that succeeded.", (int(JobState.SUCCEEDED),)),
    ("failed", "Failed attempts (retried or dead).", (int(JobState.RETRYING), int(JobState.DEAD))),
    ("retried", "Failed attempts that will be retried after a backoff.", (int(JobState.RETRYING),)),
    ("dead", "Jobs that went dead (out of attempts, or not retryable).", (int(JobState.DEAD),)),
    ("cancelled", "Jobs cancelled.", (int(JobState.CANCELLED),)),
    ("deleted", "Jobs deleted.", (DELETED,)),
)


@dataclass(slots=True)
class Sources:
    """What the collector reads at scrape time."""

    engine: Engine
    service: Service
    dispatcher: Dispatcher
    backpressure: Backpressure
    live: LiveEvents
    http_workers: Callable[[], int]


def disk_usage(queues_dir: Path) -> dict[str, tuple[int, int, int, int]]:
    """Per queue: (WAL segment files, their bytes, snapshot files, their bytes)."""
    out: dict[str, tuple[int, int, int, int]] = {}
    try:
        queues = sorted(os.listdir(queues_dir))[:MAX_SCANNED_QUEUES]
    except OSError:
        return out
    for queue in queues:
        wal = _files(queues_dir / queue / "wal")
        snaps = _files(queues_dir / queue / "snapshots")
        out[queue] = (wal[0], wal[1], snaps[0], snaps[1])
    return out


def histogram(
    name: str, doc: str, rows: list[tuple[list[str], Buckets]], labels: list[str] | None = None
) -> Metric:
    """A histogram family from fixed-bucket counters read now (one series per row of label values)."""
    family = HistogramMetricFamily(name, doc, labels=labels or [])
    for values, buckets in rows:
        cumulative, total, _count = buckets.read()
        bounds = [repr(float(b)) for b in buckets.bounds] + ["+Inf"]
        family.add_metric(values, list(zip(bounds, cumulative, strict=True)), total)
    return family


def job_histograms(timings: JobTimings) -> Iterator[Metric]:
    """``spitfire_job_run_seconds`` and ``spitfire_job_wait_seconds`` {queue, name} from the engine's
    figures (an empty family when no job has run yet, so that its name is always exported).

    The job's name is the label ``name``, as in the API: a label ``job`` would collide with the
    target label Prometheus adds to every series (it would be renamed ``exported_job``)."""
    rows = timings.rows()
    labels = ["queue", "name"]
    cap = f'at most {MAX_JOB_SERIES:,} (queue, name) pairs; later ones count under name="{OTHER_JOB}"'
    yield histogram(
        "spitfire_job_run_seconds",
        "Seconds each started attempt ran, per queue and job name: the worker's START to the record "
        f"that ended it (ack, failure, retry-after, lost lease); {cap}.",
        [([queue, job], s.run) for queue, job, s in rows],
        labels,
    )
    yield histogram(
        "spitfire_job_wait_seconds",
        "Seconds each job waited to start, per queue and job name: becoming ready (enqueued, or "
        f"promoted when due) to the worker's START, time in a worker's prefetch buffer included; {cap}.",
        [([queue, job], s.wait) for queue, job, s in rows],
        labels,
    )


def _files(directory: Path) -> tuple[int, int]:
    count = size = 0
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    count += 1
                    size += entry.stat(follow_symlinks=False).st_size
    except OSError:
        pass
    return count, size


class EngineCollector(Collector):
    """Reads the engine and the observer's counters on each scrape."""

    def __init__(self, sources: Sources) -> None:
        self.s = sources

    def collect(self) -> Iterator[Metric]:
        s = self.s
        jobs = GaugeMetricFamily("spitfire_jobs", "Jobs per queue and state.", labels=["queue", "state"])
        paused = GaugeMetricFamily("spitfire_queue_paused", "1 when the queue is paused.", labels=["queue"])
        for name, q in s.engine.stats().queues.items():
            for state, count in q.counts.items():
                jobs.add_metric([name, state], count)
            paused.add_metric([name], 1 if q.paused else 0)
        yield jobs
        yield paused
        for name, doc, slots in _TOTALS:
            family = CounterMetricFamily(f"spitfire_jobs_{name}", doc, labels=["queue"])
            for queue, counts in s.live.counters.items():
                family.add_metric([queue], sum(counts[i] for i in slots))
            yield family
        conns = GaugeMetricFamily("spitfire_connections", "Open binary-protocol connections.")
        conns.add_metric([], s.service.connections)
        yield conns
        workers = GaugeMetricFamily("spitfire_workers", "Workers by kind.", labels=["kind"])
        workers.add_metric(["protocol"], len(s.dispatcher.workers))
        workers.add_metric(["http"], s.http_workers())
        yield workers
        sse = GaugeMetricFamily("spitfire_event_stream_clients", "Open GET /api/events streams.")
        sse.add_metric([], s.live.clients)
        yield sse
        waiters = GaugeMetricFamily(
            "spitfire_waiters", "Pending waits for a job's outcome (WAIT and ?wait_ms=)."
        )
        waiters.add_metric([], s.service.waiters.count)
        yield waiters
        yield from self._disk()
        yield from self._commits()
        yield from self._snapshots()
        yield from self._enqueues()
        timings = s.engine.job_timings
        if timings is not None:
            yield from job_histograms(timings)
        pending = GaugeMetricFamily("spitfire_pending_jobs", "Jobs not finished yet, in every queue.")
        pending.add_metric([], s.engine.pending())
        yield pending
        nbytes = GaugeMetricFamily("spitfire_pending_bytes", "Payload bytes of the pending jobs.")
        nbytes.add_metric([], s.engine.pending_bytes())
        yield nbytes

    def _commits(self) -> Iterator[Metric]:
        stats = getattr(self.s.engine.storage, "flush_stats", None)
        if not isinstance(stats, FlushStats):
            return
        yield histogram(
            "spitfire_fsync_batch_records",
            "Records made durable per flush round (one round: one fdatasync per dirty segment file).",
            [([], stats.round_records)],
        )
        yield histogram(
            "spitfire_fsync_batch_bytes", "WAL bytes made durable per flush round.", [([], stats.round_bytes)]
        )
        yield histogram(
            "spitfire_fsync_seconds",
            "Seconds each flush round spent in fdatasync (all its files, in parallel when many).",
            [([], stats.round_seconds)],
        )
        yield histogram(
            "spitfire_commit_seconds",
            "Per commit group (a log's appends of one loop tick): first append to durable; one "
            "observation per group, so _count is the groups synced.",
            [([], stats.commit_seconds)],
        )
        yield histogram(
            "spitfire_commit_wait_seconds",
            "Per commit group: first append to the start of the fdatasync round that covers it (the "
            "loop tick, the hand-off to the flusher thread, the round before).",
            [([], stats.wait_seconds)],
        )
        yield histogram(
            "spitfire_commit_resolve_seconds",
            "Per flush round: end of its fdatasync to the event loop resolving its groups (the "
            "hand-back to the loop and the loop's backlog).",
            [([], stats.resolve_seconds)],
        )

    def _snapshots(self) -> Iterator[Metric]:
        stats = self.s.engine.snapshot_stats
        yield histogram(
            "spitfire_snapshot_seconds",
            "Duration of each snapshot written (all queues).",
            [([], stats.seconds)],
        )
        last = GaugeMetricFamily(
            "spitfire_snapshot_last_timestamp_seconds",
            "When the last snapshot finished (epoch; 0: none yet).",
        )
        last.add_metric([], stats.last_at)
        yield last
        failed = CounterMetricFamily("spitfire_snapshot_failures", "Snapshots that failed (aborted).")
        failed.add_metric([], stats.failed)
        yield failed

    def _enqueues(self) -> Iterator[Metric]:
        service = self.s.service
        yield histogram(
            "spitfire_protocol_enqueue_seconds",
            "Binary-protocol enqueue latency: request received to answer queued, after the commit "
            "(route single: ENQUEUE, batch: ENQUEUE_MANY, one observation per request).",
            [(["single"], service.enqueue_latency.single), (["batch"], service.enqueue_latency.batch)],
            ["route"],
        )
        refused = CounterMetricFamily(
            "spitfire_backpressure_rejections",
            "Enqueue requests refused: BUSY (pending-work limits, 429), TOO_LARGE (413), NO_SPACE (disk "
            "full, 507); a refused batch counts once.",
            labels=["protocol", "reason"],
        )
        counts = service.refusals.counts
        for protocol in PROTOCOLS:
            for reason in REFUSALS:
                refused.add_metric([protocol, str(reason)], counts.get((protocol, str(reason)), 0))
        yield refused

    def _disk(self) -> Iterator[Metric]:
        queues_dir = getattr(self.s.engine.storage, "queues_dir", None)
        if not isinstance(queues_dir, Path):
            return
        families = [
            GaugeMetricFamily("spitfire_wal_segments", "WAL segment files per queue.", labels=["queue"]),
            GaugeMetricFamily("spitfire_wal_bytes", "WAL segment bytes (preallocated).", labels=["queue"]),
            GaugeMetricFamily("spitfire_snapshot_files", "Snapshot files per queue.", labels=["queue"]),
            GaugeMetricFamily("spitfire_snapshot_bytes", "Bytes of snapshot files.", labels=["queue"]),
        ]
        for queue, figures in disk_usage(queues_dir).items():
            for family, value in zip(families, figures, strict=True):
                family.add_metric([queue], value)
        yield from families


class Metrics:
    """The server's Prometheus registry and the metrics the HTTP layer records itself."""

    def __init__(self, sources: Sources) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(EngineCollector(sources))
        self.registry.register(ProcessCollector(registry=None))
        self.enqueue_latency = Histogram(
            "spitfire_http_enqueue_seconds",
            "HTTP enqueue latency: request decoded to job durable (single and batch).",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rejections = Counter(
            "spitfire_http_backpressure_rejections",
            "HTTP enqueues refused with 429 (backpressure).",
            registry=self.registry,
        )
        self.responses = Counter(
            "spitfire_http_responses", "HTTP answers by status class.", ["status"], registry=self.registry
        )

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)
