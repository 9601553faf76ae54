"""RQ (synchronous, Redis): ``Queue.enqueue`` from threads sharing one Queue (redis-py's connection
pool is thread-safe; enqueue-threads and enqueue-one as every threaded peer, `threaded_producers`),
``Queue.enqueue_many`` (one Redis pipeline per call, RQ's bulk API) for batches, and drain with
``processes`` ``rq worker --burst`` processes (RQ scales by running more workers; each runs one job
at a time) as a user runs it by default: ``rq.Worker``, which forks a work horse process per job.
`drain_with` also serves the ``rq_simple`` variant (``--worker-class rq.SimpleWorker``: jobs run
in the worker process).

Completion of a drain is RQ's FinishedJobRegistry of the queue holding every job (RQ keeps
results for 500 s by default).
"""

from __future__ import annotations

from typing import Any

from redis import Redis
from rq import Queue

from perf.peers.base import (
    DEADLINE,
    QUEUE,
    PeerSpec,
    Producer,
    drain_processes,
    drain_with_workers,
    enqueue_batches_threads,
    payload,
    threaded_producers,
    venv_bin,
)

TASK = "perf.peers.adapters.tasks_rq.noop"


def _queue(url: str, flush: bool = True) -> Queue:
    conn = Redis.from_url(url)
    if flush:
        conn.flushdb()
    return Queue(QUEUE, connection=conn)


def _producer(url: str, cfg: dict[str, Any]) -> Producer:
    """Queue.enqueue from ``inflight`` threads sharing one redis-py connection pool."""
    q = _queue(url)
    return (lambda i: q.enqueue(TASK, payload(i))), int(cfg.get("inflight", 64)), "sharing one redis-py pool"


def _enqueue_many(q: Queue, part: list[dict[str, Any]]) -> None:
    q.enqueue_many([Queue.prepare_data(TASK, args=(p,)) for p in part])


def enqueue_batch(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Queue.enqueue_many with ``batch`` jobs per call from ``inflight`` threads."""
    q = _queue(url)
    q.enqueue(TASK, payload(0))
    result = enqueue_batches_threads(
        lambda part: _enqueue_many(q, part), int(cfg["jobs"]), int(cfg["batch"]), int(cfg["inflight"])
    )
    result["notes"] = f"Queue.enqueue_many (one pipeline per call) from {cfg['inflight']} threads"
    return result


def drain_with(url: str, cfg: dict[str, Any], worker_class: str) -> dict[str, Any]:
    """Enqueue ``jobs`` no-op jobs (enqueue_many, 1,000 per call), then time ``processes``
    ``rq worker --burst --worker-class WORKER_CLASS`` until every job is in the finished registry
    (a burst worker that finds the queue empty exits 0 while the others finish)."""
    jobs, processes = int(cfg["jobs"]), drain_processes(cfg)
    q = _queue(url)
    for s in range(0, jobs, 1000):
        _enqueue_many(q, [payload(i) for i in range(s, min(jobs, s + 1000))])
    registry = q.finished_job_registry
    cmd = [venv_bin("rq"), "worker", "--burst", "--url", url, "--worker-class", worker_class, QUEUE]
    deadline = float(cfg.get("deadline", DEADLINE))

    def left() -> int:
        return jobs - int(registry.count)

    result = drain_with_workers([cmd] * processes, url, left, jobs, deadline=deadline)
    result["config"] = {"worker_class": worker_class, "processes": processes}
    result["notes"] = (
        f"{processes} `rq worker --burst` process(es), worker_class={worker_class}, one job at a time each"
        " (RQ's only mode), default (INFO) logging"
    )
    return result


def drain(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """The drain workload with RQ's default worker class (fork per job)."""
    return drain_with(url, cfg, "rq.Worker")


PEER = PeerSpec(
    name="rq",
    backend="redis",
    workloads={**threaded_producers(_producer), "enqueue-batch": enqueue_batch, "drain": drain},
    packages=("rq", "redis"),
)
