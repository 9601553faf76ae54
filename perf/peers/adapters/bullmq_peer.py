"""BullMQ (Node, Redis): perf/peers/node/bullmq_bench.mjs does the enqueuing (``queue.add`` from
``inflight`` concurrent promises; ``queue.addBulk`` for batches; an open loop of one promise per
job) and runs the drain's ``Worker``; this adapter drives it as a subprocess and parses its JSON.

Versions are pinned in perf/peers/node/package.json and package-lock.json (``npm ci`` by
``make perf-peers``). BullMQ's ESM build wants an ioredis client instance, so the program makes
one (``maxRetriesPerRequest: null``, as BullMQ's docs require for workers). Jobs are added with
``removeOnComplete: true`` (BullMQ's documented auto-removal), so a drained queue is an empty
``bull:bench:wait`` list; the worker's own count of the jobs it ran is the check that every job
ran once.

enqueue-threads is the "8 concurrent promises" figure (against Spitfire's sync client shared by 8
threads: Node has no threads that block, so ``threads`` concurrent ``queue.add`` promise chains,
each one call at a time, on one Queue); enqueue-one is one promise chain. The drain runs
``processes`` Node worker processes (each a Worker at concurrency `CONCURRENCY`); each reports its
count in its own progress file (perf/peers/external.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis

from perf.peers.base import DEADLINE, QUEUE, PeerSpec, drain_processes
from perf.peers.external import (
    RuntimeMissing,
    batch_result,
    command_output,
    drain_external,
    enqueue_result,
    flush_redis,
    open_loop_from,
    require_binary,
    run_json,
)

NODE_DIR = Path(__file__).resolve().parent.parent / "node"
PROGRAM = NODE_DIR / "bullmq_bench.mjs"
#: The Worker's concurrency in the drain (BullMQ's default is 1): the value of BullMQ's
#: concurrency guide; measured here, 256 drained no faster (one run each, within the noise).
CONCURRENCY = 50
#: Redis key of the list of jobs waiting (BullMQ's default prefix "bull").
WAIT_KEY = f"bull:{QUEUE}:wait"

NODE = require_binary("node", "apt-get install nodejs, or make perf-peers")
if not (NODE_DIR / "node_modules" / "bullmq" / "package.json").exists():
    raise RuntimeMissing("bullmq is not installed in perf/peers/node (make perf-peers runs npm ci there)")


def _module_version(name: str) -> str:
    return str(json.loads((NODE_DIR / "node_modules" / name / "package.json").read_text())["version"])


def _node(command: str, url: str, **opts: Any) -> dict[str, Any]:
    args = [NODE, str(PROGRAM), command, "--url", url]
    for key, value in opts.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return run_json(args, cwd=NODE_DIR)


def enqueue_single(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` queue.add calls from ``inflight`` concurrent promise chains on one Queue."""
    flush_redis(url)
    inflight = int(cfg["inflight"])
    result = enqueue_result(_node("single", url, jobs=int(cfg["jobs"]), inflight=inflight))
    result["notes"] = f"{inflight} concurrent queue.add promises on one Queue (one ioredis connection)"
    return result


def enqueue_threads(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` queue.add calls from ``threads`` concurrent promise chains (Node's stand-in for
    threads: each chain awaits one call at a time) on one Queue."""
    flush_redis(url)
    chains = int(cfg["threads"])
    result = enqueue_result(_node("single", url, jobs=int(cfg["jobs"]), inflight=chains))
    result["config"] = {"promises": chains}
    result["notes"] = (
        f"{chains} concurrent promise chains (Promise.all of {chains} sequential loops) of queue.add on one"
        " Queue (one ioredis connection): Node's event loop has no blocking threads"
    )
    return result


def enqueue_one(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` queue.add calls, one at a time (one promise chain)."""
    flush_redis(url)
    result = enqueue_result(_node("single", url, jobs=int(cfg["jobs"]), inflight=1))
    result["config"] = {"promises": 1}
    result["notes"] = "one promise chain awaiting each queue.add in turn, one Queue"
    return result


def enqueue_batch(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """queue.addBulk with ``batch`` jobs per call from ``inflight`` concurrent promise chains."""
    flush_redis(url)
    inflight = int(cfg["inflight"])
    doc = _node("batch", url, jobs=int(cfg["jobs"]), batch=int(cfg["batch"]), inflight=inflight)
    result = batch_result(doc)
    result["notes"] = f"queue.addBulk ({cfg['batch']} jobs per call) from {inflight} concurrent promises"
    return result


def drain(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``jobs`` no-op jobs (addBulk, 1,000 per call), then time ``processes`` Node
    processes, each running a BullMQ Worker at ``concurrency``, until they have run them all."""
    jobs, concurrency = int(cfg["jobs"]), int(cfg.get("concurrency", CONCURRENCY))
    processes = drain_processes(cfg)
    flush_redis(url)
    _node("fill", url, jobs=jobs)
    client = redis.Redis.from_url(url)
    cmd = [NODE, str(PROGRAM), "worker", "--url", url, "--concurrency", str(concurrency)]
    try:
        result = drain_external(
            [cmd] * processes, url, lambda: int(client.llen(WAIT_KEY)), jobs, {},
            deadline=float(cfg.get("deadline", DEADLINE)),
        )  # fmt: skip
    finally:
        client.close()
    result["config"] = {"concurrency": concurrency, "processes": processes, "removeOnComplete": True}
    result["notes"] = (
        f"{processes} Node process(es), each running a BullMQ Worker, concurrency={concurrency} (BullMQ's"
        " default is 1), jobs added with removeOnComplete"
    )
    return result


def open_loop(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``rate`` queue.add calls per second on a fixed schedule, each its own promise."""
    flush_redis(url)
    rate = float(cfg["rate"])
    result = open_loop_from(_node("open-loop", url, rate=rate, seconds=float(cfg["seconds"])), rate)
    result["notes"] = "one queue.add promise per job on one Queue; timer then setImmediate to each send time"
    return result


PEER = PeerSpec(
    name="bullmq",
    backend="redis",
    workloads={
        "enqueue-single": enqueue_single,
        "enqueue-threads": enqueue_threads,
        "enqueue-one": enqueue_one,
        "enqueue-batch": enqueue_batch,
        "drain": drain,
        "open-loop": open_loop,
    },
    notes="Node program perf/peers/node/bullmq_bench.mjs",
    runtime_versions={
        "bullmq": _module_version("bullmq"),
        "ioredis": _module_version("ioredis"),
        "node": command_output([NODE, "--version"]),
    },
)
