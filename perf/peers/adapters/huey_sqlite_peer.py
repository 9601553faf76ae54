"""huey's SqliteHuey (https://github.com/coleifer/huey): the comparison's workloads on a SQLite file.

Runs in the peers' venv. There is no server: the "service URL" names where the database goes,
``sqlite:///ABS/PATH.db`` (that file), ``sqlite:///ABS/DIR`` (``bench-huey.db`` in it), or
``sqlite://`` / ``""`` (a fresh temporary directory, removed afterwards), optionally with
``?fsync=off`` (or ``on``): huey's own ``fsync`` option, ``PRAGMA synchronous`` OFF (FULL) on its
connections, the non-durable comparison. Without it SqliteHuey's defaults are kept
(tasks_huey_sqlite): WAL journal and SQLite's default ``synchronous=FULL``, i.e. every enqueue and
every dequeue is a commit that fsyncs, the durable configuration. Every workload starts from a new
database file. huey 3 uses one SQLite connection per process, behind a lock, so threads of one
process enqueue one at a time.

- ``enqueue-single``: ``noop(payload)`` task calls from ``inflight`` threads (huey's API is
  synchronous; its per-process lock serializes them, so this equals sequential calls plus the
  queueing for the lock, which the latencies show).
- ``enqueue-threads``: the same from ``threads`` threads sharing the one SqliteHuey (huey's
  documented use; its lock serializes the calls). ``enqueue-one``: one thread, one call at a time.
- ``enqueue-batch``: `Skip`, huey has no bulk enqueue.
- ``drain``: enqueue ``jobs`` no-op tasks (not timed; with ``synchronous=OFF`` on the producer's
  connection to fill quickly), then launch ``huey_consumer -w 8 -k thread`` (``concurrency`` /
  ``worker_type`` in cfg) and time from launch until the consumer has completed them all (counted
  with huey's ``SIGNAL_COMPLETE``, see tasks_huey_sqlite). ``processes`` > 1 is a `Skip`: the
  completion count lives in one consumer process.
- ``open-loop``: ``rate`` task calls/s for ``seconds`` handed to ``inflight`` threads; latency from
  each call's scheduled time, waiting for a thread included.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from perf.peers.base import (
    DEADLINE,
    URL_ENV,
    PeerSpec,
    Skip,
    drain_processes,
    drain_with_worker,
    enqueue_one_by_one,
    enqueue_threads,
    open_loop_threads,
    payload,
    venv_bin,
)

NAME = "huey-sqlite"
TASKS = "perf.peers.adapters.tasks_huey_sqlite"
DB_NAME = "bench-huey.db"


def _remove_db(path: Path) -> None:
    """Delete the database file and SQLite's side files, if there."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


@contextlib.contextmanager
def database(service_url: str) -> Iterator[str]:
    """The URL of a fresh database file for one workload (``sqlite:///ABS/PATH?QUERY``), the file
    removed before and after, and the temporary directory made for it when the URL names none."""
    parts = urllib.parse.urlsplit(service_url)
    target = parts.path if parts.scheme == "sqlite" else service_url.split("?", 1)[0]
    made: str | None = None
    if not target:
        made = tempfile.mkdtemp(prefix="spitfire-peers-huey-")
        path = Path(made) / DB_NAME
    elif Path(target).is_dir():
        path = Path(target) / DB_NAME
    else:
        path = Path(target)
    _remove_db(path)
    try:
        yield f"sqlite://{path.resolve()}" + (f"?{parts.query}" if parts.query else "")
    finally:
        _remove_db(path)
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def load_tasks(url: str) -> ModuleType:
    """Import tasks_huey_sqlite on ``url`` (it reads it from the environment)."""
    os.environ[URL_ENV] = url
    return importlib.import_module(TASKS)


def synchronous(module: ModuleType) -> str:
    """SQLite's ``synchronous`` setting on huey's connection (FULL: commits fsync the WAL)."""
    value = int(module.huey.storage.sql("pragma synchronous", results=True)[0][0])
    return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(value, str(value))


def enqueue_single(service_url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` task calls from ``inflight`` threads."""
    jobs, threads = int(cfg["jobs"]), int(cfg["inflight"])
    with database(service_url) as url:
        tasks = load_tasks(url)
        tasks.noop(payload(0))
        result = enqueue_threads(lambda i: tasks.noop(payload(i)), jobs, threads)
        sync = synchronous(tasks)
    return result | {
        "config": {"synchronous": sync},
        "notes": f"noop(payload) task calls from {threads} threads; huey holds one SQLite connection per "
        f"process behind a lock (calls are serialized); WAL, synchronous={sync}",
    }


def enqueue_threads_(service_url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` task calls from ``threads`` threads sharing the SqliteHuey."""
    jobs, threads = int(cfg["jobs"]), int(cfg["threads"])
    with database(service_url) as url:
        tasks = load_tasks(url)
        tasks.noop(payload(0))
        result = enqueue_threads(lambda i: tasks.noop(payload(i)), jobs, threads)
        sync = synchronous(tasks)
    return result | {
        "config": {"synchronous": sync},
        "notes": f"noop(payload) task calls from {threads} OS threads sharing one SqliteHuey (one SQLite "
        f"connection behind huey's lock: calls are serialized); WAL, synchronous={sync}",
    }


def enqueue_one(service_url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``jobs`` task calls one at a time from one thread."""
    jobs = int(cfg["jobs"])
    with database(service_url) as url:
        tasks = load_tasks(url)
        tasks.noop(payload(0))
        result = enqueue_one_by_one(lambda i: tasks.noop(payload(i)), jobs)
        sync = synchronous(tasks)
    return result | {
        "config": {"synchronous": sync},
        "notes": f"noop(payload) task calls one at a time from one thread; WAL, synchronous={sync}",
    }


def enqueue_batch(service_url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """huey has no bulk enqueue."""
    raise Skip("huey has no batch enqueue API (each task call is one INSERT and commit)")


def drain(service_url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Enqueue ``jobs`` no-op tasks, then time ``huey_consumer -w 8 -k thread`` until all completed."""
    jobs = int(cfg["jobs"])
    if drain_processes(cfg) != 1:
        raise Skip(
            "huey-sqlite's drain runs one huey_consumer process: the end is its count of SIGNAL_COMPLETE "
            "(huey deletes a task when taken), which one process keeps"
        )
    workers, kind = int(cfg.get("concurrency", 8)), str(cfg.get("worker_type", "thread"))
    deadline = float(cfg.get("deadline", DEADLINE))
    with database(service_url) as url:
        tasks = load_tasks(url)
        sync = synchronous(tasks)
        storage = tasks.huey.storage
        storage.sql("pragma synchronous=0")  # filling is not timed
        for i in range(jobs):
            tasks.noop(payload(i))
        storage.sql(f"pragma synchronous={sync}")  # back to the configured setting
        waiting = tasks.huey.pending_count()
        done = Path(tasks.huey.storage.filename + ".done")
        os.environ.update({tasks.EXPECT_ENV: str(waiting), tasks.DONE_ENV: str(done)})
        try:
            cmd = [venv_bin("huey_consumer"), f"{TASKS}.huey", "-w", str(workers), "-k", kind, "-q"]

            def remaining() -> int:
                if done.exists():
                    return 0
                return max(1, int(tasks.huey.pending_count()))  # taken but not completed still count

            result = drain_with_worker(cmd, url, remaining, waiting, poll=0.02, deadline=deadline)
        finally:
            for key in (tasks.EXPECT_ENV, tasks.DONE_ENV):
                os.environ.pop(key, None)
            with contextlib.suppress(FileNotFoundError):
                done.unlink()
    return result | {
        "config": {"concurrency": workers, "worker_type": kind, "synchronous": sync},
        "notes": f"one `huey_consumer -w {workers} -k {kind}` process; done = the consumer counted {waiting} "
        f"SIGNAL_COMPLETE (huey deletes a task when taken), polled every 20 ms; WAL, synchronous={sync}",
    }


def open_loop(service_url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """``rate`` task calls/s for ``seconds`` from ``inflight`` threads, latency from the schedule."""
    rate, seconds, threads = float(cfg["rate"]), float(cfg["seconds"]), int(cfg["inflight"])
    with database(service_url) as url:
        tasks = load_tasks(url)
        tasks.noop(payload(0))
        result = open_loop_threads(lambda i: tasks.noop(payload(i)), rate, seconds, threads)
        sync = synchronous(tasks)
    return result | {
        "config": {"synchronous": sync},
        "notes": f"noop(payload) task calls handed to {threads} threads; WAL, synchronous={sync}",
    }


PEER = PeerSpec(
    name=NAME,
    backend="sqlite",
    workloads={
        "enqueue-single": enqueue_single,
        "enqueue-threads": enqueue_threads_,
        "enqueue-one": enqueue_one,
        "enqueue-batch": enqueue_batch,
        "drain": drain,
        "open-loop": open_loop,
    },
    notes="SqliteHuey on a file in a temporary directory, WAL journal",
    packages=("huey",),
)
