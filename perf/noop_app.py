"""The no-op jobs the drain benchmark runs: `spitfire worker perf.noop_app:app`."""

from __future__ import annotations

import os

import spitfire

app = spitfire.App(os.environ.get("SPITFIRE_URL"))


@app.job(queue="bench")
async def noop(n: int = 0, to: str = "", subject: str = "", body: str = "") -> None:
    """Does nothing: the drain measures the queue, not the work."""


@app.job(queue="bench-sync")
def noop_sync(n: int = 0, to: str = "", subject: str = "", body: str = "") -> None:
    """The same in the worker's thread pool."""
