"""Configuration of the queue engine: a validated dataclass with a named default per field."""

from __future__ import annotations

from dataclasses import dataclass

from spitfire.index.history import DEFAULT_MAX_AGE, DEFAULT_MAX_COUNT
from spitfire.index.idempotency import DEFAULT_RETENTION
from spitfire.index.job import DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT
from spitfire.wal.api import Durability

#: Durability of queues created without an explicit mode (DESIGN.md section 4).
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


@dataclass(slots=True)
class EngineConfig:
    """How the engine behaves; every field has a default and is checked at construction."""

    #: Durability mode of queues created from now on.
    durability: Durability = DEFAULT_DURABILITY
    #: Seconds an idempotency key is remembered after the job it named was created.
    idempotency_retention: float = DEFAULT_RETENTION
    #: Succeeded jobs kept per queue (oldest evicted first).
    history_max_count: int = DEFAULT_MAX_COUNT
    #: Seconds a succeeded job is kept.
    history_max_age: float = DEFAULT_MAX_AGE
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
    #: `tick` starts a snapshot of a queue once this many records follow its last one (0: never).
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY
    #: Jobs per snapshot chunk (the loop yields between chunks).
    snapshot_chunk: int = DEFAULT_SNAPSHOT_CHUNK

    def __post_init__(self) -> None:
        if not isinstance(self.durability, Durability):
            raise ValueError("EngineConfig.durability must be a Durability")
        for name in ("idempotency_retention", "history_max_age", "default_timeout", "max_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"EngineConfig.{name} must be above zero")
        if self.default_timeout > self.max_timeout:
            raise ValueError("EngineConfig.default_timeout must not exceed max_timeout")
        for name in ("default_max_attempts", "max_payload", "max_result", "max_batch", "max_name"):
            if getattr(self, name) < 1:
                raise ValueError(f"EngineConfig.{name} must be at least 1")
        if self.history_max_count < 0:
            raise ValueError("EngineConfig.history_max_count must not be negative")
        if self.snapshot_every < 0:
            raise ValueError("EngineConfig.snapshot_every must not be negative (0 disables)")
        if self.snapshot_chunk < 1:
            raise ValueError("EngineConfig.snapshot_chunk must be at least 1")
