"""spitfire-server with a controllable ``os.fdatasync``, for fault tests of a real server process.

Run as ``python fsync_shim.py <spitfire-server arguments>`` with ``SPITFIRE_FSYNC_CONTROL`` naming a
directory. Each call of ``os.fdatasync`` looks there first:

- ``slow``: sleep the number of seconds the file holds, then sync (a slow or stuck disk);
- ``fail``: raise ``OSError(EIO)`` instead of syncing (after the sleep when both exist), as a
  failing disk or a lost write-back does.

The files are read on every call, so a test switches a fault on and off while the server runs.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from pathlib import Path

_real_fdatasync = os.fdatasync


def _control() -> Path:
    return Path(os.environ["SPITFIRE_FSYNC_CONTROL"])


def fdatasync(fd: int) -> None:
    control = _control()
    try:
        delay = float((control / "slow").read_text() or 0)
    except (OSError, ValueError):
        delay = 0.0
    if delay > 0:
        time.sleep(delay)
    if (control / "fail").exists():
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    _real_fdatasync(fd)


def main() -> int:
    os.fdatasync = fdatasync
    from spitfire.server.cli import main as server_main

    sys.argv = ["spitfire-server", *sys.argv[1:]]
    return server_main()


if __name__ == "__main__":
    sys.exit(main())
