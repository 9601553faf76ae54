"""A slow or failing fdatasync under the compatibility listener (the fsync shim of tests/server): a 201
comes only after the fsync that covers the job, a failed fsync answers 503 and stops the server, and
what was answered 201 before is there after the restart."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))
from protoclient import ServerProcess

from spitfire.server.runtime import EXIT_STORAGE_FAILED

SHIM = [sys.executable, str(Path(__file__).parent.parent / "server" / "fsync_shim.py")]
_COMPAT = re.compile(r"compat http:\s+(http://127\.0\.0\.1:\d+)")
#: How long the shim's fdatasync sleeps while the test looks.
SLOW = 1.0


def _start(tmp_path: Path, control: Path | None) -> tuple[ServerProcess, str]:
    env = None if control is None else {"SPITFIRE_FSYNC_CONTROL": str(control)}
    command = None if control is None else SHIM
    proc = ServerProcess(tmp_path / "data", "--compat-http", "127.0.0.1:0", command=command, env=env).start()
    match = _COMPAT.search(proc.banner)
    assert match, proc.banner
    return proc, match.group(1)


def test_slow_then_failing_fsync(tmp_path: Path) -> None:
    control = tmp_path / "fsync-control"
    control.mkdir()
    server, url = _start(tmp_path, control)
    try:
        with httpx.Client(base_url=url, timeout=30) as compat:
            kept = compat.post("/createJob", json={"type": "e", "payload": 1, "idempotency_key": "kept"})
            assert kept.status_code == 201
            (control / "slow").write_text(str(SLOW))
            started = time.monotonic()
            slow = compat.post("/topics/orders/enqueue", json={"id": "job-1", "payload": {"item": "book"}})
            assert slow.status_code == 201 and time.monotonic() - started >= SLOW * 0.9
            (control / "slow").unlink()
            (control / "fail").touch()
            refused = compat.post("/jobs", json={"type": "t", "payload": 2})
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "STORAGE_FAILED"
        assert server.proc is not None and server.proc.wait(30) == EXIT_STORAGE_FAILED
    finally:
        server.kill()
    again, url = _start(tmp_path, None)
    try:
        with httpx.Client(base_url=url, timeout=30) as compat:
            repeat = compat.post("/createJob", json={"type": "e", "payload": 1, "idempotency_key": "kept"})
            assert repeat.status_code == 200 and repeat.json()["job_id"] == kept.json()["job_id"]
            claimed = compat.post("/topics/orders/claim", json={"worker_id": "w"})
            assert claimed.json() == {"id": "job-1", "payload": {"item": "book"}, "attempts": 1}
        assert again.terminate() == 0
    finally:
        again.kill()
