"""Kill a real writer process with SIGKILL at random moments; every acknowledged record survives.

A child (``child.py``) appends as fast as it can and prints each record once it is acknowledged
under its durability mode. The parent kills it 20-200 ms after it reports ready, recovers the log
in-process and checks: recovery succeeds (no CorruptLogError), and every acknowledged record is
present at its LSN with the right body. The next child continues on the same data directory, so
recovery of an already-recovered log is exercised too. (ASYNC survives a process kill: the mmap'd
pages live in the page cache.)
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import uvloop

from spitfire.wal import Durability, FileStorage

CHILD = Path(__file__).with_name("child.py")
sys.path.insert(0, str(CHILD.parent))
from child import CONFIG, body_for  # noqa: E402


def _kill_once(data_dir: Path, mode: Durability, seed: int, rng: random.Random) -> dict[int, int]:
    """Run one child, kill it, return {lsn: id} of what it acknowledged."""
    lines: list[bytes] = []
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(data_dir), mode.value, str(seed)],
            stdout=subprocess.PIPE,
            stderr=err,
        )
        assert proc.stdout is not None
        stdout = proc.stdout
        ready = threading.Event()

        def read() -> None:  # drain the pipe continuously so the child never blocks on it
            for line in stdout:
                if line == b"ready\n":
                    ready.set()
                else:
                    lines.append(line)
            ready.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            ready.wait(30)
            time.sleep(rng.uniform(0.020, 0.200))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            reader.join(30)
            stdout.close()
        err.seek(0)
        assert proc.returncode == -signal.SIGKILL, err.read().decode()
    acked = {}
    for line in lines:
        if line.endswith(b"\n"):  # the last line may be cut by the kill
            lsn, ident = line.split()
            acked[int(lsn)] = int(ident)
    return acked


def _recover(data_dir: Path) -> dict[int, tuple[int, bytes]]:
    async def main() -> dict[int, tuple[int, bytes]]:
        storage = FileStorage(data_dir, CONFIG)
        try:
            _, recovery = storage.open_log("crash", Durability.GROUP)
            return {r.lsn: (r.rtype, r.body) for r in recovery.records}
        finally:
            await storage.close()

    return uvloop.run(main())


def _crash_loop(tmp_path: Path, mode: Durability, kills: int, seed: int, fresh_every: int = 10) -> None:
    """``kills`` kill/recover cycles; every ``fresh_every`` kills start over in a new directory
    (recovery time grows with the log, and long runs must stay linear)."""
    rng = random.Random(seed)
    acked: dict[int, int] = {}
    total = 0
    data_dir = tmp_path
    for k in range(kills):
        if k and k % fresh_every == 0:
            data_dir = tmp_path / f"run{k}"
            acked = {}
        got = _kill_once(data_dir, mode, seed * 1000 + k + 1, rng)
        for lsn, ident in got.items():
            assert acked.setdefault(lsn, ident) == ident, f"LSN {lsn} acknowledged twice"
        total += len(got)
        records = _recover(data_dir)
        missing = [lsn for lsn in acked if lsn not in records]
        assert not missing, f"kill {k}: acknowledged LSNs lost: {missing[:10]}"
        for lsn, ident in acked.items():
            assert records[lsn] == (1 + ident % 3, body_for(ident)), lsn
        assert sorted(records) == list(range(1, len(records) + 1))
    assert total > kills  # the children did acknowledge records


@pytest.mark.parametrize(
    ("mode", "seed"), [(Durability.GROUP, 1), (Durability.SYNC, 2), (Durability.ASYNC, 3)]
)
def test_sigkill_keeps_acknowledged_records(tmp_path: Path, mode: Durability, seed: int) -> None:
    _crash_loop(tmp_path, mode, kills=7, seed=seed)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize(
    ("mode", "seed"), [(Durability.GROUP, 11), (Durability.SYNC, 12), (Durability.ASYNC, 13)]
)
def test_sigkill_many(tmp_path: Path, mode: Durability, seed: int) -> None:
    _crash_loop(tmp_path, mode, kills=100, seed=seed)
