"""Results: machine and commit metadata, percentiles, a printed table and a JSON file per run."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Where runs are recorded: perf/results, or $SPITFIRE_PERF_RESULTS (tests point it at a temp dir).
RESULTS_DIR = Path(os.environ.get("SPITFIRE_PERF_RESULTS") or Path(__file__).parent / "results")


@dataclass
class Figure:
    """One measured number, with its target and what it is."""

    name: str
    value: float
    unit: str
    target: str = ""
    ok: bool | None = None
    runs: list[float] = field(default_factory=list)
    notes: str = ""


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    mem_kb = 0
    try:
        with open("/proc/meminfo") as f:
            mem_kb = int(f.readline().split()[1])
    except OSError:
        pass
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "mem_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def commit() -> str:
    """The git commit measured (with -dirty when the tree has changes)."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout
        return rev.strip() + ("-dirty" if dirty.strip() else "")
    except OSError:
        return "unknown"


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) of already sorted values, nearest-rank."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(p / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def median(values: Sequence[float]) -> float:
    """Median of values (the figure we report over repeated runs)."""
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def print_table(figures: Sequence[Figure]) -> None:
    """A plain table: figure, median, unit, target, verdict, runs."""
    rows = [("figure", "median", "unit", "target", "ok", "runs")]
    for f in figures:
        verdict = "" if f.ok is None else ("yes" if f.ok else "NO")
        runs = ", ".join(f"{r:,.0f}" if abs(r) >= 100 else f"{r:.3g}" for r in f.runs)
        value = f"{f.value:,.0f}" if abs(f.value) >= 100 else f"{f.value:.3g}"
        rows.append((f.name, value, f.unit, f.target, verdict, runs))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def write_json(suite: str, config: dict[str, Any], figures: Sequence[Figure]) -> Path:
    """Write perf/results/<suite>-<timestamp>.json and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    path = RESULTS_DIR / f"{suite}-{stamp}.json"
    doc = {
        "suite": suite,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "commit": commit(),
        "config": config,
        "figures": [asdict(f) for f in figures],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path
