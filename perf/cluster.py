"""python -m perf cluster: a 3-member cluster on this machine next to one node, in the same run.

For each target (one node; three members on loopback, one cluster per ``--raft-driver`` given),
alternately, ``--repeat`` times:

- **enqueue**: single-job enqueues with the AsyncClient, 64 in flight (closed loop), jobs/s; and
  one at a time (``--serial-jobs``), the time per request (one commit's latency);
- **open loop**: 5,000 enqueues/s offered (``--rate``), latency from each scheduled send, p99;
- **drain**: a `spitfire worker` process delivering and acking a filled queue, jobs/s;
- **failover** (``--kills`` times): SIGKILL the process serving writes, time until a write is
  acknowledged again: on the cluster by a newly elected leader (the killed member is restarted
  afterwards), on one node by the same node restarted at once (recovery included).

Every process started here is stopped here, by PID. The machine's cores are shared by every
member, the clients and the worker (and, on a shared machine, by other people's runs): the
figures compare the two targets measured alternately in one run, not a deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import spitfire
from perf import workloads as w
from perf.net_workloads import open_loop, run_tuned
from perf.report import Figure, median, print_table, write_json
from perf.server_proc import START_TIMEOUT, ServerProcess, free_port, stop_process

#: Seconds any one wait for a leader, or for a write after a kill, may take.
WAIT = 60.0


class ClusterProcs:
    """Three spitfire-server members on loopback ports with temporary data dirs."""

    def __init__(self, size: int = 3, election_timeout: str | None = None, driver: str = "loop") -> None:
        self.root = Path(tempfile.mkdtemp(prefix="spitfire-cluster-bench-"))
        ids = [chr(ord("a") + i) for i in range(size)]
        raft = {n: free_port() for n in ids}
        self.listen = {n: free_port() for n in ids}
        self.http = {n: free_port() for n in ids}
        members = ",".join(f"{n}=127.0.0.1:{raft[n]}" for n in ids)
        self.commands = {
            n: [
                sys.executable, "-m", "spitfire.server.cli", "--node-id", n, "--cluster", members,
                "--data-dir", str(self.root / n), "--listen", f"127.0.0.1:{self.listen[n]}",
                "--http", f"127.0.0.1:{self.http[n]}", "--no-quic", "--log-level", "warning",
                *(["--election-timeout", election_timeout] if election_timeout else []),
                "--raft-driver", driver,
            ]
            for n in ids
        }  # fmt: skip
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, node: str | None = None) -> None:
        for n in [node] if node else list(self.commands):
            with open(self.root / f"{n}.log", "ab") as log:
                self.procs[n] = subprocess.Popen(self.commands[n], stdout=log, stderr=subprocess.STDOUT)

    def leader(self, among: list[str] | None = None, timeout: float = WAIT) -> str:
        """The member that leads and serves (polled on ``GET /api/cluster`` and ``/api/queues``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in among or list(self.procs):
                if self.procs[n].poll() is not None:
                    continue
                try:
                    with urllib.request.urlopen(
                        f"http://127.0.0.1:{self.http[n]}/api/cluster", timeout=1
                    ) as r:
                        view = json.loads(r.read())
                    if view["leader"] == n:
                        with urllib.request.urlopen(f"http://127.0.0.1:{self.http[n]}/api/queues", timeout=1):
                            return n
                except (OSError, ValueError):
                    continue
            time.sleep(0.02)
        raise RuntimeError(f"no leader within {timeout:.0f} s (logs in {self.root})")

    def all_up(self, timeout: float = WAIT) -> None:
        """Wait until the leader is connected to every member and none lags."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader(timeout=timeout)
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.http[leader]}/api/cluster", timeout=1
                ) as r:
                    nodes = json.loads(r.read())["nodes"]
                if all(n["role"] != "down" and n["lag"] == 0 for n in nodes):
                    return
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"members not all up within {timeout:.0f} s (logs in {self.root})")

    def url(self, node: str) -> str:
        return f"tcp://127.0.0.1:{self.listen[node]}"

    def kill(self, node: str) -> None:
        proc = self.procs[node]
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(WAIT)

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process(proc)
        shutil.rmtree(self.root, ignore_errors=True)


async def _first_write(urls: list[str], started: float) -> float:
    """Seconds from ``started`` until one of ``urls`` acknowledges an enqueue."""
    deadline = started + WAIT
    while time.monotonic() < deadline:
        for url in urls:
            try:
                async with asyncio.timeout(2):
                    async with spitfire.AsyncClient(url) as client:
                        await client.enqueue("failover", "noop", {"i": 0})
                return time.monotonic() - started
            except (spitfire.SpitfireError, OSError, TimeoutError):
                await asyncio.sleep(0.005)
    raise RuntimeError(f"no write acknowledged within {WAIT:.0f} s of the kill")


def cluster_failover(c: ClusterProcs) -> float:
    leader = c.leader()
    others = [n for n in c.procs if n != leader]
    c.kill(leader)
    started = time.monotonic()
    seconds = asyncio.run(_first_write([c.url(n) for n in others], started))
    c.start(leader)
    c.all_up()  # the next kill must leave a majority
    return seconds


def single_failover(s: ServerProcess) -> float:
    assert s.proc is not None
    os.kill(s.proc.pid, signal.SIGKILL)
    s.proc.wait(WAIT)
    started = time.monotonic()
    s.start()
    return asyncio.run(_first_write([s.url()], started))


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds ``pid`` has used so far (Linux ``/proc``; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_on(target: Any, cfg: dict[str, Any]) -> dict[str, Any]:
    """`measure` on the URL ``target()`` gives with the pid serving it; again (up to 3 times) if
    the leader changed meanwhile. Adds the serving process's CPU ms per 1,000 jobs."""
    changes = 0
    while True:
        url, pid = target()
        before = cpu_seconds(pid)
        try:
            result = measure(url, cfg)
        except spitfire.NotLeader:
            changes += 1
            if changes >= 3:
                raise
            continue
        jobs = (
            cfg["jobs"]
            + cfg["serial_jobs"]
            + int(result["raw"]["open_loop"].get("jobs", 0))
            + cfg["drain_jobs"]
        )
        result["cpu_ms_per_1000_jobs"] = (cpu_seconds(pid) - before) * 1000 / max(1, jobs) * 1000
        return {**result, "leader_changes": changes}


def measure(url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """enqueue, open loop and drain figures against ``url``."""
    urls = {"tcp": url}
    enqueue = run_tuned(lambda: w.single(urls, {"jobs": cfg["jobs"], "inflight": 64, "queue": "enq"}))
    serial = run_tuned(lambda: w.single(urls, {"jobs": cfg["serial_jobs"], "inflight": 1, "queue": "one"}))
    loop = run_tuned(
        lambda: open_loop(url, {"rate": cfg["rate"], "seconds": cfg["seconds"], "queue": "open"})
    )
    drain = run_tuned(lambda: w.drain(urls, {"jobs": cfg["drain_jobs"], "workers": 1}))
    return {
        "enqueue_jobs_per_s": enqueue["jobs_per_s"],
        # One request at a time: each waits for its whole commit (the latency of one commit).
        "enqueue_serial_ms": 1000 / rate if (rate := serial["jobs_per_s"]) else None,
        "open_loop_p99_ms": loop["p99_ms"],
        "open_loop_achieved_per_s": loop["achieved_per_s"],
        "drain_jobs_per_s": drain.get("jobs_per_s"),
        "raw": {"enqueue": enqueue, "serial": serial, "open_loop": loop, "drain": drain},
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m perf cluster", description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=3, help="alternated runs per target (medians reported)")
    p.add_argument("--jobs", type=int, default=20_000, help="closed-loop enqueues per run")
    p.add_argument("--serial-jobs", type=int, default=1000, help="enqueues one at a time per run")
    p.add_argument("--rate", type=float, default=5000, help="open loop: enqueues/s offered")
    p.add_argument("--seconds", type=float, default=5, help="open loop: seconds")
    p.add_argument("--drain-jobs", type=int, default=20_000, help="jobs the drain run delivers")
    p.add_argument("--kills", type=int, default=5, help="failovers measured per target")
    p.add_argument(
        "--election-timeout", default="500ms",
        help="the throughput runs' cluster (failovers run at the default 150ms): on a loaded 2-core machine "
        "running three members, the clients and a worker, 150ms let loop stalls depose leaders mid-run",
    )  # fmt: skip
    p.add_argument(
        "--raft-driver", default="loop", metavar="DRIVER[,DRIVER]",
        help="the members' --raft-driver (loop, thread); two, comma-separated, run one cluster each, "
        "alternated with the other targets in the same run (default %(default)s)",
    )  # fmt: skip
    p.add_argument("--no-single", action="store_true", help="measure the cluster(s) only, no single node")
    p.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    return p


def _start_all(clusters: dict[str, ClusterProcs]) -> None:
    for c in clusters.values():
        c.start()
    for c in clusters.values():
        c.all_up(START_TIMEOUT)


def _figures(
    targets: list[str], runs: dict[str, list[dict[str, Any]]], failovers: dict[str, list[float]], rate: float
) -> list[Figure]:
    figures: list[Figure] = []
    for target in targets:
        results = runs[target]
        for label, key, unit in (
            ("enqueue (64 in flight)", "enqueue_jobs_per_s", "jobs/s"),
            ("enqueue, one at a time: time per request", "enqueue_serial_ms", "ms"),
            (f"enqueue p99 at {rate:,.0f}/s offered", "open_loop_p99_ms", "ms"),
            ("drain (1 worker process)", "drain_jobs_per_s", "jobs/s"),
            ("serving process CPU per 1,000 jobs", "cpu_ms_per_1000_jobs", "ms"),
        ):
            values = [float(r[key]) for r in results if r.get(key) is not None]
            if values:
                figures.append(Figure(f"{target}: {label}", median(values), unit, runs=values))
        times = failovers[target]
        if times:
            what = "SIGKILL, restart, first ack" if target == "single" else "SIGKILL to a new leader's ack"
            figures.append(
                Figure(f"{target}: failover p50 ({what})", statistics.median(times), "s", runs=times)
            )
            figures.append(Figure(f"{target}: failover max", max(times), "s", runs=times))
    return figures


def main(argv: list[str]) -> int:
    p = _parser()
    args = p.parse_args(argv)
    if args.quick:
        args.repeat, args.jobs, args.seconds, args.drain_jobs, args.kills = 1, 2000, 1, 2000, 2
        args.serial_jobs = 200
    drivers = [d.strip() for d in args.raft_driver.split(",") if d.strip()]
    if not drivers or any(d not in ("loop", "thread") for d in drivers) or len(set(drivers)) != len(drivers):
        p.error(f"--raft-driver {args.raft_driver!r}: give loop, thread or loop,thread")
    cfg = {
        "jobs": args.jobs,
        "serial_jobs": args.serial_jobs,
        "rate": args.rate,
        "seconds": args.seconds,
        "drain_jobs": args.drain_jobs,
    }
    # One cluster per driver, named "cluster" when there is one (as before), "cluster-DRIVER" else.
    names = {d: "cluster" if len(drivers) == 1 else f"cluster-{d}" for d in drivers}
    targets = ([] if args.no_single else ["single"]) + list(names.values())
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
    failovers: dict[str, list[float]] = {t: [] for t in targets}
    single = ServerProcess(quic=False)
    clusters: dict[str, ClusterProcs] = {}

    def serving(target: str) -> tuple[str, int]:
        """The URL serving ``target`` now, and its process's pid."""
        if target == "single":
            assert single.proc is not None
            return single.url(), single.proc.pid
        c = clusters[target]
        leader = c.leader()
        return c.url(leader), c.procs[leader].pid

    try:
        if not args.no_single:
            single.start()
        clusters = {names[d]: ClusterProcs(driver=d) for d in drivers}
        _start_all(clusters)
        # Failovers first, on short logs: a new leader replays the whole Raft log (no snapshots
        # yet), so later kills would time the replay of every job the runs below enqueue.
        for i in range(args.kills):
            print(f"  failover {i + 1}/{args.kills} ...", file=sys.stderr, flush=True)
            for target in targets if i % 2 == 0 else targets[::-1]:
                failovers[target].append(
                    single_failover(single) if target == "single" else cluster_failover(clusters[target])
                )
        for c in clusters.values():
            c.stop()
        clusters = {names[d]: ClusterProcs(election_timeout=args.election_timeout, driver=d) for d in drivers}
        _start_all(clusters)
        for i in range(args.repeat):
            for target in targets if i % 2 == 0 else targets[::-1]:
                print(f"  {target} run {i + 1}/{args.repeat} ...", file=sys.stderr, flush=True)
                runs[target].append(measure_on(lambda t=target: serving(t), cfg))
    finally:
        for c in clusters.values():
            with contextlib.suppress(Exception):
                c.stop()
        single.stop()
    figures = _figures(targets, runs, failovers, args.rate)
    print_table(figures)
    config = {
        **cfg, "repeat": args.repeat, "kills": args.kills, "members": 3, "runs": runs, "failovers": failovers,
        "raft_drivers": drivers,
        "election_timeout": {"failovers": "150ms", "throughput": args.election_timeout},
        "note": "every process on one loaded 2-core machine; targets alternated in one run",
    }  # fmt: skip
    path = write_json("cluster", config, figures)
    print(f"\nwrote {path}")
    return 0
