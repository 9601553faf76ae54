"""The peer contract's shared pieces (perf/peers/base.py, perf/peers/external.py), fast and without
any peer library: the workload names and defaults, the threaded enqueue drivers, and the
multi-process drain timer against real (tiny Python) worker processes."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest

from perf.peers.base import (
    DEFAULTS,
    WORKLOADS,
    drain_processes,
    drain_with_workers,
    enqueue_one_by_one,
    enqueue_threads,
    enqueue_threads_each,
    with_defaults,
)
from perf.peers.external import progress


def test_the_new_workloads_and_their_defaults_are_in_the_contract() -> None:
    assert WORKLOADS == (
        "enqueue-single", "enqueue-threads", "enqueue-one", "enqueue-batch", "drain", "open-loop",
    )  # fmt: skip
    assert with_defaults("enqueue-threads", {"jobs": 5}) == {"jobs": 5, "threads": 8}
    assert with_defaults("enqueue-one", {}) == DEFAULTS["enqueue-one"]
    assert with_defaults("drain", {"jobs": 5})["processes"] == 1


def test_a_drains_workers_key_is_read_as_processes_and_processes_wins() -> None:
    assert with_defaults("drain", {"jobs": 5, "workers": 2}) == {"jobs": 5, "processes": 2}
    assert with_defaults("drain", {"workers": 2, "processes": 3})["processes"] == 3
    assert drain_processes({"processes": 2}) == 2
    with pytest.raises(ValueError, match="at least 1"):
        drain_processes({"processes": 0})


def test_enqueue_threads_sends_every_job_once_from_that_many_threads() -> None:
    seen: list[tuple[int, int]] = []
    lock = threading.Lock()

    def send(i: int) -> None:
        with lock:
            seen.append((i, threading.get_ident()))

    result = enqueue_threads(send, 200, 4)
    assert result["jobs"] == 200 and result["jobs_per_s"] > 0
    assert 0 <= result["p50_ms"] <= result["p99_ms"]
    assert sorted(i for i, _ in seen) == list(range(1, 201))
    assert len({t for _, t in seen}) <= 4


def test_enqueue_threads_each_gives_each_thread_its_own_sender() -> None:
    calls: dict[int, list[int]] = {0: [], 1: [], 2: []}
    senders = [calls[k].append for k in calls]
    result = enqueue_threads_each(senders, 90)
    assert result["jobs"] == 90
    assert sorted(i for v in calls.values() for i in v) == list(range(1, 91))
    # Each sender was only called from its own thread: the lists were appended without a lock.


def test_enqueue_threads_re_raises_a_senders_error() -> None:
    def send(i: int) -> None:
        if i == 7:
            raise ConnectionError("refused")

    with pytest.raises(ConnectionError, match="refused"):
        enqueue_threads(send, 20, 2)


def test_enqueue_one_by_one_is_sequential_in_this_thread() -> None:
    idents: set[int] = set()
    order: list[int] = []

    def send(i: int) -> None:
        idents.add(threading.get_ident())
        order.append(i)

    result = enqueue_one_by_one(send, 50)
    assert result["jobs"] == 50 and order == list(range(1, 51))
    assert idents == {threading.get_ident()}


def _worker(done_dir: Path, claim_dir: Path, jobs: int, exit_code: int = 0) -> list[str]:
    """A stand-in for a peer's worker process: claims job files (an atomic mkdir each) until none
    is left, marks each done, then exits with ``exit_code`` (a burst-mode worker)."""
    code = (
        "import os, sys\n"
        f"for i in range({jobs}):\n"
        "    try:\n"
        f"        os.mkdir(os.path.join({str(claim_dir)!r}, str(i)))\n"
        "    except FileExistsError:\n"
        "        continue\n"
        f"    open(os.path.join({str(done_dir)!r}, str(i)), 'w').close()\n"
        f"sys.exit({exit_code})\n"
    )
    return [sys.executable, "-c", code]


def test_drain_with_workers_times_several_processes_until_every_job_ran(tmp_path: Path) -> None:
    done, claims = tmp_path / "done", tmp_path / "claims"
    done.mkdir()
    claims.mkdir()
    jobs = 300
    cmds = [_worker(done, claims, jobs) for _ in range(2)]
    result = drain_with_workers(cmds, "none://", lambda: jobs - len(list(done.iterdir())), jobs, deadline=60)
    assert result["jobs"] == jobs and "unfinished" not in result
    assert result["seconds"] > 0 and result["steady_jobs_per_s"] >= result["jobs_per_s"] > 0


def test_drain_with_workers_fails_when_a_worker_exits_with_an_error(tmp_path: Path) -> None:
    done, claims = tmp_path / "done", tmp_path / "claims"
    done.mkdir()
    claims.mkdir()
    cmd = [sys.executable, "-c", "import sys; print('cannot connect'); sys.exit(3)"]
    with pytest.raises(RuntimeError, match=r"exited \(\[3\]\) with 5 jobs left(.|\n)*cannot connect"):
        drain_with_workers([cmd], "none://", lambda: 5, 5, deadline=30)


def test_progress_adds_up_every_workers_progress_file(tmp_path: Path) -> None:
    (tmp_path / "101.json").write_text(json.dumps({"processed": 120}))
    (tmp_path / "102.json").write_text(json.dumps({"processed": 80}))
    (tmp_path / "103.json").write_text("{")  # being written: read on the next poll
    (tmp_path / "104.json.tmp").write_text(json.dumps({"processed": 999}))
    assert progress(tmp_path) == 200
