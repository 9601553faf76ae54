"""Tiny real runs of `python -m perf sse-readers` and `python -m perf delayed-scale`: every figure is
written (the performance targets themselves are checked by the full runs, never here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, *args: str) -> dict[str, object]:
    env = {**os.environ, "SPITFIRE_PERF_RESULTS": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "perf", *args], cwd=ROOT, capture_output=True, text=True, timeout=170, env=env
    )
    assert out.returncode in (0, 1), out.stderr[-3000:]  # 1: a target missed on a loaded machine
    (path,) = tmp_path.glob(f"{args[0]}-*.json")
    doc: dict[str, object] = json.loads(path.read_text())
    return doc


def test_sse_readers_measures_with_and_without_readers_that_all_received_events(tmp_path: Path) -> None:
    doc = _run(tmp_path, "sse-readers", "--readers", "3", "--jobs", "2000", "--repeat", "1")
    figures = {f["name"]: f for f in doc["figures"]}  # type: ignore[union-attr,index]
    assert figures["enqueue jobs/s, 3 SSE readers (jobs=batched)"]["value"] > 0
    assert figures["events per reader per round (min)"]["ok"] is True
    (counts,) = doc["config"]["received"]  # type: ignore[index]
    assert len(counts) == 3 and min(counts) > 0


def test_delayed_scale_reports_slowdown_lateness_and_restart(tmp_path: Path) -> None:
    doc = _run(
        tmp_path, "delayed-scale", "--backlog", "2000", "--jobs", "1000", "--repeat", "1",
        "--late-jobs", "20", "--spread", "1.5",
    )  # fmt: skip
    names = {f["name"] for f in doc["figures"]}  # type: ignore[union-attr,index]
    assert "enqueue slowdown with the backlog" in names and "lateness first reserved - due, p99" in names
    assert "restart with 2,000 delayed jobs until serving" in names
    late = doc["config"]["raw"]["lateness"]  # type: ignore[index]
    assert late["late_sampled"] == 20 and late["left"] == 0
