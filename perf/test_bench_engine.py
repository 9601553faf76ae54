"""pytest-benchmark view of the engine workloads (run: pytest perf --benchmark-enable).

The figures the issue asks for come from `python -m perf engine`, which runs each workload in a fresh
process several times and reports medians; these benchmarks give pytest-benchmark's statistics for
the hot paths, in-process, with smaller counts.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import uvloop

from perf.engine_workloads import closed_loop

pytest.importorskip("pytest_benchmark")


def run_closed_loop(mode: str, jobs: int) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="spitfire-bench-"))
    try:
        cfg = {"mode": mode, "jobs": jobs, "concurrency": 256, "payload": 128}
        return uvloop.run(closed_loop(cfg, base / "data"))
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("mode", ["group", "async"])
def test_enqueue_256_producers(benchmark: Any, mode: str) -> None:
    result = benchmark.pedantic(run_closed_loop, args=(mode, 51_200), rounds=3, iterations=1)
    benchmark.extra_info.update(result)
    assert result["jobs"] == 51_200


def test_enqueue_sync(benchmark: Any) -> None:
    result = benchmark.pedantic(run_closed_loop, args=("sync", 2_560), rounds=3, iterations=1)
    benchmark.extra_info.update(result)
    assert result["jobs"] == 2_560
