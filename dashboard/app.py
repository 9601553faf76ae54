"""The HTTP API (dashboard/API.md) as a blacksheep application over the running server's engine.

`create_app` takes the engine, service, dispatcher and backpressure of the running server and
returns a `Dashboard`: its ``app`` is the ASGI application, ``live`` the job observer to attach
(`Dashboard.attach`). Every handler answers JSON; every failure is ``{"error": {"code",
"message"}}`` with the status of `dashboard.errors`; nothing a client sends can crash the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hmac
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
from blacksheep import Application, Content, Request, Response
from blacksheep.contents import StreamedContent

from spitfire.index.ids import is_job_id
from spitfire.index.job import Job, JobState
from spitfire.protocol.frames import DEFAULT_MAX_FRAME
from spitfire.protocol.messages import ErrorCode
from spitfire.server import validation as v
from spitfire.server.backpressure import Backpressure
from spitfire.server.building import JobOptions
from spitfire.server.dispatcher import Dispatcher
from spitfire.server.engine import Engine, JobFilter
from spitfire.server.errors import EngineError, JobNotFound, Overloaded, QueueNotFound, ValidationError
from spitfire.server.history import DEFAULT_MINUTES as DEFAULT_HISTORY_MINUTES
from spitfire.server.history import DEFAULT_STEP as DEFAULT_HISTORY_STEP
from spitfire.server.history import MAX_QUERY_MINUTES as MAX_HISTORY_MINUTES
from spitfire.server.history import MAX_STEP as MAX_HISTORY_STEP
from spitfire.server.options import ServerOptions
from spitfire.server.service import Service
from spitfire.wal.api import Durability

from . import model as mo
from .definitions import DefinitionRoutes
from .errors import HttpError, error_response, response_for
from .live import CREATED, DELETED, LiveEvents
from .metrics import Metrics, Sources
from .openapi import openapi_document
from .schedules import ScheduleRoutes
from .spa import Spa
from .workers import HttpWorkers, worker_id

T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]

#: The ASGI ``send`` of the current request (set by the ASGI wrapper for /api/events only).
CURRENT_SEND: contextvars.ContextVar[Any] = contextvars.ContextVar("spitfire_send", default=None)
#: Largest request body of the batch route; other routes allow twice the payload limit plus 64 KiB.
MAX_BATCH_BODY = 256 * 2**20
#: Largest body of POST /api/jobs:bulk: 10,000 job ids (27 bytes each in JSON) fit in a third of it.
MAX_BULK_BODY = 2**20
#: Largest body of POST /api/jobs/{id}/fail: a failure report as large as a binary-protocol frame
#: is accepted (the engine cuts its error and traceback), since a worker cannot retry one usefully.
MAX_FAIL_BODY = DEFAULT_MAX_FRAME
_JSON = b"application/json"
_STATES = {s.label: s for s in JobState}
#: A worker not heard from for this many heartbeat intervals may be gone: the jobs it holds are
#: listed as possibly aborted (they run again when their lease ends).
QUIET_INTERVALS = 3
#: Longest ``wait_ms`` of GET /api/jobs/{id} (like the claim's).
MAX_WAIT_MS = 30_000
_OPEN_PATHS = frozenset({"/health", "/ready"})
_encode = msgspec.json.encode
_decoders: dict[type, msgspec.json.Decoder[Any]] = {}


def json_response(status: int, value: Any) -> Response:
    """A JSON answer."""
    return Response(status, None, Content(_JSON, _encode(value)))


def _decoder(kind: type[T]) -> msgspec.json.Decoder[T]:
    dec = _decoders.get(kind)
    if dec is None:
        dec = _decoders[kind] = msgspec.json.Decoder(kind)
    return dec


def decode_body(data: bytes, kind: type[T]) -> T:
    """Decode and validate a JSON body.

    :raises HttpError: 400 bad JSON (or nested deeper than the recursion limit), 422 naming the field.
    """
    try:
        return _decoder(kind).decode(data)
    except msgspec.ValidationError as exc:
        problem: msgspec.DecodeError = exc
    except msgspec.DecodeError as exc:
        raise HttpError(400, "BAD_JSON", f"the body is not valid JSON: {exc}") from None
    except RecursionError:  # msgspec stops cleanly at the interpreter's recursion limit
        raise HttpError(
            400, "BAD_JSON", "the body is nested too deeply to decode; send a flatter value"
        ) from None
    try:  # msgspec validates as it parses: is the rest of the body JSON at all?
        msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise HttpError(400, "BAD_JSON", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        pass  # too deep to check; the validation problem found first is the answer
    raise HttpError(422, "INVALID_ARGUMENT", str(problem), mo.field_of(problem)) from None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (before reading, when declared)."""
    declared = request.get_first_header(b"content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise HttpError(400, "BAD_REQUEST", "Content-Length is not a number") from None
        if size > limit:
            raise HttpError(413, "TOO_LARGE", f"the body is {size} bytes; at most {limit} are accepted")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():  # type: ignore[attr-defined]  # blacksheep stub: async generator
        total += len(chunk)
        if total > limit:
            raise HttpError(413, "TOO_LARGE", f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter in [low, high]. :raises HttpError: 422 naming it."""
    values = request.query.get(name)
    if not values:
        return default
    try:
        value = int(values[0])
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise HttpError(422, "INVALID_ARGUMENT", f"{name}: must be an integer from {low} to {high}", name)
    return value


def query_bool(request: Request, name: str) -> bool:
    """A boolean query parameter: ``true``/``1`` or ``false``/``0`` (absent: false).
    :raises HttpError: 422 naming it."""
    value = query_str(request, name)
    if value is None or value.lower() in ("false", "0"):
        return False
    if value.lower() in ("true", "1"):
        return True
    raise HttpError(422, "INVALID_ARGUMENT", f"{name}: must be true or false", name)


def query_str(request: Request, name: str) -> str | None:
    values = request.query.get(name)
    return values[0] if values else None


def parse_states(field: str, values: Sequence[str]) -> frozenset[JobState] | None:
    """States from repeated and/or comma-separated labels (none: every state).
    :raises HttpError: 422 naming ``field`` for an unknown label."""
    labels = [label.strip() for value in values for label in value.split(",") if label.strip()]
    if not labels:
        return None
    bad = [label for label in labels if label not in _STATES]
    if bad:
        raise HttpError(
            422, "INVALID_ARGUMENT", f"{field}: unknown state {bad[0]!r}; one of {', '.join(_STATES)}", field
        )
    return frozenset(_STATES[label] for label in labels)


def parse_bound(field: str, value: str | float | None) -> float | str | None:
    """A creation bound: epoch seconds, an RFC 3339 date-time (naive: UTC) or a job id.
    :raises HttpError: 422 naming ``field``."""
    if value is None or isinstance(value, float | int):
        return value
    text = value.strip()
    if is_job_id(text):
        return text
    try:
        return float(text)
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise HttpError(
            422, "INVALID_ARGUMENT", f"{field}: give epoch seconds, an RFC 3339 date-time or a job id", field
        ) from None
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).timestamp()


class Dashboard:
    """The HTTP API of one running server."""

    def __init__(
        self,
        engine: Engine,
        service: Service,
        dispatcher: Dispatcher,
        backpressure: Backpressure,
        *,
        auth_token: str | None = None,
        ready: Callable[[], dict[str, str]] = dict,
        options: ServerOptions | None = None,
        listen: list[str] | None = None,
        http_url: str = "",
    ) -> None:
        self.engine = engine
        self.service = service
        self.dispatcher = dispatcher
        self.backpressure = backpressure
        self.auth_token = auth_token.encode() if auth_token else None
        #: Failing readiness checks by name (empty: ready).
        self.ready = ready
        self.started_at = time.time()
        opts = options or ServerOptions()
        #: Workers quiet for longer than this hold possibly aborted jobs.
        self.quiet_after = QUIET_INTERVALS * opts.heartbeat_interval
        urls = list(listen or [])
        # The port actually bound (--listen may say 0), from the first listener's URL.
        port = urls[0].rpartition(":")[2] if urls else str(opts.listen.port)
        self.server = mo.ServerOut(
            id=f"{socket.gethostname()}:{port}",
            host=socket.gethostname(),
            pid=os.getpid(),
            version=_version(),
            started_at=self.started_at,
            durability=opts.durability.value,
            listen=urls,
            http=http_url or f"http://{opts.http}",
            trace_url_template=opts.trace_url_template,
        )
        self.http_workers = HttpWorkers()
        self.live = LiveEvents(self._stats_event)
        self.metrics = Metrics(
            Sources(
                engine, service, dispatcher, backpressure, self.live, lambda: self._http_active(time.time())
            )
        )
        self.max_body = 2 * engine.config.max_payload + 65536
        self._openapi = _encode(openapi_document())
        self.spa = Spa()
        self.app = Application(show_error_details=False)
        self.app.router.fallback = self._wrap(self._not_found)
        self._routes()

    # -- wiring -----------------------------------------------------------------------------------------

    def attach(self) -> None:
        """Start observing the engine's jobs and the once-a-second ticker (on the running loop)."""
        live, service = self.live.observe, self.service.observe
        waiters, progress = self.service.waiters, self.service.progress.by_job

        def observe(job: Job, deleted: bool) -> None:
            live(job, deleted)
            if waiters.count or progress:  # (the common case, neither: no call)
                service(job, deleted)  # the protocol's waiters and progress

        self.engine.observer = observe
        self.engine.batch_observer = self.live.observe_batch
        self.service.progress.listener = self.live.progress
        self.live.start()

    def _http_active(self, now: float) -> int:
        """HTTP workers holding a job or seen within `QUIET_INTERVALS` heartbeat intervals."""
        engine, quiet = self.engine, self.quiet_after
        return sum(
            1
            for h in self.http_workers.workers.values()
            if now - h.last_seen <= quiet or engine.held_by(h.id)
        )

    def _out(self, job: Job) -> mo.JobOut:
        """The JSON of a job, with its last progress."""
        return mo.job_out(job, self.service.progress.get(job.id))

    async def close(self) -> None:
        """End every event stream and stop observing."""
        await self.live.close()

    def _routes(self) -> None:
        r = self.app.router
        w = self._wrap
        r.add_post("/api/queues/{queue}/jobs:batch", w(self.enqueue_batch))
        r.add_post("/api/queues/{queue}/jobs", w(self.enqueue))
        r.add_get("/api/queues/{queue}/jobs", w(self.list_jobs))
        r.add_post("/api/queues/{queue}/pause", w(self.pause))
        r.add_post("/api/queues/{queue}/resume", w(self.resume))
        r.add_post("/api/queues/{queue}/claim", w(self.claim))
        r.add_get("/api/queues/{queue}", w(self.get_queue))
        r.add_delete("/api/queues/{queue}", w(self.delete_queue))
        r.add_put("/api/queues/{queue}", w(self.update_queue))
        r.add_post("/api/queues/{queue}/purge", w(self.purge))
        r.add_get("/api/queues", w(self.list_queues))
        r.add_get("/api/jobs", w(self.search))
        r.add_post("/api/jobs:bulk", w(self.bulk))
        r.add_get("/api/jobs/{id}", w(self.get_job))
        r.add_delete("/api/jobs/{id}", w(self.delete_job))
        r.add_post("/api/jobs/{id}/retry", w(self.retry_job))
        r.add_post("/api/jobs/{id}/requeue", w(self.requeue_job))
        r.add_post("/api/jobs/{id}/cancel", w(self.cancel_job))
        r.add_post("/api/jobs/{id}/ack", w(self.ack))
        r.add_post("/api/jobs/{id}/fail", w(self.fail))
        r.add_post("/api/jobs/{id}/heartbeat", w(self.heartbeat))
        r.add_get("/api/workers", w(self.workers))
        r.add_get("/api/stats", w(self.stats))
        ScheduleRoutes(self.engine, self._json_body, json_response).add(r, w)
        DefinitionRoutes(self.engine, self._json_body, json_response).add(r, w)
        r.add_get("/api/stats/history", w(self.stats_history))
        r.add_get("/api/events", w(self.events))
        r.add_get("/health", w(self.health))
        r.add_get("/ready", w(self.readiness))
        r.add_get("/metrics", w(self.prometheus))
        r.add_get("/openapi.json", w(self.openapi))
        r.add_get("/", w(self.index))

    def _wrap(self, handler: Handler) -> Handler:
        """Authenticate, run ``handler``, and turn any exception into a JSON error."""

        async def wrapped(request: Request) -> Response:
            try:
                self._authenticate(request)
                response = await handler(request)
            except Exception as exc:
                response = response_for(exc)
            self.metrics.responses.labels(f"{response.status // 100}xx").inc()
            return response

        return wrapped

    def _authenticate(self, request: Request) -> None:
        """Require ``Authorization: Bearer TOKEN`` (any other scheme, or a bare token, is refused);
        ``GET /api/events`` without the header may pass ``?access_token=TOKEN`` instead.

        :raises HttpError: 401 when the token is missing, wrong, or not sent as a Bearer token.
        """
        token = self.auth_token
        if token is None or request.path in _OPEN_PATHS or self.spa.serves(request):
            return  # the app's files hold no data; its login screen asks for the token
        header = request.get_first_header(b"authorization")
        if header is not None:
            scheme, _, given = header.strip().partition(b" ")
            if scheme.lower() != b"bearer":
                raise HttpError(
                    401, "UNAUTHORIZED", "send the token as Authorization: Bearer TOKEN (no other scheme)"
                )
            given = given.strip()
        elif request.path == "/api/events":  # EventSource cannot send headers
            given = (query_str(request, "access_token") or "").encode()
        else:
            given = b""
        # compare_digest: the time taken does not depend on how much of the token matched.
        if not hmac.compare_digest(given, token):
            raise HttpError(401, "UNAUTHORIZED", "missing or wrong token: send Authorization: Bearer TOKEN")

    # -- producers --------------------------------------------------------------------------------------

    def _idempotency_key(self, request: Request, body_key: str | None) -> str | None:
        header = request.get_first_header(b"idempotency-key")
        if header is None:
            return body_key
        key = header.decode("utf-8", "replace")
        if body_key is not None and body_key != key:
            raise ValidationError("idempotency_key", "the Idempotency-Key header and the field differ")
        return key

    async def enqueue(self, request: Request) -> Response:
        """POST /api/queues/{queue}/jobs: 201 with the new job, 200 with the one its key names."""
        try:
            return await self._enqueue(request)
        except Exception as exc:
            self._count_refusal(exc)
            raise

    async def enqueue_batch(self, request: Request) -> Response:
        """POST /api/queues/{queue}/jobs:batch: one record and one fsync for every job."""
        try:
            return await self._enqueue_batch(request)
        except Exception as exc:
            self._count_refusal(exc)
            raise

    def _count_refusal(self, exc: Exception) -> None:
        """Count an enqueue refused BUSY, TOO_LARGE (a body or payload over its limit) or NO_SPACE."""
        if isinstance(exc, EngineError):
            self.service.refusals.count("http", exc.kind)
        elif isinstance(exc, HttpError) and exc.status == 413:
            self.service.refusals.count("http", ErrorCode.TOO_LARGE)

    async def _enqueue(self, request: Request) -> Response:
        queue = _route(request, "queue")  # the engine checks the name
        body = decode_body(await read_body(request, self.max_body), mo.EnqueueIn)
        key = self._idempotency_key(request, body.idempotency_key)
        payload = mo.to_msgpack("payload", body.payload)
        started = time.perf_counter()
        tracer = self.service.tracer  # --otel: the same spans as the binary protocol's enqueues
        trace = tracer.start_enqueue(queue, body.headers, None) if tracer is not None else None
        try:
            with self._counting_refusals():
                job, created = await self.engine.enqueue(
                    queue, body.name, payload, now=time.time(), options=_options(body), idempotency_key=key
                )
        except BaseException as exc:
            if trace is not None:
                trace.end((), exc)
            raise
        if trace is not None:
            trace.end((job,), None)
        self.metrics.enqueue_latency.labels("single").observe(time.perf_counter() - started)
        return json_response(201 if created else 200, self._out(job))

    async def _enqueue_batch(self, request: Request) -> Response:
        queue = _route(request, "queue")  # the engine checks the name
        body = decode_body(await read_body(request, MAX_BATCH_BODY), mo.BatchIn)
        payloads = [mo.to_msgpack(f"payloads[{i}]", p) for i, p in enumerate(body.payloads)]
        count = len(payloads)
        started = time.perf_counter()
        tracer = self.service.tracer
        trace = tracer.start_enqueue(queue, body.headers, count) if tracer is not None else None
        try:
            with self._counting_refusals():
                jobs, flags = await self.engine.enqueue_batch(
                    queue, body.name, payloads, now=time.time(), options=_options(body),
                    idempotency_keys=body.idempotency_keys,
                )  # fmt: skip
        except BaseException as exc:
            if trace is not None:
                trace.end((), exc)
            raise
        if trace is not None:
            trace.end(jobs, None)
        created = [True] * count if flags is None else flags
        self.metrics.enqueue_latency.labels("batch").observe(time.perf_counter() - started)
        out = mo.BatchOut([job.id for job in jobs], created)
        return json_response(201 if any(created) else 200, out)

    @contextlib.contextmanager
    def _counting_refusals(self) -> Iterator[None]:
        """Count an enqueue the engine's admission refused (backpressure) in /metrics."""
        try:
            yield
        except Overloaded:
            self.metrics.rejections.inc()
            raise

    # -- jobs -------------------------------------------------------------------------------------------

    async def get_job(self, request: Request) -> Response:
        """GET /api/jobs/{id}: with ``wait_ms``, answered once the job is final (succeeded, dead,
        cancelled) or after ``wait_ms`` (the job as it is then), by the protocol's waiters."""
        wait_ms = query_int(request, "wait_ms", 0, 0, MAX_WAIT_MS)
        job = self.engine.get(_route(request, "id"))
        if wait_ms:
            job = await self._wait(job, wait_ms / 1000, ("http", request.client_ip))
        return json_response(200, self._out(job))

    async def _wait(self, job: Job, timeout: float, owner: object) -> Job:
        """The job once final or after ``timeout`` s. :raises JobNotFound: deleted meanwhile.
        :raises Overloaded: too many waiters (429)."""
        future: asyncio.Future[tuple[Job | None, bool]] = asyncio.get_running_loop().create_future()

        def done(found: Job | None, deleted: bool) -> None:
            if not future.done():
                future.set_result((found, deleted))

        waiter = self.service.waiters.add(job, owner, timeout, done)
        try:
            found, deleted = await future
        finally:
            if waiter is not None:
                self.service.waiters.cancel(waiter)  # the client went away: forget it (no-op if done)
        if found is None or deleted:
            raise JobNotFound(job.id)
        return found

    def _page(self, request: Request, f: JobFilter) -> Response:
        """A page of the listing ``f`` with the request's limit, order and cursor."""
        limit = query_int(request, "limit", 50, 1, 1000)
        order = query_str(request, "order") or "newest"
        if order not in ("newest", "oldest"):
            raise HttpError(422, "INVALID_ARGUMENT", "order: must be newest or oldest", "order")
        jobs, cursor = self.engine.list_all(f, query_str(request, "cursor"), limit, order == "newest")
        return json_response(200, mo.JobPage([self._out(j) for j in jobs], cursor))

    async def search(self, request: Request) -> Response:
        """GET /api/jobs: jobs across queues, newest (created) first, filtered by ``q`` (a job id, an
        idempotency key or a handler name), queue, state(s), name and creation time; paged."""
        f = JobFilter(
            queue=query_str(request, "queue") or None,
            states=parse_states("state", request.query.get("state") or []),
            name=query_str(request, "name") or None,
            q=query_str(request, "q") or None,
            after=parse_bound("after", query_str(request, "after")),
            before=parse_bound("before", query_str(request, "before")),
        )
        return self._page(request, f)

    async def bulk(self, request: Request) -> Response:
        """POST /api/jobs:bulk: one action over ids or a filter, done by the engine in durable
        chunks; workers holding cancelled or deleted jobs are told to stop them."""
        body = decode_body(await read_body(request, MAX_BULK_BODY), mo.BulkIn)
        if (body.ids is None) == (body.filter is None):
            raise HttpError(422, "INVALID_ARGUMENT", "ids: give either ids or a filter", "ids")
        f = None
        if body.filter is not None:
            b = body.filter
            states = [b.state] if isinstance(b.state, str) else (b.state or [])
            f = JobFilter(
                queue=b.queue,
                states=parse_states("filter.state", states),
                name=b.name,
                after=parse_bound("filter.after", b.after),
                before=parse_bound("filter.before", b.before),
            )
        try:
            result = await self.engine.bulk(body.action, time.time(), ids=body.ids, filter=f)
        except ValidationError as exc:
            if body.filter is not None and exc.field in ("after", "before", "state", "queue", "name"):
                raise HttpError(422, "INVALID_ARGUMENT", f"filter.{exc}", f"filter.{exc.field}") from None
            raise
        for worker, ids in result.revoked.items():
            self.dispatcher.cancelled(worker, ids)
        return json_response(200, mo.BulkOut(result.matched, result.done, result.failed))

    async def requeue_job(self, request: Request) -> Response:
        """POST /api/jobs/{id}/requeue: 201 with the new job (same queue, name, payload, options)."""
        job = await self.engine.requeue(_route(request, "id"), time.time())
        return json_response(201, self._out(job))

    async def retry_job(self, request: Request) -> Response:
        job = await self.engine.retry(_route(request, "id"), time.time())
        return json_response(200, self._out(job))

    async def cancel_job(self, request: Request) -> Response:
        job, worker = await self.engine.cancel(_route(request, "id"), time.time())
        if worker is not None:
            self.dispatcher.cancelled(worker, [job.id])
        return json_response(200, self._out(job))

    async def delete_job(self, request: Request) -> Response:
        job, worker = await self.engine.delete(_route(request, "id"), time.time())
        if worker is not None:
            self.dispatcher.cancelled(worker, [job.id])
        return json_response(200, self._out(job))

    # -- queues -----------------------------------------------------------------------------------------

    def _queue_out(self, name: str, now: float) -> mo.QueueOut:
        engine = self.engine
        q = engine.queue_stats(name)
        oldest, _ = engine.list_jobs(name, JobState.ENQUEUED, None, 1, newest_first=False)
        latency = max(0.0, now - oldest[0].updated_at) if oldest else 0.0
        created, finished = self.live.rates(name)
        return mo.QueueOut(
            q.name, q.paused, q.durability.value, q.counts, q.total, latency, created, finished
        )

    async def list_queues(self, request: Request) -> Response:
        now = time.time()
        return json_response(200, mo.QueueList([self._queue_out(n, now) for n in self.engine.queues()]))

    async def get_queue(self, request: Request) -> Response:
        return json_response(200, self._queue_out(_route(request, "queue"), time.time()))

    async def delete_queue(self, request: Request) -> Response:
        """DELETE /api/queues/{queue}[?force=true]: 200 with what was dropped, once durable; 409 while
        the queue has pending jobs and force is not given; workers holding its jobs are told to stop."""
        force = query_bool(request, "force")
        deletion = await self.engine.delete_queue(_route(request, "queue"), time.time(), force=force)
        self.dispatcher.queue_deleted(deletion)
        return json_response(200, mo.QueueDeletedOut(deletion.queue, deletion.jobs, deletion.pending))

    async def purge(self, request: Request) -> Response:
        """POST /api/queues/{queue}/purge?state=S[,S...]: delete the queue's jobs in those states (at
        least one), durably in chunks; workers holding one are told to stop it."""
        states = parse_states("state", request.query.get("state") or [])
        if states is None:
            raise HttpError(422, "INVALID_ARGUMENT", "state: give at least one state to purge", "state")
        queue = _route(request, "queue")
        result = await self.engine.purge(queue, states, time.time())
        for worker, ids in result.revoked.items():
            self.dispatcher.cancelled(worker, ids)
        return json_response(200, mo.PurgeOut(queue, result.matched, result.done, result.failed))

    async def update_queue(self, request: Request) -> Response:
        """PUT /api/queues/{queue} {"durability": "sync"|"group"|"async"}: the queue afterwards
        (created if needed), once the change is durable."""
        body = await self._json_body(request, mo.QueueUpdateIn)
        queue = _route(request, "queue")
        await self.engine.set_durability(queue, Durability(body.durability), time.time())
        return json_response(200, self._queue_out(queue, time.time()))

    async def list_jobs(self, request: Request) -> Response:
        """GET /api/queues/{queue}/jobs?state=&limit=&cursor=: a page, newest first. One state: by
        when they entered it; no state (every state) or several: by creation, as GET /api/jobs."""
        queue = _route(request, "queue")
        states = parse_states("state", request.query.get("state") or [])
        if states is None or len(states) > 1:
            self.engine.queue_stats(queue)  # :raises QueueNotFound: -> 404
            return self._page(request, JobFilter(queue=queue, states=states))
        (state,) = states
        limit = query_int(request, "limit", 50, 1, 1000)
        order = query_str(request, "order") or "newest"
        if order not in ("newest", "oldest"):
            raise HttpError(422, "INVALID_ARGUMENT", "order: must be newest or oldest", "order")
        jobs, cursor = self.engine.list_jobs(
            queue, state, query_str(request, "cursor"), limit, order == "newest"
        )
        return json_response(200, mo.JobPage([self._out(j) for j in jobs], cursor))

    async def pause(self, request: Request) -> Response:
        queue = _route(request, "queue")
        await self.engine.pause(queue, time.time())
        return json_response(200, self._queue_out(queue, time.time()))

    async def resume(self, request: Request) -> Response:
        queue = _route(request, "queue")
        await self.engine.resume(queue, time.time())
        return json_response(200, self._queue_out(queue, time.time()))

    # -- the HTTP worker API ----------------------------------------------------------------------------

    async def _optional_body(self, request: Request, kind: type[T]) -> T:
        data = await read_body(request, self.max_body)
        return decode_body(data if data.strip() else b"{}", kind)

    async def claim(self, request: Request) -> Response:
        """POST /api/queues/{queue}/claim: lease up to ``limit`` ready jobs (RUNNING at once)."""
        queue = _route(request, "queue")
        body = await self._optional_body(request, mo.ClaimIn)
        engine = self.engine
        wid = worker_id(body.worker)
        v.check_queue(queue, engine.config)  # a bad name is 422 at once, not a long wait
        self.http_workers.seen(wid, time.time(), queue)  # (a claim refused above does not count)
        deadline = time.monotonic() + body.wait_ms / 1000
        while True:
            try:
                paused = engine.is_paused(queue)
            except QueueNotFound:
                paused = True  # not created yet: a long poll waits for the enqueue that creates it
            now = time.time()
            jobs = [] if paused else engine.reserve([queue], wid, now, body.limit)
            left = deadline - time.monotonic()
            if jobs or left <= 0 or self.live.closed:
                break
            await self.live.wait_ready(queue, min(left, 1.0))  # a resume wakes nobody: look again
        self.http_workers.seen(wid, now, queue)  # again after a long poll
        for job in jobs:
            engine.start(job.id, wid, now)
            if body.lease_ms is not None:
                engine.extend(job.id, wid, now, body.lease_ms / 1000)
        return json_response(200, mo.ClaimOut(wid, [self._out(j) for j in jobs]))

    async def ack(self, request: Request) -> Response:
        body = decode_body(await read_body(request, self.max_body), mo.AckIn)
        wid = worker_id(body.worker)
        result = None if body.result is None else mo.to_msgpack("result", body.result)
        now = time.time()
        self.http_workers.seen(wid, now)
        job = await self.engine.ack(_route(request, "id"), wid, now, result)
        return json_response(200, self._out(job))

    async def fail(self, request: Request) -> Response:
        """POST /api/jobs/{id}/fail: the engine cuts an error over 64 KiB and a traceback over 1 MiB."""
        body = decode_body(await read_body(request, max(self.max_body, MAX_FAIL_BODY)), mo.FailIn)
        wid = worker_id(body.worker)
        now = time.time()
        self.http_workers.seen(wid, now)
        retry_at = None if body.retry_in_ms is None else now + body.retry_in_ms / 1000
        job = await self.engine.fail(
            _route(request, "id"), wid, now, body.error, body.traceback,
            retryable=body.retryable, retry_at=retry_at,
        )  # fmt: skip
        return json_response(200, self._out(job))

    async def heartbeat(self, request: Request) -> Response:
        body = decode_body(await read_body(request, self.max_body), mo.HeartbeatIn)
        wid = worker_id(body.worker)
        now = time.time()
        self.http_workers.seen(wid, now)
        job_id = _route(request, "id")
        until = self.engine.extend(job_id, wid, now, _seconds(body.lease_ms))
        return json_response(200, mo.LeaseOut(job_id, until))

    # -- overview ---------------------------------------------------------------------------------------

    async def workers(self, request: Request) -> Response:
        """GET /api/workers: SDK and HTTP workers, and the jobs held by workers gone or quiet for
        `QUIET_INTERVALS` heartbeat intervals (possibly aborted)."""
        engine = self.engine
        now = time.time()
        out: list[mo.WorkerOut] = []
        seen: dict[str, float] = {}
        for w in self.dispatcher.workers.values():
            held = len(engine.held_by(w.id))
            out.append(
                mo.WorkerOut(
                    w.id,
                    w.name,
                    "protocol",
                    list(w.queues),
                    held,
                    w.active,
                    w.credits,
                    w.last_seen,
                    host=w.host or None,
                    pid=w.pid or None,
                    concurrency=w.concurrency or None,
                    in_flight=held,
                    connected_at=w.connected_at,
                )
            )
            seen[w.id] = w.last_seen
        holding = set()
        for h in self.http_workers.workers.values():
            held = len(engine.held_by(h.id))
            if held:
                holding.add(h.id)
            # Active while it holds a job or made a request within QUIET_INTERVALS heartbeats.
            out.append(
                mo.WorkerOut(
                    h.id,
                    h.id[5:],
                    "http",
                    sorted(h.queues),
                    held,
                    bool(held) or now - h.last_seen <= self.quiet_after,
                    None,
                    h.last_seen,
                    in_flight=held,
                    connected_at=h.first_seen,
                )
            )
            seen[h.id] = h.last_seen
        self.http_workers.prune(now, holding)
        aborted = [self._out(j) for j in engine.possibly_aborted(seen, now, self.quiet_after, 100)]
        return json_response(200, mo.WorkerList(out, aborted))

    def _stats(self) -> mo.StatsOut:
        engine_stats = self.engine.stats()
        counts = {s.label: 0 for s in JobState}
        for q in engine_stats.queues.values():
            for label, n in q.counts.items():
                counts[label] += n
        total = self.live.total
        totals = mo.Totals(
            enqueued=total(CREATED),
            succeeded=total(int(JobState.SUCCEEDED)),
            failed=total(int(JobState.RETRYING)) + total(int(JobState.DEAD)),
            retried=total(int(JobState.RETRYING)),
            dead=total(int(JobState.DEAD)),
            cancelled=total(int(JobState.CANCELLED)),
            deleted=total(DELETED),
        )
        workers = len(self.dispatcher.workers) + self._http_active(time.time())
        return mo.StatsOut(
            engine_stats.total_jobs,
            counts,
            len(engine_stats.queues),
            workers,
            self.service.connections,
            totals,
            time.time() - self.started_at,
            self.server,
            [self.server],
        )

    def _stats_event(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self._stats())
        out["at"] = time.time()
        return out

    async def stats(self, request: Request) -> Response:
        return json_response(200, self._stats())

    async def _json_body(self, request: Request, kind: type[T]) -> T:
        return decode_body(await read_body(request, self.max_body), kind)

    async def stats_history(self, request: Request) -> Response:
        """GET /api/stats/history: per-minute counters, durable (server/history.py)."""
        minutes = query_int(request, "minutes", DEFAULT_HISTORY_MINUTES, 1, MAX_HISTORY_MINUTES)
        step = query_int(request, "step", DEFAULT_HISTORY_STEP, 60, MAX_HISTORY_STEP)
        points = self.engine.stats_history(time.time(), minutes, step, query_str(request, "queue"))
        return json_response(200, mo.history_out(step, points))

    async def events(self, request: Request) -> Response:
        """GET /api/events: Server-Sent Events (``job`` or, with ``?jobs=batched``, ``jobs``; ``stats``,
        ``progress``), resumable by Last-Event-ID."""
        live = self.live
        jobs = query_str(request, "jobs") or "each"
        if jobs not in ("each", "batched"):
            raise HttpError(422, "INVALID_ARGUMENT", "jobs: must be each or batched", "jobs")
        if not live.accepts():
            raise HttpError(503, "UNAVAILABLE", "too many event streams are open; try again later")
        queue = query_str(request, "queue")
        last = request.get_first_header(b"last-event-id")
        last_id = last.decode("ascii", "replace") if last else query_str(request, "last_event_id")
        send = CURRENT_SEND.get()
        transport = getattr(getattr(send, "__self__", None), "transport", None)
        client, reset = live.connect(last_id, queue, transport, batched=jobs == "batched")

        async def provider() -> AsyncIterator[bytes]:
            async for chunk in live.stream(client, reset):
                yield chunk

        headers = [(b"Cache-Control", b"no-cache"), (b"X-Accel-Buffering", b"no")]
        return Response(200, headers, StreamedContent(b"text/event-stream", provider))

    # -- operations -------------------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return json_response(200, mo.Health("ok"))

    async def readiness(self, request: Request) -> Response:
        failing = self.ready()
        if failing:
            return json_response(503, mo.Health("unavailable", failing))
        return json_response(200, mo.Health("ready"))

    async def prometheus(self, request: Request) -> Response:
        return Response(
            200, None, Content(b"text/plain; version=0.0.4; charset=utf-8", self.metrics.render())
        )

    async def openapi(self, request: Request) -> Response:
        return Response(200, None, Content(_JSON, self._openapi))

    async def index(self, request: Request) -> Response:
        return self.spa.response(request)

    async def _not_found(self, request: Request) -> Response:
        """The dashboard for a GET of any path not the server's; else 404 for an unknown path, 405 with
        Allow for a known path and another method."""
        if self.spa.serves(request):
            return self.spa.response(request)
        path = request.url.path
        routes = self.app.router.routes
        allowed = [
            method.decode()
            for method in (b"GET", b"POST", b"DELETE")
            if any(route.match_by_path(path) for route in routes.get(method, ()))
        ]
        if allowed:
            response = error_response(
                405, "METHOD_NOT_ALLOWED", f"{request.method} {request.path}: use {', '.join(allowed)}"
            )
            response.add_header(b"Allow", ", ".join(allowed).encode())
            return response
        return error_response(404, "ROUTE_NOT_FOUND", f"no route {request.method} {request.path}")


def _route(request: Request, name: str) -> str:
    """A path parameter of the matched route."""
    return str(request.route_values[name])


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


def _options(body: mo.EnqueueIn | mo.BatchIn) -> JobOptions:
    """The engine's job options from an enqueue body (checked when the jobs are built)."""
    return JobOptions(
        priority=body.priority, run_at=mo.epoch(body.run_at), delay=_seconds(body.delay_ms),
        max_attempts=body.max_attempts, backoff=mo.backoff_in(body.backoff),
        timeout=_seconds(body.timeout_ms), headers=body.headers,
    )  # fmt: skip


def create_app(
    engine: Engine,
    service: Service,
    dispatcher: Dispatcher,
    backpressure: Backpressure,
    *,
    auth_token: str | None = None,
    ready: Callable[[], dict[str, str]] = dict,
    options: ServerOptions | None = None,
    listen: list[str] | None = None,
    http_url: str = "",
) -> Dashboard:
    """The HTTP API over a running server's objects (call `Dashboard.attach` on its loop);
    ``options``, ``listen`` and ``http_url`` describe the server in GET /api/stats."""
    return Dashboard(
        engine, service, dispatcher, backpressure, auth_token=auth_token, ready=ready,
        options=options, listen=listen, http_url=http_url,
    )  # fmt: skip


def _version() -> str:
    """The installed spitfire's version ("unknown" when not installed as a package)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spitfire")
    except PackageNotFoundError:
        return "unknown"


__all__ = ["CURRENT_SEND", "Dashboard", "create_app"]
