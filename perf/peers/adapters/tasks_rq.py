"""RQ's worker side: the no-op job, imported by ``rq worker`` by its dotted name."""

from __future__ import annotations

from typing import Any


def noop(payload: dict[str, Any]) -> None:
    """The benchmark job: does nothing."""
