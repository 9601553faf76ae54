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
    """Issues ids; `next` takes the current time, as everything in the index does.

    The hot path (another id in the same millisecond) is one float comparison, one integer
    increment and two string concatenations: ``_head`` caches the millisecond digits plus the
    counter's high three digits, ``_tail`` the random digits, and ``_edge`` the time at which the
    millisecond changes (`next` then takes the slow path, which recomputes them).
    """

    __slots__ = ("_counter", "_edge", "_head", "_ms", "_rand", "_tail")

    def __init__(self, rng: random.Random | None = None) -> None:
        self._ms = 0
        self._counter = -1
        self._rand = (rng or random.Random()).getrandbits
        self._tail = f"{self._rand(24):06x}"
        self._head = f"{0:012x}000"
        #: `next` may take the fast path while ``now`` is below this (the next millisecond).
        self._edge = float("-inf")

    def next(self, now: float) -> str:
        """A new id, greater than every id issued or observed before."""
        counter = self._counter + 1
        if now < self._edge and counter & 0xFFF:
            self._counter = counter
            # One table lookup instead of a "06x" format: this is on every enqueue's path.
            return self._head + _HEX3[counter & 0xFFF] + self._tail
        return self._next_slow(now)

    def next_many(self, now: float, count: int) -> list[str]:
        """``count`` new ids, the same ones ``count`` calls of `next` would return (a batch's)."""
        out: list[str] = []
        while len(out) < count:
            want = count - len(out)
            low = self._counter & 0xFFF
            if now < self._edge and self._counter >= 0 and low < 0xFFF:
                # Ids within this millisecond and the cached head: one slice, no branches.
                take = min(want, 0xFFF - low)
                head, tail = self._head, self._tail
                self._counter += take
                out += [head + hex3 + tail for hex3 in _HEX3[low + 1 : low + 1 + take]]
            else:  # a new millisecond (the usual first id of a batch), or the low digits wrap
                out.append(self.next(now))
        return out

    def _next_slow(self, now: float) -> str:
        """A new millisecond, a clock that stepped back, or the counter's low digits wrapping."""
        ms = int(now * 1000.0)
        if ms > self._ms:
            self._ms = ms
            self._counter = 0
            # A fresh random tail per millisecond: cheap, and it keeps two servers' ids apart.
            self._tail = f"{self._rand(24):06x}"
        elif self._counter < _COUNTER_MAX:
            self._counter += 1
        else:
            self._ms += 1
            self._counter = 0
        self._rebase(now)
        counter = self._counter
        return self._head + _HEX3[counter & 0xFFF] + self._tail

    def _rebase(self, now: float) -> None:
        """Recompute the cached head and the fast path's edge from ``_ms`` and ``_counter``."""
        self._head = f"{self._ms:012x}" + _HEX3[max(self._counter, 0) >> 12]
        # While the clock is behind the newest id's millisecond (a step back, or ids observed from
        # the future), stay on the slow path only when the clock reaches it: until then counting on
        # is what the slow path would do anyway.
        edge = (self._ms + 1) / 1000.0
        self._edge = edge if now < edge else float("-inf")

    def observe(self, job_id: str) -> None:
        """Make every later id greater than ``job_id`` (called for each id found in recovery)."""
        if not is_job_id(job_id):
            return
        ms = int(job_id[:MS_DIGITS], 16)
        counter = int(job_id[MS_DIGITS : MS_DIGITS + COUNTER_DIGITS], 16)
        if (ms, counter) > (self._ms, self._counter):
            self._ms, self._counter = ms, counter
            self._head = f"{ms:012x}" + _HEX3[counter >> 12]
            self._edge = float("-inf")  # the next id takes the slow path

    @property
    def last(self) -> str:
        """The newest id issued or observed ("" before the first), for snapshots."""
        if self._counter < 0:
            return ""
        return f"{self._ms:012x}{self._counter:06x}{0:06x}"
