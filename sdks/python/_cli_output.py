"""How the ``spitfire`` command prints: tables and colour (rich) on a terminal, JSON for scripts.

`Output.json` is true with ``--json``, false with ``--human``, and otherwise true exactly when
stdout is not a terminal, so ``spitfire jobs list | jq`` gets JSON and a person gets a table.
Human output leaves out empty fields (no ``null`` noise) and shows times as ISO 8601 UTC with how
long ago (or from now) they are.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from spitfire.protocol.jsonvalue import msgpack_to_json

from .models import Backoff, Job, JobDefinition, Schedule, Stats, WorkerInfo

#: Colour of each job state label on a terminal.
STATE_STYLES = {
    "scheduled": "cyan",
    "enqueued": "blue",
    "reserved": "yellow",
    "running": "bold yellow",
    "succeeded": "green",
    "retrying": "magenta",
    "dead": "bold red",
    "cancelled": "dim",
}
#: State columns of the queues table, in a job's order of life.
_QUEUE_STATES = ("scheduled", "enqueued", "running", "retrying", "succeeded", "dead", "cancelled")


def ago(at: float | None, now: float | None = None) -> str:
    """``2026-12-03 06:12:05Z (3 min ago)`` or ``(in 5 s)``; "" for None."""
    if at is None:
        return ""
    now = time.time() if now is None else now
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return f"{stamp} ({_span(at - now)})"


def _span(delta: float) -> str:
    seconds = abs(delta)
    if seconds < 1:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            n = int(seconds // size)
            return f"in {n} {unit}" if delta > 0 else f"{n} {unit} ago"
    return "now"  # unreachable: seconds >= 1


def state_text(label: str | None) -> Text:
    """A state label in its colour."""
    return Text(label or "", style=STATE_STYLES.get(label or "", ""))


def job_json(job: Job) -> dict[str, Any]:
    """A job as the HTTP API shows it: payload and result as JSON (or ``{"$msgpack": base64}``)."""
    out = job.to_dict()
    out["payload"] = json.loads(msgpack_to_json(job.raw_payload))
    out["result"] = None if job.raw_result is None else json.loads(msgpack_to_json(job.raw_result))
    return out


def schedule_json(s: Schedule) -> dict[str, Any]:
    """A schedule as JSON, its payload decoded."""
    out = s.to_dict()
    out["payload"] = json.loads(msgpack_to_json(s.raw_payload))
    return out


class Output:
    """Where and how one command prints (stdout for results, stderr for notes)."""

    def __init__(self, json_mode: bool | None, *, stdout: Any = None, stderr: Any = None) -> None:
        self.out = sys.stdout if stdout is None else stdout
        self.err = sys.stderr if stderr is None else stderr
        self.json = (not self.out.isatty()) if json_mode is None else json_mode
        # A pipe has no width: let rows be as long as they are rather than cut at 80 columns.
        width = None if self.out.isatty() else 1000
        self.console = Console(file=self.out, highlight=False, soft_wrap=False, width=width)

    def print_json(self, value: Any) -> None:
        """``value`` as indented JSON on stdout (bytes as hex, anything else unknown as str)."""
        print(json.dumps(value, indent=2, default=_json_default), file=self.out)

    def note(self, text: str) -> None:
        """A line for the person on stderr (never mixed into the results)."""
        print(text, file=self.err)

    def line(self, text: str | Text) -> None:
        self.console.print(text)

    def table(self, t: Table) -> None:
        """Print a table with each row on one line: wider than the terminal, it lets the terminal
        wrap rather than fold every cell into a narrow column (ids and times stay whole)."""
        console = self.console
        needed = Measurement.get(console, console.options.update(width=10_000), t).maximum
        width = console.width
        console.width = max(width, needed)  # print(width=) cannot go past the console's own
        try:
            console.print(t)
        finally:
            console.width = width

    def state_line(self, prefix: str, state: str) -> None:
        """``prefix`` then ``state`` in its colour."""
        self.console.print(Text(prefix).append_text(state_text(state)))

    # -- renderers --------------------------------------------------------------------------------------

    def jobs(self, jobs: Sequence[Job], cursor: str | None) -> None:
        if self.json:
            self.print_json({"jobs": [job_json(j) for j in jobs], "cursor": cursor})
            return
        if not jobs:
            self.note("no jobs")
            return
        now = time.time()
        waiting = {"scheduled", "retrying"}
        run_at = any(j.state in waiting for j in jobs)  # the column only when a job waits for a time
        t = _table("ID", "QUEUE", "NAME", "STATE", "ATTEMPTS", "CREATED", *(["RUN AT"] if run_at else []))
        for j in jobs:
            row: list[str | Text] = [
                j.id,
                j.queue,
                j.name,
                state_text(j.state),
                f"{j.attempts}/{j.max_attempts}",
                ago(j.created_at, now),
            ]
            if run_at:
                row.append(ago(j.run_at, now) if j.state in waiting else "")
            t.add_row(*row)
        self.table(t)
        if cursor is not None:
            self.note(f"more jobs: add --cursor {cursor}")

    def job(self, job: Job) -> None:
        if self.json:
            self.print_json(job_json(job))
            return
        now = time.time()
        d = job_json(job)
        rows: list[tuple[str, Any]] = [
            ("id", job.id), ("queue", job.queue), ("name", job.name), ("state", state_text(job.state)),
            ("priority", job.priority), ("attempts", f"{job.attempts} of {job.max_attempts}"),
            ("created", ago(job.created_at, now)), ("updated", ago(job.updated_at, now)),
            ("run at", ago(job.run_at, now)), ("timeout", f"{job.timeout:g} s"),
            ("lease until", ago(job.lease_until, now)), ("worker", job.worker),
            ("idempotency key", job.idempotency_key), ("headers", job.headers or None),
            ("payload", _compact(d["payload"])), ("result", _compact(d["result"])),
        ]  # fmt: skip
        self._fields(rows)
        for e in job.errors:
            self.line(Text(f"attempt {e.attempt} failed {ago(e.at, now)}: {e.error}", style="red"))
        if job.history:
            steps = Text("history: ")
            for i, h in enumerate(job.history):
                steps.append(" → " if i else "")
                steps.append_text(state_text(h.state))
            self.line(steps)

    def _fields(self, rows: Iterable[tuple[str, Any]]) -> None:
        t = Table(box=None, show_header=False, padding=(0, 2, 0, 0))
        t.add_column(style="bold")
        t.add_column(overflow="fold")
        for key, value in rows:
            if value is None or value == "":
                continue
            t.add_row(key, value if isinstance(value, Text) else str(value))
        self.console.print(t)

    def stats(self, stats: Stats) -> None:
        if self.json:
            self.print_json(stats.to_dict())
            return
        self.queues(stats)
        self.note(f"{stats.total_jobs} jobs, {stats.workers} workers, {stats.connections} connections")

    def queues(self, stats: Stats) -> None:
        if self.json:
            self.print_json({"queues": [{"name": n, **_queue(stats, n)} for n in stats.queues]})
            return
        if not stats.queues:
            self.note("no queues")
            return
        # A state no queue has a job in is left out (ENQUEUED always shows): fewer columns to scan.
        states = [s for s in _QUEUE_STATES
                  if s == "enqueued" or any(q.counts.get(s) for q in stats.queues.values())]  # fmt: skip
        t = _table("QUEUE", "PAUSED", "DURABILITY", *(s.upper() for s in states), "TOTAL")
        for q in stats.queues.values():
            counts = [Text(str(q.counts.get(s, 0)), style=STATE_STYLES[s] if q.counts.get(s) else "dim")
                      for s in states]  # fmt: skip
            paused = Text("paused", style="bold yellow") if q.paused else ""
            t.add_row(q.name, paused, q.durability, *counts, str(q.total))
        self.table(t)

    def workers(self, workers: Sequence[WorkerInfo]) -> None:
        if self.json:
            self.print_json({"workers": [w.to_dict() for w in workers]})
            return
        if not workers:
            self.note("no workers connected")
            return
        now = time.time()
        t = _table("ID", "NAME", "QUEUES", "HELD", "STATUS", "CONNECTED", "LAST SEEN")
        for w in workers:
            status = Text("active", style="green") if w.active else Text("draining", style="yellow")
            t.add_row(w.id, w.name, ", ".join(w.queues), str(w.held), status, ago(w.connected_at, now),
                      ago(w.last_seen, now))  # fmt: skip
        self.table(t)

    def schedules(self, schedules: Sequence[Schedule]) -> None:
        if self.json:
            self.print_json({"schedules": [schedule_json(s) for s in schedules]})
            return
        if not schedules:
            self.note("no schedules")
            return
        now = time.time()
        t = _table("NAME", "CRON", "TIMEZONE", "QUEUE", "JOB", "NEXT RUN", "LAST RUN", "LAST JOB")
        for s in schedules:
            nxt: str | Text = Text("paused", style="bold yellow") if s.paused else ago(s.next_run_at, now)
            t.add_row(s.name, s.cron, s.timezone, s.queue, s.job, nxt, ago(s.last_run_at, now),
                      state_text(s.last_job_state))  # fmt: skip
        self.table(t)

    def schedule(self, s: Schedule) -> None:
        if self.json:
            self.print_json(schedule_json(s))
            return
        now = time.time()
        d = schedule_json(s)
        options = {k: v for k, v in d.get("options", {}).items() if v not in (None, {}, [])}
        self._fields([
            ("name", s.name), ("cron", s.cron), ("timezone", s.timezone), ("queue", s.queue),
            ("job", s.job), ("payload", _compact(d["payload"]) if d["payload"] != {} else None),
            ("options", _compact(options) if options else None), ("misfire", s.misfire),
            ("paused", "yes" if s.paused else None), ("next run", ago(s.next_run_at, now)),
            ("last run", ago(s.last_run_at, now)), ("last job", s.last_job_id),
            ("last job state", state_text(s.last_job_state) if s.last_job_state else None),
        ])  # fmt: skip

    def definitions(self, definitions: Sequence[JobDefinition]) -> None:
        if self.json:
            self.print_json({"definitions": [d.to_dict() for d in definitions]})
            return
        if not definitions:
            self.note("no job definitions (a worker registers its app's when it starts)")
            return
        now = time.time()
        t = _table("NAME", "QUEUE", "PRIORITY", "ATTEMPTS", "TIMEOUT", "BACKOFF", "VALIDATE", "REGISTERED BY",
                   "UPDATED")  # fmt: skip
        for d in definitions:
            t.add_row(
                d.name, d.queue or "", str(d.priority) if d.priority else "",
                "" if d.max_attempts is None else str(d.max_attempts),
                "" if d.timeout is None else f"{d.timeout:g} s", _backoff(d.backoff),
                Text("yes", style="green") if d.validate else Text("no", style="dim"), d.registered_by,
                ago(d.updated_at, now),
            )  # fmt: skip
        self.table(t)
        self.note("empty: the server's default applies")

    def definition(self, d: JobDefinition) -> None:
        if self.json:
            self.print_json(d.to_dict())
            return
        now = time.time()
        self._fields([
            ("name", d.name), ("queue", d.queue), ("priority", d.priority or None),
            ("max attempts", d.max_attempts), ("timeout", None if d.timeout is None else f"{d.timeout:g} s"),
            ("backoff", _backoff(d.backoff) or None), ("validate", "yes" if d.validate else "no"),
            ("registered by", d.registered_by), ("created", ago(d.created_at, now)),
            ("updated", ago(d.updated_at, now)),
        ])  # fmt: skip
        if d.schema is not None:
            self.line(Text("schema:", style="bold"))
            self.print_json(d.schema)


def _backoff(b: Backoff | None) -> str:
    if b is None:
        return ""
    if b.kind == "delays":
        return "delays " + ", ".join(f"{x:g}" for x in b.delays or ()) + " s"
    if b.kind == "exponential":
        return f"exponential {b.base:g} s x{b.factor:g} (cap {b.cap:g} s)"
    return f"{b.kind} {b.base:g} s"


def _queue(stats: Stats, name: str) -> dict[str, Any]:
    q = stats.queues[name]
    return {"paused": q.paused, "durability": q.durability, "counts": q.counts, "total": q.total}


def _table(*columns: str) -> Table:
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for c in columns:
        # Fold rather than cut with "…": an id or a time that is cut is useless.
        t.add_column(c, overflow="fold", min_width=24 if c == "ID" else None)
    return t


def _compact(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return value.hex()
    return str(value)
