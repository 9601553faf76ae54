"""What ``spitfire worker`` says: JSON lines with --log-format json, every outcome with its duration
or attempt, a server it cannot reach once per backoff step; aioquic's chatter at DEBUG."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest
from sdk_helpers import ServerProcess, WorkerProcess, free_port, wait_until

import spitfire

JOBS = """
import spitfire

app = spitfire.App()

@app.job(queue="{queue}")
def hello(name: str) -> str:
    return "hi " + name
"""


def test_json_logs_with_every_outcome(
    server: ServerProcess,
    client: spitfire.Client,
    queue: str,
    tmp_path: Path,
    worker_processes: list[WorkerProcess],
) -> None:
    ok = client.enqueue(queue, "hello", {"name": "ada"})
    bad = client.enqueue(queue, "hello", {"nom": "x"})  # misses the required argument
    env = {"SPITFIRE_URL": server.url}
    flags = ("--burst", "--log-format", "json", "--connect-timeout", "5s")
    worker = WorkerProcess(tmp_path / "w", JOBS.format(queue=queue), *flags, env=env)
    worker_processes.append(worker)
    assert worker.wait() == 0, worker.output()
    entries = [json.loads(line) for line in worker.output().splitlines() if line.strip()]
    assert all({"ts", "level", "logger", "msg"} <= set(e) for e in entries)
    messages = [e["msg"] for e in entries]
    assert any(ok in m and "succeeded in" in m for m in messages), messages
    dead = [e for e in entries if bad in e["msg"]]
    assert dead and dead[0]["level"] == "error" and "does not fit" in dead[0]["msg"]
    assert client.get(bad).state == "dead" and client.get(bad).attempts == 1


def test_an_unreachable_server_is_reported_once_per_backoff_step(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = spitfire.App(f"tcp://127.0.0.1:{free_port()}", connect_timeout=0.2)

    @app.job(queue="nowhere")
    def noop() -> None:
        pass

    worker = spitfire.Worker(app, handle_signals=False)
    thread = threading.Thread(target=worker.run, daemon=True)
    with caplog.at_level(logging.WARNING, logger="spitfire.worker"):
        thread.start()

        def lines() -> list[str]:
            return [r.getMessage() for r in caplog.records if "cannot reach the server" in r.getMessage()]

        wait_until(
            lambda: any("retrying in 2.00 s" in m for m in lines()), timeout=20, what="the longest step"
        )
        worker.stop()
        thread.join(20)
    waits = [m.rsplit("retrying in ", 1)[1] for m in lines()]
    # Each backoff step said once (0.05, 0.10, ... up to 2.00), never a line per attempt at the cap.
    assert len(waits) == len(set(waits)), waits
    assert waits[0] == "0.05 s" and "attempt 1" in lines()[0]


def test_aioquic_info_lines_are_debug(caplog: pytest.LogCaptureFixture) -> None:
    import spitfire.protocol.quic  # noqa: F401  (installs the filter)

    with caplog.at_level(logging.INFO):
        logging.getLogger("quic").info("ALPN negotiated protocol spitfire/1")
        logging.getLogger("quic").warning("a real problem")
    assert [r.getMessage() for r in caplog.records if r.name == "quic"] == ["a real problem"]
