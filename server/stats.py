"""Monitoring figures the engine and the service keep for /metrics: plain counters and fixed
`Buckets` (``spitfire.wal.Buckets``) updated on the loop thread, read at scrape time (also on the
loop thread: no lock, no torn read). The dashboard turns them into Prometheus families.

Each costs a clock read and a bucket increment per request (or per snapshot), never per job of a
batch, and never a Prometheus call on the hot path.
"""

from __future__ import annotations

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
