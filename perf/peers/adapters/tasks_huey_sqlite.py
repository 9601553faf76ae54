"""The SqliteHuey instance the drain workload's consumer loads:
``huey_consumer perf.peers.adapters.tasks_huey_sqlite.huey -w 8 -k thread``.

The database file comes from ``PERF_PEER_URL`` (perf.peers.base.URL_ENV): ``sqlite:///ABS/PATH``
or a plain path; set it before importing this module. SqliteHuey's storage defaults are kept:
WAL journal, ``fsync=None`` (SQLite's own ``synchronous`` default, FULL: every commit fsyncs the
WAL), one connection per process behind a lock.

The drain clock needs to see the *last* job run, and huey deletes a task from its table when a
worker takes it (there is no ack). So the consumer counts completions with huey's own
``SIGNAL_COMPLETE`` signal and, when ``PERF_HUEY_EXPECT`` tasks have completed, creates the file
``PERF_HUEY_DONE`` (both set by the adapter for its drain run only).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from huey import SqliteHuey
from huey.signals import SIGNAL_COMPLETE

from perf.peers.base import URL_ENV

#: Environment: how many completions make the drain done, and the file to create then.
EXPECT_ENV, DONE_ENV = "PERF_HUEY_EXPECT", "PERF_HUEY_DONE"


def db_path(url: str) -> str:
    """The database file named by a service URL (``sqlite:///ABS/PATH`` or a path)."""
    return url.removeprefix("sqlite://") if url.startswith("sqlite://") else url


if not os.environ.get(URL_ENV):
    raise RuntimeError(f"set {URL_ENV} to sqlite:///ABS/PATH.db before importing {__name__}")

#: SqliteHuey creates its tables (and the file) here, on import.
huey = SqliteHuey("bench", filename=db_path(os.environ[URL_ENV]))


@huey.task()
def noop(doc: dict[str, Any]) -> None:
    """Does nothing (returns None, so huey stores no result): the drain measures the queue."""


_expect = int(os.environ.get(EXPECT_ENV, "0"))
_done_file = os.environ.get(DONE_ENV, "")
_completed = 0
_lock = threading.Lock()

if _expect and _done_file:

    @huey.signal(SIGNAL_COMPLETE)
    def _count(signal: str, task: Any, *args: Any, **kwargs: Any) -> None:
        """Count completed tasks; create the done file at the expected count."""
        global _completed
        with _lock:
            _completed += 1
            last = _completed == _expect
        if last:
            Path(_done_file).touch()
