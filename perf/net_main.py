"""python -m perf net: the fixed network benchmarks against a real spitfire-server process.

Every case starts its own server (group durability, temp data dir, free loopback port), runs the
client workload in this process (a different process from the server) and stops the server by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perf.net_workloads import attach_py_spy, detach_py_spy, payload_json_size, run
from perf.report import Figure, median, print_table, write_json
from perf.server_proc import ServerProcess, split_cpus

ROOT = Path(__file__).resolve().parent.parent
FLAMEGRAPHS = ROOT / "flamegraphs"

Check = Callable[[float], bool] | None


@dataclass(frozen=True)
class NetCase:
    name: str
    workload: str
    transport: str
    config: dict[str, Any]
    #: (label, result key, unit, target text, check)
    figures: tuple[tuple[str, str, str, str, Check], ...]
    extra_server_args: list[str] = field(default_factory=list)
    #: Pin the client and the server to separate CPUs (latency cases; see server_proc.split_cpus).
    pin: bool = False


def _at_least(x: float) -> Check:
    return lambda v: v >= x


def _at_most(x: float) -> Check:
    return lambda v: v <= x


def _throughput(label: str, transport: str, tcp_target: float) -> tuple[str, str, str, str, Check]:
    """A jobs/s figure: TCP has an absolute target, QUIC is judged as a share of TCP (add_ratios)."""
    if transport == "tcp":
        return (label, "jobs_per_s", "jobs/s", f">= {tcp_target:,.0f}", _at_least(tcp_target))
    return (label, "jobs_per_s", "jobs/s", ">= 50% of tcp", None)


def net_cases(quick: bool) -> list[NetCase]:
    """The fixed benchmark set (N = 20,000 and 100,000; quick: 20,000 only, shorter runs)."""
    sizes = [20_000] if quick else [20_000, 100_000]
    seconds = 3 if quick else 10
    cases: list[NetCase] = []
    for n in sizes:
        k = f"{n // 1000}k"
        for t in ("tcp", "quic"):
            label = f"{t} single enqueue, 64 in flight, N={k}"
            config = {"jobs": n, "inflight": 64}
            cases.append(NetCase(f"enqueue-single-{t}-{k}", "enqueue-single", t, config,
                                 (_throughput(label, t, 25_000),)))  # fmt: skip
        label = f"tcp batch enqueue, 100/request, N={k}"
        config = {"jobs": n, "batch": 100, "inflight": 4}
        cases.append(NetCase(f"enqueue-batch-tcp-{k}", "enqueue-batch", "tcp", config,
                             (_throughput(label, "tcp", 165_000),)))  # fmt: skip
        for t in ("tcp", "quic"):
            label = f"{t} drain, one worker process, N={k}"
            steady = (f"{t} drain after the first job, N={k}", "steady_jobs_per_s", "jobs/s", "", None)
            config = {"jobs": n, "concurrency": 256}
            cases.append(NetCase(f"drain-{t}-{k}", "drain", t, config,
                                 (_throughput(label, t, 20_000), steady)))  # fmt: skip
    for rate, target in ((5_000, 5.0), (20_000, 10.0)):
        at = f"@{rate // 1000}k/s"
        figures: tuple[tuple[str, str, str, str, Check], ...] = (
            (f"open-loop p50 {at}", "p50_ms", "ms", "", None),
            (f"open-loop p99 {at}", "p99_ms", "ms", f"<= {target:g}", _at_most(target)),
            (f"open-loop p999 {at}", "p999_ms", "ms", "", None),
            (f"open-loop achieved {at}", "achieved_per_s", "jobs/s", "", None),
        )
        config = {"rate": rate, "seconds": seconds}
        cases.append(NetCase(f"open-loop-tcp-{rate // 1000}k", "open-loop", "tcp", config, figures, pin=True))
    return cases


def run_case(case: NetCase, pin: bool) -> dict[str, Any]:
    cpus = split_cpus() if pin and case.pin else None
    client_cpus, server_cpus = cpus or (None, None)
    previous = os.sched_getaffinity(0)
    with ServerProcess(
        quic=case.transport == "quic", extra=case.extra_server_args, cpus=server_cpus
    ) as server:
        if client_cpus:
            os.sched_setaffinity(0, client_cpus)
        try:
            result = run(case.workload, server.url(case.transport), case.config)
        finally:
            os.sched_setaffinity(0, previous)
    result["pinned"] = {"client": sorted(client_cpus), "server": sorted(server_cpus)} if cpus else None
    return result


def add_ratios(figures: list[Figure]) -> None:
    """QUIC as a share of TCP for the same workload and size (target >= 50%)."""
    by_name = {f.name: f for f in figures}
    for f in list(figures):
        if f.name.startswith("quic ") and "after the first" not in f.name:
            tcp = by_name.get("tcp " + f.name[5:])
            if tcp is not None and tcp.value:
                ratio = 100.0 * f.value / tcp.value
                figures.append(Figure(f"{f.name} / tcp", ratio, "%", ">= 50", ratio >= 50.0))


def run_net(repeat: int, quick: bool, only: list[str], pin: bool = True) -> int:
    cases = [c for c in net_cases(quick) if not only or any(c.name.startswith(o) for o in only)]
    figures: list[Figure] = []
    raw: dict[str, list[dict[str, Any]]] = {}
    for case in cases:
        results = []
        for i in range(repeat):
            print(f"  {case.name} run {i + 1}/{repeat} ...", file=sys.stderr, flush=True)
            results.append(run_case(case, pin))
        raw[case.name] = results
        for label, key, unit, target, check in case.figures:
            runs = [float(r[key]) for r in results if r.get(key) is not None]
            if runs:
                value = median(runs)
                figures.append(Figure(label, value, unit, target, check(value) if check else None, runs))
    add_ratios(figures)
    print_table(figures)
    config = {
        "repeat": repeat,
        "quick": quick,
        "durability": "group",
        "pin_latency_cases": pin,
        "payload_json_bytes": payload_json_size(),
        "cases": {c.name: {"workload": c.workload, "transport": c.transport, **c.config} for c in cases},
        "raw": raw,
    }
    path = write_json("net", config, figures)
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0


def _py_spy() -> str:
    return str(Path(sys.executable).with_name("py-spy"))


def run_flamegraph(name: str, quick: bool) -> int:
    """Run one drain case with py-spy attached (by PID) to the server and to the worker."""
    case = next(c for c in net_cases(quick) if c.name == name)
    FLAMEGRAPHS.mkdir(exist_ok=True)
    server_svg = FLAMEGRAPHS / f"net-{name}-server.svg"
    worker_svg = FLAMEGRAPHS / f"net-{name}-worker.svg"
    with ServerProcess(quic=case.transport == "quic") as server:
        assert server.proc is not None
        spy = attach_py_spy(server.proc.pid, str(server_svg))
        try:
            config = {**case.config, "profile": str(worker_svg)}
            result = run(case.workload, server.url(case.transport), config)
        finally:
            detach_py_spy(spy)
    command = shlex.join(["python", "-m", "perf", "net", "--flamegraph", name])
    profiles = ((server_svg, "spitfire-server (py-spy attached by PID)"), (worker_svg, "spitfire worker"))
    for svg, what in profiles:
        svg.with_suffix(".txt").write_text(
            f"made by: {command}\nprofile of: {what} (py-spy record --rate 200 --pid PID)\n"
            f"case config: {json.dumps(case.config)}\nresult: {json.dumps(result)}\n"
        )
    print(f"wrote {server_svg.relative_to(ROOT)} and {worker_svg.relative_to(ROOT)}: {result}")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf net", description="network server benchmarks")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the median is reported")
    parser.add_argument("--quick", action="store_true", help="N = 20,000 only and short open-loop runs")
    parser.add_argument("--only", nargs="*", default=[], help="run only cases whose name starts so")
    parser.add_argument("--flamegraph", metavar="CASE", help="profile one drain case into flamegraphs/")
    parser.add_argument(
        "--no-pin", action="store_true", help="let latency cases share CPUs between client and server"
    )
    args = parser.parse_args(argv)
    if args.flamegraph:
        return run_flamegraph(args.flamegraph, args.quick)
    return run_net(args.repeat, args.quick, args.only, pin=not args.no_pin)
