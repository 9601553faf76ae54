"""Drivers for peers that are not Python (BullMQ on Node, Sidekiq on Ruby): their own program does
the enqueuing and prints one JSON line of raw timings; these helpers turn it into the workload
results of perf/peers/base.py with the same code as every Python peer (nearest-rank percentiles
for enqueue-single, the same HDR histogram for the open loop), and run their worker processes
through `base.drain_with_workers`.

A drain's worker processes report progress without a Redis write per job: each writes, at most
every `PROGRESS_MS` while its count changes and once more when SIGTERM stops it, a *progress
file* ``PERF_PEER_PROGRESS_DIR/<pid>.json`` = ``{"processed": n}`` (written to a temporary name and
renamed, so never read half-written); one that has run ``PERF_PEER_EXPECT`` jobs by itself (the
one-process drain) also writes the *done file* ``PERF_PEER_DONE_FILE`` at once. The drain ends at
the done file or when the progress files add up to the jobs enqueued; their sum at exit shows that
every job ran exactly once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from perf.open_loop import HIST_MAX_US, open_loop_result
from perf.peers.base import DEADLINE, ROOT, drain_with_workers, throughput

#: Seconds a producer program may take beyond the workload's own deadline before it is killed.
GRACE = 60.0
#: How often (ms) a drain's worker rewrites its progress file while its count changes (the
#: programs read it from $PERF_PEER_PROGRESS_MS).
PROGRESS_MS = 5


class RuntimeMissing(RuntimeError):
    """A peer's runtime (node, ruby, its library) is not installed; the message says how to get it."""


def require_binary(name: str, how: str) -> str:
    """The path of executable ``name``; raises `RuntimeMissing` saying ``how`` to install it."""
    path = shutil.which(name)
    if path is None:
        raise RuntimeMissing(f"{name} is not installed ({how})")
    return path


def command_output(cmd: Sequence[str], timeout: float = 30.0) -> str:
    """The stripped stdout of a short command (a version query), or "" when it fails."""
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def debian_version(package: str) -> str:
    """The installed version of Debian package ``package`` (``dpkg-query``), or "" when not."""
    return command_output(["dpkg-query", "-W", "-f", "${Version}", package])


def run_json(cmd: Sequence[str], timeout: float = DEADLINE + GRACE, cwd: Path = ROOT) -> dict[str, Any]:
    """Run a peer's producer program and return the JSON object on the last line of its stdout.

    Raises RuntimeError with the command and its stderr tail when it exits non-zero, prints no
    JSON object, or runs past ``timeout`` seconds (then it is killed).
    """
    try:
        done = subprocess.run(
            list(cmd), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{cmd[:3]} ran past {timeout:.0f} s and was killed") from exc
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = done.stderr.strip()[-2000:]
        raise RuntimeError(f"{list(cmd)} exited {done.returncode} without a result; its stderr:\n{tail}")
    doc = json.loads(lines[-1])
    if not isinstance(doc, dict):
        raise RuntimeError(f"{list(cmd)} printed {lines[-1][:200]!r}, not a JSON object")
    return doc


def enqueue_result(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The enqueue-single result (jobs, seconds, jobs_per_s, p50_ms, p99_ms) of a program's
    ``{"jobs", "seconds", "latencies_us"}``."""
    latencies = [us / 1e6 for us in doc["latencies_us"]]
    return throughput(int(doc["jobs"]), float(doc["seconds"]), latencies)


def batch_result(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The enqueue-batch result (jobs, seconds, jobs_per_s) of a program's ``{"jobs", "seconds"}``."""
    return throughput(int(doc["jobs"]), float(doc["seconds"]))


def open_loop_from(doc: Mapping[str, Any], rate: float) -> dict[str, Any]:
    """The open-loop result of a program's ``{"seconds", "latencies_us"}`` (each from the job's
    scheduled send time): the same HDR histogram and figures as `perf.open_loop`'s."""
    from hdrh.histogram import HdrHistogram

    hist = HdrHistogram(1, HIST_MAX_US, 3)
    missing = 0
    for us in doc["latencies_us"]:
        if us is None:  # a send that never completed: not counted, and said so
            missing += 1
            continue
        hist.record_value(max(1, min(int(us), HIST_MAX_US)))
    result = open_loop_result(hist, rate, float(doc["seconds"]))
    if missing:
        result["unanswered"] = missing
    return result


def progress(directory: Path) -> int:
    """The jobs the drain's workers say they ran: the sum of their progress files in ``directory``
    (a file being replaced right now is read on the next poll)."""
    total = 0
    for path in directory.glob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            total += int(json.loads(path.read_text())["processed"])
    return total


def drain_external(
    cmds: Sequence[list[str]],
    url: str,
    waiting: Callable[[], int],
    jobs: int,
    env: Mapping[str, str],
    deadline: float,
) -> dict[str, Any]:
    """Time worker processes ``cmds`` (started by `drain_with_workers`, with ``env`` added to their
    environment plus PERF_PEER_EXPECT, PERF_PEER_DONE_FILE, PERF_PEER_PROGRESS_DIR and
    PERF_PEER_PROGRESS_MS) until one has written the done file or their progress files add up to
    ``jobs``; ``waiting()`` is the peer's queue length in Redis (it shows when the first job was
    taken, before any progress is written). The result adds ``processed``: the jobs the workers say
    they ran, summed at their exit (every job once: equal to ``jobs``). With the deadline passed,
    ``unfinished`` counts the jobs neither counted run nor taken off the queue list, the smaller."""
    with tempfile.TemporaryDirectory(prefix="spitfire-peer-drain-") as tmp:
        done_file, progress_dir = Path(tmp) / "done", Path(tmp) / "progress"
        progress_dir.mkdir()
        extra = {
            **env,
            "PERF_PEER_EXPECT": str(jobs),
            "PERF_PEER_DONE_FILE": str(done_file),
            "PERF_PEER_PROGRESS_DIR": str(progress_dir),
            "PERF_PEER_PROGRESS_MS": str(PROGRESS_MS),
        }
        saved = {k: os.environ.get(k) for k in extra}
        os.environ.update(extra)  # drain_with_workers passes os.environ on to the workers

        def remaining() -> int:
            if done_file.exists():
                return 0
            left = jobs - progress(progress_dir)
            # Never 0 from the queue list alone: it empties while the last jobs still run.
            return 0 if left <= 0 else max(1, min(left, waiting()))

        try:
            result = drain_with_workers(cmds, url, remaining, jobs, deadline=deadline)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        result["processed"] = progress(progress_dir)  # the workers' final counts, written at exit
    return result


def flush_redis(url: str) -> None:
    """Empty the harness's redis database at ``url`` before a workload (BullMQ and Sidekiq keep
    their queues there)."""
    import redis  # the peers venv has it; imported here so that this module needs only the stdlib

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
