"""Recurring schedules: their definitions in a log of their own, and the ticks that enqueue their jobs.

A schedule names a cron expression and a timezone (`spitfire.index.cron` computes when it fires), the
queue, handler, payload and options of the job each tick enqueues, a misfire policy, and whether it
is paused. Definitions live in the server's system log ``meta/schedules`` (records SCHEDULE_SET,
SCHEDULE_DELETED and SCHEDULE_TICKED, wal/FORMAT.md) and its snapshots, and follow the engine's rule:
commit, then apply — a change is visible once durable.

A tick is never enqueued twice, even when the server is killed during it: the job of tick T of
schedule S carries the idempotency key ``spitfire-schedule:S:T`` (T in RFC 3339), so enqueueing it
again after a restart answers the job already made. SCHEDULE_TICKED then records how far the series
got (``last_tick``); a crash between the two only means the tick is tried again and deduplicated.

Ticks seen more than `GRACE` seconds after their time (the server was down, or stalled) are missed,
and the schedule's misfire policy decides: ``skip`` runs none of them (the next tick runs as usual),
``once`` runs one catch-up job (for the newest missed tick), ``all`` runs each of them, at most
`MAX_CATCH_UP`. A paused schedule has no ticks; resuming it starts its series anew from that moment.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from spitfire.index.cron import CronError, check_expression, fires_between, next_fire, rfc3339, zone
from spitfire.index.job import Job
from spitfire.wal.api import Recovery, Storage, StorageError

from . import records as rec
from .building import JobOptions
from .errors import (
    NoSpace,
    Overloaded,
    ScheduleConflict,
    ScheduleNotFound,
    TooManySchedules,
    ValidationError,
)
from .records import (
    RecordType,
    Schedule,
    ScheduleDeleted,
    ScheduleOptions,
    ScheduleSpec,
    SchedulesSnapshot,
    ScheduleTicked,
)
from .system_log import SystemLog, read_snapshot, replay

__all__ = ["Schedule", "ScheduleOptions", "ScheduleSpec", "Schedules"]

log = logging.getLogger("spitfire.server.schedules")

#: Misfire policies, the first being the default.
MISFIRE_POLICIES = ("skip", "once", "all")
#: Most missed ticks one schedule catches up with under ``all``.
MAX_CATCH_UP = 100
#: A tick seen later than this after its time (seconds) is missed (a restart of a few seconds is not).
GRACE = 5.0
#: Schedules one server holds at most.
MAX_SCHEDULES = 10_000
#: Records in the schedules log after which a snapshot is written.
SNAPSHOT_EVERY = 1_000
#: The idempotency key of a tick's job is this, the schedule's name, ":" and the tick (RFC 3339).
KEY_PREFIX = "spitfire-schedule:"
#: Headers of a tick's job: the schedule's name, and the tick's time (RFC 3339).
HEADER_SCHEDULE = "spitfire-schedule"
HEADER_TICK = "spitfire-tick"
#: The payload of a schedule that gives none: an empty msgpack map (a handler without arguments).
EMPTY_PAYLOAD = b"\x80"
#: The job's fields (as `JobBuilder` names them) and the schedule's fields they come from.
_JOB_FIELDS = {
    "name": "job",
    "priority": "options.priority",
    "max_attempts": "options.max_attempts",
    "backoff": "options.backoff",
    "timeout": "options.timeout",
    "headers": "options.headers",
}
#: Names follow the queue-name rule (docs/schedules.md), so they fit in keys, URLs and file names.
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}\Z")
#: The system log's name (``<data-dir>/meta/schedules``).
LOG_NAME = "schedules"


_SCHEDULE_RECORDS = (RecordType.SCHEDULE_SET, RecordType.SCHEDULE_DELETED, RecordType.SCHEDULE_TICKED)
_decoders = {int(t): msgspec.msgpack.Decoder(rec.BODY_TYPES[t]) for t in _SCHEDULE_RECORDS}
_snapshot_decoder = msgspec.msgpack.Decoder(SchedulesSnapshot)
_encode = msgspec.msgpack.Encoder().encode

#: Enqueues a job: (queue, handler, payload, now, options, idempotency key) -> (job, created).
Enqueue = Callable[[str, str, bytes, float, JobOptions, str | None], Awaitable[tuple[Job, bool]]]
#: Checks a job's queue, handler, payload and options as an enqueue would (raises ValidationError).
CheckJob = Callable[[str, str, bytes, float, JobOptions], None]


def job_options(spec: ScheduleSpec, headers: dict[str, str] | None = None) -> JobOptions:
    """The `JobOptions` of a tick's job (``headers`` added to the schedule's own)."""
    o = spec.options
    tags = {**(o.headers or {}), **headers} if headers else o.headers
    return JobOptions(
        priority=o.priority, max_attempts=o.max_attempts, backoff=o.backoff, timeout=o.timeout, headers=tags
    )


def tick_key(name: str, tick: float) -> str:
    """The idempotency key of the job of tick ``tick`` of schedule ``name``."""
    return f"{KEY_PREFIX}{name}:{rfc3339(tick)}"


class Schedules:
    """Every schedule of one server, their log, and their ticks. Single-threaded: the event loop's.

    Commands validate (raising a typed error and changing nothing), append a record, wait for its
    commit, and only then apply it; `tick` enqueues the jobs that are due.
    """

    def __init__(
        self,
        storage: Storage,
        enqueue: Enqueue,
        check_job: CheckJob,
        *,
        on_deadline: Callable[[float], None] | None = None,
        on_failure: Callable[[StorageError], None] | None = None,
    ) -> None:
        self._enqueue = enqueue
        self._check_job = check_job
        #: Told of each new time at which a schedule will fire (the maintenance timer).
        self.on_deadline = on_deadline
        #: Schedules by name.
        self.items: dict[str, Schedule] = {}
        #: Their log: commit, then apply (``on_failure`` is told once when it can no longer commit).
        self.log = SystemLog(storage, LOG_NAME, self._apply, on_failure=on_failure)

    # -- life cycle -------------------------------------------------------------------------------------

    def open(self) -> None:
        """Recover the schedules from their log (snapshot, then records)."""
        self.log.open(self._recover)

    def _recover(self, recovery: Recovery, where: str) -> int:
        version = rec.SCHEDULES_SNAPSHOT_VERSION
        snap = read_snapshot(recovery, _snapshot_decoder, version, "the schedules snapshot")
        if snap is not None:
            self.items = {s.spec.name: s for s in snap.schedules}
        start = recovery.snapshot_lsn if snap is not None else 0
        return replay(recovery, where, _decoders, self._apply, "schedules", start)

    async def _commit(self, rtype: RecordType, body: msgspec.Struct) -> None:
        """Append ``body``, wait until it is durable; it is applied before this returns."""
        await self.log.commit(int(rtype), body)

    def _apply(self, rtype: int, body: Any) -> None:
        if rtype == RecordType.SCHEDULE_SET:
            self.items[body.spec.name] = body
        elif rtype == RecordType.SCHEDULE_DELETED:
            self.items.pop(body.name, None)
        elif rtype == RecordType.SCHEDULE_TICKED:
            s = self.items.get(body.name)
            if s is None:
                return
            if body.tick is not None and body.tick > s.last_tick:
                s.last_tick = body.tick
            if body.job_id is not None:
                s.last_run_at = body.at
                s.last_job_id = body.job_id

    # -- commands ---------------------------------------------------------------------------------------

    def check(self, spec: ScheduleSpec, now: float) -> ScheduleSpec:
        """``spec`` checked (its cron expression normalised), or ValidationError naming the field."""
        if not isinstance(spec.name, str) or not _NAME_RE.match(spec.name):
            raise ValidationError(
                "name",
                "use 1 to 128 characters from A-Z a-z 0-9 _ . : -, starting with a letter, a digit or _",
            )
        try:
            expr = check_expression(spec.cron)
            zone(spec.timezone)
            next_fire(expr, spec.timezone, now)
        except CronError as exc:
            raise ValidationError(exc.field, str(exc).partition(": ")[2] or str(exc)) from None
        if spec.misfire not in MISFIRE_POLICIES:
            raise ValidationError("misfire", f"must be one of {', '.join(MISFIRE_POLICIES)}")
        payload = EMPTY_PAYLOAD if spec.payload is None else spec.payload
        try:
            self._check_job(spec.queue, spec.job, payload, now, job_options(spec))
        except ValidationError as exc:  # name the schedule's fields, not the job's
            field = _JOB_FIELDS.get(exc.field.partition(".")[0])
            if field is None:
                raise
            raise ValidationError(
                field + exc.field[len(exc.field.partition(".")[0]) :], str(exc).partition(": ")[2]
            ) from None
        return msgspec.structs.replace(spec, cron=expr) if expr != spec.cron else spec

    async def put(self, spec: ScheduleSpec, now: float, *, replace: bool) -> tuple[Schedule, bool]:
        """Create the schedule, or return it unchanged when an identical one exists (False). With
        ``replace`` a different definition replaces it (its series goes on unless the cron expression
        or the timezone changed); without, that is a `ScheduleConflict`."""
        spec = self.check(spec, now)
        old = self.items.get(spec.name)
        if old is not None and old.spec == spec:
            return old, False
        if old is None:
            if len(self.items) >= MAX_SCHEDULES:
                raise TooManySchedules(MAX_SCHEDULES)
            new = Schedule(spec, False, now, now, now)
        elif not replace:
            raise ScheduleConflict(spec.name)
        else:
            same_timing = (old.spec.cron, old.spec.timezone) == (spec.cron, spec.timezone)
            last = old.last_tick if same_timing else now
            new = Schedule(spec, old.paused, old.created_at, now, last, old.last_run_at, old.last_job_id)
        await self._commit(RecordType.SCHEDULE_SET, new)
        self._noted(new)
        return self.items[spec.name], old is None

    def get(self, name: str) -> Schedule:
        s = self.items.get(name)
        if s is None:
            raise ScheduleNotFound(name)
        return s

    def all(self) -> list[Schedule]:
        """Every schedule, by name."""
        return [self.items[n] for n in sorted(self.items)]

    async def delete(self, name: str, now: float) -> Schedule:
        s = self.get(name)
        await self._commit(RecordType.SCHEDULE_DELETED, ScheduleDeleted(name, now))
        return s

    async def pause(self, name: str, now: float) -> Schedule:
        """Stop the schedule's ticks (idempotent)."""
        s = self.get(name)
        if not s.paused:
            changed = msgspec.structs.replace(s, paused=True, updated_at=now)
            await self._commit(RecordType.SCHEDULE_SET, changed)
        return self.get(name)

    async def resume(self, name: str, now: float) -> Schedule:
        """Tick again from ``now`` on: ticks that passed while paused are not caught up (idempotent)."""
        s = self.get(name)
        if s.paused:
            changed = msgspec.structs.replace(s, paused=False, updated_at=now, last_tick=now)
            await self._commit(RecordType.SCHEDULE_SET, changed)
            self._noted(self.get(name))
        return self.get(name)

    async def trigger(self, name: str, now: float) -> Job:
        """Enqueue the schedule's job now, outside its series (paused or not); returns the job."""
        s = self.get(name)
        return await self._fire(s, now, now, manual=True)

    def next_run_at(self, s: Schedule, now: float) -> float | None:
        """When ``s`` fires next (None while paused)."""
        if s.paused:
            return None
        return max(now, next_fire(s.spec.cron, s.spec.timezone, s.last_tick))

    # -- ticks ------------------------------------------------------------------------------------------

    async def tick(self, now: float) -> float | None:
        """Enqueue every due tick (misfire policies applied); returns when a schedule next fires."""
        deadline = math.inf
        for s in list(self.items.values()):
            if s.paused or self.items.get(s.spec.name) is not s:
                continue
            try:
                await self._catch_up(s, now)
            except (Overloaded, NoSpace) as exc:  # transient: the tick is tried again shortly
                log.warning("schedule %r could not enqueue its tick: %s", s.spec.name, exc)
                deadline = min(deadline, now + 1.0)
            except ValidationError as exc:  # e.g. a handler name the server stopped accepting
                log.error("schedule %r cannot enqueue its job: %s", s.spec.name, exc)
            current = self.items.get(s.spec.name)
            if current is not None and not current.paused:
                deadline = min(
                    deadline, next_fire(current.spec.cron, current.spec.timezone, current.last_tick)
                )
        if self.log.unsnapshotted >= SNAPSHOT_EVERY:
            await self.snapshot()
        return None if deadline == math.inf else deadline

    def due(self, s: Schedule, now: float) -> tuple[list[float], float | None]:
        """The ticks of ``s`` to run at ``now`` under its misfire policy, and the newest missed tick
        that none of them covers (to skip past), if any."""
        spec = s.spec
        if next_fire(spec.cron, spec.timezone, s.last_tick) > now:
            return [], None
        cutoff = now - GRACE
        missed = fires_between(spec.cron, spec.timezone, s.last_tick, cutoff, MAX_CATCH_UP)
        on_time = fires_between(spec.cron, spec.timezone, max(s.last_tick, cutoff), now, MAX_CATCH_UP)
        if spec.misfire == "all":
            run = (missed + on_time)[-MAX_CATCH_UP:]
        elif spec.misfire == "once" and missed:
            run = [missed[-1], *on_time]
        else:
            run = on_time
        newest_missed = missed[-1] if missed else None
        skipped = newest_missed if newest_missed is not None and not run else None
        return run, skipped

    async def _catch_up(self, s: Schedule, now: float) -> None:
        run, skipped = self.due(s, now)
        if skipped is not None:
            await self._commit(RecordType.SCHEDULE_TICKED, ScheduleTicked(s.spec.name, now, skipped, None))
        for tick in run:
            if self.items.get(s.spec.name) is not s or s.paused:  # changed while we awaited
                return
            await self._fire(s, tick, now, manual=False)

    async def _fire(self, s: Schedule, tick: float, now: float, *, manual: bool) -> Job:
        spec = s.spec
        stamp = rfc3339(tick)
        options = job_options(spec, {HEADER_SCHEDULE: spec.name, HEADER_TICK: stamp})
        key = None if manual else tick_key(spec.name, tick)
        payload = EMPTY_PAYLOAD if spec.payload is None else spec.payload
        job, _ = await self._enqueue(spec.queue, spec.job, payload, now, options, key)
        ticked = ScheduleTicked(spec.name, now, None if manual else tick, job.id)
        await self._commit(RecordType.SCHEDULE_TICKED, ticked)
        return job

    def _noted(self, s: Schedule) -> None:
        if self.on_deadline is not None and not s.paused:
            self.on_deadline(next_fire(s.spec.cron, s.spec.timezone, s.last_tick))

    # -- snapshots --------------------------------------------------------------------------------------

    async def snapshot(self) -> int:
        """Write a snapshot of every schedule at the applied LSN; returns that LSN."""
        return await self.log.snapshot(
            lambda: _encode(SchedulesSnapshot(rec.SCHEDULES_SNAPSHOT_VERSION, list(self.items.values())))
        )
