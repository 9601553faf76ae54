"""Where an enqueue's latency goes: the open loop against a pinned server, beside its own stage
histograms.

``python -m perf.stages [--rate 5000] [--seconds 10]`` starts a spitfire-server on CPU 1, offers the
open loop (``python -m perf open-loop``) from CPU 0, and prints the client's p50/p99/p999 next to
the share of observations over 0.25, 1, 5, 10, 25 and 50 ms of each server-side stage read from
``/metrics`` before and after the run:

- ``spitfire_commit_wait_seconds``: first append of a commit group to the start of its fdatasync
  round (the loop tick, the hand-off to the flusher thread, the round before);
- ``spitfire_fsync_seconds``: the round's fdatasync;
- ``spitfire_commit_resolve_seconds``: the end of the fdatasync to the loop resolving the groups;
- ``spitfire_commit_seconds``: first append to durable (wait + fsync);
- ``spitfire_protocol_enqueue_seconds``: request received to answer queued (the server's share).

It also prints the CPU each side used (the open-loop generator spins to send on time, so its core
reads near 100% by design). What the client sees beyond the server's enqueue histogram is the
network, the kernel's scheduling and the client itself.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

STAGES = (
    "spitfire_commit_wait_seconds",
    "spitfire_fsync_seconds",
    "spitfire_commit_resolve_seconds",
    "spitfire_commit_seconds",
    "spitfire_protocol_enqueue_seconds",
)
BOUNDS = ("0.00025", "0.001", "0.005", "0.01", "0.025", "0.05")


def _buckets(text: str, name: str) -> dict[str, float]:
    """Cumulative bucket counts by ``le`` (the single-enqueue route where a metric has routes)."""
    pattern = rf'^{name}_bucket{{le="([^"]+)"(?:,route="single")?}} (\S+)$'
    return {m.group(1): float(m.group(2)) for m in re.finditer(pattern, text, re.M)}


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_server(data_dir: str) -> tuple[subprocess.Popen[str], str, str]:
    cmd = ["taskset", "-c", "1", sys.executable, "-m", "spitfire.server.cli", "--data-dir", data_dir]
    cmd += ["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--no-quic"]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert server.stdout is not None
    banner = ""
    deadline = time.monotonic() + 60
    while "stop with" not in banner and time.monotonic() < deadline:
        banner += server.stdout.readline()
    tcp = re.search(r"tcp://127\.0\.0\.1:(\d+)", banner)
    http = re.search(r"http://127\.0\.0\.1:(\d+)/", banner)
    if tcp is None or http is None:
        server.kill()
        raise SystemExit(f"the server did not start: {banner!r}")
    return server, tcp.group(1), f"http://127.0.0.1:{http.group(1)}/metrics"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m perf.stages", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=5000, help="offered enqueues per second")
    parser.add_argument("--seconds", type=int, default=10, help="how long to offer them")
    args = parser.parse_args(argv)
    server, port, metrics = _start_server(tempfile.mkdtemp(prefix="spitfire-stages-") + "/data")
    try:
        before = urllib.request.urlopen(metrics).read().decode()
        cpu0, wall0, kids0 = (
            _cpu_seconds(server.pid),
            time.monotonic(),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        load = [sys.executable, "-m", "perf", "open-loop", "--url", f"tcp://127.0.0.1:{port}"]
        load += ["--rate", str(args.rate), "--seconds", str(args.seconds), "--no-pin"]
        run = subprocess.run(["taskset", "-c", "0", *load], capture_output=True, text=True, check=False)
        after = urllib.request.urlopen(metrics).read().decode()
        cpu1, wall1, kids1 = (
            _cpu_seconds(server.pid),
            time.monotonic(),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    client = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    wall = wall1 - wall0
    print(
        f"rate {args.rate}/s for {args.seconds} s; server CPU {100 * (cpu1 - cpu0) / wall:.0f}% of a core, "
        f"client CPU {100 * client / wall:.0f}%"
    )
    for line in run.stdout.splitlines():
        if re.search(r"achieved|p50|p99", line):
            print(line)
    for name in STAGES:
        old, new = _buckets(before, name), _buckets(after, name)
        total = new.get("+Inf", 0.0) - old.get("+Inf", 0.0)
        if total <= 0:
            print(f"{name:36s} no observations")
            continue
        shares = [
            f">{float(le) * 1000:g}ms {100 * (total - new[le] + old.get(le, 0.0)) / total:.2f}%"
            for le in BOUNDS
        ]
        print(f"{name:36s} n={total:<7.0f} " + "  ".join(shares))
    return 0 if run.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
