"""The latency-versus-offered-load plot of a peers run: ``python -m perf plot FILE.json [-o PNG]``.

One panel per comparison (durable, non-durable): p99 enqueue latency (log scale) against the offered
rate, one line per system; a hollow marker is a point that did not keep up (achieved below 90% of
offered), where that system's sweep stopped. Written with matplotlib's Agg backend (no display).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Below this share of the offered rate a point "did not keep up" (as perf/compare.KEEP_UP).
KEEP_UP = 0.9


def sweep_series(doc: dict[str, Any]) -> dict[str, dict[str, list[tuple[float, float, bool]]]]:
    """{comparison: {system: [(offered, p99_ms, kept_up), ...]}} from a peers-*.json document,
    sorted by offered rate; skipped points are left out."""
    series: dict[str, dict[str, list[tuple[float, float, bool]]]] = {}
    for row in doc["config"]["rows"]:
        res = row["result"]
        if row["workload"] != "sweep" or "skipped" in res or res.get("p99_ms") is None:
            continue
        offered = float(res.get("offered_per_s") or row["config"]["rate"])
        kept = float(res.get("achieved_per_s") or 0.0) >= KEEP_UP * offered
        name = res.get("peer") or row["system"]
        system = name if row["system"] == "spitfire" else f"{name} ({row['backend']})"
        series.setdefault(row["comparison"], {}).setdefault(system, []).append(
            (offered, float(res["p99_ms"]), kept)
        )
    for systems in series.values():
        for points in systems.values():
            points.sort()
    return series


def plot_sweep(doc: dict[str, Any], path: Path) -> Path:
    """Draw the sweep of ``doc`` into ``path`` (PNG) and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    series = sweep_series(doc)
    panels = sorted(series) or ["(no sweep points)"]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.8), squeeze=False)
    for ax, name in zip(axes[0], panels, strict=True):
        for system, points in sorted(series.get(name, {}).items()):
            xs = [p[0] for p in points]
            ys = [p[1] for p in points]
            style = {"linewidth": 2.5} if system == "spitfire" else {"linewidth": 1.2}
            (line,) = ax.plot(xs, ys, marker="o", label=system, **style)
            missed = [(x, y) for x, y, kept in points if not kept]
            if missed:
                ax.scatter(*zip(*missed, strict=True), s=90, facecolors="none", edgecolors=line.get_color())
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))
        ax.set_xticks(sorted({p[0] for points in series.get(name, {}).values() for p in points}))
        ax.set_xlabel("offered enqueues/s (open loop)")
        ax.set_ylabel("p99 enqueue latency, ms")
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
        if series.get(name):
            ax.legend(fontsize=8)
    machine = doc.get("machine", {})
    fig.suptitle(
        f"Latency vs offered load - commit {doc.get('commit', '?')}, {machine.get('cpus', '?')} CPUs "
        f"{machine.get('cpu_model', '')} (hollow: did not keep up)",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: Sequence[str]) -> int:
    """``python -m perf plot FILE.json [-o PNG]``."""
    from perf.compare import PLOT_PATH

    parser = argparse.ArgumentParser(prog="python -m perf plot", description="latency vs offered load PNG")
    parser.add_argument("file", type=Path, help="a perf/results/peers-<ts>.json")
    parser.add_argument("-o", "--output", type=Path, default=PLOT_PATH, help=f"default {PLOT_PATH.name}")
    args = parser.parse_args(argv)
    print(f"wrote {plot_sweep(json.loads(args.file.read_text()), args.output)}")
    return 0
