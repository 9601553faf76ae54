"""What a job definition costs an enqueue: A/B rounds, alternating, in one process.

    .venv/bin/python -m perf.definitions_ab [--rounds 8] [--jobs 20000]

The engine over in-memory storage (a log write is a memory copy, no fsync), so what is measured is
the engine's own work per `Engine.enqueue`. Variants, run in turn each round (so that a noisy
machine slows them alike), each into its own queue:

- ``none``: the server has no definition at all (the hot path's one extra check: an empty dict);
- ``other``: 1,000 definitions exist, none for this job (one dict lookup that misses);
- ``explicit``: no definition, the enqueue sets the options ``defined`` gets from its definition
  (the same job, made without a definition: the general path);
- ``defined``: the job has a definition (max_attempts, timeout, backoff) and the enqueue sets no
  option: the definition's checked options take the fast path;
- ``defined+opts``: the enqueue sets a priority, the definition fills the rest (the general path);
- ``validate``: the definition validates payloads against its schema (decode + jsonschema-rs).

Prints the median enqueues per second and microseconds per enqueue of each variant, and the ratio to
``none``. Numbers on a loaded machine are noisy: compare variants of one run, never across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import msgspec

from spitfire.index.job import Backoff, BackoffKind
from spitfire.server.building import DEFAULT_OPTIONS, JobOptions
from spitfire.server.config import EngineConfig
from spitfire.server.definitions import DefinitionOptions, DefinitionSpec
from spitfire.server.engine import Engine
from spitfire.wal.api import Durability
from spitfire.wal.memory import MemoryStorage

SCHEMA = json.dumps({
    "$ref": "#/$defs/send_email_args",
    "$defs": {"send_email_args": {"type": "object", "title": "send_email_args",
              "properties": {"to": {"type": "string"}, "subject": {"type": "string"}},
              "required": ["to"]}},
})  # fmt: skip
PAYLOAD = msgspec.msgpack.encode({"to": "a@b.c", "subject": "hello"})
VARIANTS = ("none", "other", "explicit", "defined", "defined+opts", "validate")
#: What ``explicit`` sets itself: the options the ``defined`` job's definition gives.
EXPLICIT = JobOptions(max_attempts=5, backoff=Backoff(BackoffKind.FIXED, 2.0), timeout=30.0)


async def _engine(now: float, defined: bool) -> Engine:
    """A fresh engine (a fresh one each round: the jobs of the last one are dropped with it)."""
    engine = Engine(MemoryStorage(), EngineConfig(durability=Durability.ASYNC))
    await engine.open(now)
    if defined:
        specs = [DefinitionSpec(f"other-{i}", "q") for i in range(1000)]
        specs.append(
            DefinitionSpec(
                "defined", "emails", DefinitionOptions(0, 5, Backoff(BackoffKind.FIXED, 2.0), 30.0)
            )
        )
        specs.append(DefinitionSpec("checked", "emails", DefinitionOptions(0, 5, None, 30.0), SCHEMA, True))
        await engine.definitions.register(specs, "perf", now)
    return engine


async def _round(variant: str, jobs: int, now: float) -> float:
    engine = await _engine(now, variant != "none")
    name = {"none": "plain", "other": "plain", "explicit": "plain", "validate": "checked"}.get(
        variant, "defined"
    )
    options = {"defined+opts": JobOptions(priority=3), "explicit": EXPLICIT}.get(variant, DEFAULT_OPTIONS)
    queue = "ab"
    await engine.enqueue(queue, name, PAYLOAD, now=now, options=options)  # the queue exists: fast path
    enqueue = engine.enqueue
    started = time.perf_counter()
    for _ in range(jobs):
        await enqueue(queue, name, PAYLOAD, now=now, options=options)
    elapsed = time.perf_counter() - started
    await engine.close()
    return elapsed


async def main_async(rounds: int, jobs: int) -> dict[str, dict[str, float]]:
    now = time.time()
    for variant in VARIANTS:  # warm up (imports, interned names, allocator)
        await _round(variant, 1000, now)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]  # alternate the order too
        for variant in order:
            times[variant].append(await _round(variant, jobs, now))
    out: dict[str, dict[str, float]] = {}
    base = statistics.median(times["none"])
    for variant, ts in times.items():
        med = statistics.median(ts)
        out[variant] = {"per_s": jobs / med, "us": med / jobs * 1e6, "vs_none": med / base}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8, help="rounds of every variant (default 8)")
    parser.add_argument(
        "--jobs", type=int, default=20_000, help="enqueues per variant per round (default 20000)"
    )
    args = parser.parse_args()
    result = asyncio.run(main_async(args.rounds, args.jobs))
    for variant, r in result.items():
        print(
            f"{variant:>13}: {r['per_s']:>10,.0f} enqueues/s  {r['us']:6.2f} us each  "
            f"x{r['vs_none']:.3f} of none"
        )


if __name__ == "__main__":
    main()
