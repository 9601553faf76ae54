"""The benchmark harness's pieces (perf/): argument parsing, histogram percentiles, figures, the
ratios and Markdown table of the peers comparison, the sweep's stopping rule, the plot, and `perf
watch`'s exit code. Fast, no server; one slow smoke run of ``python -m perf watch``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from perf import compare, plot, watch
from perf.__main__ import DELEGATED
from perf.net_workloads import run_tuned
from perf.workloads import (
    DEFAULT_CONCURRENCY,
    OPTIONS,
    PEER_WORKLOADS,
    SPECS,
    WORKLOADS,
    add_arguments,
    config_of,
    figures_of,
    new_histogram,
    percentiles_ms,
    record,
    run_once,
    worker_command,
)

ROOT = Path(__file__).resolve().parent.parent.parent


def parse(name: str, *argv: str) -> tuple[argparse.Namespace, dict[str, Any]]:
    spec = SPECS[name]
    parser = argparse.ArgumentParser()
    add_arguments(parser, spec)
    args = parser.parse_args(list(argv))
    return args, config_of(spec, args)


# -- subcommands and their configs -------------------------------------------------------------------


def test_every_workload_has_a_spec_and_no_name_clashes_with_other_subcommands() -> None:
    assert set(SPECS) == set(WORKLOADS)
    wanted = "single sync-threads sync-one batch drain open-loop priorities delayed large-payload many-queues"
    assert set(wanted.split()) | {"fanout"} <= set(SPECS)
    assert not set(SPECS) & set(DELEGATED)
    assert set(PEER_WORKLOADS.values()) <= set(SPECS)
    assert set(compare.WORKLOADS) | set(compare.SPITFIRE_WAYS) <= set(PEER_WORKLOADS)


def test_defaults_seed_and_transport() -> None:
    args, cfg = parse("single")
    assert cfg == {"jobs": 20_000, "inflight": 64, "seed": 1, "loop": "uvloop", "transport": "tcp"}
    assert (args.repeat, args.durability, args.url) == (1, "group", None)


def test_quick_then_flags_override_the_defaults() -> None:
    _, cfg = parse("fanout", "--quick", "--workers", "3", "--jobs", "777", "--seconds", "9", "--seed", "5")
    assert cfg["jobs"] == 777 and cfg["workers"] == 3 and cfg["producers"] == 4  # quick's producers
    assert cfg["deadline"] == 9.0 and "seconds" not in cfg and cfg["seed"] == 5


def test_seconds_is_the_duration_of_the_open_loop_and_rate_is_its_flag() -> None:
    _, cfg = parse("open-loop", "--rate", "2500", "--seconds", "4")
    assert cfg["rate"] == 2500.0 and cfg["seconds"] == 4.0 and "deadline" not in cfg


def test_url_sets_the_transport() -> None:
    _, cfg = parse("single", "--url", "http://127.0.0.1:7880", "--connections", "8")
    assert cfg["transport"] == "http" and cfg["connections"] == 8


def test_only_a_workloads_own_keys_get_flags() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser, SPECS["drain"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--rate", "5"])
    assert {key for _, key, _, _ in OPTIONS} >= {
        "inflight",
        "batch",
        "workers",
        "rate",
        "producers",
        "queues",
    }


def test_a_transport_a_workload_does_not_run_over_is_refused() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser, SPECS["batch"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--transport", "http"])


def test_python_m_perf_help_lists_every_subcommand() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "perf", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0
    for name in ["engine", "net", *SPECS, "watch", "peers", "report", "plot"]:
        assert name in out.stdout


# -- histograms and figures ----------------------------------------------------------------------------


def test_percentiles_come_from_the_hdr_histogram() -> None:
    hist = new_histogram()
    for ms in range(1, 1001):  # 1 .. 1000 ms, one each
        record(hist, ms / 1e3)
    p = percentiles_ms(hist, "x_")
    assert set(p) == {"x_p50_ms", "x_p90_ms", "x_p99_ms", "x_p999_ms", "x_max_ms"}
    for key, expected in (("x_p50_ms", 500), ("x_p90_ms", 900), ("x_p99_ms", 990), ("x_p999_ms", 999)):
        assert p[key] == pytest.approx(expected, rel=2e-3)  # 3 significant digits
    assert p["x_max_ms"] == pytest.approx(1000, rel=2e-3)


def test_an_empty_histogram_has_no_percentiles_and_values_are_clamped() -> None:
    hist = new_histogram()
    assert percentiles_ms(hist) == {}
    record(hist, 0.0)
    record(hist, 3600.0)  # past the 60 s range: clamped, not an error
    assert hist.get_total_count() == 2


def test_figures_are_medians_over_repeats_and_skip_missing_keys() -> None:
    results = [{"jobs_per_s": v, "p99_ms": 2.0} for v in (10.0, 30.0, 20.0)]
    figures = figures_of(SPECS["single"], {"transport": "quic"}, results)
    by_name = {f.name: f for f in figures}
    assert by_name["single quic: enqueue"].value == 20.0
    assert by_name["single quic: enqueue"].runs == [10.0, 30.0, 20.0]
    assert "single quic: enqueue p50" not in by_name  # no run reported it
    assert by_name["single quic: enqueue p99"].unit == "ms"


# -- the peers comparison --------------------------------------------------------------------------------


def row(system: str, workload: str, result: dict[str, Any], comparison: str = "durable") -> dict[str, Any]:
    backend = "spitfire" if system == "spitfire" else "redis"
    return {
        "comparison": comparison,
        "system": system,
        "backend": backend,
        "service": compare.COMPARISONS[0].service_label(backend),
        "workload": workload,
        "config": {"rate": result.get("offered_per_s")} if workload == "sweep" else {"jobs": 10},
        "result": result,
    }


ROWS = [
    row("spitfire", "enqueue-single", {"jobs_per_s": 20_000.0, "p50_ms": 1.0, "p99_ms": 4.0}),
    row("rq", "enqueue-single", {"jobs_per_s": 2_000.0, "p50_ms": 5.0, "p99_ms": 16.0}),
    row("arq", "enqueue-single", {"skipped": "redis-server is not installed"}),
    row("spitfire", "open-loop", {"offered_per_s": 1000, "achieved_per_s": 1000.0, "p99_ms": 3.0}),
    row("rq", "open-loop", {"offered_per_s": 1000, "achieved_per_s": 500.0, "p99_ms": 300.0}),
    row("spitfire", "enqueue-single", {"jobs_per_s": 40_000.0, "p99_ms": 2.0}, "non-durable"),
    row("rq", "enqueue-single", {"jobs_per_s": 4_000.0, "p99_ms": 8.0}, "non-durable"),
    row("spitfire", "sweep", {"offered_per_s": 1000, "achieved_per_s": 1000.0, "p50_ms": 1.0, "p99_ms": 3.0}),
    row(
        "spitfire", "sweep", {"offered_per_s": 2000, "achieved_per_s": 1500.0, "p50_ms": 9.0, "p99_ms": 90.0}
    ),
    row("rq", "sweep", {"offered_per_s": 1000, "achieved_per_s": 990.0, "p50_ms": 2.0, "p99_ms": 30.0}),
]


def test_ratios_are_spitfire_over_the_peer_of_the_same_comparison_and_workload() -> None:
    by = {(r["comparison"], r["system"], r["workload"]): r for r in compare.compared(ROWS)}
    single = by[("durable", "rq", "enqueue-single")]
    assert single["ratio_jobs_per_s"] == pytest.approx(10.0)
    assert single["ratio_p99"] == pytest.approx(0.25)
    assert by[("durable", "rq", "open-loop")]["ratio_jobs_per_s"] == pytest.approx(2.0)  # achieved
    assert by[("non-durable", "rq", "enqueue-single")]["ratio_jobs_per_s"] == pytest.approx(10.0)
    assert by[("durable", "spitfire", "enqueue-single")]["ratio_jobs_per_s"] is None
    assert by[("durable", "arq", "enqueue-single")]["ratio_jobs_per_s"] is None
    assert not any(r["workload"] == "sweep" for r in by.values())


def test_ratio_of_missing_or_zero_is_none() -> None:
    assert compare.ratio(None, 1.0) is None and compare.ratio(1.0, 0.0) is None
    assert compare.ratio(3.0, 2.0) == 1.5


def test_figures_of_a_comparison_leave_skips_out_and_carry_ratios() -> None:
    names = {f.name: f.value for f in compare.figures_of(ROWS)}
    assert names["durable enqueue-single rq spitfire/peer jobs/s"] == pytest.approx(10.0)
    assert not any("arq" in n for n in names)


def doc_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "suite": "peers",
        "when": "2026-11-24T06:00:00+0000",
        "commit": "abc1234",
        "machine": {"cpu_model": "Test CPU", "cpus": 2, "mem_gib": 4.0, "python": "3.11.7", "kernel": "6"},
        "config": {"rows": rows, "skipped_adapters": {"celery": "no .venv/peers"}},
        "figures": [],
    }


def test_markdown_table_says_machine_and_commit_and_shows_ratios_and_skips() -> None:
    text = compare.markdown_table(doc_of(ROWS))
    lines = text.splitlines()
    assert "commit `abc1234`" in lines[0] and "Test CPU" in lines[0] and "2 CPUs" in lines[0]
    assert (
        "| durable | enqueue-single | rq | redis AOF fsync always | 2,000 | 5 | 16 | 10x | 0.25x |" in lines
    )
    assert any(
        line.startswith("| durable | enqueue-single | arq |") and "skipped: redis-server" in line
        for line in lines
    )
    assert "| durable | spitfire | 2,000 | 1,500 | 9 | 90 |  |  |" in lines  # the sweep table
    assert "- celery skipped: no .venv/peers" in lines
    table_rows = [line for line in lines if line.startswith("| durable | enqueue-single")]
    assert all(line.count("|") == 10 for line in table_rows)  # skipped rows keep the columns


def test_report_prints_a_peers_file_and_any_other_results_file(tmp_path: Path, capsys: Any) -> None:
    peers = tmp_path / "peers.json"
    peers.write_text(json.dumps(doc_of(ROWS)))
    assert compare.report_main([str(peers)]) == 0
    assert "Spitfire/peer jobs/s" in capsys.readouterr().out
    other = tmp_path / "net.json"
    doc = {**doc_of([]), "suite": "net"}
    doc["figures"] = [
        {"name": "tcp single", "value": 25_000.0, "unit": "jobs/s", "target": ">= 25,000", "ok": True}
    ]
    other.write_text(json.dumps(doc))
    assert compare.report_main([str(other)]) == 0
    assert "| tcp single | 25,000 | jobs/s | >= 25,000 | yes |" in capsys.readouterr().out


def test_a_sweep_stops_at_the_first_rate_not_kept_up_with() -> None:
    asked: list[float] = []

    def fake(cfg: dict[str, Any]) -> dict[str, Any]:
        asked.append(cfg["rate"])
        achieved = min(cfg["rate"], 3_000)
        return {"offered_per_s": cfg["rate"], "achieved_per_s": achieved, "p99_ms": 1.0}

    points = compare.sweep(fake, [1_000, 2_000, 5_000, 10_000], 1.0, 1_000.0, "test")
    assert asked == [1_000, 2_000, 5_000]
    assert [r["achieved_per_s"] for _, r in points] == [1_000, 2_000, 3_000]


def test_keeps_up_needs_the_rate_and_a_p99_under_the_cap() -> None:
    assert compare.keeps_up({"offered_per_s": 100, "achieved_per_s": 95, "p99_ms": 5}, 100.0)
    assert not compare.keeps_up({"offered_per_s": 100, "achieved_per_s": 80, "p99_ms": 5}, 100.0)
    assert not compare.keeps_up({"offered_per_s": 100, "achieved_per_s": 100, "p99_ms": 500}, 100.0)
    assert not compare.keeps_up({"skipped": "no"}, 100.0)


def test_durable_is_compared_with_group_and_non_durable_with_async() -> None:
    by = {c.name: c for c in compare.COMPARISONS}
    assert by["durable"].spitfire_durability == "group" and by["durable"].redis_appendfsync == "always"
    assert by["durable"].pg_synchronous_commit == "on"
    assert (
        by["non-durable"].spitfire_durability == "async" and by["non-durable"].pg_synchronous_commit == "off"
    )
    assert by["durable"].sqlite_fsync == "on" and by["non-durable"].sqlite_fsync == "off"


def test_the_sqlite_service_is_only_a_url() -> None:
    durable, fast = compare.COMPARISONS
    with compare.service("sqlite", durable) as svc:
        assert svc.url == "sqlite://" and svc.proc is None
    with compare.service("sqlite", fast) as svc:
        assert svc.url == "sqlite://?fsync=off"
    assert fast.service_label("sqlite") == "sqlite synchronous=OFF"


def test_a_peer_whose_service_cannot_start_is_skipped_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(backend: str, comparison: compare.Comparison) -> Any:
        raise RuntimeError("postgres binaries not found")

    monkeypatch.setattr(compare, "service", broken)
    monkeypatch.setattr(compare, "run_spitfire", lambda workload, cfg, durability: {"jobs_per_s": 1.0})
    opts = compare.Options(quick=True, sweep=False)
    rows = compare.run_comparison(compare.COMPARISONS[0], opts, {"pgqueuer": "postgres"})
    theirs = [r for r in rows if r.system == "pgqueuer"]
    assert len(theirs) == 1 and theirs[0].workload == "all"
    assert "postgres binaries not found" in theirs[0].result["skipped"]
    assert {r.workload for r in rows if r.system == "spitfire"} >= set(compare.WORKLOADS)


# -- the plot ------------------------------------------------------------------------------------------


def test_sweep_series_per_comparison_and_system() -> None:
    series = plot.sweep_series(doc_of(ROWS))
    assert series["durable"]["spitfire"] == [(1000.0, 3.0, True), (2000.0, 90.0, False)]
    assert series["durable"]["rq (redis)"] == [(1000.0, 30.0, True)]


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = plot.plot_sweep(doc_of(ROWS), tmp_path / "plot.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- perf watch ------------------------------------------------------------------------------------------


def fake_result(p99: float) -> dict[str, Any]:
    return {
        "achieved_per_s": 500.0,
        "p50_ms": 1.0,
        "p90_ms": 2.0,
        "p99_ms": p99,
        "p999_ms": 9.0,
        "max_ms": 9.5,
    }


@pytest.mark.parametrize(("p99", "code"), [(4.0, 0), (12.0, 1)])
def test_watch_exits_1_when_p99_is_over_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, p99: float, code: int
) -> None:
    monkeypatch.setattr(watch, "measure", lambda args, svg: fake_result(p99))
    assert watch.main(["--rate", "500", "--seconds", "1", "--p99-ms", "10", "--out", str(tmp_path)]) == code
    (doc_path,) = tmp_path.glob("watch-*.json")
    doc = json.loads(doc_path.read_text())
    assert doc["suite"] == "watch" and doc["config"]["rate"] == 500 and "machine" in doc and "commit" in doc
    p99_figure = next(f for f in doc["figures"] if f["name"] == "enqueue p99")
    assert p99_figure["ok"] is (code == 0)


def test_watch_defaults() -> None:
    args = watch.parse([])
    assert (args.rate, args.seconds, args.p99_ms, args.durability) == (5_000, 20.0, 5.0, "group")


@pytest.mark.slow
def test_watch_smoke_run(tmp_path: Path) -> None:
    """A real server, py-spy attached, 500 jobs/s for 2 s; the bound is loose (this checks the
    harness, not the machine)."""
    cmd = [sys.executable, "-m", "perf", "watch", "--rate", "500", "--seconds", "2", "--p99-ms", "1000"]
    out = subprocess.run(
        [*cmd, "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=110
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (doc_path,) = tmp_path.glob("watch-*.json")
    doc = json.loads(doc_path.read_text())
    assert doc["config"]["raw"]["jobs"] == 1000
    assert {f["name"] for f in doc["figures"]} >= {
        "enqueue p50",
        "enqueue p99",
        "enqueue p999",
        "enqueue max",
    }
    if doc["config"]["flamegraph"] is not None:
        assert (tmp_path / doc["config"]["flamegraph"]).read_text().lstrip().startswith("<?xml")


def test_the_drain_takes_a_handler_kind() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser, SPECS["drain"])
    args = parser.parse_args(["--handler", "sync"])
    assert args.handler == "sync" and SPECS["drain"].defaults["handler"] == "async"


def test_the_drain_passes_prefetch_to_the_workers_only_when_given() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser, SPECS["drain"])
    assert config_of(SPECS["drain"], parser.parse_args(["--prefetch", "0"]))["prefetch"] == 0
    assert "prefetch" not in config_of(SPECS["drain"], parser.parse_args([]))


def test_a_sync_drain_runs_the_plain_def_job(tmp_path: Path) -> None:
    """A real server and one worker process running `noop_sync` on its threads: 300 jobs, all ran."""
    cmd = [sys.executable, "-m", "perf", "drain", "--handler", "sync", "--jobs", "300", "--concurrency", "4"]
    env = {**os.environ, "SPITFIRE_PERF_RESULTS": str(tmp_path)}
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=110, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(list(tmp_path.glob("drain-tcp-*.json"))) == 1  # recorded there, not in perf/results
    (result,) = [line for line in out.stdout.splitlines() if "drain, end to end" in line]
    assert "jobs/s" in result


# -- the ways of use --------------------------------------------------------------------------------------


def test_the_loop_flag_picks_the_clients_event_loop() -> None:
    _, cfg = parse("single", "--loop", "asyncio")
    assert cfg["loop"] == "asyncio"

    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run_tuned(loop_module, "asyncio").startswith("asyncio")
    assert run_tuned(loop_module).startswith("uvloop")
    with pytest.raises(ValueError, match="unknown event loop 'trio'"):
        run_tuned(loop_module, "trio")


def test_concurrency_default_passes_no_flag_to_the_worker() -> None:
    _, cfg = parse("drain", "--concurrency", "default", "--handler", "sync")
    assert cfg["concurrency"] == DEFAULT_CONCURRENCY
    assert "--concurrency" not in worker_command("tcp://127.0.0.1:1", ["bench-sync"], DEFAULT_CONCURRENCY)
    cmd = worker_command("tcp://127.0.0.1:1", ["a", "b"], 32)
    assert cmd[cmd.index("--concurrency") + 1] == "32" and cmd[cmd.index("--queues") + 1] == "a,b"
    parser = argparse.ArgumentParser()
    add_arguments(parser, SPECS["drain"])
    with pytest.raises(SystemExit):
        parser.parse_args(["--concurrency", "0"])


def test_the_sync_client_workloads_take_threads() -> None:
    _, cfg = parse("sync-threads", "--threads", "4", "--quick")
    assert cfg["threads"] == 4 and cfg["jobs"] == 5_000
    _, one = parse("sync-one")
    assert "threads" not in one and one["jobs"] == 5_000


def test_the_ways_configs_ask_for_default_concurrency_two_peer_processes_and_asyncio() -> None:
    cfgs = compare.workload_configs(quick=True)
    assert set(compare.SPITFIRE_WAYS) | set(compare.PEER_WAYS) | set(compare.WORKLOADS) == set(cfgs)
    assert cfgs["drain-sync"]["handler"] == "sync" and cfgs["drain-sync"]["concurrency"] == "default"
    assert cfgs["drain-async"]["handler"] == "async" and cfgs["drain-async"]["concurrency"] == "default"
    assert cfgs["drain-processes-2"]["processes"] == 2 and compare.PEER_WAYS["drain-processes-2"] == "drain"
    assert cfgs["enqueue-asyncio"] == {**cfgs["enqueue-single"], "loop": "asyncio"}
    assert cfgs["enqueue-threads"]["threads"] == 8 and set(cfgs["enqueue-one"]) == {"jobs"}


@pytest.mark.parametrize("contract_has_processes", [True, False])
def test_run_comparison_runs_every_way_and_the_peers_drain_at_two_processes(
    monkeypatch: pytest.MonkeyPatch, contract_has_processes: bool
) -> None:
    ours: list[tuple[str, dict[str, Any]]] = []
    theirs: list[tuple[str, dict[str, Any]]] = []

    def spitfire(workload: str, cfg: dict[str, Any], durability: str) -> dict[str, Any]:
        ours.append((workload, cfg))
        return {"jobs_per_s": 1.0}

    def peer(adapter: str, workload: str, svc: Any, cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
        theirs.append((workload, cfg))
        return {"skipped": f"{adapter} has no {workload} workload"} if workload == "enqueue-one" else {}

    monkeypatch.setattr(compare, "run_spitfire", spitfire)
    monkeypatch.setattr(compare, "run_peer_pinned", peer)
    monkeypatch.setattr(compare, "peers_take_processes", lambda: contract_has_processes)
    opts = compare.Options(quick=True, sweep=False)
    rows = compare.run_comparison(compare.COMPARISONS[0], opts, {"pgqueuer": "sqlite"})
    assert [w for w, _ in ours] == [*compare.WORKLOADS, *compare.SPITFIRE_WAYS]
    ran = [*compare.WORKLOADS, "enqueue-threads", "enqueue-one"]
    peer_rows = {r.workload: r for r in rows if r.system == "pgqueuer"}
    assert "skipped" in peer_rows["enqueue-one"].result  # carried into the table, not raised
    assert peer_rows["drain-processes-2"].config["processes"] == 2
    if contract_has_processes:
        assert [w for w, _ in theirs] == [*ran, "drain"] and theirs[-1][1]["processes"] == 2
    else:  # a second 1-process drain would be labelled 2 processes: a skip saying why
        assert [w for w, _ in theirs] == ran
        assert peer_rows["drain-processes-2"].result == {"skipped": compare.NO_PROCESSES}


def test_rounds_interleave_systems_and_each_row_is_the_median_round(monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[tuple[str, str]] = []
    speeds = iter([5.0, 1.0, 3.0] * 100)

    def spitfire(workload: str, cfg: dict[str, Any], durability: str) -> dict[str, Any]:
        order.append(("spitfire", workload))
        return {"jobs_per_s": 100.0 + len(order), "p99_ms": float(len(order))}

    def peer(adapter: str, workload: str, svc: Any, cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
        order.append((adapter, workload))
        return {"jobs_per_s": next(speeds)}

    monkeypatch.setattr(compare, "run_spitfire", spitfire)
    monkeypatch.setattr(compare, "run_peer_pinned", peer)
    opts = compare.Options(quick=True, sweep=False, rounds=3)
    rows = compare.run_comparison(compare.COMPARISONS[0], opts, {"pgqueuer": "sqlite"})
    # Spitfire, then the peer, workload by workload, round after round.
    assert order[:2] == [("spitfire", "enqueue-single"), ("pgqueuer", "enqueue-single")]
    per_round = len(order) // 3
    assert order[:per_round] == order[per_round : 2 * per_round] == order[2 * per_round :]
    by = {(r.system, r.workload): r.result for r in rows}
    ours = by[("spitfire", "enqueue-single")]
    assert ours["runs_jobs_per_s"] == [101.0, 101.0 + per_round, 101.0 + 2 * per_round]
    assert ours["jobs_per_s"] == 101.0 + per_round and ours["p99_ms"] == 1.0 + per_round  # the same round's
    assert by[("pgqueuer", "enqueue-single")]["jobs_per_s"] == 3.0  # median of 5, 1, 3


def test_the_median_round_ignores_skipped_rounds_and_keeps_a_skip_when_all_skipped() -> None:
    skip = {"skipped": "timed out"}
    assert compare.median_run([skip, {"jobs_per_s": 2.0}, {"jobs_per_s": 4.0}])["jobs_per_s"] == 2.0
    assert compare.median_run([skip, skip]) == skip
    one = compare.median_run([{"jobs_per_s": 7.0}])
    assert one == {"jobs_per_s": 7.0}  # a single round: the row as measured
    assert "median of 3" in compare.rounds_note({"config": {"options": {"rounds": 3}}})
    assert compare.rounds_note({"config": {"options": {}}}) == ""


def test_the_contract_check_reads_the_peers_drain_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from perf.peers import base

    monkeypatch.setitem(base.DEFAULTS, "drain", {"jobs": 1, "processes": 1})
    assert compare.peers_take_processes()
    monkeypatch.setitem(base.DEFAULTS, "drain", {"jobs": 1})
    assert not compare.peers_take_processes()


def drain_result(jobs_per_s: float, processes: int) -> dict[str, Any]:
    return {"jobs_per_s": jobs_per_s, "config": {"jobs": 10, "processes": processes}}


def ways_rows() -> list[dict[str, Any]]:
    """Every way measured: pgqueuer's drain is faster at 2 processes; BullMQ has no enqueue-one."""
    fast = {"p50_ms": 1.0, "p99_ms": 2.0}
    rows = [
        row("spitfire", "drain-sync", {"jobs_per_s": 10_000.0}),
        row("spitfire", "drain-async", {"jobs_per_s": 30_000.0}),
        row("spitfire", "enqueue-asyncio", {"jobs_per_s": 15_000.0, **fast}),
        row("spitfire", "enqueue-single", {"jobs_per_s": 30_000.0, **fast}),
        row("spitfire", "enqueue-threads", {"jobs_per_s": 8_000.0, **fast}),
        row("spitfire", "enqueue-batch", {"jobs_per_s": 200_000.0, "p50_ms": 1.5, "p99_ms": 3.0}),
        row("spitfire", "enqueue-one", {"skipped": "RuntimeError: the server would not start"}),
        row("pgqueuer", "drain", drain_result(1_000.0, 1)),
        row("pgqueuer", "drain-processes-2", drain_result(2_500.0, 2)),
        row("arq", "drain", drain_result(1_500.0, 1)),
        row("arq", "enqueue-single", {"jobs_per_s": 5_000.0}),
        row("arq", "enqueue-threads", {"skipped": "arq has no enqueue-threads workload"}),
        row("rq", "enqueue-batch", {"jobs_per_s": 10_000.0}),
        row("rq", "enqueue-one", {"jobs_per_s": 400.0}),
        row("bullmq", "drain", drain_result(9_000.0, 1)),
        row("bullmq", "enqueue-single", {"jobs_per_s": 12_000.0}),
        row("bullmq", "enqueue-threads", {"jobs_per_s": 3_000.0}),
        row("sidekiq", "drain-processes-2", drain_result(4_000.0, 2)),
        row("sidekiq", "enqueue-batch", {"jobs_per_s": 50_000.0}),
        row("spitfire", "drain-sync", {"jobs_per_s": 12_000.0}, "non-durable"),
        row("bullmq", "drain", drain_result(10_000.0, 1), "non-durable"),
    ]
    for r in rows:
        if r["workload"] == "drain-processes-2":
            r["config"] = {"jobs": 10, "processes": 2}
    return rows


def test_ways_of_use_pick_each_groups_best_and_hold_durable_to_the_targets() -> None:
    ways = {(w["comparison"], w["spitfire_workload"]): w for w in compare.ways_of(ways_rows())}
    sync = ways[("durable", "drain-sync")]
    assert sync["python_peer"]["system"] == "pgqueuer" and sync["python_peer"]["processes"] == 2
    assert sync["python_ratio"] == pytest.approx(4.0)  # 10,000 / 2,500: under 5x
    assert sync["node_ruby_peer"]["system"] == "bullmq" and sync["node_ruby_ratio"] == pytest.approx(10 / 9)
    assert sync["ok"] is False and sync["python_target"] == 5.0 and sync["node_ruby_target"] == 2.0
    drain_async = ways[("durable", "drain-async")]
    assert drain_async["python_ratio"] == pytest.approx(12.0) and drain_async[
        "node_ruby_ratio"
    ] == pytest.approx(30 / 9)
    assert drain_async["ok"] is True
    assert ways[("durable", "enqueue-asyncio")]["python_ratio"] == pytest.approx(3.0)
    assert ways[("durable", "enqueue-single")]["node_ruby_ratio"] == pytest.approx(2.5)
    threads = ways[("durable", "enqueue-threads")]
    assert threads["python_peer"] is None and threads["node_ruby_ratio"] == pytest.approx(8 / 3)
    assert threads["ok"] is None  # a target that cannot be checked is no pass
    batch = ways[("durable", "enqueue-batch")]
    assert batch["python_ratio"] == pytest.approx(20.0) and batch["node_ruby_ratio"] == pytest.approx(4.0)
    assert batch["node_ruby_peer"]["processes"] is None and batch["ok"] is True
    one = ways[("durable", "enqueue-one")]
    assert "server would not start" in one["spitfire"]["skipped"] and one["python_ratio"] is None
    assert one["python_target"] == 1.5 and one["node_ruby_target"] == 1.5 and one["ok"] is None
    fast = ways[("non-durable", "drain-sync")]
    assert fast["node_ruby_ratio"] == pytest.approx(1.2) and fast["ok"] is None
    assert fast["python_target"] is None  # only the durable comparison is held to targets
    assert ways[("non-durable", "enqueue-one")]["spitfire"] == {"skipped": compare.NOT_RUN}


def test_the_ways_table_in_markdown_and_in_the_figures() -> None:
    lines = compare.markdown_table(doc_of(ways_rows())).splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| comparison | way of use |"))
    assert "targets" in lines[header - 2]
    table = [line for line in lines[header + 2 :] if line.startswith("| durable |") or "non-durable" in line]
    assert (
        "| durable | drain, 1 worker process, sync handler, default concurrency | 10,000 |  |  "
        "| pgqueuer (2 processes) | 2,500 | 4x | bullmq (1 process) | 9,000 | 1.11x | 5x / 2x | FAIL |"
    ) in table
    assert (
        "| durable | batch enqueue | 200,000 | 1.5 | 3 | rq | 10,000 | 20x | sidekiq | 50,000 | 4x "
        "| 5x / 2x | pass |"
    ) in table
    assert any(
        line.startswith("| durable | sync Client shared by 8 threads | 8,000 | 1 | 2 | none measured | | |")
        and line.endswith("| incomplete |")
        for line in table
    )
    one = next(line for line in table if "| durable | sync Client, 1 thread" in line)
    assert "failed: RuntimeError: the server would not start" in one and "1.5x / 1.5x" in one
    assert any(
        "| non-durable | drain, 1 worker process, sync" in line and "not held" in line for line in table
    )
    assert len({line.count("|") for line in table}) == 1  # every row keeps the columns
    assert len(table) == 2 * len(compare.WAYS)
    # The main table compares a peer's 2-process drain with Spitfire's drain row.
    figures = {f.name: f for f in compare.figures_of(ways_rows())}
    sync = "durable way: drain, 1 worker process, sync handler, default concurrency"
    assert figures[f"{sync}: spitfire jobs/s"].value == 10_000.0
    python = figures[f"{sync}: spitfire/best Python peer jobs/s"]
    assert python.value == pytest.approx(4.0) and python.ok is False and python.target == ">= 5x"
    assert python.notes == "pgqueuer (2 processes): 2,500 jobs/s"
    fast = figures["non-durable way: drain, 1 worker process, sync handler, default concurrency: "
                   "spitfire/best of BullMQ/Sidekiq jobs/s"]  # fmt: skip
    assert fast.ok is None and fast.target == ""


def test_a_peers_two_process_drain_is_compared_with_spitfires_drain() -> None:
    rows = [
        row("spitfire", "drain", {"jobs_per_s": 9_000.0}),
        row("rq", "drain-processes-2", {"jobs_per_s": 900.0}),
    ]
    (peer,) = [r for r in compare.compared(rows) if r["system"] == "rq"]
    assert peer["ratio_jobs_per_s"] == pytest.approx(10.0)


def test_report_prints_the_ways_table(tmp_path: Path, capsys: Any) -> None:
    path = tmp_path / "peers.json"
    path.write_text(json.dumps(doc_of(ways_rows())))
    assert compare.report_main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "| comparison | way of use |" in out and "| FAIL |" in out and "| pass |" in out


def test_an_older_results_file_says_which_ways_were_not_run() -> None:
    lines = compare.ways_table(ROWS)  # an issue-6 file: of the ways, only enqueue-single and batch rows
    uvloop = next(
        line for line in lines if line.startswith("| durable | AsyncClient, 64 in flight, uvloop |")
    )
    assert "| 20,000 | 1 | 4 | rq | 2,000 | 10x | none measured | | |" in uvloop
    assert any(line.startswith("| durable | sync Client shared by 8 threads | not run |") for line in lines)
    assert compare.ways_table([r for r in ROWS if r["workload"] in ("open-loop", "sweep")]) == []


# Real servers, tiny counts: the ways' Spitfire workloads run and report what the table reads.


def test_the_sync_client_workloads_against_a_real_server() -> None:
    threads = run_once("sync-threads", {"jobs": 200, "threads": 4})
    assert threads["jobs"] == 200 and threads["threads"] == 4 and threads["jobs_per_s"] > 0
    assert 0 < threads["p50_ms"] <= threads["p99_ms"] <= threads["max_ms"]
    one = run_once("sync-one", {"jobs": 50})
    assert one["jobs"] == 50 and one["threads"] == 1 and one["p99_ms"] > 0


def test_the_asyncio_enqueue_and_a_default_concurrency_drain_against_a_real_server() -> None:
    single = run_once("single", {"jobs": 200, "inflight": 16, "loop": "asyncio"})
    assert single["jobs"] == 200 and single["loop"] == "asyncio" and single["p99_ms"] > 0
    cfg = compare.workload_configs(quick=True)["drain-async"] | {"jobs": 200}
    drained = run_once(PEER_WORKLOADS["drain-async"], cfg)
    assert drained["jobs"] == 200 and drained["concurrency"] == "default" and drained["handler"] == "async"
