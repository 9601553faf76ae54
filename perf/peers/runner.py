"""Run one peer workload in the peers venv, and call that from Spitfire's venv.

In the peers venv (cwd = repo root)::

    .venv/peers/bin/python -m perf.peers.runner ADAPTER WORKLOAD SERVICE_URL CONFIG_JSON
    .venv/peers/bin/python -m perf.peers.runner --describe

The first prints one JSON line: the workload's result (see perf/peers/base.py), or
``{"skipped": "reason"}`` when the adapter raised `Skip` or cannot be imported. ``--describe`` prints
one JSON line ``{adapter: {"name", "backend", "workloads", "versions"} | {"skipped": reason}}``.

From Spitfire's venv (this module imports nothing outside the standard library at import time):
`peers_python`, `peers_unavailable`, `available_adapters`, `describe_adapters` and `run_peer`.
ADAPTER is a module stem in perf/peers/adapters/ without ``_peer`` (``arq`` for arq_peer.py).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
ADAPTERS_DIR = Path(__file__).resolve().parent / "adapters"
#: The peers' own venv, made by `make perf-peers`.
PEERS_VENV = ROOT / ".venv/peers"
#: Printed for every peer when the peers venv is missing.
NO_VENV = "no .venv/peers with the peer libraries: run make perf-peers"
#: Result keys a runner adds to every result.
META_KEYS = ("adapter", "workload", "backend", "peer", "config", "notes", "versions")


# --- main venv side ------------------------------------------------------------------------------


def peers_python() -> Path | None:
    """The peers venv's python, or None when it is missing (`peers_unavailable` says why)."""
    python = PEERS_VENV / "bin" / "python"
    return python if python.exists() else None


def peers_unavailable() -> str | None:
    """Why no peer can run (the reason to print for each), or None when the peers venv is there."""
    return None if peers_python() is not None else NO_VENV


def available_adapters() -> list[str]:
    """Adapter names (``arq``, ``rq``, ...) found in perf/peers/adapters/, sorted; no import."""
    return sorted(p.stem.removesuffix("_peer") for p in ADAPTERS_DIR.glob("*_peer.py"))


def _tail(text: str, n: int = 1500) -> str:
    return text.strip()[-n:]


def _last_json_line(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if isinstance(doc, dict):
                    return doc
    return None


def _spawn(args: list[str], timeout: float, cpus: set[int] | None) -> tuple[int | None, str, str]:
    """Run the peers venv's runner with ``args``; (returncode or None on timeout, stdout, stderr).

    The child gets its own session; on timeout it gets SIGTERM (it stops its workers), then its
    whole process group is killed.
    """
    python = peers_python()
    assert python is not None
    proc = subprocess.Popen(
        [str(python), "-m", "perf.peers.runner", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")},
    )
    if cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(proc.pid, cpus)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        return None, out, err
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # anything the runner left behind in its group


def run_peer(
    adapter: str,
    workload: str,
    service_url: str,
    cfg: dict[str, Any],
    timeout: float = 600.0,
    cpus: set[int] | None = None,
) -> dict[str, Any]:
    """Run ``workload`` of ``adapter`` against ``service_url`` in the peers venv and return its
    result dict (see perf/peers/base.py for the keys).

    Never raises for a peer's failure: a missing venv, an unknown adapter, a `Skip`, a crash or a
    timeout all come back as ``{"skipped": reason, "adapter": ..., "workload": ...}`` (the reason
    ends with the stderr tail when there is one). ``cpus`` pins the runner process (and the worker
    processes it starts) to those CPUs.
    """
    meta = {"adapter": adapter, "workload": workload}
    if peers_python() is None:
        return {"skipped": NO_VENV, **meta}
    if adapter not in available_adapters():
        return {"skipped": f"no adapter perf/peers/adapters/{adapter}_peer.py", **meta}
    args = [adapter, workload, service_url, json.dumps(cfg)]
    start = time.monotonic()
    code, out, err = _spawn(args, timeout, cpus)
    doc = _last_json_line(out)
    if code is None:
        reason = f"timed out after {time.monotonic() - start:.0f} s"
        return {"skipped": f"{reason}: {_tail(err)}" if err.strip() else reason, **meta}
    if doc is None or code != 0:
        reason = str((doc or {}).get("skipped") or f"runner exited {code} without a result")
        return {"skipped": f"{reason}: {_tail(err)}" if err.strip() else reason, **meta}
    return {**doc, **meta}


def describe_adapters(timeout: float = 120.0) -> dict[str, dict[str, Any]]:
    """Each adapter's ``{"name", "backend", "workloads", "versions"}``, read in the peers venv, or
    ``{"skipped": reason}`` for one that does not import (all of them when the venv is missing)."""
    if peers_python() is None:
        return {a: {"skipped": NO_VENV} for a in available_adapters()}
    code, out, err = _spawn(["--describe"], timeout, None)
    doc = _last_json_line(out)
    if doc is None:
        reason = f"runner --describe failed ({code}): {_tail(err)}"
        return {a: {"skipped": reason} for a in available_adapters()}
    return doc


# --- peers venv side -----------------------------------------------------------------------------


def _versions(packages: list[str]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in packages:
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def _load(adapter: str) -> Any:
    """The adapter's PeerSpec (imports the peer library)."""
    module = importlib.import_module(f"perf.peers.adapters.{adapter.removesuffix('_peer')}_peer")
    return module.PEER


def describe() -> dict[str, dict[str, Any]]:
    """What ``--describe`` prints."""
    out: dict[str, dict[str, Any]] = {}
    for adapter in available_adapters():
        try:
            spec = _load(adapter)
        except Exception as exc:
            out[adapter] = {"skipped": f"cannot import the adapter: {type(exc).__name__}: {exc}"}
            continue
        out[adapter] = {
            "name": spec.name,
            "backend": spec.backend,
            "workloads": list(spec.workloads),
            "versions": {**_versions(list(spec.packages)), **spec.runtime_versions},
            "notes": spec.notes,
        }
    return out


#: The load generator's collector settings, as Spitfire's (perf/net_workloads.CLIENT_GC_THRESHOLDS):
#: the same client-side treatment for every system measured.
CLIENT_GC_THRESHOLDS = (50_000, 20, 100)


def run_one(adapter: str, workload: str, service_url: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Import ``adapter`` and run ``workload``: its result with the meta keys, or ``{"skipped"}``."""
    import gc

    from perf.peers.base import Skip, with_defaults

    try:
        spec = _load(adapter)
    except Exception as exc:
        return {"skipped": f"cannot import the adapter: {type(exc).__name__}: {exc}"}
    fn = spec.workloads.get(workload)
    if fn is None:
        return {"skipped": f"{spec.name} has no {workload} workload", "peer": spec.name}
    full = with_defaults(workload, cfg)
    gc.collect()
    gc.freeze()
    previous = gc.get_threshold()
    gc.set_threshold(*CLIENT_GC_THRESHOLDS)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # keep stdout for the one JSON line
            result = fn(service_url, dict(full))
    except Skip as exc:
        return {"skipped": str(exc), "peer": spec.name}
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()
    notes = "; ".join(n for n in (result.pop("notes", ""), spec.notes) if n)
    return {
        **result,
        "peer": spec.name,
        "backend": spec.backend,
        "config": {**full, **result.pop("config", {})},
        "notes": notes,
        "versions": {**_versions(list(spec.packages)), **spec.runtime_versions},
    }


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(143)  # unwinds the adapter's finally blocks, which stop its workers


def main(argv: list[str]) -> int:
    """Entry point of ``python -m perf.peers.runner`` (see the module docstring)."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    if argv == ["--describe"]:
        print(json.dumps(describe()), flush=True)
        return 0
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    adapter, workload, service_url, cfg_json = argv
    try:
        result = run_one(adapter, workload, service_url, json.loads(cfg_json))
    except Exception as exc:
        traceback.print_exc()
        print(json.dumps({"skipped": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main(sys.argv[1:]))
