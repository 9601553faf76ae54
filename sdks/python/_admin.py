"""The requests of the administration methods (`list_jobs`, `purge`, `set_durability`, `workers`)
shared by `AsyncClient` and `Client`: built and checked once, so both clients send the same bytes."""

from __future__ import annotations

from collections.abc import Iterable

from spitfire.protocol.messages import ListJobs, Purge, SetDurability

#: Job state labels, as the server names them.
STATES = ("scheduled", "enqueued", "reserved", "running", "succeeded", "retrying", "dead", "cancelled")
#: Durability modes of a queue.
DURABILITY_MODES = ("sync", "group", "async")


def _labels(states: str | Iterable[str] | None, *, required: bool) -> list[str] | None:
    if states is None:
        if required:
            raise ValueError(f"states: give at least one of {', '.join(STATES)}")
        return None
    labels = [states] if isinstance(states, str) else list(states)
    if required and not labels:
        raise ValueError(f"states: give at least one of {', '.join(STATES)}")
    bad = [s for s in labels if s not in STATES]
    if bad:
        raise ValueError(f"states: unknown state {bad[0]!r}; one of {', '.join(STATES)}")
    return labels or None


def list_jobs_request(
    queue: str | None, states: str | Iterable[str] | None, limit: int, cursor: str | None, newest_first: bool
) -> ListJobs:
    """LIST_JOBS. :raises ValueError: an unknown state or a limit outside 1..1000."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 1000:
        raise ValueError(f"limit: must be 1 to 1000, not {limit!r}")
    return ListJobs(queue, _labels(states, required=False), limit, cursor, newest_first)


def purge_request(queue: str, states: str | Iterable[str]) -> Purge:
    """PURGE. :raises ValueError: no state or an unknown one."""
    labels = _labels(states, required=True)
    assert labels is not None
    return Purge(queue, labels)


def durability_request(queue: str, mode: str) -> SetDurability:
    """SET_DURABILITY. :raises ValueError: not sync, group or async."""
    if mode not in DURABILITY_MODES:
        raise ValueError(f"mode: must be one of {', '.join(DURABILITY_MODES)}, not {mode!r}")
    return SetDurability(queue, mode)
