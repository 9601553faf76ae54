"""Spitfire's performance harness: workloads, reports and flamegraphs (run `python -m perf --help`)."""
