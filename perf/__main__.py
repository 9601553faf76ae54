"""python -m perf, from the repository's root: run Spitfire's benchmark suites.

python -m perf engine [--repeat 3] [--quick] [--only NAME ...]
    In-process storage-engine workloads with the targets of the storage issue; prints a table and
    writes perf/results/engine-<timestamp>.json (machine, commit, config, every run).
python -m perf engine --flamegraph closed-loop-group
    Runs one workload under py-spy and writes flamegraphs/<name>.svg plus the command beside it.
python -m perf net [--repeat 3] [--quick] [--only NAME ...]
    The network server's workloads: a real spitfire-server process, clients and workers
    in other processes; writes perf/results/net-<timestamp>.json.
python -m perf net --flamegraph drain-tcp
    Runs one drain with py-spy attached to the server and to the worker: flamegraphs/net-*.svg.
python -m perf single|batch|drain|open-loop|priorities|delayed|large-payload|many-queues|fanout
    One workload each (perf/workloads.py): bounded by --jobs and --seconds, --seed fixed,
    its own server (--durability) or --url; a table and perf/results/<name>-<transport>-<ts>.json.
python -m perf watch [--rate 5000] [--seconds 20] [--p99-ms 10]
    Open-loop load with py-spy attached to the server: flamegraphs/watch-<ts>.svg and .json; exits 1
    when enqueue p99 is over --p99-ms.
python -m perf peers [--quick] [--only PEER ...]
    The same workloads on Spitfire and on each peer, ratios Spitfire/peer, a latency-versus-load
    sweep; perf/results/peers-<ts>.json and perf/latency-vs-load.png.
python -m perf ceiling [--seconds 3] [--repeat 3] [--producers 3] [--no-profile]
    The server's CPU per enqueued and per acked job at saturation against bare round trips and fsyncs.
python -m perf durable-rtt [--seconds 3] [--repeat 3] [--threads 1,8]
    A bare server with its fdatasync on its loop answering 1 and 8 blocking threads, one call in
    flight each: the bound of the sync Client's rows on this machine (perf/durable_rtt.py).
python -m perf sync-client [--modes sync-1 sync-8 async-1 async-8] [--ab OTHER_PYTHON] [--profile DIR]
    The blocking Client from 1 and 8 threads against AsyncClient (perf/sync_client.py).
python -m perf delayed-scale [--backlog 1000000] [--jobs 50000] [--repeat 3]
    Enqueue speed with and without a million delayed jobs held, their lateness, and the restart time.
python -m perf sse-readers [--readers 10] [--jobs 100000] [--repeat 4] [--mode batched|each]
    Enqueue speed with and without ten SSE readers of /api/events (open dashboards), alternately.
python -m perf tracing [--jobs 20000] [--repeat 3] [--work-ms MS] [--sync] [--sampler-ratio R] [--ab PYTHON]
    Producer and drain speed, and the server's CPU per job, with OpenTelemetry on (the SDK; the SDK
    and the server) and off, alternately; --profile: py-spy flamegraphs; --micro: one span's cost.
python -m perf cluster [--repeat 3] [--kills 5] [--raft-driver loop[,thread]] [--no-single] [--quick]
    Three cluster members on this machine next to one node, alternately: enqueue jobs/s, p99 at
    5,000 jobs/s offered, drain jobs/s, failover p50/max (perf/cluster.py); one cluster per
    --raft-driver given.
python -m perf report FILE.json / python -m perf plot FILE.json
    A peers run as the Markdown table of perf/README.md / its plot, again.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perf.report import Figure, median, print_table, write_json

ROOT = Path(__file__).resolve().parent.parent
FLAMEGRAPHS = ROOT / "flamegraphs"


@dataclass(frozen=True)
class Case:
    """One workload configuration and how to read its figure."""

    name: str
    workload: str
    config: dict[str, Any]
    #: (figure name, result key, unit, target text, check)
    figures: tuple[tuple[str, str, str, str, Callable[[float], bool] | None], ...]


def engine_cases(quick: bool) -> list[Case]:
    """The storage issue's benchmark set; ``quick`` shrinks counts for a smoke run."""
    big = 100_000 if quick else 1_000_000
    n = 50_000 if quick else 300_000
    return [
        Case(
            "closed-loop-group",
            "closed-loop",
            {"mode": "group", "jobs": n, "concurrency": 256, "payload": 128},
            (
                (
                    "group enqueue, 256 producers",
                    "jobs_per_s",
                    "jobs/s",
                    ">= 100,000",
                    lambda v: v >= 100_000,
                ),
                ("group enqueue commit p99", "p99_ms", "ms", "", None),
            ),
        ),
        Case(
            "closed-loop-async",
            "closed-loop",
            {"mode": "async", "jobs": n, "concurrency": 256, "payload": 128},
            (("async enqueue, 256 producers", "jobs_per_s", "jobs/s", ">= 200,000", lambda v: v >= 200_000),),
        ),
        Case(
            "closed-loop-sync",
            "closed-loop",
            {"mode": "sync", "jobs": 5_000 if quick else 20_000, "concurrency": 256, "payload": 128},
            (
                ("sync enqueue, 256 producers", "jobs_per_s", "jobs/s", "report", None),
                ("sync enqueue p50", "p50_ms", "ms", "report", None),
                ("sync enqueue p99", "p99_ms", "ms", "report", None),
            ),
        ),
        Case(
            "open-loop-group-10k",
            "open-loop",
            {"mode": "group", "rate": 10_000, "seconds": 3 if quick else 10, "payload": 128},
            (
                ("group commit p50 @10k/s offered", "p50_ms", "ms", "", None),
                ("group commit p99 @10k/s offered", "p99_ms", "ms", "<= 3", lambda v: v <= 3.0),
                ("group commit p999 @10k/s offered", "p999_ms", "ms", "", None),
            ),
        ),
        Case(
            "recovery-snapshot",
            "recovery",
            {"jobs": big, "tail": big // 10, "snapshot": True, "payload": 128},
            (
                (
                    "recovery of jobs (snapshot + 10% tail)",
                    "recovery_s",
                    "s",
                    "<= 5 at 1M",
                    lambda v: v <= 5.0,
                ),
            ),
        ),
        Case(
            "replay",
            "recovery",
            {"jobs": big // 2, "tail": big // 2, "snapshot": False, "payload": 128},
            (("replay of log records", "records_per_s", "records/s", ">= 500,000", lambda v: v >= 500_000),),
        ),
        Case(
            "memory",
            "memory",
            {"jobs": big, "payload": 128},
            (
                (
                    "RSS per pending job beyond payload",
                    "bytes_per_job_beyond_payload",
                    "bytes",
                    "<= 600",
                    lambda v: v <= 600,
                ),
            ),
        ),
        Case(
            "snapshot-stall",
            "snapshot-stall",
            {"jobs": big, "payload": 128},
            (
                (
                    "longest loop stall during snapshot",
                    "max_loop_stall_ms",
                    "ms",
                    "<= 20",
                    lambda v: v <= 20.0,
                ),
                ("snapshot duration", "snapshot_s", "s", "", None),
            ),
        ),
    ]


def run_workload(workload: str, config: dict[str, Any], prefix: list[str] | None = None) -> dict[str, Any]:
    """Run one workload in a fresh process and return its JSON result."""
    cmd = [*(prefix or []), sys.executable, "-m", "perf.engine_workloads", workload, json.dumps(config)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{workload} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    # py-spy, when it wraps the run, prints its own lines after the workload's JSON line.
    line = next(ln for ln in reversed(out.stdout.splitlines()) if ln.startswith("{"))
    result: dict[str, Any] = json.loads(line)
    return result


def run_engine(repeat: int, quick: bool, only: list[str]) -> int:
    cases = [c for c in engine_cases(quick) if not only or c.name in only]
    figures: list[Figure] = []
    raw: dict[str, list[dict[str, Any]]] = {}
    for case in cases:
        results = []
        for i in range(repeat):
            print(f"  {case.name} run {i + 1}/{repeat} ...", file=sys.stderr, flush=True)
            results.append(run_workload(case.workload, case.config))
        raw[case.name] = results
        for label, key, unit, target, check in case.figures:
            runs = [float(r[key]) for r in results if r.get(key) is not None]
            if not runs:
                continue
            value = median(runs)
            figures.append(Figure(label, value, unit, target, check(value) if check else None, runs))
    print_table(figures)
    config = {"repeat": repeat, "quick": quick, "cases": {c.name: c.config for c in cases}, "raw": raw}
    path = write_json("engine", config, figures)
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0


def run_flamegraph(name: str, quick: bool) -> int:
    case = next(c for c in engine_cases(quick) if c.name == name)
    FLAMEGRAPHS.mkdir(exist_ok=True)
    svg = FLAMEGRAPHS / f"engine-{name}.svg"
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    prefix = [py_spy, "record", "--rate", "250", "--nonblocking", "-o", str(svg), "--"]
    result = run_workload(case.workload, case.config, prefix)
    command = shlex.join([sys.executable, "-m", "perf", "engine", "--flamegraph", name])
    inner = shlex.join(
        [*prefix, "python", "-m", "perf.engine_workloads", case.workload, json.dumps(case.config)]
    )
    svg.with_suffix(".txt").write_text(
        f"made by: {command}\nwhich runs: {inner}\nresult: {json.dumps(result)}\n"
    )
    print(f"wrote {svg.relative_to(ROOT)}: {result}")
    return 0


#: Subcommands whose module parses its own flags: name -> "module:function" taking the rest of argv.
DELEGATED = {
    "net": "perf.net_main:main",
    "watch": "perf.watch:main",
    "peers": "perf.compare:main",
    "sync-client": "perf.sync_client:main",
    "report": "perf.compare:report_main",
    "plot": "perf.plot:main",
    "ceiling": "perf.ceiling:main",
    "durable-rtt": "perf.durable_rtt:main",
    "delayed-scale": "perf.delayed_scale:main",
    "sse-readers": "perf.sse_readers:main",
    "tracing": "perf.tracing:main",
    "cluster": "perf.cluster:main",
}


def delegate(name: str, argv: list[str]) -> int:
    """Run a subcommand's own ``main(argv)`` (imported only when asked for)."""
    from importlib import import_module

    from perf.workloads import SPECS, run_subcommand

    if name in SPECS:
        return run_subcommand(name, argv)
    module, function = DELEGATED[name].split(":")
    result: int = getattr(import_module(module), function)(argv)
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m perf``."""
    from perf.workloads import SPECS, add_subcommands

    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] and (argv[0] in DELEGATED or argv[0] in SPECS):
        return delegate(argv[0], argv[1:])
    parser = argparse.ArgumentParser(prog="python -m perf", description="Spitfire benchmarks")
    sub = parser.add_subparsers(dest="suite", required=True)
    eng = sub.add_parser("engine", help="in-process storage engine workloads")
    eng.add_argument("--repeat", type=int, default=3, help="runs per workload; the median is reported")
    eng.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    eng.add_argument("--only", nargs="*", default=[], help="run only these cases")
    eng.add_argument("--flamegraph", metavar="CASE", help="record CASE under py-spy into flamegraphs/")
    sub.add_parser("net", help="network server workloads (see python -m perf net --help)")
    add_subcommands(sub)
    sub.add_parser("watch", help="open-loop load with py-spy on the server; exit 1 past --p99-ms")
    sub.add_parser("peers", help="the same workloads on Spitfire and on Redis/Postgres-backed peers")
    sub.add_parser("sync-client", help="the blocking Client from 1 and 8 threads against AsyncClient")
    sub.add_parser("report", help="a peers-*.json (or any results JSON) as a Markdown table")
    sub.add_parser("plot", help="latency versus offered load PNG from a peers-*.json")
    sub.add_parser("ceiling", help="server CPU per job at saturation vs this machine's physical limits")
    sub.add_parser("durable-rtt", help="the fastest durable answer over loopback, 1 and 8 threads")
    sub.add_parser("sse-readers", help="enqueue speed with and without ten dashboards' event streams")
    sub.add_parser("delayed-scale", help="enqueue speed, lateness and restart with 1,000,000 delayed jobs")
    sub.add_parser("tracing", help="drain speed with OpenTelemetry tracing on (worker, server) and off")
    sub.add_parser("cluster", help="a 3-member Raft cluster next to one node: enqueue, p99, drain, failover")
    args = parser.parse_args(argv)
    if args.flamegraph:
        return run_flamegraph(args.flamegraph, args.quick)
    return run_engine(args.repeat, args.quick, args.only)


if __name__ == "__main__":
    sys.exit(main())
