"""Job ids: unique, time-ordered strings whose lexical order is their creation order.

An id is 24 lower-case hex digits: 48 bits of Unix milliseconds, a 24-bit counter within that
millisecond, and 24 random bits. The generator never goes backwards: if the clock steps back, or
recovery shows ids newer than the clock (`IdGenerator.observe`), it keeps counting from the newest id
it has seen, so an id is never reused and never sorts below an earlier one.
"""

from __future__ import annotations

import random

#: Hex digits of the millisecond timestamp (48 bits: good until the year 10889).
MS_DIGITS = 12
#: Hex digits of the per-millisecond counter (24 bits: 16.7 million ids per millisecond).
COUNTER_DIGITS = 6
#: Hex digits of the random tail (24 bits: keeps ids of two servers apart).
RANDOM_DIGITS = 6
#: Length of every id.
ID_LENGTH = MS_DIGITS + COUNTER_DIGITS + RANDOM_DIGITS
_COUNTER_MAX = 16**COUNTER_DIGITS - 1
_HEX = frozenset("0123456789abcdef")
#: Every 3-digit hex string: the counter's 6 digits are two of these (its high and low 12 bits).
_HEX3 = [f"{i:03x}" for i in range(16**3)]


def is_job_id(text: str) -> bool:
    """True when ``text`` has the shape of a job id."""
    return len(text) == ID_LENGTH and _HEX.issuperset(text)


def id_time(job_id: str) -> float:
    """The creation time encoded in an id, in seconds since the epoch."""
    return int(job_id[:MS_DIGITS], 16) / 1000.0


class IdGenerator:
    """Issues ids; `next` takes the current time, as everything in the index does."""

    __slots__ = ("_counter", "_ms", "_prefix", "_rand", "_tail")

    def __init__(self, rng: random.Random | None = None) -> None:
        self._ms = 0
        self._counter = -1
        self._prefix = f"{0:012x}"
        self._rand = (rng or random.Random()).getrandbits
        self._tail = f"{self._rand(24):06x}"

    def next(self, now: float) -> str:
        """A new id, greater than every id issued or observed before."""
        ms = int(now * 1000.0)
        if ms > self._ms:
            self._ms = ms
            self._counter = 0
            # A fresh random tail per millisecond: cheap, and it keeps two servers' ids apart.
            self._prefix = f"{ms:012x}"
            self._tail = f"{self._rand(24):06x}"
        elif self._counter < _COUNTER_MAX:
            self._counter += 1
        else:
            self._ms += 1
            self._counter = 0
            self._prefix = f"{self._ms:012x}"
        counter = self._counter
        # Two table lookups instead of a "06x" format: this is on every enqueue's path.
        return self._prefix + _HEX3[counter >> 12] + _HEX3[counter & 0xFFF] + self._tail

    def observe(self, job_id: str) -> None:
        """Make every later id greater than ``job_id`` (called for each id found in recovery)."""
        if not is_job_id(job_id):
            return
        ms = int(job_id[:MS_DIGITS], 16)
        counter = int(job_id[MS_DIGITS : MS_DIGITS + COUNTER_DIGITS], 16)
        if (ms, counter) > (self._ms, self._counter):
            self._ms, self._counter = ms, counter
            self._prefix = f"{ms:012x}"

    @property
    def last(self) -> str:
        """The newest id issued or observed ("" before the first), for snapshots."""
        if self._counter < 0:
            return ""
        return f"{self._ms:012x}{self._counter:06x}{0:06x}"
