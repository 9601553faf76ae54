"""``python -m perf ceiling`` (perf/ceiling.py): its arithmetic on /proc, /metrics and py-spy's
collapsed stacks, and one real run with tiny counts and short windows (a real spitfire-server,
producer and worker processes, the bare echo server, the bare fsync loop, py-spy when it can attach)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from perf import ceiling

ROOT = Path(__file__).resolve().parent.parent.parent


def test_stat_fields_count_from_the_last_parenthesis_of_the_command_name() -> None:
    # A command name may hold spaces and parentheses; utime and stime are fields 14 and 15.
    fields = ["S", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "250", "50", "0", "0"]
    line = "4242 (spit (fire) x) " + " ".join(fields) + "\n"
    assert ceiling.parse_stat(line) == pytest.approx(300 / ceiling.CLK_TCK)


def test_cpu_window_sums_threads_of_one_name_and_counts_new_threads_from_zero() -> None:
    before = ceiling.CpuSample(wall=10.0, total=5.0, threads={1: 4.0, 2: 1.0})
    after = ceiling.CpuSample(wall=12.0, total=6.5, threads={1: 5.0, 2: 1.25, 3: 0.25})
    window = ceiling.cpu_window(before, after, {1: "loop", 2: "pool", 3: "pool"})
    assert window["wall_s"] == 2.0 and window["cpu_s"] == 1.5
    assert window["utilisation"] == pytest.approx(0.75)
    assert window["threads_cpu_s"] == {"loop": 1.0, "pool": 0.5}
    jobs = ceiling.per_job(window, 1000)
    assert jobs["cpu_us_per_job"] == pytest.approx(1500.0)
    assert jobs["threads_cpu_us_per_job"]["pool"] == pytest.approx(500.0)
    assert ceiling.per_job(window, 0)["cpu_us_per_job"] is None


def test_this_process_cpu_grows_when_it_works() -> None:
    before = ceiling.sample_cpu(os.getpid())
    deadline = before.wall + 0.05
    while ceiling.sample_cpu(os.getpid()).wall < deadline:
        pass  # burn CPU for 50 ms (reading /proc, which costs system time too)
    after = ceiling.sample_cpu(os.getpid())
    assert after.total >= before.total and os.getpid() in after.threads


def test_flush_window_from_two_scrapes() -> None:
    before = {"rounds": 100.0, "records": 1_000.0, "fsync_s": 0.5}
    after = {"rounds": 300.0, "records": 21_000.0, "fsync_s": 0.6}
    flush = ceiling.flush_window(before, after, wall=2.0)
    assert flush["flush_rounds_per_s"] == 100.0 and flush["records_per_round"] == 100.0
    assert flush["fsync_busy"] == pytest.approx(0.05) and flush["fsync_mean_ms"] == pytest.approx(0.5)
    assert ceiling.flush_window({}, after, wall=2.0) == {}  # no /metrics: no flush figures


MAIN = "_run_module_as_main (<frozen runpy>:198);Runner.run (asyncio/runners.py:118)"
COLLAPSED = "\n".join(
    [
        f"{MAIN} 30",  # uvloop's C code, charged to the loop's outermost Python frame
        f"{MAIN};_Call.step (server/service.py:174) 40",
        f"{MAIN};_Call.step (server/service.py:185) 10",
        f"{MAIN};FrameReader.feed (protocol/frames.py:114) 20",
        "Thread._bootstrap (threading.py:1002);Flusher._run (wal/flusher.py:117) 100",
        "not a stack line",
    ]
)


def test_self_time_merges_lines_and_splits_the_loop_thread_from_the_others() -> None:
    summary = ceiling.self_time(COLLAPSED)
    assert summary["samples"] == 200 and summary["loop_samples"] == 100
    assert summary["top_self"][0] == ("Flusher._run (wal/flusher.py)", 0.5)
    loop = dict(summary["loop_top_self"])
    assert loop["_Call.step (server/service.py)"] == pytest.approx(0.5)  # lines 174 and 185 merged
    assert "Flusher._run (wal/flusher.py)" not in loop
    assert summary["loop_packages_self"] == {"server": 0.5, "uvloop (C)": 0.3, "protocol": 0.2}
    assert summary["packages_self"]["wal"] == 0.5
    assert ceiling.self_time("")["samples"] == 0


def test_the_fsync_bound_is_the_measured_group_nearest_below() -> None:
    fsync = [{"group": g, "records_per_s": 1000.0 * g} for g in (1, 8, 64)]
    assert ceiling.fsync_bound(fsync, 50.0) == 8000.0
    assert ceiling.fsync_bound(fsync, 64.0) == 64000.0
    assert ceiling.fsync_bound(fsync, 0.3) == 1000.0


def test_quick_shrinks_the_bounds_and_flags_win() -> None:
    opts = ceiling.parse(["--quick", "--seconds", "2", "--groups", "1,16"])
    assert (opts.seconds, opts.repeat, opts.drain_jobs, opts.groups) == (2.0, 1, 10_000, (1, 16))
    assert ceiling.parse([]).repeat == 3
    with pytest.raises(SystemExit):
        ceiling.parse(["--groups", "0"])


def test_a_tiny_real_run_writes_every_figure(tmp_path: Path) -> None:
    """A real server per window (single, batch, drain), the bare echo server and fsync loop, and
    the profiles: half-second windows, one producer, a 300-job drain."""
    flamegraphs = tmp_path / "flamegraphs"
    cmd = [
        sys.executable, "-m", "perf", "ceiling", "--seconds", "0.5", "--repeat", "1",
        "--producers", "1", "--inflight", "8", "--batch-inflight", "2", "--drain-jobs", "300",
        "--workers", "1", "--concurrency", "16", "--fsync-seconds", "0.05", "--groups", "1,4",
        "--profile-seconds", "0.5", "--flamegraphs", str(flamegraphs),
    ]  # fmt: skip
    env = {**os.environ, "SPITFIRE_PERF_RESULTS": str(tmp_path)}
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=170, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    (path,) = tmp_path.glob("ceiling-*.json")
    doc = json.loads(path.read_text())
    assert doc["suite"] == "ceiling" and doc["config"]["durability"] == "group"
    raw = doc["config"]["raw"]
    for workload in ("enqueue", "batch", "drain", "echo"):
        (run,) = raw[workload]
        # CPU time is counted in 10 ms clock ticks: a half-second window on a loaded machine may
        # read 0 for the process while a thread reads one tick, so only the sign is certain.
        assert run["jobs"] > 0 and run["cpu_s"] >= 0, (workload, run)
        assert "loop" in run["threads_cpu_s"]
    # The drain runs the 300 jobs and the one that created the queue before the window.
    assert raw["drain"][0]["jobs"] >= 300 and raw["drain"][0]["left"] == 0
    assert raw["enqueue"][0]["records_per_round"] >= 1  # read from the server's /metrics
    # The asked group sizes, and the one Spitfire reached when it is another.
    assert {1, 4} <= {r["group"] for r in doc["config"]["fsync"]}
    names = {f["name"] for f in doc["figures"]}
    assert {
        "single enqueue: server CPU per job",
        "batch enqueue: server CPU per job",
        "delivered and acked: server CPU per job",
        "bare framed round trip: server CPU per request",
        "bare fsync loop, 1/fdatasync: records/s",
        "single enqueue: server CPU per job / bare round trip",
    } <= names
    for workload, profile in doc["config"]["profiles"].items():
        svg = flamegraphs / profile["flamegraph"]
        if svg.exists():  # py-spy may not be allowed to attach here; the run still succeeds
            assert svg.read_text().lstrip().startswith("<?xml"), workload
            assert (flamegraphs / profile["collapsed"]).exists()


def test_fsync_figures_are_medians_per_group_size() -> None:
    runs = [[{"group": 1, "records_per_s": v}, {"group": 8, "records_per_s": 8 * v}] for v in (3.0, 1.0, 2.0)]
    merged = ceiling.fsync_medians(runs)
    assert [(m["group"], m["records_per_s"], m["runs"]) for m in merged] == [(1, 2.0, 3), (8, 16.0, 3)]
