"""``client.schedules``: recurring (cron) schedules kept by the server, from `AsyncClient` and `Client`.

At each time a schedule's cron expression names (read in its timezone) the server enqueues one job:
its queue, handler name, payload and options. Definitions are durable on the server and survive its
restarts; a tick is never enqueued twice. ``add`` creates (an identical definition already there is
returned as it is; a different one raises `Conflict`), ``put`` creates or replaces.

    with spitfire.Client() as client:
        client.schedules.add("nightly", "0 3 * * *", "reports", "build_report", {"kind": "daily"},
                             timezone="Europe/Berlin", priority=5)
        client.schedules.trigger("nightly")     # run it now too; returns the job id
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from spitfire.protocol.messages import (
    Backoff,
    ListSchedules,
    MessageType,
    PutSchedule,
    ScheduleOptions,
    ScheduleRef,
)

from .client import Delay, _seconds, encode_payload, wire_backoff
from .errors import Conflict
from .models import Schedule

if TYPE_CHECKING:
    from .client import AsyncClient
    from .sync import Client

__all__ = ["MISFIRE_POLICIES", "AsyncSchedules", "ScheduleJobOptions", "Schedules", "put_message"]

#: What happens to ticks missed while the server was down: none run (default), one catch-up job, or
#: each of them (at most 100).
MISFIRE_POLICIES = ("skip", "once", "all")


class ScheduleJobOptions(TypedDict, total=False):
    """Options of the job each tick enqueues, each optional (as in `AsyncClient.enqueue`)."""

    priority: int
    max_attempts: int | None
    backoff: Backoff | Sequence[float] | None
    timeout: Delay | None
    headers: Mapping[str, str] | None


def _check_job_options(options: Mapping[str, object]) -> None:
    unknown = set(options).difference(ScheduleJobOptions.__annotations__)
    if unknown:
        known = ", ".join(ScheduleJobOptions.__annotations__)
        raise TypeError(f"unexpected option(s) {', '.join(sorted(unknown))}; a schedule's job takes {known}")


def put_message(
    name: str,
    cron: str,
    queue: str,
    job: str,
    data: bytes | None,
    *,
    timezone: str = "UTC",
    misfire: str = "skip",
    replace: bool = False,
    options: ScheduleJobOptions | None = None,
) -> PutSchedule:
    """The PUT_SCHEDULE request of one definition whose payload is already msgpack ``data`` (None:
    no arguments). The server checks every field (a bad one raises `BadRequest` naming it).

    :raises TypeError: an unknown option, or a timeout that is not seconds or a timedelta.
    """
    o: ScheduleJobOptions = options or {}
    _check_job_options(o)
    headers = o.get("headers")
    wire = ScheduleOptions(
        o.get("priority", 0),
        o.get("max_attempts"),
        wire_backoff(o.get("backoff")),
        _seconds(o.get("timeout"), "timeout"),
        None if headers is None else dict(headers),
    )
    return PutSchedule(name, cron, queue, job, timezone, data, wire, misfire, replace)


def _conflict(exc: Conflict) -> Conflict:
    """The server's CONFLICT for ``add``, saying how to replace from the SDK."""
    if "different definition" not in exc.message:
        return exc  # e.g. the server's limit of schedules
    head = exc.message.split("; ")[0]
    return Conflict(f"{head}; replace it with schedules.put(...) (an upsert), or pick another name")


def _data(payload: Any) -> bytes | None:
    return None if payload is None else encode_payload(payload)


class AsyncSchedules:
    """The schedule operations of an `AsyncClient` (``client.schedules``); every method is awaited.

    Errors: `BadRequest` (``field`` names the argument: ``cron``, ``timezone``, ``misfire``,
    ``options.priority``...), `ScheduleNotFound`, `Conflict` (``add`` of a name defined differently;
    more than 10,000 schedules), and the connection errors of the client.
    """

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def add(
        self,
        name: str,
        cron: str,
        queue: str,
        job: str,
        payload: Any = None,
        *,
        timezone: str = "UTC",
        misfire: str = "skip",
        **options: Unpack[ScheduleJobOptions],
    ) -> Schedule:
        """Create a schedule: at each time ``cron`` names (5 fields, 6 with seconds last, or
        ``@hourly``-style aliases), read in ``timezone`` (IANA, e.g. ``Europe/Berlin``), enqueue job
        ``job`` on ``queue`` with ``payload`` (any msgpack-able object) and ``options`` (``priority``,
        ``max_attempts``, ``backoff``, ``timeout``, ``headers``). ``misfire``: ``skip``, ``once`` or
        ``all`` (see `MISFIRE_POLICIES`).

        An identical schedule of that name already there is returned as it is.

        :raises Conflict: a schedule of that name exists with a different definition: use `put`.
        :raises BadRequest: an invalid field (``field`` names it); nothing was created.
        """
        message = put_message(
            name, cron, queue, job, _data(payload), timezone=timezone, misfire=misfire, options=options
        )
        try:
            return (await self.put_message(message))[0]
        except Conflict as exc:
            raise _conflict(exc) from None

    async def put(
        self,
        name: str,
        cron: str,
        queue: str,
        job: str,
        payload: Any = None,
        *,
        timezone: str = "UTC",
        misfire: str = "skip",
        **options: Unpack[ScheduleJobOptions],
    ) -> Schedule:
        """Create the schedule, or replace the one of that name (upsert); arguments as in `add`.

        A replaced schedule keeps its paused flag, and its series goes on unless ``cron`` or
        ``timezone`` changed. :raises BadRequest: an invalid field; nothing was changed.
        """
        message = put_message(
            name, cron, queue, job, _data(payload), timezone=timezone, misfire=misfire, replace=True,
            options=options,
        )  # fmt: skip
        return (await self.put_message(message))[0]

    #: `put` under the name other queues use.
    upsert = put

    async def put_message(self, message: PutSchedule) -> tuple[Schedule, bool]:
        """Send a prepared PUT_SCHEDULE (see `put_message`); returns the schedule and whether it was
        created. Safe to resend after a lost connection (a repeat finds it identical)."""
        reply = await self._client._call(
            MessageType.PUT_SCHEDULE, message, resend=True, schedule=message.name
        )
        return Schedule.from_info(reply.schedule), bool(reply.created)

    async def _one(self, kind: MessageType, name: str, resend: bool = True) -> Schedule:
        """A request naming schedule ``name``, answered with it."""
        reply = await self._client._call(kind, ScheduleRef(name), resend=resend, schedule=name)
        return Schedule.from_info(reply.schedule)

    async def get(self, name: str) -> Schedule:
        """The schedule named ``name``. :raises ScheduleNotFound: no such schedule."""
        return await self._one(MessageType.GET_SCHEDULE, name)

    async def list(self) -> list[Schedule]:
        """Every schedule on the server, by name."""
        reply = await self._client._call(MessageType.LIST_SCHEDULES, ListSchedules(), resend=True)
        return [Schedule.from_info(s) for s in reply.schedules]

    async def remove(self, name: str) -> Schedule:
        """Delete the schedule (the jobs it already enqueued stay); returns it as it was.
        Not resent after a lost connection. :raises ScheduleNotFound: no such schedule."""
        return await self._one(MessageType.DELETE_SCHEDULE, name, resend=False)

    async def pause(self, name: str) -> Schedule:
        """Stop the schedule's ticks until `resume` (idempotent). :raises ScheduleNotFound."""
        return await self._one(MessageType.PAUSE_SCHEDULE, name)

    async def resume(self, name: str) -> Schedule:
        """Tick again from now on; ticks that passed while paused are not caught up (idempotent).
        :raises ScheduleNotFound: no such schedule."""
        return await self._one(MessageType.RESUME_SCHEDULE, name)

    async def trigger(self, name: str) -> str:
        """Enqueue the schedule's job now, outside its series (paused or not); returns the job id once
        the job is durable. Not resent after a lost connection. :raises ScheduleNotFound."""
        reply = await self._client._call(MessageType.TRIGGER_SCHEDULE, ScheduleRef(name), schedule=name)
        job_id: str = reply.job_id
        return job_id


class Schedules:
    """The schedule operations of a `Client` (``client.schedules``): `AsyncSchedules` without await."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def _async(self) -> AsyncSchedules:
        return self._client.async_client.schedules

    def add(
        self,
        name: str,
        cron: str,
        queue: str,
        job: str,
        payload: Any = None,
        *,
        timezone: str = "UTC",
        misfire: str = "skip",
        **options: Unpack[ScheduleJobOptions],
    ) -> Schedule:
        """Create a schedule (an identical one is returned as it is). See `AsyncSchedules.add`.

        :raises Conflict: the name exists with a different definition: use `put`.
        :raises BadRequest: an invalid field (``field`` names it); nothing was created.
        """
        message = put_message(
            name, cron, queue, job, _data(payload), timezone=timezone, misfire=misfire, options=options
        )
        try:
            return self.put_message(message)[0]
        except Conflict as exc:
            raise _conflict(exc) from None

    def put(
        self,
        name: str,
        cron: str,
        queue: str,
        job: str,
        payload: Any = None,
        *,
        timezone: str = "UTC",
        misfire: str = "skip",
        **options: Unpack[ScheduleJobOptions],
    ) -> Schedule:
        """Create or replace the schedule (upsert). See `AsyncSchedules.put`."""
        message = put_message(
            name, cron, queue, job, _data(payload), timezone=timezone, misfire=misfire, replace=True,
            options=options,
        )  # fmt: skip
        return self.put_message(message)[0]

    #: `put` under the name other queues use.
    upsert = put

    def put_message(self, message: PutSchedule) -> tuple[Schedule, bool]:
        """Send a prepared PUT_SCHEDULE; returns the schedule and whether it was created."""
        c = self._client
        if c._bridge:
            return c._run(self._async().put_message(message))
        reply = c._call(MessageType.PUT_SCHEDULE, message, resend=True, schedule=message.name)
        return Schedule.from_info(reply.schedule), bool(reply.created)

    def _one(self, kind: MessageType, name: str, resend: bool = True) -> Schedule:
        """A request naming schedule ``name``, answered with it (through the async client over quic://)."""
        c = self._client
        if c._bridge:
            return c._run(self._async()._one(kind, name, resend))
        return Schedule.from_info(c._call(kind, ScheduleRef(name), resend=resend, schedule=name).schedule)

    def get(self, name: str) -> Schedule:
        """The schedule named ``name``. :raises ScheduleNotFound: no such schedule."""
        return self._one(MessageType.GET_SCHEDULE, name)

    def list(self) -> list[Schedule]:
        """Every schedule on the server, by name."""
        c = self._client
        if c._bridge:
            return c._run(self._async().list())
        reply = c._call(MessageType.LIST_SCHEDULES, ListSchedules(), resend=True)
        return [Schedule.from_info(s) for s in reply.schedules]

    def remove(self, name: str) -> Schedule:
        """Delete the schedule; returns it as it was. See `AsyncSchedules.remove`."""
        return self._one(MessageType.DELETE_SCHEDULE, name, resend=False)

    def pause(self, name: str) -> Schedule:
        """Stop the schedule's ticks (idempotent). See `AsyncSchedules.pause`."""
        return self._one(MessageType.PAUSE_SCHEDULE, name)

    def resume(self, name: str) -> Schedule:
        """Tick again from now on (idempotent). See `AsyncSchedules.resume`."""
        return self._one(MessageType.RESUME_SCHEDULE, name)

    def trigger(self, name: str) -> str:
        """Enqueue the schedule's job now; returns the job id. See `AsyncSchedules.trigger`."""
        c = self._client
        if c._bridge:
            return c._run(self._async().trigger(name))
        job_id: str = c._call(MessageType.TRIGGER_SCHEDULE, ScheduleRef(name), schedule=name).job_id
        return job_id
