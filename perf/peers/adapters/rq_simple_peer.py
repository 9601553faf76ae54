"""RQ with ``rq.SimpleWorker`` (jobs run in the worker process, no fork per job): the same as
rq_peer except the drain's worker class; the enqueue workloads are RQ's and are not repeated."""

from __future__ import annotations

from typing import Any

from perf.peers.adapters.rq_peer import drain_with
from perf.peers.base import PeerSpec


def drain(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """The drain workload with ``rq worker --burst --worker-class rq.SimpleWorker``."""
    return drain_with(url, cfg, "rq.SimpleWorker")


PEER = PeerSpec(
    name="rq (SimpleWorker)", backend="redis", workloads={"drain": drain}, packages=("rq", "redis")
)
