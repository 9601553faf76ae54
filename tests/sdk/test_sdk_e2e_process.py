"""End to end with processes: `spitfire worker` killed or stopped by signals, the CLI commands, and
a worker that outlives a server restart. A real spitfire-server process every time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from sdk_helpers import CLI, WAIT, ServerProcess, WorkerProcess, wait_state, wait_until

import spitfire

SLOW_JOBS = """
    import os, time
    from pathlib import Path
    import spitfire

    app = spitfire.App()
    MARKS = Path(os.environ["MARKS"])

    @app.job(queue=os.environ["QUEUE"], timeout=float(os.environ.get("LEASE", "60")))
    def slow(seconds: float) -> str:
        ctx = spitfire.context()
        (MARKS / f"started-{ctx.id}-{ctx.attempt}").touch()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not ctx.cancelled:
            time.sleep(0.02)
        (MARKS / f"finished-{ctx.id}-{ctx.attempt}").touch()
        return f"slept on attempt {ctx.attempt}"
"""


def _env(server: ServerProcess, queue: str, marks: Path, **extra: str) -> dict[str, str]:
    marks.mkdir(exist_ok=True)
    return {"SPITFIRE_URL": server.url, "QUEUE": queue, "MARKS": str(marks), **extra}


def test_a_sigkilled_worker_job_runs_again(
    server: ServerProcess,
    client: spitfire.Client,
    queue: str,
    tmp_path: Path,
    worker_processes: list[WorkerProcess],
) -> None:
    env = _env(server, queue, tmp_path / "marks", LEASE="2")
    job_id = client.enqueue(queue, "slow", {"seconds": 3600}, max_attempts=3)
    first = WorkerProcess(tmp_path / "w1", SLOW_JOBS, env=env)
    worker_processes.append(first)
    wait_until(lambda: (tmp_path / "marks" / f"started-{job_id}-1").exists(), what="the job to start")
    first.kill()  # SIGKILL mid-job: no goodbye, no outcome
    # Now short jobs: the rerun finishes. The server returns the job (connection drop or lease end).
    client.enqueue(queue, "unrelated", max_attempts=1)  # gives the burst worker something to fail fast
    quick = SLOW_JOBS.replace("+ seconds", "+ min(seconds, 0.1)")
    second = WorkerProcess(tmp_path / "w2", quick, "--burst", env=env)
    worker_processes.append(second)
    assert second.wait(60) == 0, second.output()
    job = client.get(job_id)
    assert job.state == "succeeded", job
    assert job.attempts == 2 and job.result == "slept on attempt 2"
    assert job.errors[0].error in ("worker disconnected", "lease expired")


def test_sigterm_lets_running_jobs_finish(
    server: ServerProcess,
    client: spitfire.Client,
    queue: str,
    tmp_path: Path,
    worker_processes: list[WorkerProcess],
) -> None:
    env = _env(server, queue, tmp_path / "marks")
    job_id = client.enqueue(queue, "slow", {"seconds": 1.0})
    worker = WorkerProcess(tmp_path / "w", SLOW_JOBS, "--grace", "20", env=env)
    worker_processes.append(worker)
    wait_until(lambda: (tmp_path / "marks" / f"started-{job_id}-1").exists(), what="the job to start")
    waiting = client.enqueue(queue, "slow", {"seconds": 0.1})  # not taken once stopping
    os.kill(worker.proc.pid, signal.SIGTERM)
    assert worker.wait() == 0, worker.output()
    job = client.get(job_id)
    assert job.state == "succeeded" and job.result == "slept on attempt 1"
    assert "worker stopped" in worker.output()
    assert client.get(waiting).state in ("enqueued", "succeeded")


def test_sigterm_hands_back_jobs_still_running_after_the_grace_period(
    server: ServerProcess,
    client: spitfire.Client,
    queue: str,
    tmp_path: Path,
    worker_processes: list[WorkerProcess],
) -> None:
    env = _env(server, queue, tmp_path / "marks")
    job_id = client.enqueue(queue, "slow", {"seconds": 3600})
    worker = WorkerProcess(tmp_path / "w", SLOW_JOBS, "--grace", "0.5", env=env)
    worker_processes.append(worker)
    wait_until(lambda: (tmp_path / "marks" / f"started-{job_id}-1").exists(), what="the job to start")
    os.kill(worker.proc.pid, signal.SIGTERM)
    assert worker.wait() == 0, worker.output()
    job = client.get(job_id)
    assert job.state == "enqueued" and job.attempts == 0  # released: the attempt is not counted
    assert "handing 1 running jobs back" in worker.output()


def test_worker_survives_a_server_restart(
    own_server: ServerProcess, tmp_path: Path, worker_processes: list[WorkerProcess]
) -> None:
    queue = "restart"
    env = _env(own_server, queue, tmp_path / "marks")
    worker = WorkerProcess(tmp_path / "w", SLOW_JOBS, env=env)
    worker_processes.append(worker)
    with spitfire.Client(own_server.url) as client:
        first = client.enqueue(queue, "slow", {"seconds": 0})
        wait_state(client, first, "succeeded")
    assert own_server.terminate() == 0  # GOAWAY, then the server is gone for a while
    own_server.start()  # same port, same data dir
    with spitfire.Client(own_server.url) as client:
        second = client.enqueue(queue, "slow", {"seconds": 0})
        job = wait_state(client, second, "succeeded")
    assert job.result == "slept on attempt 1"
    assert worker.proc.poll() is None, worker.output()
    os.kill(worker.proc.pid, signal.SIGTERM)
    assert worker.wait() == 0


def _cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def test_cli_enqueue_get_stats_worker(server: ServerProcess, queue: str, tmp_path: Path) -> None:
    env = {"SPITFIRE_URL": server.url}
    out = _cli(
        "enqueue", queue, "echo", '{"text": "hi"}', "--priority", "3", "--idempotency-key", "k1", env=env
    )
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.strip()
    again = _cli(
        "enqueue", queue, "echo", '{"text": "other"}', "--idempotency-key", "k1", "--url", server.url
    )
    assert again.stdout.strip() == job_id
    delayed = _cli("enqueue", queue, "echo", '{"text": "later"}', "--delay", "1h", env=env)
    got = json.loads(_cli("get", delayed.stdout.strip(), env=env).stdout)
    assert got["state"] == "scheduled" and got["run_at"] > got["created_at"] + 3500

    (tmp_path / "echo_jobs.py").write_text(
        "import spitfire\napp = spitfire.App()\n"
        f"@app.job(queue={queue!r})\ndef echo(text: str) -> str:\n    return text.upper()\n"
    )
    work = _cli(
        "worker", "echo_jobs:app", "--burst", "--concurrency", "2", "--prefetch", "1", env=env, cwd=tmp_path
    )
    assert work.returncode == 0, work.stderr
    job = json.loads(_cli("get", job_id, env=env).stdout)
    assert job["state"] == "succeeded" and job["result"] == "HI" and job["payload"] == {"text": "hi"}
    assert job["priority"] == 3
    stats = json.loads(_cli("stats", env=env).stdout)
    assert stats["queues"][queue]["counts"]["succeeded"] == 1
    assert stats["queues"][queue]["counts"]["scheduled"] == 1


def test_cli_errors_and_exit_codes(server: ServerProcess, tmp_path: Path) -> None:
    env = {"SPITFIRE_URL": server.url}
    missing = _cli("get", "01nosuchjob0000000000000", env=env)
    assert missing.returncode == 1 and "no job" in missing.stderr
    bad_json = _cli("enqueue", "q", "n", "{not json", env=env)
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    bad_delay = _cli("enqueue", "q", "n", "{}", "--delay", "soon", env=env)
    assert bad_delay.returncode == 2 and "not a duration" in bad_delay.stderr
    bad_priority = _cli("enqueue", "q", "n", "{}", "--priority", "42", env=env)
    assert bad_priority.returncode == 1 and "priority" in bad_priority.stderr
    unreachable = _cli("stats", "--url", "tcp://127.0.0.1:1", "--timeout", "0.5")
    assert unreachable.returncode == 3 and "is spitfire-server running" in unreachable.stderr
    bad_url = _cli("stats", "--url", "http://x")
    assert bad_url.returncode == 2 and "tcp://" in bad_url.stderr
    no_module = _cli("worker", "nosuchmodule:app", env=env, cwd=tmp_path)
    assert no_module.returncode == 2 and "cannot import 'nosuchmodule'" in no_module.stderr
    (tmp_path / "notapp.py").write_text("app = 42\n")
    not_app = _cli("worker", "notapp:app", env=env, cwd=tmp_path)
    assert not_app.returncode == 2 and "not a spitfire.App" in not_app.stderr
    no_colon = _cli("worker", "notapp", env=env, cwd=tmp_path)
    assert no_colon.returncode == 2 and "MODULE:APP" in no_colon.stderr
    (tmp_path / "okapp.py").write_text(
        "import spitfire\napp = spitfire.App()\n@app.job(queue='q')\ndef job() -> None: ...\n"
    )
    bad_prefetch = _cli("worker", "okapp:app", "--prefetch", "-1", env=env, cwd=tmp_path)
    assert bad_prefetch.returncode == 2 and "--prefetch must be 0 or more" in bad_prefetch.stderr
