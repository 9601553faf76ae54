"""Run-time support of the code ``spitfire codegen --lang python`` writes: a job declared in a
``.proto`` file, its payload a msgspec Struct.

A `JobSchema` checks a payload Struct against its type (msgspec validation: types, integer
ranges, enum values) before anything is sent, enqueues it as a msgpack map keyed by field name
with the message's ``(spitfire.*)`` options as defaults, and registers worker handlers that take
the Struct::

    from gen.example import SEND_EMAIL_JOB, SendEmail, enqueue_send_email

    enqueue_send_email(client, SendEmail(to="a@b.c"))         # JobArgumentError names a bad field

    @SEND_EMAIL_JOB.handler(app)
    def send_email(email: SendEmail) -> None: ...
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, Unpack, cast

import msgspec

from spitfire.protocol.messages import Backoff

from .app import App, JobFunction
from .client import AsyncClient, EnqueueOptions, check_options
from .errors import JobArgumentError
from .models import enc_hook
from .sync import Client

__all__ = ["JobSchema", "SchemaEnqueueOptions"]

S = TypeVar("S", bound=msgspec.Struct)
R = TypeVar("R")


class SchemaEnqueueOptions(EnqueueOptions, total=False):
    """Options of one enqueue of a schema job: `EnqueueOptions`, and ``queue`` to send it elsewhere."""

    queue: str


class JobSchema(Generic[S]):
    """A job declared in a ``.proto`` file: its payload Struct, its name and queue, and the
    defaults of every enqueue (the message's options; None: the server's default)."""

    __slots__ = ("_decoder", "defaults", "name", "queue", "source", "struct")

    def __init__(
        self,
        struct: type[S],
        name: str,
        *,
        queue: str = "default",
        max_attempts: int | None = None,
        backoff: Backoff | None = None,
        priority: int | None = None,
        timeout: float | None = None,
        source: str = "",
    ) -> None:
        self.struct = struct
        #: The job (handler) name on the wire.
        self.name = name
        #: The queue its jobs go to unless ``queue=`` is given.
        self.queue = queue
        #: Where it was declared: the ``.proto`` message's full name.
        self.source = source or struct.__name__
        given: dict[str, Any] = {
            "max_attempts": max_attempts, "backoff": backoff, "priority": priority, "timeout": timeout,
        }  # fmt: skip
        #: Options of every enqueue, from the message's ``(spitfire.*)`` options.
        self.defaults: EnqueueOptions = cast(
            EnqueueOptions, {k: v for k, v in given.items() if v is not None}
        )
        self._decoder = msgspec.msgpack.Decoder(struct)

    def __repr__(self) -> str:
        return f"<spitfire schema job {self.name!r} on queue {self.queue!r}: {self.source}>"

    def encode(self, payload: S) -> bytes:
        """The payload as msgpack (a map keyed by field name), once checked against its type.

        :raises JobArgumentError: ``payload`` is not a ``struct``, or a field's value does not fit
            its type; ``argument`` names the field (``sizes[1].width`` for a nested one).
        """
        if not isinstance(payload, self.struct):
            raise JobArgumentError(
                f"{self.name}: the payload is a {type(payload).__name__}; pass a {self.struct.__name__}"
            )
        try:
            data = msgspec.msgpack.encode(payload, enc_hook=enc_hook)  # a JobId field: a plain str
        except (TypeError, OverflowError, msgspec.EncodeError) as exc:
            raise JobArgumentError(
                f"{self.name}: the {self.struct.__name__} cannot be encoded: {exc}"
            ) from None
        try:
            self._decoder.decode(data)  # the checks msgspec makes when a worker decodes it
        except msgspec.ValidationError as exc:
            raise _field_error(self.name, self.struct.__name__, str(exc)) from None
        return data

    def decode(self, data: bytes) -> S:
        """The Struct a payload holds (as a worker sees it).

        :raises msgspec.ValidationError, msgspec.DecodeError: it does not fit.
        """
        return self._decoder.decode(data)

    def _options(self, options: SchemaEnqueueOptions) -> tuple[str, EnqueueOptions]:
        check_options(options, SchemaEnqueueOptions)
        given: dict[str, Any] = dict(options)
        queue: str = given.pop("queue", self.queue)
        return queue, cast(EnqueueOptions, {**self.defaults, **given})

    def enqueue(self, client: Client, payload: S, **options: Unpack[SchemaEnqueueOptions]) -> str:
        """Check and enqueue ``payload`` with ``client``; returns the job id once durable.

        ``options`` (``priority``, ``delay``, ``idempotency_key``, ``queue``...) override the schema's.
        :raises JobArgumentError: the payload does not fit (nothing was sent).
        """
        queue, merged = self._options(options)
        return client.enqueue_raw(queue, self.name, self.encode(payload), **merged)

    async def enqueue_async(
        self, client: AsyncClient, payload: S, **options: Unpack[SchemaEnqueueOptions]
    ) -> str:
        """`enqueue` with an `AsyncClient`."""
        queue, merged = self._options(options)
        return await client.enqueue_raw(queue, self.name, self.encode(payload), **merged)

    def handler(self, app: App) -> Callable[[Callable[[S], R]], JobFunction[..., R]]:
        """Register a worker handler of this job on ``app``: a function (sync or async) taking the
        payload Struct. ``@SEND_EMAIL_JOB.handler(app)`` over ``def send_email(e: SendEmail)``.

        The job gets the schema's name, queue and options. Its payload arrives checked, as the
        Struct; `spitfire.context()` gives the job's id, attempt and headers. The `JobFunction`
        returned takes the fields as keyword arguments (``send_email(to="a@b.c")`` runs it here,
        ``send_email.enqueue(to="a@b.c")`` enqueues it, checked the same way).
        """

        def register(fn: Callable[[S], R]) -> JobFunction[..., R]:
            run = _keyword_adapter(self.struct, fn)
            o = self.defaults
            job = app.job(
                queue=self.queue,
                name=self.name,
                max_attempts=o.get("max_attempts"),
                backoff=o.get("backoff"),
                timeout=o.get("timeout"),
                priority=o.get("priority", 0),
                # What `spitfire schemas push` registered stays enforced once this worker registers
                # the job (the latest registration of a name wins): the server checks its payloads
                # against the JSON Schema of the Struct's fields, the same fields as the .proto's.
                validate=True,
            )
            return cast(JobFunction[..., R], job(run))

        return register


def _keyword_adapter(struct: type[S], fn: Callable[[S], R]) -> Callable[..., R]:
    """A function of the Struct's fields as keyword arguments (what ``@app.job`` checks and the
    worker passes) that calls ``fn`` with the Struct."""
    fields = msgspec.structs.fields(struct)
    params = []
    for f in fields:
        default = f.default if f.default is not msgspec.NODEFAULT else f.default_factory()
        params.append(
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=f.type)
        )
    run: Callable[..., Any]
    if inspect.iscoroutinefunction(fn):
        afn = cast(Callable[[S], Awaitable[Any]], fn)

        async def run_async(**kwargs: Any) -> Any:
            return await afn(struct(**kwargs))

        run = run_async
    else:

        def run_sync(**kwargs: Any) -> Any:
            return fn(struct(**kwargs))

        run = run_sync
    setattr(run, "__signature__", inspect.Signature(params))  # noqa: B010 (read by inspect.signature)
    run.__annotations__ = {f.name: f.type for f in fields}
    for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
        if hasattr(fn, attr):
            setattr(run, attr, getattr(fn, attr))
    return cast(Callable[..., R], run)


def _field_error(job: str, struct: str, text: str) -> JobArgumentError:
    """msgspec's "Expected `int`, got `str` - at `$.sizes[0].width`" as an error naming the field."""
    message, _, path = text.rpartition(" - at `")
    if not message:
        return JobArgumentError(f"{job}: the {struct} does not fit its schema: {text}")
    field = path.rstrip("`").removeprefix("$").removeprefix(".")
    return JobArgumentError(f"{job}: {struct} field {field!r}: {message}", field)
