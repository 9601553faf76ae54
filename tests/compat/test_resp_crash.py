"""SIGKILL and restart under RESP clients: an answered LPUSH or XADD keeps its jobs, an answered pop
stays done (at-most-once), and a claimed but unacked entry is delivered again (at-least-once)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest
import redis
from resp_support import WAIT, ServerProcess, redis_port, resp_server

from spitfire.server.runtime import EXIT_STORAGE_FAILED

pytestmark = pytest.mark.timeout(120)


def _client(server: object) -> redis.Redis:
    return redis.Redis(port=redis_port(server), protocol=2, socket_timeout=WAIT)  # type: ignore[arg-type]


def test_answered_writes_survive_sigkill(tmp_path: Path) -> None:
    with resp_server(tmp_path / "data") as server:
        r = _client(server)
        for i in range(10):
            assert r.rpush("orders", *[f'{{"n": {i * 5 + k}}}' for k in range(5)]) == 5 * (i + 1)
        entries = [r.xadd("events", {"n": str(i)}) for i in range(5)]
        popped = [r.lpop("orders") for _ in range(3)]
        claimed = r.xreadgroup("g", "c1", {"events": ">"}, count=2)
        assert [e for e, _ in claimed[0][1]] == entries[:2]
        r.close()
        server.kill()  # SIGKILL: no shutdown, no final fsync

        server.start()
        r = _client(server)
        assert r.llen("orders") == 47
        assert popped == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
        states = {
            job["payload"]["n"]: job["state"]
            for job in httpx.get(f"{server.http_url}/api/queues/orders/jobs?limit=100", timeout=WAIT).json()[
                "jobs"
            ]
        }
        # Popped jobs are done for good (at most once); the rest wait.
        assert [states[n] for n in range(3)] == ["succeeded"] * 3 and states[3] == "enqueued"
        assert r.xlen("events") == 5
        again = r.xreadgroup("g", "c2", {"events": ">"}, count=10)
        assert [e for e, _ in again[0][1]] == entries  # the two claims were not logged: ready again
        assert r.xreadgroup("g", "c1", {"events": "0"}) == [[b"events", []]]
        assert r.xack("events", "g", *entries) == 5
        r.close()


SHIM = [sys.executable, str(Path(__file__).parent.parent / "server" / "fsync_shim.py")]


def test_a_slow_then_failed_fsync_holds_then_refuses_the_answer(tmp_path: Path) -> None:
    control = tmp_path / "fsync-control"
    control.mkdir()
    server = ServerProcess(
        tmp_path / "data",
        "--redis",
        "127.0.0.1:0",
        command=SHIM,
        env={"SPITFIRE_FSYNC_CONTROL": str(control)},
    ).start()
    try:
        r = _client(server)
        assert r.lpush("disk", "warm") == 1
        (control / "slow").write_text("1.0")
        started = time.monotonic()
        assert r.lpush("disk", "slow") == 2
        assert time.monotonic() - started >= 0.9  # answered only once the fdatasync covered it
        (control / "slow").unlink()
        (control / "fail").touch()
        with pytest.raises(redis.ResponseError, match="INTERNAL the server's storage failed"):
            r.lpush("disk", "doomed")
        r.close()
        assert server.proc is not None and server.proc.wait(30) == EXIT_STORAGE_FAILED
    finally:
        server.kill()
    again = ServerProcess(tmp_path / "data", "--redis", "127.0.0.1:0").start()
    try:
        r = _client(again)
        assert [r.lpop("disk"), r.lpop("disk")] == [b"warm", b"slow"]
        r.close()
    finally:
        again.kill()
