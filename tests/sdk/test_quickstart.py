"""examples/quickstart/ as its README runs it, against a real server: a `spitfire worker
tasks:app` process, `python producer.py`, and the README's command lines (part of `make test`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from sdk_helpers import WAIT, ServerProcess, wait_until

import spitfire

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart"
BIN = Path(sys.executable).parent


def test_the_quickstart_runs_as_its_readme_says(own_server: ServerProcess, tmp_path: Path) -> None:
    env = {**os.environ, "SPITFIRE_URL": own_server.url, "PYTHONDONTWRITEBYTECODE": "1"}
    log = tmp_path / "worker.log"
    with log.open("w") as out:
        worker = subprocess.Popen([str(BIN / "spitfire"), "worker", "tasks:app", "--concurrency", "10"],
                                  cwd=QUICKSTART, env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        with spitfire.Client(own_server.url) as client:
            wait_until(lambda: client.stats().workers == 1, what="the worker to subscribe")
        produced = subprocess.run([sys.executable, "producer.py"], cwd=QUICKSTART, env=env,
                                  capture_output=True, text=True, timeout=60)  # fmt: skip
        assert produced.returncode == 0, produced.stderr
        lines = produced.stdout.splitlines()
        assert lines[0].startswith("refused before sending: build_report.enqueue(): argument 'report_id'")
        rows = [line.split()[1:4] for line in lines[1:]]
        assert rows == [
            ["send_email", "succeeded", "attempts=1"],
            ["send_email", "succeeded", "attempts=1"],
            ["send_email", "dead", "attempts=1"],
            ["build_report", "succeeded", "attempts=1"],
            ["send_email", "succeeded", "attempts=1"],
        ], produced.stdout
        assert "'not-an-address' is not an email address" in lines[3]
        assert "report-42.pdf (3 pages)" in lines[4]

        # The README's command lines.
        cli = str(BIN / "spitfire")
        argv = [
            cli,
            "enqueue",
            "emails",
            "send_email",
            '{"to": "a@b.c"}',
            "--priority",
            "5",
            "--delay",
            "10s",
        ]
        enqueued = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=WAIT)
        assert enqueued.returncode == 0, enqueued.stderr
        job_id = enqueued.stdout.strip()
        for argv in (
            ["get", job_id],
            ["stats"],
            ["jobs", "list", "--queue", "emails"],
            ["queues"],
            ["workers"],
        ):
            done = subprocess.run([cli, *argv], env=env, capture_output=True, text=True, timeout=WAIT)
            assert done.returncode == 0, (argv, done.stderr)
        waited = subprocess.run([cli, "wait", job_id, "--timeout", "30s"], env=env, capture_output=True,
                                text=True, timeout=60)  # fmt: skip
        assert waited.returncode == 0 and waited.stdout.strip() != "", waited.stderr
    finally:
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGTERM)  # stops gracefully
        code = worker.wait(WAIT)
    assert code == 0, log.read_text()
    assert "sending 'Welcome!' to ada@example.com" in log.read_text()
