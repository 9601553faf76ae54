"""python -m perf watch: continuous profiling under a steady open-loop load (`make perf`).

    python -m perf watch [--rate 5000] [--seconds 20] [--p99-ms 5] [--durability group] [--no-pin]

Starts a spitfire-server (temp data dir, stopped by PID) pinned to half the CPUs, attaches py-spy
to it by PID, offers ``--rate`` single-job enqueues/s over TCP for ``--seconds`` from this process
pinned to the other half (latency counted from each job's scheduled send time, HDR histogram),
then writes the server's flamegraph to flamegraphs/watch-<ts>.svg and the run's JSON (machine,
commit, config, figures) beside it as flamegraphs/watch-<ts>.json. Prints p50/p90/p99/p999/max and
exits 1 when enqueue p99 is over ``--p99-ms`` (default 5 ms: the goal at 5,000/s).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from perf.net_workloads import attach_py_spy, detach_py_spy, payload_json_size, run
from perf.report import Figure, commit, machine, print_table
from perf.server_proc import ServerProcess, split_cpus

ROOT = Path(__file__).resolve().parent.parent
FLAMEGRAPHS = ROOT / "flamegraphs"
#: The default p99 bound (ms) past which the run fails: group-commit p99 <= 5 ms at 5,000/s.
DEFAULT_P99_MS = 5.0


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The watch flags."""
    p = argparse.ArgumentParser(prog="python -m perf watch", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--rate", type=float, default=5_000, help="offered enqueues per second (default 5000)")
    p.add_argument("--seconds", type=float, default=20.0, help="how long to offer it (default 20)")
    p.add_argument(
        "--p99-ms",
        type=float,
        default=DEFAULT_P99_MS,
        help="exit 1 when enqueue p99 is over this (default 5)",
    )
    p.add_argument("--durability", default="group", choices=["group", "sync", "async"])
    p.add_argument("--no-pin", action="store_true", help="let the load generator share CPUs with the server")
    p.add_argument("--out", type=Path, default=FLAMEGRAPHS, help="directory of the SVG and JSON")
    return p.parse_args(argv)


def measure(args: argparse.Namespace, svg: Path) -> dict[str, Any]:
    """The open-loop run with py-spy recording the server into ``svg``; the workload's result."""
    cpus = None if args.no_pin else split_cpus()
    client_cpus, server_cpus = cpus or (None, None)
    previous = os.sched_getaffinity(0)
    with ServerProcess(args.durability, quic=False, cpus=server_cpus) as server:
        assert server.proc is not None
        spy = attach_py_spy(server.proc.pid, str(svg))
        try:
            if client_cpus:
                os.sched_setaffinity(0, client_cpus)
            result = run("open-loop", server.url("tcp"), {"rate": args.rate, "seconds": args.seconds})
        finally:
            os.sched_setaffinity(0, previous)
            detach_py_spy(spy)
    result["pinned"] = {"client": sorted(cpus[0]), "server": sorted(cpus[1])} if cpus else None
    return result


def figures_of(result: dict[str, Any], p99_ms: float) -> list[Figure]:
    """The run's figures: achieved rate and the latency percentiles, p99 checked against ``p99_ms``."""
    figures = [Figure("achieved", float(result["achieved_per_s"]), "jobs/s")]
    for name, key in (
        ("p50", "p50_ms"),
        ("p90", "p90_ms"),
        ("p99", "p99_ms"),
        ("p999", "p999_ms"),
        ("max", "max_ms"),
    ):
        value = float(result[key])
        if name == "p99":
            figures.append(Figure(f"enqueue {name}", value, "ms", f"<= {p99_ms:g}", value <= p99_ms))
        else:
            figures.append(Figure(f"enqueue {name}", value, "ms"))
    return figures


def main(argv: Sequence[str]) -> int:
    """Run the watch; 0 when p99 is within ``--p99-ms``, 1 when over."""
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    svg = args.out / f"watch-{stamp}.svg"
    print(f"  watch: {args.rate:,.0f}/s for {args.seconds:g} s, py-spy on the server ...", file=sys.stderr)
    result = measure(args, svg)
    figures = figures_of(result, args.p99_ms)
    print_table(figures)
    doc = {
        "suite": "watch",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "commit": commit(),
        "config": {
            "command": shlex.join(["python", "-m", "perf", "watch", *argv]),
            "rate": args.rate,
            "seconds": args.seconds,
            "p99_ms": args.p99_ms,
            "durability": args.durability,
            "transport": "tcp",
            "payload_json_bytes": payload_json_size(),
            "profile": "py-spy record --rate 200 --nonblocking --pid SERVER_PID",
            "flamegraph": svg.name if svg.exists() else None,
            "raw": result,
        },
        "figures": [asdict(f) for f in figures],
    }
    path = svg.with_suffix(".json")
    path.write_text(json.dumps(doc, indent=2) + "\n")
    where = svg if svg.exists() else "no flamegraph (py-spy could not attach?)"
    print(f"\nwrote {where} and {path}")
    over = float(result["p99_ms"]) > args.p99_ms
    if over:
        print(f"enqueue p99 {result['p99_ms']:.2f} ms is over {args.p99_ms:g} ms", file=sys.stderr)
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
