"""Pages of jobs in id order (creation order) over the index's id-ordered lists.

A listing (the dashboard's ``GET /api/jobs``) is a filter over one source: an id-ordered list that
covers every job the filter can match (every job, one queue's, one handler name's), walked from a
bound by bisection and skipping what does not match; or, when the states asked for hold few jobs,
those jobs gathered from their per-state lists and sorted. Either way a page costs about what it
returns (plus what it skips), never a walk of every job: a walk stops after `MAX_SCAN` entries and
hands back a cursor where it stopped, so a page may come back short with a cursor to go on. A
state filter over several queues is answered queue by queue (gathered or walked, whichever costs
less there) and the pages combined (`combine`).

Bounds are job ids, exclusive: ``lo < id < hi``. A time bound is the 12 hex digits of its millisecond
(`time_bound`): an id is above it exactly when its job was created at that millisecond or later.
A cursor is the id where the previous page stopped; jobs created meanwhile have larger ids, so they
never shift the pages after it (newest first, they are above the first page; oldest first, at the
end). No I/O, no clock.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from operator import attrgetter

from .ids import MS_DIGITS
from .job import Job

#: Entries a page walks at most before it returns (short) with a cursor where it stopped.
MAX_SCAN = 200_000
#: Jobs of the asked-for states gathered and sorted at most, instead of walking a source list.
MAX_GATHER = 20_000

_job_id = attrgetter("id")

Predicate = Callable[[Job], bool]


def time_bound(at: float) -> str:
    """The id bound of a time (epoch seconds, at millisecond precision): ids of jobs created at
    ``at`` or later sort above it, ids of jobs created before it below."""
    return f"{max(0, int(at * 1000)):0{MS_DIGITS}x}"


def in_bounds(job_id: str, lo: str | None, hi: str | None) -> bool:
    return (lo is None or job_id > lo) and (hi is None or job_id < hi)


def walk(
    source: list[Job],
    live: Predicate,
    match: Predicate,
    lo: str | None,
    hi: str | None,
    limit: int,
    newest_first: bool,
    budget: int = MAX_SCAN,
) -> tuple[list[Job], str | None]:
    """Up to ``limit`` live matching jobs of the id-ordered ``source`` strictly between ``lo`` and
    ``hi``, newest (or oldest) first, and the cursor of the next page (None: nothing more).

    The cursor is the last job's id when another match follows it, or the last id walked when the
    walk ran out of ``budget`` (the next page goes on from there).
    """
    out: list[Job] = []
    n = len(source)
    walked = 0
    if newest_first:
        i = (bisect_left(source, hi, key=_job_id) if hi is not None else n) - 1
        step = -1
    else:
        i = bisect_right(source, lo, key=_job_id) if lo is not None else 0
        step = 1
    while 0 <= i < n:
        job = source[i]
        job_id = job.id
        if newest_first and lo is not None and job_id <= lo:
            return out, None
        if not newest_first and hi is not None and job_id >= hi:
            return out, None
        i += step
        walked += 1
        if live(job) and in_bounds(job_id, lo, hi) and match(job):
            if len(out) == limit:  # one more match: there is a next page
                return out, out[-1].id
            out.append(job)
        if walked >= budget and 0 <= i < n:
            return out, job_id
    return out, None


def gather(
    candidates: Iterable[Job],
    match: Predicate,
    lo: str | None,
    hi: str | None,
    limit: int,
    newest_first: bool,
) -> tuple[list[Job], str | None]:
    """`walk` over a small unordered set of live jobs (sorted here): same answer, same cursor."""
    found = sorted(
        (j for j in candidates if in_bounds(j.id, lo, hi) and match(j)), key=_job_id, reverse=newest_first
    )
    if len(found) > limit:
        return found[:limit], found[limit - 1].id
    return found, None


def combine(
    pages: Iterable[tuple[list[Job], str | None]], limit: int, newest_first: bool
) -> tuple[list[Job], str | None]:
    """One page from pages of disjoint sources (each queue's) over the same bounds: the first
    ``limit`` jobs of all of them that every source has covered, and the cursor to go on from."""
    found: list[Job] = []
    stop: str | None = None  # how far every source got: the nearest of their stopping points
    for jobs, cursor in pages:
        found += jobs
        if cursor is not None and (stop is None or (cursor > stop if newest_first else cursor < stop)):
            stop = cursor
    if stop is not None:
        found = [j for j in found if (j.id >= stop if newest_first else j.id <= stop)]
    found.sort(key=_job_id, reverse=newest_first)
    if len(found) > limit:
        return found[:limit], found[limit - 1].id
    return found, stop


def merge(
    page: tuple[list[Job], str | None],
    extra: Iterable[Job],
    lo: str | None,
    hi: str | None,
    limit: int,
    newest_first: bool,
) -> tuple[list[Job], str | None]:
    """A page with a few more jobs (exact search hits) put in their place; the cursor stays correct:
    extras beyond where the page stopped are left to the next page."""
    jobs, cursor = page
    seen = {j.id for j in jobs}
    stop = cursor
    more = [
        j
        for j in extra
        if j.id not in seen
        and in_bounds(j.id, lo, hi)
        and (stop is None or (j.id > stop if newest_first else j.id < stop))
    ]
    if not more:
        return page
    combined = sorted([*jobs, *more], key=_job_id, reverse=newest_first)
    if len(combined) > limit:
        return combined[:limit], combined[limit - 1].id
    return combined, cursor


__all__ = ["MAX_GATHER", "MAX_SCAN", "combine", "gather", "in_bounds", "merge", "time_bound", "walk"]
