"""Idempotency keys of one queue: key -> job id, kept for a retention window.

Every key is kept for the same window, so insertion order is expiry order: a deque of
(expires_at, key) is the expiry schedule and a dict is the lookup. Each operation is O(1)
amortised; nothing scans. A key outlives its job's eviction from history (the point of the window:
a producer retrying within it still gets the original job's id), but not the job's deletion.
"""

from __future__ import annotations

from collections import deque

#: How long a key is remembered unless configured otherwise: 24 hours.
DEFAULT_RETENTION = 24 * 3600.0


class IdempotencyTable:
    """Keys of one queue; time is a parameter."""

    __slots__ = ("_expiry", "_keys", "retention")

    def __init__(self, retention: float = DEFAULT_RETENTION) -> None:
        if retention <= 0:
            raise ValueError("retention must be above zero")
        self.retention = retention
        #: key -> (job id, handler name, expires_at)
        self._keys: dict[str, tuple[str, str, float]] = {}
        self._expiry: deque[tuple[float, str]] = deque()

    def get(self, key: str, now: float | None = None) -> str | None:
        """The job id the key names, or None (also None once expired at ``now``, if given)."""
        entry = self._keys.get(key)
        if entry is None or (now is not None and entry[2] <= now):
            return None
        return entry[0]

    def entry(self, key: str) -> tuple[str, str, float] | None:
        """(job id, handler name, expires_at) for the key, or None."""
        return self._keys.get(key)

    def add(self, key: str, job_id: str, name: str, created_at: float) -> None:
        """Remember ``key`` -> ``job_id`` until ``created_at + retention`` (replaces an old entry)."""
        expires = created_at + self.retention
        self._keys[key] = (job_id, name, expires)
        self._expiry.append((expires, key))

    def restore(self, key: str, job_id: str, name: str, expires_at: float) -> None:
        """Put back an entry read from a snapshot (entries arrive in expiry order)."""
        self._keys[key] = (job_id, name, expires_at)
        self._expiry.append((expires_at, key))

    def remove(self, key: str, job_id: str) -> None:
        """Forget ``key`` if it still names ``job_id`` (the job was deleted)."""
        entry = self._keys.get(key)
        if entry is not None and entry[0] == job_id:
            del self._keys[key]

    def expire(self, now: float) -> int:
        """Drop every key whose window ended at or before ``now``; returns how many."""
        expiry, keys = self._expiry, self._keys
        dropped = 0
        while expiry and expiry[0][0] <= now:
            expires, key = expiry.popleft()
            entry = keys.get(key)
            if entry is not None and entry[2] == expires:
                del keys[key]
                dropped += 1
        return dropped

    def next_expiry(self) -> float | None:
        """When the oldest remembered key expires (dead schedule entries may make it early)."""
        return self._expiry[0][0] if self._expiry else None

    def items(self) -> list[tuple[str, str, str, float]]:
        """(key, job id, name, expires_at) of every live key in expiry order (for snapshots)."""
        out: list[tuple[str, str, str, float]] = []
        keys = self._keys
        for expires, key in self._expiry:
            entry = keys.get(key)
            if entry is not None and entry[2] == expires:
                out.append((key, entry[0], entry[1], expires))
        return out

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys
