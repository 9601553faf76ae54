"""Building new jobs: the options of an enqueue, checked once, and the jobs made from them.

`JobOptions` is the one struct that carries an enqueue's options (everything but the queue, the
handler name, the payloads and the idempotency keys) from an adapter to the engine. `JobBuilder`
checks them against the engine's configuration and makes the jobs; it never touches the index or
the log, so a refused enqueue changes nothing.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import msgspec

from spitfire.index.ids import IdGenerator
from spitfire.index.job import MAX_PRIORITY, Backoff, Job, JobState

from . import validation as v
from .config import EngineConfig

#: Handler names remembered as already validated and interned (beyond this, each is checked anew).
MAX_CACHED_NAMES = 10_000


class JobOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How new jobs are to run; every field None (or 0) takes the engine's default.

    ``run_at`` (an absolute time) and ``delay`` (seconds from now) delay the jobs: at most one of
    them. Checked when jobs are built (`JobBuilder.build`), each error naming its field.
    """

    priority: int = 0
    run_at: float | None = None
    delay: float | None = None
    max_attempts: int | None = None
    backoff: Backoff | None = None
    timeout: float | None = None
    headers: dict[str, str] | None = None

    @property
    def is_default(self) -> bool:
        """True when every option is at its default (the engine's fastest path)."""
        return self is DEFAULT_OPTIONS or self == DEFAULT_OPTIONS


#: The options of a plain enqueue.
DEFAULT_OPTIONS = JobOptions()


class JobBuilder:
    """Makes checked, interned new jobs with fresh ids."""

    def __init__(self, config: EngineConfig, ids: IdGenerator) -> None:
        self.config = config
        self.ids = ids
        #: Validated, interned handler names.
        self._names: dict[str, str] = {}

    def handler(self, name: object) -> str:
        """The handler name, validated and interned (one string object per name, checked once)."""
        handler = self._names.get(name) if name.__class__ is str else None  # type: ignore[call-overload]
        if handler is None:
            handler = sys.intern(v.check_name("name", name, self.config))
            if len(self._names) < MAX_CACHED_NAMES:
                self._names[handler] = handler
        return handler

    def default_job(
        self, queue: str, name: object, payload: bytes, now: float, priority: int = 0,
        options: JobOptions = DEFAULT_OPTIONS,
    ) -> Job:  # fmt: skip
        """One job to run now with ``options``' max_attempts, backoff and timeout (each None: the
        engine's default) and no other option; the caller checked the payload, the priority and
        these options (a job definition's are checked when it is registered)."""
        c = self.config
        handler = self._names.get(name) if name.__class__ is str else None  # type: ignore[call-overload]
        if handler is None:
            handler = self.handler(name)
        o = options
        attempts = c.default_max_attempts if o.max_attempts is None else o.max_attempts
        timeout = c.default_timeout if o.timeout is None else o.timeout
        return Job(
            self.ids.next(now), queue, handler, payload, JobState.ENQUEUED, now, priority, None,
            attempts, o.backoff, timeout, updated_at=now,
        )  # fmt: skip

    def build(
        self, queue: str, name: object, payloads: Sequence[bytes], now: float, options: JobOptions
    ) -> list[Job]:
        """New jobs of one handler and one set of options, one per payload (options checked once;
        the jobs share ``headers``: nothing mutates a job's headers).

        :raises ValidationError: naming the field; `PayloadTooLarge`.
        """
        c = self.config
        limit = c.max_payload
        for payload in payloads:
            if payload.__class__ is not bytes or len(payload) > limit:
                v.check_bytes("payload", payload, limit)
        priority = options.priority
        if priority.__class__ is not int or not 0 <= priority <= MAX_PRIORITY:
            v.check_priority(priority)
        o = options
        at = v.check_run_at(o.run_at, o.delay, now) if o.run_at is not None or o.delay is not None else None
        handler = self.handler(name)
        attempts = c.default_max_attempts if o.max_attempts is None else v.check_max_attempts(o.max_attempts)
        policy = None if o.backoff is None else v.check_backoff(o.backoff)
        lease = c.default_timeout if o.timeout is None else v.check_timeout("timeout", o.timeout, c)
        tags = None if o.headers is None else v.check_headers(o.headers)
        state = JobState.ENQUEUED if at is None else JobState.SCHEDULED
        ids = self.ids.next_many(now, len(payloads))
        return [
            Job(job_id, queue, handler, payload, state, now, priority, at, attempts, policy, lease, None,
                tags, updated_at=now)
            for job_id, payload in zip(ids, payloads, strict=True)
        ]  # fmt: skip
