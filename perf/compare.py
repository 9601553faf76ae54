"""python -m perf peers: Spitfire and the peer job queues side by side, in one run.

Two comparisons, each with the services it needs started here and stopped by PID:

``durable``
    Spitfire with ``--durability group`` (a job is acknowledged once fsynced) against the
    Redis-backed peers on redis-server with ``appendonly yes, appendfsync always`` and the
    Postgres-backed peers with ``synchronous_commit=on``, SQLite-backed ones with SQLite's
    default ``synchronous=FULL``.
``non-durable``
    Spitfire with ``--durability async`` against redis-server with its defaults (no AOF),
    Postgres with ``synchronous_commit=off`` and SQLite with ``synchronous=OFF``.

Every system runs the same workloads with the same config keys (perf/peers/base.py):
enqueue-single, enqueue-batch, drain and open-loop, then a latency-versus-offered-load sweep
(open loop at each of ``--rates`` for ``--sweep-seconds``; a system stops climbing at the first
rate it cannot keep up with: achieved below 90% of offered, or p99 over ``--cap-ms``). Results are
ratios Spitfire/peer. A peer that cannot run (no peers venv, no redis-server or postgres, an
adapter's `Skip`, a crash, a timeout) is skipped with the reason printed and recorded.

Then the ways of use (`WAYS`): each way of using Spitfire (a sync or async handler's
drain at the worker's default concurrency, the AsyncClient on asyncio and on uvloop, the sync
Client from 8 threads and from one, batches) against the peers' same way: their drain at 1 and 2
processes (the better one counts), ``enqueue-single``, ``enqueue-threads``, ``enqueue-batch``,
``enqueue-one``. The ways table gives, per way, the best Python peer and the best of BullMQ and
Sidekiq, both ratios and the targets (`Way`); only the durable comparison is held to them.

Writes perf/results/peers-<ts>.json and perf/latency-vs-load.png; `python -m perf report FILE`
prints the Markdown table of perf/README.md from that JSON again, `python -m perf plot FILE` the plot.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perf.report import Figure, machine, write_json
from perf.server_proc import split_cpus

ROOT = Path(__file__).resolve().parent.parent
#: Where the latency-versus-load plot goes (committed with perf/README.md).
PLOT_PATH = Path(__file__).resolve().parent / "latency-vs-load.png"
#: The workloads compared, in table order.
WORKLOADS = ("enqueue-single", "enqueue-batch", "drain", "open-loop")
#: The ways of using Spitfire measured beyond `WORKLOADS` (perf/workloads.py PEER_WORKLOADS).
SPITFIRE_WAYS = ("enqueue-asyncio", "enqueue-threads", "enqueue-one", "drain-sync", "drain-async")
#: The peers' runs beyond `WORKLOADS`, for the ways table: row name -> the peer workload it runs.
PEER_WAYS = {"enqueue-threads": "enqueue-threads", "enqueue-one": "enqueue-one", "drain-processes-2": "drain"}
#: A peer row compared, in the main table, with a Spitfire row of another name.
SPITFIRE_ROW_OF = {"drain-processes-2": "drain"}
#: The adapters held to the Node/Ruby target (the rest are the Python peers).
NODE_RUBY_PEERS = ("bullmq", "sidekiq")
#: Offered rates of the sweep (jobs/s).
SWEEP_RATES = (1_000, 2_000, 5_000, 10_000, 20_000)
#: A sweep point is "not keeping up" when it achieves less than this share of the offered rate.
KEEP_UP = 0.9
#: The Spitfire row's name.
SPITFIRE = "spitfire"


@dataclass(frozen=True)
class Comparison:
    """One side of the comparison: Spitfire's durability mode and each backend's service config."""

    name: str
    spitfire_durability: str
    redis_appendfsync: str
    pg_synchronous_commit: str
    #: SQLite peers (no server): "on" keeps SQLite's synchronous=FULL, "off" sets synchronous=OFF.
    sqlite_fsync: str

    def service_label(self, backend: str) -> str:
        """How the backend's service runs in this comparison (for the table)."""
        if backend == "redis":
            return (
                "redis AOF fsync always" if self.redis_appendfsync == "always" else "redis defaults (no AOF)"
            )
        if backend == "postgres":
            return f"postgres synchronous_commit={self.pg_synchronous_commit}"
        if backend == "sqlite":
            return "sqlite synchronous=FULL" if self.sqlite_fsync == "on" else "sqlite synchronous=OFF"
        if backend == SPITFIRE:
            return f"spitfire {self.spitfire_durability}"
        return backend


COMPARISONS = (
    Comparison("durable", "group", "always", "on", "on"),
    Comparison("non-durable", "async", "everysec", "off", "off"),
)


def workload_configs(quick: bool) -> dict[str, dict[str, Any]]:
    """The config of each row's workload (bounded counts): those of `WORKLOADS` the same for every
    system, then Spitfire's ways (`SPITFIRE_WAYS`) and the peers' (`PEER_WAYS`)."""
    jobs = 2_000 if quick else 20_000
    # A slow peer's drain stops at the deadline and reports the rate over the jobs that ran.
    drain = {"jobs": jobs, "workers": 1, "deadline": 60 if quick else 120}
    return {
        "enqueue-single": {"jobs": jobs, "inflight": 64},
        "enqueue-batch": {"jobs": jobs * 5, "batch": 100},
        "drain": drain,
        "open-loop": {"rate": 1_000, "seconds": 3 if quick else 10},
        "enqueue-threads": {"jobs": jobs, "threads": 8},
        # One call at a time is one fsync per call: a quarter of the jobs keeps slow peers bounded.
        "enqueue-one": {"jobs": jobs // 4},
        "drain-processes-2": {**drain, "processes": 2},
        "enqueue-asyncio": {"jobs": jobs, "inflight": 64, "loop": "asyncio"},
        # No --concurrency: the worker's own default, as users run it.
        "drain-sync": {**drain, "handler": "sync", "concurrency": "default"},
        "drain-async": {**drain, "handler": "async", "concurrency": "default"},
    }


# -- services ---------------------------------------------------------------------------------------


def pin_tree(pid: int, cpus: set[int] | None) -> None:
    """Set the CPU affinity of ``pid``, its threads and its descendants (``None``: every CPU).

    Postgres forks a backend per connection from the postmaster, which passes its affinity on.
    """
    target = cpus or set(range(os.cpu_count() or 1))
    seen: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        tasks = Path(f"/proc/{p}/task")
        for task in tasks.iterdir() if tasks.exists() else []:
            with contextlib.suppress(OSError, ValueError):
                os.sched_setaffinity(int(task.name), target)
            with contextlib.suppress(OSError, ValueError):
                todo += [int(c) for c in (task / "children").read_text().split()]


@dataclass(frozen=True)
class SqliteFile:
    """The "service" of a SQLite-backed peer: only a URL (the adapter makes a fresh file)."""

    url: str
    proc: None = None


@contextlib.contextmanager
def service(backend: str, comparison: Comparison) -> Iterator[Any]:
    """The backend's service for ``comparison``; raises RuntimeError with the reason it cannot run."""
    if backend == "redis":
        from perf.peers.redis_service import RedisServer

        with RedisServer(appendfsync=comparison.redis_appendfsync) as redis:
            yield redis
    elif backend == "postgres":
        try:
            from perf.peers.pg_service import Postgres
        except ImportError as exc:
            raise RuntimeError(f"no Postgres service: {exc}") from exc
        with Postgres(synchronous_commit=comparison.pg_synchronous_commit) as pg:
            yield pg
    elif backend == "sqlite":  # no server: the URL says where the file goes (a fresh temp dir)
        yield SqliteFile("sqlite://" if comparison.sqlite_fsync == "on" else "sqlite://?fsync=off")
    else:
        raise RuntimeError(f"no service for backend {backend!r}")


# -- running ----------------------------------------------------------------------------------------


@dataclass
class Row:
    """One measurement: a system running a workload (or a sweep point) in one comparison."""

    comparison: str
    system: str
    backend: str
    service: str
    workload: str
    config: dict[str, Any]
    result: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "comparison": self.comparison,
            "system": self.system,
            "backend": self.backend,
            "service": self.service,
            "workload": self.workload,
            "config": self.config,
            "result": self.result,
        }


def run_spitfire(workload: str, cfg: dict[str, Any], durability: str) -> dict[str, Any]:
    """One Spitfire workload on its own server (the peers' name mapped to perf/workloads.py's)."""
    from perf.workloads import PEER_WORKLOADS, run_once

    try:
        return run_once(PEER_WORKLOADS[workload], dict(cfg), durability)
    except Exception as exc:
        return {"skipped": f"{type(exc).__name__}: {exc}"}


def run_peer_pinned(
    adapter: str, workload: str, svc: Any, cfg: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """`run_peer`; for the open loop, the service and the load generator on separate CPUs."""
    from perf.peers.runner import run_peer

    cpus = split_cpus() if workload == "open-loop" else None
    proc = getattr(svc, "proc", None)
    if cpus is None or proc is None:
        return run_peer(adapter, workload, svc.url, cfg, timeout)
    client_cpus, server_cpus = cpus
    pin_tree(proc.pid, server_cpus)
    try:
        result = run_peer(adapter, workload, svc.url, cfg, timeout, cpus=client_cpus)
    finally:
        pin_tree(proc.pid, None)
    result["pinned"] = {"client": sorted(client_cpus), "server": sorted(server_cpus)}
    return result


def keeps_up(result: dict[str, Any], cap_ms: float) -> bool:
    """Whether a sweep point kept up with its offered rate (then the sweep goes on to the next)."""
    if "skipped" in result:
        return False
    offered = float(result.get("offered_per_s") or 0.0)
    achieved = float(result.get("achieved_per_s") or 0.0)
    return achieved >= KEEP_UP * offered and float(result.get("p99_ms") or 0.0) <= cap_ms


def sweep(
    run: Any, rates: Sequence[int], seconds: float, cap_ms: float, label: str
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Open loop at each rate, lowest first, until ``run(cfg)`` stops keeping up: (cfg, result)s."""
    points = []
    for rate in rates:
        cfg = {"rate": rate, "seconds": seconds}
        print(f"  sweep {label} @ {rate:,}/s ...", file=sys.stderr, flush=True)
        result = run(cfg)
        points.append((cfg, result))
        if not keeps_up(result, cap_ms):
            break
    return points


@dataclass(frozen=True)
class Options:
    """What one `run_peers` call measures."""

    quick: bool = False
    only: tuple[str, ...] = ()
    comparisons: tuple[str, ...] = ("durable", "non-durable")
    rates: tuple[int, ...] = SWEEP_RATES
    sweep_seconds: float = 10.0
    cap_ms: float = 1_000.0
    timeout: float = 600.0
    sweep: bool = True
    #: Rounds of every workload on every system, interleaved; each row is the median round.
    rounds: int = 1


def peer_backends(only: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """({adapter: backend} to run, {adapter: reason} skipped), from the peers venv's description."""
    from perf.peers.runner import available_adapters, describe_adapters, peers_unavailable

    adapters = [a for a in available_adapters() if not only or a in only]
    missing = peers_unavailable()
    if missing is not None:
        return {}, dict.fromkeys(adapters, missing)
    described = describe_adapters()
    run: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for adapter in adapters:
        info = described.get(adapter, {"skipped": "not described by the peers venv"})
        if "skipped" in info:
            skipped[adapter] = str(info["skipped"])
        else:
            run[adapter] = str(info["backend"])
    return run, skipped


def run_comparison(comparison: Comparison, opts: Options, adapters: dict[str, str]) -> list[Row]:
    """Spitfire and every adapter in one comparison: ``opts.rounds`` rounds of the workloads, then
    the sweep.

    Every service of the comparison is up for the whole run, and each round runs each workload on
    Spitfire and then on every peer before the next workload: the runs compared with each other are
    minutes apart at most, whatever the machine does over the hour (on a shared VM its speed moved
    by 2x between two runs an hour apart). Each row is the round whose jobs/s is the median; its
    ``runs_jobs_per_s`` lists every round's.
    """
    configs = workload_configs(opts.quick)
    spitfire_label = comparison.service_label(SPITFIRE)
    rows: list[Row] = []
    with contextlib.ExitStack() as stack:
        services, labels = start_services(stack, comparison, adapters, rows)
        live = [a for a in adapters if adapters[a] in services]
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for round_no in range(1, opts.rounds + 1):
            for workload in dict.fromkeys((*WORKLOADS, *SPITFIRE_WAYS, *PEER_WAYS)):
                tag = f"{comparison.name} round {round_no}/{opts.rounds}"
                if workload in WORKLOADS or workload in SPITFIRE_WAYS:
                    print(f"  {tag}: spitfire {workload} ...", file=sys.stderr, flush=True)
                    result = run_spitfire(workload, configs[workload], comparison.spitfire_durability)
                    runs.setdefault((SPITFIRE, workload), []).append(result)
                if workload not in WORKLOADS and workload not in PEER_WAYS:
                    continue  # a way only Spitfire has (its asyncio client, its sync and async handlers)
                for adapter in live:
                    print(f"  {tag}: {adapter} {workload} ...", file=sys.stderr, flush=True)
                    result = run_peer_row(adapter, workload, services[adapters[adapter]], configs, opts)
                    runs.setdefault((adapter, workload), []).append(result)
        for (system, workload), results in runs.items():
            backend = SPITFIRE if system == SPITFIRE else adapters[system]
            label = spitfire_label if system == SPITFIRE else labels[backend]
            rows.append(
                Row(comparison.name, system, backend, label, workload, configs[workload], median_run(results))
            )
        if opts.sweep:
            rows += run_sweeps(comparison, opts, adapters, live, services, labels)
    return rows


def start_services(
    stack: contextlib.ExitStack, comparison: Comparison, adapters: dict[str, str], rows: list[Row]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Every backend's service for the whole comparison ({backend: service}, {backend: label}); a
    backend whose service cannot start adds a skipped row for each of its adapters to ``rows``."""
    services: dict[str, Any] = {}
    labels: dict[str, str] = {}
    for backend in sorted(set(adapters.values())):
        label = labels[backend] = comparison.service_label(backend)
        try:
            services[backend] = stack.enter_context(service(backend, comparison))
        except Exception as exc:  # the service would not start: every adapter of it is skipped
            reason = f"{label} unavailable: {type(exc).__name__}: {exc}"
            names = [a for a, b in adapters.items() if b == backend]
            print(f"  skipped {', '.join(names)}: {reason}", file=sys.stderr, flush=True)
            rows += [Row(comparison.name, a, backend, label, "all", {}, {"skipped": reason}) for a in names]
    return services, labels


def run_peer_row(
    adapter: str, workload: str, svc: Any, configs: dict[str, dict[str, Any]], opts: Options
) -> dict[str, Any]:
    """One peer row of one round (the 2-process drain only if the peers' contract allows it)."""
    if workload == "drain-processes-2" and not peers_take_processes():
        return {"skipped": NO_PROCESSES}
    result = run_peer_pinned(adapter, PEER_WAYS.get(workload, workload), svc, configs[workload], opts.timeout)
    if "skipped" in result:
        print(f"    skipped: {result['skipped']}", file=sys.stderr, flush=True)
    return result


def median_run(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The run whose throughput is the median of the rounds' (the lower one of the middle two), with
    ``runs_jobs_per_s`` (every round's figure, in order) when there was more than one; a row every
    round skipped is the first round's skip."""
    measured = [r for r in results if "skipped" not in r and throughput_of(r) is not None]
    if not measured:
        return results[0]
    ranked = sorted(measured, key=lambda r: throughput_of(r) or 0.0)
    chosen = dict(ranked[(len(ranked) - 1) // 2])
    if len(results) > 1:
        chosen["runs_jobs_per_s"] = [throughput_of(r) for r in measured]
        chosen["rounds_skipped"] = len(results) - len(measured)
    return chosen


def run_sweeps(
    comparison: Comparison,
    opts: Options,
    adapters: dict[str, str],
    live: Sequence[str],
    services: dict[str, Any],
    labels: dict[str, str],
) -> list[Row]:
    """The latency-versus-offered-load sweep of Spitfire and of every peer (once, after the rounds)."""
    rows: list[Row] = []
    points = sweep(
        lambda cfg: run_spitfire("open-loop", cfg, comparison.spitfire_durability),
        opts.rates, opts.sweep_seconds, opts.cap_ms, f"{comparison.name} spitfire",
    )  # fmt: skip
    label = comparison.service_label(SPITFIRE)
    rows += [Row(comparison.name, SPITFIRE, SPITFIRE, label, "sweep", c, r) for c, r in points]
    for adapter in live:
        backend = adapters[adapter]
        svc = services[backend]
        points = sweep(
            lambda cfg, a=adapter, svc=svc: run_peer_pinned(a, "open-loop", svc, cfg, opts.timeout),
            opts.rates, opts.sweep_seconds, opts.cap_ms, f"{comparison.name} {adapter}",
        )  # fmt: skip
        rows += [Row(comparison.name, adapter, backend, labels[backend], "sweep", c, r) for c, r in points]
    return rows


def peers_take_processes() -> bool:
    """Whether the peers' drain contract has the ``processes`` key (perf/peers/base.py ``DEFAULTS``):
    without it every adapter would run one process and the 2-process row would repeat the 1-process
    one under the wrong label, so that row is a skip instead."""
    from perf.peers.base import DEFAULTS

    return "processes" in DEFAULTS.get("drain", {})


#: Why the 2-process drain row is skipped while the contract has no ``processes``.
NO_PROCESSES = (
    "the peers' drain takes no `processes` yet (perf/peers/base.py DEFAULTS): it would run 1 process again"
)


def run_peers(opts: Options) -> dict[str, Any]:
    """The whole comparison; returns the JSON document's ``config`` part (rows, skips, options)."""
    adapters, skipped = peer_backends(opts.only)
    for adapter, reason in skipped.items():
        print(f"  skipped {adapter}: {reason}", file=sys.stderr, flush=True)
    rows: list[Row] = []
    for comparison in COMPARISONS:
        if comparison.name in opts.comparisons:
            rows += run_comparison(comparison, opts, adapters)
    return {
        "options": {**opts.__dict__, "rates": list(opts.rates), "only": list(opts.only)},
        "workloads": workload_configs(opts.quick),
        "comparisons": {c.name: c.__dict__ for c in COMPARISONS if c.name in opts.comparisons},
        "skipped_adapters": skipped,
        "rows": [r.to_json() for r in rows],
        "ways": ways_of([r.to_json() for r in rows]),
    }


# -- figures, ratios and the Markdown table ------------------------------------------------------------


def throughput_of(result: dict[str, Any]) -> float | None:
    """The jobs/s figure of a result: achieved for the open loop, jobs_per_s otherwise."""
    value = result.get("achieved_per_s", result.get("jobs_per_s"))
    return float(value) if value is not None else None


def ratio(spitfire: float | None, peer: float | None) -> float | None:
    """Spitfire/peer, or None when either is missing or the peer's is 0."""
    if spitfire is None or peer is None or peer == 0:
        return None
    return spitfire / peer


def compared(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The non-sweep rows, each with its ratios to Spitfire's row of the same comparison and workload:
    ``ratio_jobs_per_s`` (above 1: Spitfire faster) and ``ratio_p99`` (below 1: Spitfire lower)."""
    ours = {(r["comparison"], r["workload"]): r["result"] for r in rows if r["system"] == SPITFIRE}
    out = []
    for r in rows:
        if r["workload"] == "sweep":
            continue
        mine = ours.get((r["comparison"], SPITFIRE_ROW_OF.get(r["workload"], r["workload"])), {})
        res = r["result"]
        out.append(
            {
                **r,
                "ratio_jobs_per_s": None
                if r["system"] == SPITFIRE
                else ratio(throughput_of(mine), throughput_of(res)),
                "ratio_p99": None
                if r["system"] == SPITFIRE
                else ratio(mine.get("p99_ms"), res.get("p99_ms")),
            }
        )
    return out


def figures_of(rows: Sequence[dict[str, Any]]) -> list[Figure]:
    """Each measured figure and each ratio as a `Figure` (the JSON's ``figures``)."""
    figures = []
    for r in compared(rows):
        res, name = r["result"], f"{r['comparison']} {r['workload']} {r['system']}"
        if "skipped" in res:
            continue  # the row in config.rows says why
        tp = throughput_of(res)
        if tp is not None:
            figures.append(Figure(f"{name} jobs/s", tp, "jobs/s", notes=r["service"]))
        if res.get("p99_ms") is not None:
            figures.append(Figure(f"{name} p99", float(res["p99_ms"]), "ms", notes=r["service"]))
        if r["ratio_jobs_per_s"] is not None:
            figures.append(Figure(f"{name} spitfire/peer jobs/s", r["ratio_jobs_per_s"], "x"))
        if r["ratio_p99"] is not None:
            figures.append(Figure(f"{name} spitfire/peer p99", r["ratio_p99"], "x"))
    return figures + ways_figures(ways_of(rows))


# -- the ways of use -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Way:
    """One way of using Spitfire, the peers' rows it is compared with, and its targets.

    ``spitfire`` is the Spitfire row's workload; ``peers`` the peers' row workloads, of which each
    peer's best counts (a drain at 1 or 2 processes). The targets hold in the durable comparison
    only: Spitfire's jobs/s at least ``python_target`` times the best Python peer's and at least
    ``node_ruby_target`` times the best of BullMQ's and Sidekiq's.
    """

    name: str
    spitfire: str
    peers: tuple[str, ...]
    python_target: float = 5.0
    node_ruby_target: float = 2.0


#: The peers' drains: the best of 1 and 2 processes counts.
PEER_DRAINS = ("drain", "drain-processes-2")
#: The issue's table, in its order.
WAYS = (
    Way("drain, 1 worker process, sync handler, default concurrency", "drain-sync", PEER_DRAINS),
    Way("drain, 1 worker process, async handler, default concurrency", "drain-async", PEER_DRAINS),
    Way("AsyncClient, 64 in flight, asyncio", "enqueue-asyncio", ("enqueue-single",)),
    Way("AsyncClient, 64 in flight, uvloop", "enqueue-single", ("enqueue-single",)),
    Way("sync Client shared by 8 threads", "enqueue-threads", ("enqueue-threads",)),
    Way("batch enqueue", "enqueue-batch", ("enqueue-batch",)),
    # One call at a time waits for one fdatasync per call, whoever makes it: 1.5x, not 5x.
    Way("sync Client, 1 thread, one call at a time", "enqueue-one", ("enqueue-one",), 1.5, 1.5),
)  # fmt: skip
#: The only comparison held to the targets.
TARGET_COMPARISON = "durable"
#: Spitfire's figure of a way whose row is not in the results (an older file, a partial run).
NOT_RUN = "not run"


def best_peer(
    rows: Sequence[dict[str, Any]], comparison: str, way: Way, node_ruby: bool
) -> dict[str, Any] | None:
    """The fastest peer row of ``way`` in ``comparison`` among the Node/Ruby peers (``node_ruby``) or
    the Python ones: ``{system, peer, workload, jobs_per_s, processes}``, None when none measured."""
    best: dict[str, Any] | None = None
    for r in rows:
        if (
            r["comparison"] != comparison
            or r["system"] == SPITFIRE
            or r["workload"] not in way.peers
            or (r["system"] in NODE_RUBY_PEERS) != node_ruby
        ):
            continue
        res = r["result"]
        tp = None if "skipped" in res else throughput_of(res)
        if tp is None or (best is not None and tp <= best["jobs_per_s"]):
            continue
        ran = res.get("config") if isinstance(res.get("config"), dict) else {}
        best = {
            "system": r["system"],
            "peer": res.get("peer") or r["system"],
            "workload": r["workload"],
            "jobs_per_s": tp,
            # What the adapter ran (its config), else what was asked; drains only.
            "processes": int(ran.get("processes", r["config"].get("processes", 1)))
            if r["workload"] in PEER_DRAINS
            else None,
        }
    return best


def ways_of(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ways table: per comparison (in row order) and `Way`, Spitfire's figures, the best Python
    peer and the best of BullMQ/Sidekiq with their ratios Spitfire/peer, the targets (durable only)
    and ``ok``: True when both ratios are measured and meet their targets, False when one is
    measured and misses, None otherwise (not held to targets, or nothing to compare with)."""
    comparisons = list(dict.fromkeys(r["comparison"] for r in rows))
    ours = {(r["comparison"], r["workload"]): r["result"] for r in rows if r["system"] == SPITFIRE}
    out = []
    for comparison in comparisons:
        for way in WAYS:
            mine = ours.get((comparison, way.spitfire), {"skipped": NOT_RUN})
            tp = None if "skipped" in mine else throughput_of(mine)
            python, node_ruby = (
                best_peer(rows, comparison, way, False),
                best_peer(rows, comparison, way, True),
            )
            python_ratio = ratio(tp, python["jobs_per_s"] if python else None)
            node_ruby_ratio = ratio(tp, node_ruby["jobs_per_s"] if node_ruby else None)
            held = comparison == TARGET_COMPARISON
            checks = [(python_ratio, way.python_target), (node_ruby_ratio, way.node_ruby_target)]
            ok: bool | None = None
            if held and any(r is not None and r < t for r, t in checks):
                ok = False
            elif held and all(r is not None and r >= t for r, t in checks):
                ok = True
            out.append(
                {
                    "comparison": comparison,
                    "way": way.name,
                    "spitfire_workload": way.spitfire,
                    "peer_workloads": list(way.peers),
                    "spitfire": {"skipped": mine["skipped"]}
                    if tp is None
                    else {"jobs_per_s": tp, "p50_ms": mine.get("p50_ms"), "p99_ms": mine.get("p99_ms")},
                    "python_peer": python,
                    "python_ratio": python_ratio,
                    "node_ruby_peer": node_ruby,
                    "node_ruby_ratio": node_ruby_ratio,
                    "python_target": way.python_target if held else None,
                    "node_ruby_target": way.node_ruby_target if held else None,
                    "ok": ok,
                }
            )
    return out


def ways_figures(ways: Sequence[dict[str, Any]]) -> list[Figure]:
    """The ways table as `Figure`s: Spitfire's jobs/s and each ratio, with its target and ``ok``
    in the durable comparison (the peer's name and figure in ``notes``)."""
    figures = []
    for w in ways:
        name = f"{w['comparison']} way: {w['way']}"
        if "skipped" in w["spitfire"]:
            continue
        figures.append(Figure(f"{name}: spitfire jobs/s", w["spitfire"]["jobs_per_s"], "jobs/s"))
        for key, label in (("python", "best Python peer"), ("node_ruby", "best of BullMQ/Sidekiq")):
            peer, value, target = w[f"{key}_peer"], w[f"{key}_ratio"], w[f"{key}_target"]
            if value is None:
                continue
            figures.append(
                Figure(
                    f"{name}: spitfire/{label} jobs/s", value, "x",
                    target="" if target is None else f">= {target:g}x",
                    ok=None if target is None else value >= target,
                    notes=f"{peer_label(peer)}: {peer['jobs_per_s']:,.0f} jobs/s",
                )
            )  # fmt: skip
    return figures


def peer_label(peer: dict[str, Any]) -> str:
    """A best peer's name for the table: with its process count for a drain."""
    processes = peer.get("processes")
    if processes is None:
        return str(peer["peer"])
    return f"{peer['peer']} ({processes} process{'' if processes == 1 else 'es'})"


def ways_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The ways table as Markdown lines (empty when Spitfire ran none of the ways)."""
    ways = ways_of(rows)
    if all(w["spitfire"].get("skipped") == NOT_RUN for w in ways):
        return []
    lines = [
        "Ways of use: Spitfire's figure against the best peer's same way, jobs/s; targets "
        f"(Python peer / BullMQ-Sidekiq) hold in the {TARGET_COMPARISON} comparison only.",
        "",
        "| comparison | way of use | Spitfire jobs/s | p50 ms | p99 ms | best Python peer | jobs/s "
        "| Spitfire/it | best of BullMQ, Sidekiq | jobs/s | Spitfire/it | target | result |",
        "|---|---|---:|---:|---:|---|---:|---:|---|---:|---:|---|---|",
    ]
    for w in ways:
        mine = w["spitfire"]
        if mine.get("skipped") == NOT_RUN:
            ours = f"{NOT_RUN} | | "
        elif "skipped" in mine:
            ours = f"failed: {str(mine['skipped']).splitlines()[0][:80].replace('|', '/')} | | "
        else:
            ours = f"{_num(mine['jobs_per_s'])} | {_num(mine['p50_ms'])} | {_num(mine['p99_ms'])}"
        cells = [f"| {w['comparison']} | {w['way']} | {ours} |"]
        for key in ("python", "node_ruby"):
            peer = w[f"{key}_peer"]
            if peer is None:
                cells.append(" none measured | | |")
            else:
                cells.append(
                    f" {peer_label(peer)} | {_num(peer['jobs_per_s'])} | {_ratio(w[f'{key}_ratio'])} |"
                )
        if w["python_target"] is None:
            cells.append(" not held | |")
        else:
            result = {True: "pass", False: "FAIL", None: "incomplete"}[w["ok"]]
            cells.append(f" {w['python_target']:g}x / {w['node_ruby_target']:g}x | {result} |")
        lines.append("".join(cells))
    return lines


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return ""
    v = float(value)
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.{digits}g}"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}x"


def rounds_note(doc: dict[str, Any]) -> str:
    """ " Each row is the median of N interleaved rounds." when the run had several, else ""."""
    rounds = int(doc.get("config", {}).get("options", {}).get("rounds", 1))
    return f" Each row is the median of {rounds} interleaved rounds." if rounds > 1 else ""


def markdown_table(doc: dict[str, Any]) -> str:
    """The comparison of a peers-*.json as Markdown: a header line saying what machine and commit,
    then one table row per system and workload, with the ratios Spitfire/peer."""
    m = doc.get("machine", {})
    lines = [
        f"Measured {doc.get('when', '?')} at commit `{doc.get('commit', '?')}` on "
        f"{m.get('cpu_model') or '?'}, {m.get('cpus', '?')} CPUs, {m.get('mem_gib', '?')} GiB, "
        f"Python {m.get('python', '?')}, kernel {m.get('kernel', '?')}." + rounds_note(doc),
        "",
        "| comparison | workload | system | service | jobs/s | p50 ms | p99 ms "
        "| Spitfire/peer jobs/s | Spitfire/peer p99 |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in compared(doc["config"]["rows"]):
        res = r["result"]
        head = f"| {r['comparison']} | {r['workload']} | {res.get('peer') or r['system']} | {r['service']} |"
        if "skipped" in res:
            reason = str(res["skipped"]).splitlines()[0][:120].replace("|", "/")
            lines.append(f"{head} skipped: {reason} | | | | |")
            continue
        lines.append(
            f"{head} {_num(throughput_of(res))} | {_num(res.get('p50_ms'))} | {_num(res.get('p99_ms'))} |"
            f" {_ratio(r['ratio_jobs_per_s'])} | {_ratio(r['ratio_p99'])} |"
        )
    way_lines = ways_table(doc["config"]["rows"])
    if way_lines:
        lines += ["", *way_lines]
    sweep_lines = sweep_table(doc["config"]["rows"])
    if sweep_lines:
        lines += ["", *sweep_lines]
    skipped = doc["config"].get("skipped_adapters") or {}
    if skipped:
        lines += ["", *(f"- {a} skipped: {reason}" for a, reason in sorted(skipped.items()))]
    return "\n".join(lines)


def sweep_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The latency-versus-load sweep as Markdown lines: offered and achieved rate, percentiles."""
    lines = [
        "| comparison | system | offered/s | achieved/s | p50 ms | p99 ms | p999 ms | max ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["workload"] != "sweep":
            continue
        res = r["result"]
        head = f"| {r['comparison']} | {res.get('peer') or r['system']} | {_num(r['config'].get('rate'))} |"
        if "skipped" in res:
            lines.append(
                f"{head} skipped: {str(res['skipped']).splitlines()[0][:100].replace('|', '/')} | | | | |"
            )
            continue
        keys = ("achieved_per_s", "p50_ms", "p99_ms", "p999_ms", "max_ms")
        lines.append(f"{head} {' | '.join(_num(res.get(k)) for k in keys)} |")
    return lines if len(lines) > 2 else []


def figures_table(doc: dict[str, Any]) -> str:
    """Any other results JSON (engine, net, a workload, watch) as a Markdown table of its figures."""
    m = doc.get("machine", {})
    lines = [
        f"{doc.get('suite', '?')}: measured {doc.get('when', '?')} at commit `{doc.get('commit', '?')}` on "
        f"{m.get('cpu_model') or '?'}, {m.get('cpus', '?')} CPUs.",
        "",
        "| figure | value | unit | target | ok |",
        "|---|---:|---|---|---|",
    ]
    for f in doc.get("figures", []):
        ok = "" if f.get("ok") is None else ("yes" if f["ok"] else "NO")
        lines.append(f"| {f['name']} | {_num(f['value'])} | {f['unit']} | {f.get('target', '')} | {ok} |")
    return "\n".join(lines)


def report_main(argv: Sequence[str]) -> int:
    """``python -m perf report FILE.json``: print the Markdown table of a results file."""
    parser = argparse.ArgumentParser(prog="python -m perf report", description="a results JSON as Markdown")
    parser.add_argument("file", type=Path, help="perf/results/peers-<ts>.json (or any perf/results/*.json)")
    args = parser.parse_args(argv)
    doc = json.loads(args.file.read_text())
    print(markdown_table(doc) if doc.get("suite") == "peers" else figures_table(doc))
    return 0


def main(argv: Sequence[str]) -> int:
    """``python -m perf peers``: run the comparison, print it, write the JSON and the plot."""
    parser = argparse.ArgumentParser(prog="python -m perf peers", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 jobs, short open loops, rates 1k and 5k")
    parser.add_argument("--only", nargs="*", default=[], metavar="PEER", help="adapters to run (default all)")
    parser.add_argument("--comparison", nargs="*", choices=[c.name for c in COMPARISONS], default=None)
    parser.add_argument("--rates", type=int, nargs="*", default=None, help="offered rates of the sweep")
    parser.add_argument("--sweep-seconds", type=float, default=None, help="seconds per sweep point")
    parser.add_argument("--cap-ms", type=float, default=1_000.0, help="stop a sweep past this p99")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one peer workload may take")
    parser.add_argument("--no-sweep", action="store_true", help="skip the latency-versus-load sweep")
    parser.add_argument("--plot", type=Path, default=PLOT_PATH, help="where the PNG goes")
    parser.add_argument(
        "--rounds", type=int, default=1,
        help="rounds of every workload on every system, interleaved; rows are the median round (default 1)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    opts = Options(
        quick=args.quick,
        only=tuple(args.only),
        comparisons=tuple(args.comparison or [c.name for c in COMPARISONS]),
        rates=tuple(args.rates or ((1_000, 5_000) if args.quick else SWEEP_RATES)),
        sweep_seconds=args.sweep_seconds or (3.0 if args.quick else 10.0),
        cap_ms=args.cap_ms,
        timeout=args.timeout,
        sweep=not args.no_sweep,
        rounds=max(1, args.rounds),
    )
    started = time.monotonic()
    config = run_peers(opts)
    figures = figures_of(config["rows"])
    path = write_json("peers", config, figures)
    doc = json.loads(path.read_text())
    print(markdown_table(doc))
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path  # $SPITFIRE_PERF_RESULTS
    print(f"\nwrote {shown} ({time.monotonic() - started:.0f} s; {machine()['cpus']} CPUs)")
    if opts.sweep:
        from perf.plot import plot_sweep

        try:
            print(f"wrote {plot_sweep(doc, args.plot)}")
        except ImportError as exc:
            print(f"no plot: {exc} (matplotlib comes with make install)", file=sys.stderr)
    return 0
