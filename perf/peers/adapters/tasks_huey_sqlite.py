"""The SqliteHuey instance the drain workload's consumer loads:
``huey_consumer perf.peers.adapters.tasks_huey_sqlite.huey -w 8 -k thread``.

It is configured from ``PERF_PEER_URL`` (perf.peers.base.URL_ENV), set before importing this
module: ``sqlite:///ABS/PATH.db`` optionally with ``?fsync=on|off``, huey's own ``fsync`` option
(``PRAGMA synchronous`` FULL or OFF on its connection). Without it SqliteHuey's defaults are kept:
WAL journal, ``fsync=None``, i.e. SQLite's ``synchronous`` default, FULL in WAL mode: every commit
fsyncs the WAL. huey 3 uses one connection per process, behind a lock.

The drain clock needs to see the *last* job run, and huey deletes a task from its table when a
worker takes it (there is no ack). So the consumer counts completions with huey's own
``SIGNAL_COMPLETE`` signal and, when ``PERF_HUEY_EXPECT`` tasks have completed, creates the file
``PERF_HUEY_DONE`` (both set by the adapter for its drain run only).
"""

from __future__ import annotations

import os
import threading
import urllib.parse
from pathlib import Path
from typing import Any

from huey import SqliteHuey
from huey.signals import SIGNAL_COMPLETE

from perf.peers.base import URL_ENV

#: Environment: how many completions make the drain done, and the file to create then.
EXPECT_ENV, DONE_ENV = "PERF_HUEY_EXPECT", "PERF_HUEY_DONE"


def parse_url(url: str) -> tuple[str, bool | None]:
    """(database path, huey's fsync option) of ``sqlite:///ABS/PATH[?fsync=on|off]``."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path if parts.scheme == "sqlite" else url.split("?", 1)[0]
    value = urllib.parse.parse_qs(parts.query).get("fsync", [""])[0].lower()
    fsync = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}.get(value)
    return path, fsync


if not os.environ.get(URL_ENV):
    raise RuntimeError(f"set {URL_ENV} to sqlite:///ABS/PATH.db before importing {__name__}")

_path, _fsync = parse_url(os.environ[URL_ENV])
#: SqliteHuey creates its tables (and the file) here, on import.
huey = SqliteHuey("bench", filename=_path, fsync=_fsync)


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
