"""When a cron schedule fires: croniter over local wall-clock time, with the DST rules of the docs.

croniter iterates *naive* local times (no timezone, so no DST arithmetic inside it); this module maps
each one to an instant in the schedule's timezone:

- a local time that does not exist (the hour skipped when clocks spring forward) fires once, at the
  first valid time after it: the instant of the change (02:30 in Europe/Berlin on the last Sunday of
  March fires at 03:00 CEST). Several skipped times map to that one instant and fire once;
- a local time that occurs twice (the hour repeated when clocks fall back) fires once, at its first
  occurrence; no wall-clock time fires twice.

Pure functions of their arguments (time is a parameter); no I/O. Times are epoch seconds.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

#: The aliases croniter understands (besides 5 or 6 fields).
ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
#: Candidates looked at for one next fire time before giving up (an expression that matches only
#: skipped or repeated times, e.g. "30 2 * * *" every day of a timezone that skips 02:00-03:00 daily,
#: still ends: each skipped time maps to the change's instant).
_MAX_CANDIDATES = 10_000


class CronError(ValueError):
    """A cron expression or a timezone that cannot be used; the message says which and why."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


def check_expression(expr: str) -> str:
    """``expr`` stripped, or CronError: 5 fields, 6 with seconds last, or an ``@hourly``-style alias."""
    text = " ".join(expr.split())
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise CronError("cron", f"cron: unknown alias {text!r}; use one of {', '.join(ALIASES)}")
        return text.lower()
    fields = text.split(" ")
    if len(fields) not in (5, 6):
        raise CronError(
            "cron",
            f"cron: {expr!r} has {len(fields)} fields; give 5 (minute hour day month weekday) "
            "or 6 (the same, then seconds)",
        )
    if not croniter.is_valid(text):
        raise CronError("cron", f"cron: {expr!r} is not a valid cron expression")
    return text


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA timezone ``name``, or CronError."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise CronError(
            "timezone", f"timezone: {name!r} is not an IANA timezone (e.g. UTC, Europe/Berlin)"
        ) from None


def _is_real(naive: datetime, tz: ZoneInfo) -> bool:
    """Whether local time ``naive`` exists in ``tz`` (it is not in a spring-forward gap)."""
    aware = naive.replace(tzinfo=tz)
    return aware.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive


def _is_repeated(naive: datetime, tz: ZoneInfo) -> bool:
    """Whether local time ``naive`` occurs twice in ``tz`` (it is in a fall-back overlap)."""
    first, second = naive.replace(tzinfo=tz, fold=0), naive.replace(tzinfo=tz, fold=1)
    return first.utcoffset() != second.utcoffset()


def instant(naive: datetime, tz: ZoneInfo) -> float:
    """The instant local time ``naive`` fires at: its first occurrence; a skipped time, the change."""
    if _is_real(naive, tz):
        return naive.replace(tzinfo=tz, fold=0).timestamp()
    # In the gap: with fold=0 zoneinfo reads it with the offset from before the change (PEP 495),
    # an instant past the change by the time into the gap; the change itself is found by stepping back.
    probe = naive.replace(tzinfo=tz, fold=0).timestamp()
    low, high = probe - 24 * 3600, probe
    while high - low > 0.5:  # the change is the first instant whose wall time is past ``naive``
        mid = (low + high) / 2
        if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) > naive:
            high = mid
        else:
            low = mid
    return float(round(high))


def _start(after: float, tz: ZoneInfo) -> datetime:
    """The naive local time to search from: the wall time at ``after``; inside the second pass of a
    repeated hour, the end of that hour (its wall times all fired in the first pass)."""
    # Whole seconds: croniter rounds a fractional start up, which would skip a fire time within it.
    local = datetime.fromtimestamp(math.floor(after), tz)
    naive = local.replace(tzinfo=None)
    if local.fold == 1 and _is_repeated(naive, tz):
        while _is_repeated(naive, tz):  # at most the overlap's length, in minutes
            naive = naive.replace(second=0, microsecond=0) + timedelta(minutes=1)
        naive -= timedelta(microseconds=1)
    return naive


def next_fire(expr: str, timezone: str, after: float) -> float:
    """The first instant strictly after ``after`` at which schedule ``expr`` fires in ``timezone``."""
    tz = zone(timezone)
    try:
        it = croniter(expr, _start(after, tz))
        for _ in range(_MAX_CANDIDATES):
            at = instant(it.get_next(datetime), tz)
            if at > after:
                return at
    except CroniterError as exc:  # also "failed to find next date" (e.g. February 30th)
        raise CronError("cron", f"cron: {expr!r} never fires ({exc})") from None
    raise CronError("cron", f"cron: {expr!r} never fires in {timezone} after {after}")


def fires_between(expr: str, timezone: str, after: float, until: float, limit: int) -> list[float]:
    """The fire instants in (``after``, ``until``], oldest first: the newest ``limit`` of them.

    Walks back from ``until`` so that a long span (a per-second schedule after a day of downtime)
    costs ``limit`` steps, not one per missed tick.
    """
    tz = zone(timezone)
    if until <= after or limit <= 0:
        return []
    try:
        it = croniter(
            expr, datetime.fromtimestamp(until, tz).replace(tzinfo=None) + timedelta(microseconds=1)
        )
    except CroniterError as exc:
        raise CronError("cron", f"cron: {expr!r}: {exc}") from None
    found: set[float] = set()
    for _ in range(_MAX_CANDIDATES):
        if len(found) >= limit:
            break
        at = instant(it.get_prev(datetime), tz)
        if at <= after:
            break
        if at <= until:
            found.add(at)
    return sorted(found)


def rfc3339(at: float) -> str:
    """``at`` as an RFC 3339 UTC time (seconds precision, "Z"): the tick's name in keys and headers."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
