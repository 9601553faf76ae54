"""Configuration of the queue engine: a validated dataclass with a named default per field."""

from __future__ import annotations

import math
from dataclasses import dataclass

from spitfire.index.history import (
    DEFAULT_RETAIN_CANCELLED,
    DEFAULT_RETAIN_DEAD,
    DEFAULT_RETAIN_MAX_PER_STATE,
    DEFAULT_RETAIN_SUCCEEDED,
    Retention,
)
from spitfire.index.idempotency import DEFAULT_RETENTION
from spitfire.index.job import DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT
from spitfire.wal.api import Durability

#: Durability of queues created without an explicit mode (README.md, "Durability").
DEFAULT_DURABILITY = Durability.GROUP
#: Largest payload accepted: 1 MiB (bigger blobs belong in object storage, referenced by the job).
DEFAULT_MAX_PAYLOAD = 2**20
#: Largest result accepted from a worker.
DEFAULT_MAX_RESULT = 2**20
#: Records appended to a queue's log after which a snapshot is written (bounds recovery time).
DEFAULT_SNAPSHOT_EVERY = 1_000_000
#: Jobs per snapshot chunk: encoding one takes ~3 ms on a slow core, so the loop never stalls long.
DEFAULT_SNAPSHOT_CHUNK = 1024
#: Jobs in one enqueue_batch call at most.
DEFAULT_MAX_BATCH = 10_000
#: Longest lease a worker may ask for, in seconds (12 hours).
DEFAULT_MAX_TIMEOUT = 12 * 3600.0
#: Longest a queue or handler name may be.
DEFAULT_MAX_NAME = 200
#: Most queues a server holds (`--max-queues`): each costs a directory, a first segment and memory.
DEFAULT_MAX_QUEUES = 10_000


@dataclass(slots=True)
class EngineConfig:
    """How the engine behaves; every field has a default and is checked at construction."""

    #: Durability mode of queues created from now on.
    durability: Durability = DEFAULT_DURABILITY
    #: Seconds an idempotency key is remembered after the job it names finished (it is held for as
    #: long as the job exists, whatever its state, and forgotten when the job is deleted).
    idempotency_retention: float = DEFAULT_RETENTION
    #: Seconds a succeeded job is kept (`--retain-succeeded`).
    retain_succeeded: float = DEFAULT_RETAIN_SUCCEEDED
    #: Seconds a dead job is kept (`--retain-dead`).
    retain_dead: float = DEFAULT_RETAIN_DEAD
    #: Seconds a cancelled job is kept (`--retain-cancelled`).
    retain_cancelled: float = DEFAULT_RETAIN_CANCELLED
    #: Most jobs kept per queue in each finished state, oldest forgotten first
    #: (`--retain-max-per-queue`; 0: finished jobs are forgotten at the next tick).
    retain_max_per_queue: int = DEFAULT_RETAIN_MAX_PER_STATE
    #: Lease (visibility timeout) of jobs that do not set one, in seconds.
    default_timeout: float = DEFAULT_TIMEOUT
    #: Longest lease a job may ask for, in seconds.
    max_timeout: float = DEFAULT_MAX_TIMEOUT
    #: Attempts of jobs that do not set ``max_attempts``.
    default_max_attempts: int = DEFAULT_MAX_ATTEMPTS
    #: Largest payload accepted, in bytes.
    max_payload: int = DEFAULT_MAX_PAYLOAD
    #: Largest result accepted, in bytes.
    max_result: int = DEFAULT_MAX_RESULT
    #: Most jobs in one enqueue_batch call.
    max_batch: int = DEFAULT_MAX_BATCH
    #: Longest queue or handler name.
    max_name: int = DEFAULT_MAX_NAME
    #: Most queues at once (`--max-queues`): creating one more raises `TooManyQueues`. Queues being
    #: created count; a data directory holding more at start-up still opens (none can be created).
    max_queues: int = DEFAULT_MAX_QUEUES
    #: `tick` starts a snapshot of a queue once this many records follow its last one (0: never).
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY
    #: Jobs per snapshot chunk (the loop yields between chunks).
    snapshot_chunk: int = DEFAULT_SNAPSHOT_CHUNK
    #: Log every delivery and lease extension (JOBS_LEASED records, not awaited) and keep the leases
    #: found in the log and in snapshots: a cluster's leader, so that the next one continues them.
    #: False (a single node): leases live in memory only and a restart makes leased jobs ready.
    log_leases: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.durability, Durability):
            raise ValueError("EngineConfig.durability must be a Durability")
        for name in ("idempotency_retention", "default_timeout", "max_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"EngineConfig.{name} must be above zero")
        if not math.isfinite(self.idempotency_retention):
            raise ValueError("EngineConfig.idempotency_retention must be a finite number of seconds")
        for name in ("retain_succeeded", "retain_dead", "retain_cancelled"):
            if not 0 <= getattr(self, name) < math.inf:
                raise ValueError(f"EngineConfig.{name} must be a finite number of seconds, 0 or more")
        if self.default_timeout > self.max_timeout:
            raise ValueError("EngineConfig.default_timeout must not exceed max_timeout")
        positive = ("default_max_attempts", "max_payload", "max_result", "max_batch", "max_name")
        positive += ("max_queues",)
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"EngineConfig.{name} must be at least 1")
        if self.retain_max_per_queue < 0:
            raise ValueError("EngineConfig.retain_max_per_queue must not be negative")
        if self.snapshot_every < 0:
            raise ValueError("EngineConfig.snapshot_every must not be negative (0 disables)")
        if self.snapshot_chunk < 1:
            raise ValueError("EngineConfig.snapshot_chunk must be at least 1")

    @property
    def retention(self) -> Retention:
        """The retention rules every queue's index applies (finished jobs and idempotency keys)."""
        return Retention(
            succeeded=self.retain_succeeded,
            dead=self.retain_dead,
            cancelled=self.retain_cancelled,
            max_per_state=self.retain_max_per_queue,
            keys=self.idempotency_retention,
        )
