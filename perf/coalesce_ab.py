"""The AsyncClient with coalesced enqueues against one request per call: A/B rounds, alternating.

    .venv/bin/python -m perf.coalesce_ab [--rounds 3] [--jobs 20000] [--inflight 64]
    .venv/bin/python -m perf.coalesce_ab --profile   # py-spy flamegraphs of client and server

The workload is ``python -m perf peers``' "AsyncClient, 64 in flight" rows (perf/workloads.py
``single``: one job per `enqueue`, ~100-byte payloads, ``--durability group``), on the plain asyncio
loop and on uvloop. Each round runs every (loop, coalesce) variant once, each against a fresh server
of its own, the order of on and off swapped every round so that a noisy machine slows both alike.
Besides jobs/s and latency it reports the CPU time the server and the client spent per job (from
/proc and getrusage). Prints the medians of each variant and on/off ratios; compare variants of one
run, never across runs.

``--profile``: one run of each (asyncio loop) with py-spy attached to the server and to this process
(the client), into flamegraphs/coalesce-{on,off}-{server,client}.svg.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from perf.server_proc import ServerProcess, stop_process
from perf.workloads import run_once

ROOT = Path(__file__).resolve().parent.parent
LOOPS = ("asyncio", "uvloop")
TICKS = os.sysconf("SC_CLK_TCK")


def _server_cpu(pid: int) -> float:
    """Seconds of CPU (user + system, all threads) process ``pid`` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one_run(loop: str, coalesce: bool, jobs: int, inflight: int, spy: bool = False) -> dict[str, Any]:
    """One closed-loop run against a fresh server; adds server and client CPU microseconds per job."""
    cfg = {"jobs": jobs, "inflight": inflight, "loop": loop, "coalesce": coalesce}
    name = f"coalesce-{'on' if coalesce else 'off'}"
    server = ServerProcess("group", quic=False).start()
    assert server.proc is not None
    spies: list[subprocess.Popen[bytes]] = []
    try:
        if spy:
            for who, pid in (("server", server.proc.pid), ("client", os.getpid())):
                spies.append(_attach(pid, ROOT / "flamegraphs" / f"{name}-{who}.svg"))
            time.sleep(1.0)  # let them attach
        s0, c0 = _server_cpu(server.proc.pid), _client_cpu()
        result = run_once("single", cfg, url=server.url("tcp"))
        s1, c1 = _server_cpu(server.proc.pid), _client_cpu()
    finally:
        for p in spies:
            p.send_signal(signal.SIGINT)  # py-spy writes its SVG on SIGINT
            p.wait(30)
        stop_process(server.proc)
        shutil.rmtree(server.data_dir, ignore_errors=True)
    done = max(1, int(result["jobs"]))
    result["server_us_per_job"] = (s1 - s0) / done * 1e6
    result["client_us_per_job"] = (c1 - c0) / done * 1e6
    return result


def _attach(pid: int, svg: Path) -> subprocess.Popen[bytes]:
    """py-spy recording process ``pid`` (all its threads) into ``svg``, until SIGINT."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    cmd = [py_spy, "record", "--rate", "250", "--nonblocking", "--threads", "--pid", str(pid), "-o", str(svg)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


KEYS = ("jobs_per_s", "p50_ms", "p99_ms", "server_us_per_job", "client_us_per_job")


def ab(rounds: int, jobs: int, inflight: int) -> dict[tuple[str, bool], list[dict[str, Any]]]:
    runs: dict[tuple[str, bool], list[dict[str, Any]]] = {(lp, c): [] for lp in LOOPS for c in (True, False)}
    for r in range(rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        for loop in LOOPS:
            for coalesce in order:
                res = one_run(loop, coalesce, jobs, inflight)
                runs[(loop, coalesce)].append(res)
                figures = "  ".join(f"{k}={res[k]:.2f}" for k in KEYS)
                print(f"round {r + 1} {loop:7} coalesce={'on ' if coalesce else 'off'} {figures}", flush=True)
    return runs


def report(runs: dict[tuple[str, bool], list[dict[str, Any]]]) -> None:
    print("\nmedians:")
    print(f"| loop | coalesce | {' | '.join(KEYS)} |")
    print(f"|---|---|{'---|' * len(KEYS)}")
    for (loop, coalesce), results in runs.items():
        meds = [statistics.median(float(x[k]) for x in results) for k in KEYS]
        print(f"| {loop} | {'on' if coalesce else 'off'} | {' | '.join(f'{m:,.2f}' for m in meds)} |")
    for loop in LOOPS:
        on = statistics.median(float(x["jobs_per_s"]) for x in runs[(loop, True)])
        off = statistics.median(float(x["jobs_per_s"]) for x in runs[(loop, False)])
        wins = sum(
            a["jobs_per_s"] > b["jobs_per_s"]
            for a, b in zip(runs[(loop, True)], runs[(loop, False)], strict=True)
        )
        print(f"{loop}: on/off {on / off:.2f}x ({wins} of {len(runs[(loop, True)])} rounds faster)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.coalesce_ab", description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--inflight", type=int, default=64)
    p.add_argument("--profile", action="store_true", help="py-spy flamegraphs instead of the A/B")
    args = p.parse_args(argv)
    if args.profile:
        for coalesce in (False, True):
            res = one_run("asyncio", coalesce, args.jobs, args.inflight, spy=True)
            print(f"coalesce={'on' if coalesce else 'off'}: " + "  ".join(f"{k}={res[k]:.2f}" for k in KEYS))
        return 0
    report(ab(args.rounds, args.jobs, args.inflight))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
