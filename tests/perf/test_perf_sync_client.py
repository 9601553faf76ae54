"""`python -m perf sync-client`: a small real run (its own server, client processes) with an A/B
of the same interpreter, and what it writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_ab_run_writes_every_mode_of_both_builds(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "perf", "sync-client", "--jobs", "200", "--repeat", "1"]
    cmd += ["--modes", "sync-1", "sync-3", "async-2", "--ab", sys.executable]
    env = {**os.environ, "SPITFIRE_PERF_RESULTS": str(tmp_path)}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    (path,) = tmp_path.glob("sync-client-*.json")
    doc = json.loads(path.read_text())
    raw = doc["config"]["raw"]
    assert set(raw) == {"A", "B"}
    for build in ("A", "B"):
        for mode in ("sync-1", "sync-3", "async-2"):
            (run,) = raw[build][mode]
            assert run["jobs"] == 200  # every call of every thread answered
            assert run["jobs_per_s"] > 0 and 0 < run["p50_ms"] <= run["p99_ms"]
            assert run["client_cpu_us_per_job"] >= run["client_sys_us_per_job"] >= 0
    names = {f["name"] for f in doc["figures"]}
    assert {"sync-3 [A]", "sync-3 [B] p99", "async-2 [A] client CPU/job"} <= names
