"""`App` and `@app.job`: declare job functions once, enqueue them with checked arguments, run
them in a `Worker`.

A job's payload is a msgpack map of its keyword arguments (parameters left at their default are
left out, so the worker's function applies its own default). At enqueue time the arguments are
bound to the function's signature and checked against its type hints with msgspec, so a wrong
argument fails in the producer with a clear error instead of in the worker later. Parameters hinted
with pydantic models are validated and dumped by pydantic, when it is installed (`_pydantic`).

``@app.cron("0 3 * * *", timezone="Europe/Berlin")`` on a job function declares a recurring schedule
of it (its payload: the keyword arguments given, checked the same way); `App.register_schedules`
upserts them by name on the server, and ``spitfire worker`` does so when it starts.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import typing
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar, Unpack, overload

import msgspec

from spitfire.protocol.messages import Backoff, PutSchedule

from . import _pydantic
from ._context import JobContext
from .client import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_TIMEOUT,
    AsyncClient,
    BatchOptions,
    Delay,
    EnqueueOptions,
    check_options,
)
from .errors import BadRequest, Conflict, JobArgumentError
from .models import AsyncJobId, JobId, Schedule, enc_hook
from .schedules import MISFIRE_POLICIES, ScheduleJobOptions, put_message
from .sync import Client

__all__ = ["App", "ArgSpec", "CronSchedule", "EnqueueOptions", "JobFunction"]

#: Where ``@app.cron`` below ``@app.job`` leaves its schedules for ``@app.job`` to pick up.
_PENDING_CRONS = "__spitfire_crons__"

P = ParamSpec("P")
R = TypeVar("R")

#: msgpack nil: what `client.enqueue(queue, name)` sends when no payload is given.
_NIL = b"\xc0"
#: One call of ``fn.enqueue_many``: keyword arguments, or positional ones.
Call = Mapping[str, Any] | Sequence[Any]
_encode = msgspec.msgpack.Encoder(enc_hook=enc_hook).encode


class ArgSpec:
    """A job function's parameters as a msgspec Struct: checks and encodes arguments (producer
    side) and decodes payloads back into keyword arguments (worker side)."""

    def __init__(self, fn: Callable[..., Any], job_name: str) -> None:
        self.job_name = job_name
        sig = inspect.signature(fn)
        hints = _type_hints(fn, job_name)
        fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        params: list[inspect.Parameter] = []
        #: The parameter the worker passes the JobContext in, if the function has one.
        self.ctx_param: str | None = None
        for p in sig.parameters.values():
            _check_kind(p, job_name)
            hint = hints.get(p.name, Any)
            if p.name == "ctx" or hint is JobContext:
                self.ctx_param = p.name
                continue
            params.append(p)
            if p.default is inspect.Parameter.empty:
                fields.append((p.name, hint))
            else:
                # UNSET: a parameter left at its default is not sent; the worker's default applies.
                fields.append((p.name, typing.Union[hint, msgspec.UnsetType], msgspec.UNSET))  # noqa: UP007
        self.signature = sig.replace(parameters=params)
        self.names = tuple(p.name for p in params)
        try:
            self.struct: type[msgspec.Struct] = msgspec.defstruct(
                f"{job_name}_args", fields, kw_only=True, forbid_unknown_fields=False
            )
            # Payloads are JSON data to a pydantic model: the worker validates them as JSON.
            self._decoder = msgspec.msgpack.Decoder(self.struct, dec_hook=_pydantic.worker_dec_hook)
        except TypeError as exc:
            raise TypeError(f"job {job_name!r}: its type hints cannot be checked by msgspec: {exc}") from None

    def encode(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bytes:
        """Bind, check and encode the arguments of one call.

        :raises JobArgumentError: they do not fit the signature or the type hints (naming the argument).
        """
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise JobArgumentError(f"{self.job_name}.enqueue(): {exc}") from None
        try:
            value = msgspec.convert(bound.arguments, self.struct, dec_hook=_pydantic.dec_hook)
        except msgspec.ValidationError as exc:
            raise _argument_error(self.job_name, exc) from None
        try:
            return _encode(value)
        except OverflowError as exc:  # an int past msgpack's 64 bits (2**70): name the argument
            big = next((n for n, v in bound.arguments.items() if _too_big(v)), None)
            where = f"argument {big!r}" if big is not None else "an argument"
            raise JobArgumentError(
                f"{self.job_name}.enqueue(): {where} is an integer msgpack cannot carry ({exc}); pass "
                "integers from -2**63 to 2**64 - 1, or a string",
                big,
            ) from None
        except (TypeError, msgspec.EncodeError) as exc:
            raise JobArgumentError(
                f"{self.job_name}.enqueue(): the arguments cannot be encoded as msgpack: {exc}"
            ) from None

    def decode(self, payload: bytes) -> dict[str, Any]:
        """The keyword arguments a payload carries, converted to the hinted types.

        :raises msgspec.ValidationError, msgspec.DecodeError: the payload does not fit.
        """
        if payload == _NIL:
            payload = b"\x80"  # no payload at all: call with no arguments
        value = self._decoder.decode(payload)
        unset = msgspec.UNSET
        return {n: v for n in self.names if (v := getattr(value, n)) is not unset}


def _too_big(value: Any) -> bool:
    """True for an int (or one inside a list, tuple or dict) outside msgpack's 64-bit range."""
    if isinstance(value, int) and not isinstance(value, bool):
        return not -(2**63) <= value <= 2**64 - 1
    if isinstance(value, list | tuple | set | frozenset):
        return any(_too_big(v) for v in value)
    if isinstance(value, dict):
        return any(_too_big(v) for v in value.values())
    return False


def _type_hints(fn: Callable[..., Any], job_name: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:  # NameError from a forward reference, TypeError from a bad hint
        raise TypeError(
            f"job {job_name!r}: cannot resolve its type hints ({exc}); import the types they name at "
            "module level"
        ) from None


def _check_kind(p: inspect.Parameter, job_name: str) -> None:
    if p.kind is inspect.Parameter.POSITIONAL_ONLY:
        raise TypeError(f"job {job_name!r}: parameter {p.name!r} is positional-only; job payloads pass names")
    if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
        raise TypeError(
            f"job {job_name!r}: *args and **kwargs cannot be checked or sent by name; "
            "give the job named parameters"
        )


def _argument_error(job_name: str, exc: msgspec.ValidationError) -> JobArgumentError:
    """Turn msgspec's "Expected `int`, got `str` - at `$.count`" into a message naming the argument
    (and a pydantic model's error into one naming the field inside the model too)."""
    text = str(exc)
    message, _, path = text.rpartition(" - at `")
    if not message:
        return JobArgumentError(f"{job_name}.enqueue(): {text}")
    path = path.rstrip("`")
    cause = exc.__cause__  # what the dec_hook raised, when it did
    if isinstance(cause, _pydantic.ModelInvalid):
        message, path = cause.message, path + cause.loc
    head = path[2:] if path.startswith("$.") else path
    argument = head.split(".", 1)[0].split("[", 1)[0]
    where = f" (at {path[2:]})" if path[2:] != argument else ""
    return JobArgumentError(f"{job_name}.enqueue(): argument {argument!r}{where}: {message}", argument)


class JobFunction(Generic[P, R]):
    """A function declared with ``@app.job``. Calling it runs the function here and now, as before;
    `enqueue` sends it to a worker instead."""

    def __init__(self, app: App, fn: Callable[P, R], name: str, queue: str, defaults: EnqueueOptions) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        #: The queue its jobs go to.
        self.queue = queue
        #: Options of every enqueue, from ``@app.job(...)`` (None or absent: the server's default).
        self.defaults = defaults
        self.spec = ArgSpec(fn, name)
        self.is_async = inspect.iscoroutinefunction(fn)
        self.__wrapped__ = fn
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__qualname__ = getattr(fn, "__qualname__", name)
        self.__module__ = fn.__module__

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<spitfire job {self.name!r} on queue {self.queue!r}>"

    def enqueue(self, *args: Any, **kwargs: Any) -> JobId:
        """Send a call to a worker (from synchronous code); returns the job id once durable, a
        ``str`` that also has ``.created`` and ``.wait()`` (``fn.enqueue(...).wait()``: the result).

        :raises JobArgumentError: the arguments do not fit the signature or type hints.
        """
        return _EnqueueCall(self, self.queue, self.defaults).enqueue(*args, **kwargs)

    async def enqueue_async(self, *args: Any, **kwargs: Any) -> AsyncJobId:
        """`enqueue` for asyncio code: ``await fn.enqueue_async(...)`` (``await id.wait()``)."""
        return await _EnqueueCall(self, self.queue, self.defaults).enqueue_async(*args, **kwargs)

    def enqueue_many(self, calls: Iterable[Call], **options: Unpack[BatchOptions]) -> list[str]:
        """Send many calls in one request and one fsync (all or none); returns their ids in order.

        Each call is a mapping of keyword arguments, or a tuple of positional ones, each checked
        against the signature like `enqueue`: ``resize.enqueue_many([{"path": p} for p in paths])``.
        ``options`` are ``@app.job``'s, overridden here (``idempotency_keys``: one per call).
        :raises JobArgumentError: a call does not fit (its message names the call's index).
        """
        return _EnqueueCall(self, self.queue, self.defaults).enqueue_many(calls, **options)

    async def enqueue_many_async(self, calls: Iterable[Call], **options: Unpack[BatchOptions]) -> list[str]:
        """`enqueue_many` for asyncio code."""
        return await _EnqueueCall(self, self.queue, self.defaults).enqueue_many_async(calls, **options)

    def options(self, *, queue: str | None = None, **options: Unpack[EnqueueOptions]) -> _EnqueueCall:
        """Per-call options: ``fn.options(delay=10, idempotency_key="k").enqueue(...)``.

        Options not given keep the values of ``@app.job(...)``; ``queue`` sends this call elsewhere.
        :raises TypeError: an unknown option.
        """
        check_options(options, EnqueueOptions)
        merged: EnqueueOptions = {**self.defaults, **options}
        return _EnqueueCall(self, queue or self.queue, merged)


def _refused(c: CronSchedule, exc: BadRequest) -> BadRequest:
    return BadRequest(f"schedule {c.name!r} (@app.cron on job {c.job.name!r}): {exc.message}", exc.field)


class _EnqueueCall:
    """A job function with per-call options, ready to `enqueue`."""

    __slots__ = ("job", "opts", "queue")

    def __init__(self, job: JobFunction[Any, Any], queue: str, opts: EnqueueOptions) -> None:
        self.job = job
        self.queue = queue
        self.opts = opts

    def enqueue(self, *args: Any, **kwargs: Any) -> JobId:
        """Send the call (sync); returns the job id."""
        data = self.job.spec.encode(args, kwargs)
        return self.job.app.client.enqueue_raw(self.queue, self.job.name, data, **self.opts)

    async def enqueue_async(self, *args: Any, **kwargs: Any) -> AsyncJobId:
        """Send the call (asyncio); returns the job id."""
        data = self.job.spec.encode(args, kwargs)
        return await self._send(self.job.app.async_client(), data)

    def _send(self, client: AsyncClient, data: bytes) -> Coroutine[Any, Any, AsyncJobId]:
        return client.enqueue_raw(self.queue, self.job.name, data, **self.opts)

    def _batch(self, calls: Iterable[Call], options: BatchOptions) -> tuple[list[bytes], BatchOptions]:
        check_options(options, BatchOptions)
        payloads: list[bytes] = []
        for i, call in enumerate(calls):
            args, kwargs = ((), call) if isinstance(call, Mapping) else (tuple(call), {})
            try:
                payloads.append(self.job.spec.encode(args, kwargs))
            except JobArgumentError as exc:
                raise JobArgumentError(f"calls[{i}]: {exc.message}", exc.argument) from None
        merged: dict[str, Any] = {k: v for k, v in self.opts.items() if k != "idempotency_key"}
        merged.update(options)
        return payloads, typing.cast(BatchOptions, merged)

    def enqueue_many(self, calls: Iterable[Call], **options: Unpack[BatchOptions]) -> list[str]:
        """Send many calls (sync); returns their ids."""
        payloads, opts = self._batch(calls, options)
        return self.job.app.client.enqueue_many_raw(self.queue, self.job.name, payloads, **opts)

    async def enqueue_many_async(self, calls: Iterable[Call], **options: Unpack[BatchOptions]) -> list[str]:
        """Send many calls (asyncio); returns their ids."""
        payloads, opts = self._batch(calls, options)
        client = self.job.app.async_client()
        return await client.enqueue_many_raw(self.queue, self.job.name, payloads, **opts)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A schedule declared in code with ``@app.cron``: upserted by name on the server by
    `App.register_schedules` (and when ``spitfire worker`` starts)."""

    #: The schedule's name on the server (default: the job's name).
    name: str
    cron: str
    timezone: str
    misfire: str
    job: JobFunction[Any, Any]
    #: The job function's keyword arguments, checked against its type hints.
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: Options of each tick's job; the job's ``@app.job`` options apply where not given.
    options: ScheduleJobOptions = field(default_factory=lambda: ScheduleJobOptions())
    #: The payload: the arguments, checked and encoded when the schedule was declared.
    data: bytes = b"\x80"

    def message(self, *, replace: bool = True) -> PutSchedule:
        """The PUT_SCHEDULE request of this schedule (an upsert unless ``replace`` is false)."""
        return put_message(
            self.name, self.cron, self.job.queue, self.job.name, self.data, timezone=self.timezone,
            misfire=self.misfire, replace=replace, options=self.options,
        )  # fmt: skip


def _job_options(job: JobFunction[Any, Any], options: ScheduleJobOptions) -> ScheduleJobOptions:
    """``options`` over the job's ``@app.job`` defaults (priority, max_attempts, backoff, timeout)."""
    merged: dict[str, Any] = {
        k: v for k, v in job.defaults.items() if k in ScheduleJobOptions.__annotations__ and v is not None
    }
    merged.update(options)
    return typing.cast(ScheduleJobOptions, merged)


def _encode_kwargs(job: JobFunction[Any, Any], kwargs: Mapping[str, Any], what: str) -> bytes:
    """The payload of a schedule of ``job``: its keyword arguments, checked as ``enqueue`` checks them."""
    try:
        return job.spec.encode((), kwargs)
    except JobArgumentError as exc:
        message = exc.message.replace(f"{job.name}.enqueue()", f"{what} of job {job.name!r}", 1)
        raise JobArgumentError(message, exc.argument) from None


class App:
    """A set of job functions and the server they are sent to.

    ``url``, ``auth_token``, ``timeout``, ``connect_timeout`` and ``tls_ca`` are as in `Client`
    (``url`` None: ``SPITFIRE_URL``, else ``tcp://127.0.0.1:7878``). Declare jobs with `job`;
    run them with ``spitfire worker module:app`` or `Worker`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        auth_token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        tls_ca: str | None = None,
    ) -> None:
        self.url = url
        self.auth_token = auth_token
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.tls_ca = tls_ca
        #: Job functions by job name.
        self.jobs: dict[str, JobFunction[Any, Any]] = {}
        #: Schedules declared with ``@app.cron``, by schedule name.
        self.crons: dict[str, CronSchedule] = {}
        self._client: Client | None = None
        self._async: tuple[asyncio.AbstractEventLoop, AsyncClient] | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"App({self.url!r}, jobs={sorted(self.jobs)})"

    @property
    def queues(self) -> list[str]:
        """Every queue one of the app's jobs goes to (what a worker subscribes to by default)."""
        return sorted({j.queue for j in self.jobs.values()})

    @overload
    def job(self, fn: Callable[P, R], /) -> JobFunction[P, R]: ...

    @overload
    def job(
        self,
        /,
        *,
        queue: str = "default",
        name: str | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | Sequence[float] | None = None,
        timeout: Delay | None = None,
        priority: int = 0,
    ) -> Callable[[Callable[P, R]], JobFunction[P, R]]: ...

    def job(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        queue: str = "default",
        name: str | None = None,
        max_attempts: int | None = None,
        backoff: Backoff | Sequence[float] | None = None,
        timeout: Delay | None = None,
        priority: int = 0,
    ) -> Any:
        """Declare a job function (sync or async): ``@app.job`` or ``@app.job(queue="emails", ...)``.

        ``name`` (default: the function's ``__name__``) is the handler name on the wire; producers in
        other languages enqueue with it. ``max_attempts``, ``backoff``, ``timeout`` (the lease,
        extended by heartbeats while the job runs) and ``priority`` are defaults of every enqueue.

        :raises TypeError: the signature has *args/**kwargs/positional-only parameters, or hints
            msgspec cannot check.
        :raises ValueError: another job of this app already has the name.
        """
        given: EnqueueOptions = {
            "priority": priority,
            "max_attempts": max_attempts,
            "backoff": backoff,
            "timeout": timeout,
        }
        defaults: EnqueueOptions = {k: v for k, v in given.items() if v is not None}  # type: ignore[assignment]

        def register(f: Callable[..., Any]) -> JobFunction[Any, Any]:
            job_name = name or getattr(f, "__name__", None)
            if not job_name:
                raise TypeError("this callable has no __name__: pass @app.job(name=...)")
            if job_name in self.jobs:
                raise ValueError(f"this app already has a job named {job_name!r}: pass @app.job(name=...)")
            wrapped = JobFunction(self, f, job_name, queue, defaults)
            pending: list[dict[str, Any]] = list(getattr(f, _PENDING_CRONS, ()))
            for declared in pending:  # check them all before registering anything
                self._cron_of(wrapped, **declared)
            self.jobs[job_name] = wrapped
            for declared in reversed(pending):  # in source order (the innermost decorator ran first)
                c = self._cron_of(wrapped, **declared)
                self.crons[c.name] = c
            return wrapped

        return register if fn is None else register(fn)

    def cron(
        self,
        cron: str,
        /,
        *,
        timezone: str = "UTC",
        name: str | None = None,
        misfire: str = "skip",
        kwargs: Mapping[str, Any] | None = None,
        **options: Unpack[ScheduleJobOptions],
    ) -> Callable[[Any], Any]:
        """Run a job function on a recurring schedule: ``@app.cron("0 3 * * *", timezone="Europe/Berlin")``.

        Stack it over or under ``@app.job`` (several for several schedules of one function, each
        with its own ``name=``). ``cron`` is 5 fields (minute hour day month weekday), 6 with seconds
        last, or ``@hourly``-style aliases, read in ``timezone`` (IANA); the schedule's ``name``
        defaults to the job's name. ``kwargs`` are the job's keyword arguments, checked against its
        type hints as ``enqueue`` checks them; ``options`` (``priority``, ``max_attempts``,
        ``backoff``, ``timeout``, ``headers``) override the job's ``@app.job`` options. ``misfire``:
        ``skip`` (default), ``once`` or ``all``.

        A function with ``@app.cron`` but no ``@app.job`` is not a job, and its schedules are never
        registered. Declaring sends nothing: `register_schedules` (or ``spitfire worker`` at start)
        upserts the app's schedules by name. A schedule removed from the code stays on the server
        until removed (``spitfire schedules rm NAME``). The server checks the expression and the
        timezone then.

        :raises ValueError: an unknown ``misfire``, or a second schedule of that name in this app.
        :raises JobArgumentError: ``kwargs`` do not fit the function (checked once it is a job).
        :raises TypeError: an unknown option.
        """
        declared: dict[str, Any] = {
            "cron": cron, "timezone": timezone, "name": name, "misfire": misfire,
            "kwargs": dict(kwargs or {}), "options": dict(options),
        }  # fmt: skip
        if misfire not in MISFIRE_POLICIES:
            raise ValueError(f"misfire={misfire!r}: use one of {', '.join(MISFIRE_POLICIES)}")
        unknown = set(options).difference(ScheduleJobOptions.__annotations__)
        if unknown:
            known = ", ".join(ScheduleJobOptions.__annotations__)
            raise TypeError(
                f"@app.cron: unexpected option(s) {', '.join(sorted(unknown))}; the options are {known}"
            )

        def decorate(target: Any) -> Any:
            if isinstance(target, JobFunction):
                if target.app is not self:
                    raise ValueError(f"job {target.name!r} belongs to another App; use that app's @cron")
                c = self._cron_of(target, **declared)
                self.crons[c.name] = c
                return target
            if not callable(target):
                raise TypeError("@app.cron decorates a job function (a def or async def)")
            # Under @app.job: leave it on the function for @app.job to register.
            pending = [*getattr(target, _PENDING_CRONS, ()), declared]
            setattr(target, _PENDING_CRONS, pending)
            return target

        return decorate

    def _cron_of(
        self,
        job: JobFunction[Any, Any],
        *,
        cron: str,
        timezone: str,
        name: str | None,
        misfire: str,
        kwargs: Mapping[str, Any],
        options: ScheduleJobOptions,
    ) -> CronSchedule:
        schedule_name = name or job.name
        if schedule_name in self.crons:
            raise ValueError(
                f"this app already has a schedule named {schedule_name!r}: give the second one "
                "@app.cron(..., name=...)"
            )
        data = _encode_kwargs(job, kwargs, f"@app.cron({cron!r})")
        return CronSchedule(
            schedule_name, cron, timezone, misfire, job, kwargs, _job_options(job, options), data
        )

    def register_schedules(self) -> list[Schedule]:
        """Upsert every ``@app.cron`` schedule on the server by name (what ``spitfire worker`` does at
        start); returns them as the server holds them. Schedules not in the code are left alone.

        :raises BadRequest: a schedule the server refuses (``field`` names what: ``cron``,
            ``timezone``...); the message names the schedule. Those before it were registered.
        """
        schedules = self.client.schedules
        out = []
        for c in self.crons.values():
            try:
                out.append(schedules.put_message(c.message())[0])
            except BadRequest as exc:
                raise _refused(c, exc) from None
        return out

    async def register_schedules_async(self, client: AsyncClient | None = None) -> list[Schedule]:
        """`register_schedules` for asyncio code (with ``client``, or the app's for this loop)."""
        schedules = (client or self.async_client()).schedules
        out = []
        for c in self.crons.values():
            try:
                out.append((await schedules.put_message(c.message()))[0])
            except BadRequest as exc:
                raise _refused(c, exc) from None
        return out

    def schedule(
        self,
        job: JobFunction[Any, Any],
        cron: str,
        /,
        *,
        name: str | None = None,
        timezone: str = "UTC",
        misfire: str = "skip",
        kwargs: Mapping[str, Any] | None = None,
        replace: bool = False,
        **options: Unpack[ScheduleJobOptions],
    ) -> Schedule:
        """Create a schedule of a job function on the server now (not kept in the app): arguments as
        in `cron`. Without ``replace`` an identical schedule of that name is returned as it is and a
        different one raises `Conflict`; with it, it is replaced.

        :raises JobArgumentError: ``kwargs`` do not fit the function.
        :raises BadRequest: the server refused a field (``field`` names it); nothing was created.
        """
        if not isinstance(job, JobFunction):
            raise TypeError("app.schedule() takes a job function declared with @app.job")
        data = _encode_kwargs(job, kwargs or {}, f"app.schedule({cron!r})")
        message = put_message(
            name or job.name, cron, job.queue, job.name, data, timezone=timezone, misfire=misfire,
            replace=replace, options=_job_options(job, options),
        )  # fmt: skip
        try:
            return self.client.schedules.put_message(message)[0]
        except Conflict as exc:
            if "different definition" not in exc.message:
                raise
            head = exc.message.split("; ")[0]
            raise Conflict(f"{head}; pass replace=True to replace it, or pick another name") from None

    @property
    def client(self) -> Client:
        """The app's synchronous client (made on first use; shared by threads)."""
        with self._lock:
            if self._client is None:
                self._client = Client(
                    self.url,
                    auth_token=self.auth_token,
                    timeout=self.timeout,
                    connect_timeout=self.connect_timeout,
                    tls_ca=self.tls_ca,
                )
            return self._client

    def async_client(self) -> AsyncClient:
        """The app's AsyncClient for the running event loop (one per loop)."""
        loop = asyncio.get_running_loop()
        current = self._async
        if current is None or current[0] is not loop:
            current = (loop, self.new_async_client())
            self._async = current
        return current[1]

    def new_async_client(self) -> AsyncClient:
        """A new AsyncClient with the app's settings (the caller closes it)."""
        return AsyncClient(
            self.url,
            auth_token=self.auth_token,
            timeout=self.timeout,
            connect_timeout=self.connect_timeout,
            tls_ca=self.tls_ca,
        )

    def close(self) -> None:
        """Close the app's synchronous client (its async ones close with their loops)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
