"""Idempotency keys of one queue: key -> job id (PROTOCOL.md, ENQUEUE field ``idempotency_key``).

A key names its job for as long as the job exists (whatever its state), and for a retention window
(24 h by default) after the job finished, even when retention forgot the finished job sooner:

- while the job exists the key is **held**: its ``expires_at`` is ``math.inf`` and nothing schedules
  it (a job pending for a week still deduplicates);
- when the finished job is forgotten by retention (`release`), the key is **scheduled** to expire
  at ``finished_at + retention``, or dropped at once when that time has passed;
- when the job is deleted (`remove`), the key goes with it: deleting a job is how a user says "this
  work may be submitted again".

Scheduled keys are in a heap by expiry time (keys are released in an order that is not their
expiry order: dead jobs are kept longer than succeeded ones). Each operation is O(log n) at most;
nothing scans. The dict is rebuilt smaller when most of its keys are gone (CPython dicts never
shrink on deletion), so a burst of keys does not pin its memory.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable

#: How long a key is remembered after its job finished unless configured otherwise: 24 hours.
DEFAULT_RETENTION = 24 * 3600.0
#: ``expires_at`` of a held key (its job exists): never.
HELD = math.inf
#: The state a key reports once retention forgot its job when the state was not recorded (snapshots
#: of older builds kept none): succeeded, the value of ``JobState.SUCCEEDED`` (index/job.py).
UNKNOWN_FINAL_STATE = 5
#: Never rebuild a dict that peaked below this many keys.
MIN_SHRINK_SIZE = 4096


class IdempotencyTable:
    """Keys of one queue; time is a parameter."""

    __slots__ = ("_exists", "_expiry", "_keys", "_peak", "retention")

    def __init__(
        self, retention: float = DEFAULT_RETENTION, exists: Callable[[str], bool] | None = None
    ) -> None:
        """``exists(job_id)`` tells `restore` whether a job is loaded (None: trust the snapshot)."""
        if not (retention > 0 and math.isfinite(retention)):
            raise ValueError("retention must be a finite number of seconds above zero")
        self.retention = retention
        self._exists = exists
        #: key -> (job id, handler name, expires_at, final state); expires_at is HELD while the job
        #: exists; the final state (a ``JobState`` value) is the one the job ended in once retention
        #: forgot it (0 while it exists).
        self._keys: dict[str, tuple[str, str, float, int]] = {}
        #: (expires_at, key) of scheduled keys; an entry whose key now has another expires_at is stale.
        self._expiry: list[tuple[float, str]] = []
        #: The most keys held since the dict was last rebuilt.
        self._peak = 0

    def get(self, key: str, now: float | None = None) -> str | None:
        """The job id the key names, or None (also None once expired at ``now``, if given)."""
        entry = self._keys.get(key)
        if entry is None or (now is not None and entry[2] <= now):
            return None
        return entry[0]

    def entry(self, key: str) -> tuple[str, str, float, int] | None:
        """(job id, handler name, expires_at, final state) for the key, or None. ``expires_at`` is
        ``math.inf`` while the job exists; a caller treats the key as gone when ``expires_at <= now``.
        The final state is the job's last (a ``JobState`` value) once retention forgot it, else 0."""
        return self._keys.get(key)

    def add(self, key: str, job_id: str, name: str, created_at: float | None = None) -> None:
        """Hold ``key`` -> ``job_id`` for as long as the job exists (replaces an old entry).

        ``created_at`` is accepted for callers written when keys expired from creation, and ignored:
        a key's window now starts when its job finishes (see `release`).
        """
        self._keys[key] = (job_id, name, HELD, 0)
        if len(self._keys) > self._peak:
            self._peak = len(self._keys)

    def restore(
        self, key: str, job_id: str, name: str, expires_at: float, state: int = UNKNOWN_FINAL_STATE
    ) -> None:
        """Put back an entry read from a snapshot, after the snapshot's jobs were loaded.

        A key whose job is loaded (``exists``) is held whatever the snapshot says: a snapshot written
        before keys were held stored ``created_at + retention`` even for pending jobs. Any other key
        keeps the snapshot's ``expires_at``, except a held one whose job is not loaded: it would name
        a job that does not exist, for ever, so it is dropped (call this after loading the jobs).
        """
        if self._exists is not None:
            if self._exists(job_id):
                self.add(key, job_id, name)
                return
            if expires_at == HELD:
                return
        self._keys[key] = (job_id, name, expires_at, 0 if expires_at == HELD else state)
        if len(self._keys) > self._peak:
            self._peak = len(self._keys)
        if expires_at != HELD:
            heapq.heappush(self._expiry, (expires_at, key))

    def release(
        self,
        key: str,
        job_id: str,
        finished_at: float,
        now: float | None = None,
        state: int = UNKNOWN_FINAL_STATE,
    ) -> None:
        """The finished job ``job_id`` was forgotten by retention in ``state``: keep ``key`` until
        ``finished_at + retention`` (dropped at once when that is at or before ``now``).

        Does nothing when the key names another job (it was reused after an earlier window ended).
        """
        entry = self._keys.get(key)
        if entry is None or entry[0] != job_id:
            return
        expires = finished_at + self.retention
        if now is not None and expires <= now:
            self._drop(key)
            return
        self._keys[key] = (job_id, entry[1], expires, state)
        heapq.heappush(self._expiry, (expires, key))

    def remove(self, key: str, job_id: str) -> None:
        """Forget ``key`` if it still names ``job_id`` (the job was deleted)."""
        entry = self._keys.get(key)
        if entry is not None and entry[0] == job_id:
            self._drop(key)

    def _drop(self, key: str) -> None:
        keys = self._keys
        del keys[key]
        if self._peak > MIN_SHRINK_SIZE and len(keys) * 4 < self._peak:
            # CPython keeps a dict's table at its largest size: copy it into a right-sized one.
            self._keys = dict(keys)
            self._peak = len(keys)

    def expire(self, now: float) -> int:
        """Drop every scheduled key whose window ended at or before ``now``; returns how many."""
        expiry, keys = self._expiry, self._keys
        dropped = 0
        while expiry and expiry[0][0] <= now:
            expires, key = heapq.heappop(expiry)
            entry = keys.get(key)
            if entry is not None and entry[2] == expires:
                self._drop(key)
                keys = self._keys
                dropped += 1
        return dropped

    def next_expiry(self) -> float | None:
        """When the next scheduled key expires (stale heap entries may make it early), or None."""
        return self._expiry[0][0] if self._expiry else None

    def items(self) -> list[tuple[str, str, str, float, int]]:
        """(key, job id, name, expires_at, final state) of every key, held ones (``math.inf``, state
        0) included, in no particular order (for snapshots)."""
        return [(key, *value) for key, value in self._keys.items()]

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys
