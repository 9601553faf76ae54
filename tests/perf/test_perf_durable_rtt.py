"""perf/durable_rtt.py: the bare durable round trip, on a real server process over loopback."""

from __future__ import annotations

import tempfile
from pathlib import Path

from perf import durable_rtt


def test_one_window_per_thread_count_answers_every_call_durably() -> None:
    runs = durable_rtt.measure([1, 3], seconds=0.3, repeat=1, pin=False)
    for threads, (result,) in runs.items():
        assert result["threads"] == threads
        assert result["calls"] > 0
        assert 0 < result["p50_ms"] <= result["p99_ms"]
        # Every call waited for an fdatasync; three threads may share one, never more than three.
        assert 1 <= result["answers_per_fdatasync"] <= threads
    leftovers = list(Path(tempfile.gettempdir()).glob("spitfire-durable-rtt-*"))
    assert leftovers == []


def test_figures_are_medians_with_every_run_beside() -> None:
    run = {"p50_ms": 0.3, "p99_ms": 0.5, "answers_per_fdatasync": 4.0}
    runs: dict[int, list[dict[str, float]]] = {8: [{**run, "calls_per_s": v} for v in (3, 1, 2)]}
    figures = {f.name: f for f in durable_rtt.figures_of(runs)}
    rate = figures["bare durable round trip, 8 threads: calls/s"]
    assert rate.value == 2
    assert rate.runs == [3, 1, 2]
