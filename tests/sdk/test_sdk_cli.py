"""The ``spitfire`` command (the installed console script, as a subprocess) against a real server:
jobs, queues, workers and wait; tables and colour on a terminal (a pty), JSON to a pipe; every error
path names a flag and has its exit code."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sdk_helpers import WAIT, ServerProcess, wait_state, worker_thread

import spitfire

SPITFIRE = str(Path(sys.executable).with_name("spitfire"))
SERVER = str(Path(sys.executable).with_name("spitfire-server"))


def sf(server: ServerProcess | None, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``spitfire ARGS`` with stdout and stderr on pipes (not a terminal)."""
    env = {**os.environ, **({"SPITFIRE_URL": server.url} if server else {})}
    return subprocess.run([SPITFIRE, *args], capture_output=True, text=True, timeout=WAIT, env=env)


def sf_json(server: ServerProcess, *args: str) -> Any:
    done = sf(server, *args)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def sf_tty(server: ServerProcess, *args: str) -> tuple[int, str, str]:
    """Run ``spitfire ARGS`` with stdout on a pseudo-terminal 160 columns wide; (code, out, err)."""
    master, slave = pty.openpty()
    env = {**os.environ, "SPITFIRE_URL": server.url, "COLUMNS": "160", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([SPITFIRE, *args], stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=env, text=False)  # fmt: skip
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + WAIT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(WAIT)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    proc.stderr.close()
    return code, b"".join(chunks).decode().replace("\r\n", "\n"), err


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# -- enqueue --------------------------------------------------------------------------------------------


def test_enqueue_prints_the_bare_id_and_says_when_a_key_returned_an_existing_job(
    server: ServerProcess, queue: str, client: spitfire.Client
) -> None:
    first = sf(server, "enqueue", queue, "send", '{"to": "a"}', "--idempotency-key", "k1")
    assert first.returncode == 0 and first.stderr == ""
    job_id = first.stdout.strip()
    assert first.stdout == job_id + "\n" and client.get(job_id).payload == {"to": "a"}
    again = sf(server, "enqueue", queue, "send", '{"to": "b"}', "--idempotency-key", "k1")
    assert again.returncode == 0 and again.stdout == first.stdout
    assert "nothing enqueued" in again.stderr and "'k1'" in again.stderr and job_id in again.stderr
    # A terminal gets the bare id too (ID=$(spitfire enqueue ...) and copy-paste alike).
    code, out, _ = sf_tty(server, "enqueue", queue, "send", "--delay", "1h30m", "--job-timeout", "2m")
    assert code == 0
    later = client.get(out.strip())
    assert later.state == "scheduled" and later.timeout == 120.0
    assert later.run_at is not None and later.run_at - later.created_at == pytest.approx(5400, abs=1)


# -- jobs -----------------------------------------------------------------------------------------------


def test_jobs_list_is_json_to_a_pipe_and_filters(
    server: ServerProcess, queue: str, client: spitfire.Client
) -> None:
    ids = [client.enqueue(queue, "n", i) for i in range(4)]
    client.cancel(ids[0])
    out = sf_json(server, "jobs", "list", "--queue", queue)
    assert [j["id"] for j in out["jobs"]] == ids[::-1] and out["cursor"] is None
    assert out["jobs"][-1]["payload"] == 0 and out["jobs"][-1]["state"] == "cancelled"
    only = sf_json(server, "jobs", "list", "--queue", queue, "--state", "cancelled,dead")
    assert [j["id"] for j in only["jobs"]] == [ids[0]]
    repeated = sf_json(
        server, "jobs", "list", "--queue", queue, "--state", "enqueued", "--state", "cancelled"
    )
    assert len(repeated["jobs"]) == 4
    page = sf(server, "jobs", "list", "--queue", queue, "--limit", "1", "--oldest", "--human")
    assert page.returncode == 0 and ids[0] in page.stdout and ids[1] not in page.stdout
    assert "more jobs: add --cursor" in page.stderr
    cursor = page.stderr.split("--cursor ")[1].split()[0]
    nxt = sf_json(server, "jobs", "list", "--queue", queue, "--limit", "1", "--oldest", "--cursor", cursor)
    assert [j["id"] for j in nxt["jobs"]] == [ids[1]]


def test_jobs_on_a_terminal_are_an_aligned_table_in_colour(
    server: ServerProcess, queue: str, client: spitfire.Client
) -> None:
    dead = client.enqueue(queue, "n", max_attempts=1, delay=3600)
    client.cancel(dead)
    ready = client.enqueue(queue, "n", {"k": 1})
    code, out, err = sf_tty(server, "jobs", "list", "--queue", queue)
    assert code == 0, err
    assert "\x1b[" in out  # colour
    lines = [line for line in _plain(out).splitlines() if line.strip()]
    # No RUN AT column: no job waits for a time.
    assert lines[0].split() == ["ID", "QUEUE", "NAME", "STATE", "ATTEMPTS", "CREATED"]
    rows = [line for line in lines if line.startswith(("0", "1"))]
    assert [r.split()[0] for r in rows] == [ready, dead]
    assert len({r.index(queue) for r in rows}) == 1  # aligned columns
    assert "cancelled" in rows[1] and "Z (" in rows[0] and ("ago" in rows[0] or "(now)" in rows[0])
    assert "null" not in out and "None" not in out
    code, shown, _ = sf_tty(server, "get", ready)
    plain = _plain(shown)
    assert code == 0 and '{"k": 1}' in plain and "enqueued" in plain
    assert "lease until" not in plain and "result" not in plain  # empty fields are left out
    code, forced, _ = sf_tty(server, "jobs", "list", "--queue", queue, "--json")
    assert code == 0 and len(json.loads(_plain(forced))["jobs"]) == 2


def test_jobs_cancel_retry_delete_several_ids(
    server: ServerProcess, queue: str, client: spitfire.Client
) -> None:
    ids = [client.enqueue(queue, "n", i, delay=3600) for i in range(3)]
    missing = "0" * 24
    cancelled = sf(server, "jobs", "cancel", *ids, missing, "--human")
    assert cancelled.returncode == 1  # one of them could not be done
    assert [line.split() for line in cancelled.stdout.splitlines()] == [[i, "cancelled"] for i in ids]
    assert missing in cancelled.stderr and "no job" in cancelled.stderr
    retried = sf_json(server, "jobs", "retry", ids[0], ids[1])
    assert retried == {"jobs": [{"id": ids[0], "state": "enqueued"}, {"id": ids[1], "state": "enqueued"}],
                       "failed": 0}  # fmt: skip
    again = sf(server, "jobs", "retry", ids[0])
    assert again.returncode == 1 and ids[0] in again.stderr
    deleted = sf_json(server, "jobs", "delete", *ids)
    assert [j["state"] for j in deleted["jobs"]] == ["deleted"] * 3
    for job_id in ids:
        with pytest.raises(spitfire.JobNotFound):
            client.get(job_id)
    gone = sf(server, "jobs", "get", ids[0])
    assert gone.returncode == 1 and "no job" in gone.stderr


# -- queues and workers ---------------------------------------------------------------------------------


def test_queues_list_pause_resume_purge_durability_delete(
    server: ServerProcess, queue: str, client: spitfire.Client
) -> None:
    ids = [client.enqueue(queue, "n", i) for i in range(3)]
    client.cancel(ids[0])
    listed = {q["name"]: q for q in sf_json(server, "queues")["queues"]}
    assert listed[queue]["counts"]["enqueued"] == 2 and listed[queue]["durability"] == "group"
    assert sf_json(server, "queues", "list")["queues"] == sf_json(server, "queues")["queues"]
    assert sf_json(server, "queues", "pause", queue) == {"queue": queue, "done": "paused"}
    assert client.stats(queue).queues[queue].paused
    assert sf(server, "queues", "resume", queue, "--human").stdout == f"{queue}: resumed\n"
    assert not client.stats(queue).queues[queue].paused
    purged = sf_json(server, "queues", "purge", queue, "--state", "cancelled")
    assert purged == {"queue": queue, "matched": 1, "deleted": 1, "failed": 0}
    human = sf(server, "queues", "purge", queue, "--state", "enqueued", "--human")
    assert human.stdout == f"{queue}: deleted 2 of 2 jobs\n"
    assert sf(server, "queues", "set-durability", queue, "sync").returncode == 0
    assert client.stats(queue).queues[queue].durability == "sync"
    code, table, _ = sf_tty(server, "queues")
    row = next(line for line in _plain(table).splitlines() if line.startswith(queue))
    assert code == 0 and row.split()[1] == "sync"
    refused = sf(server, "queues", "delete", queue)
    assert refused.returncode == 0  # empty now: deleted without --force
    with pytest.raises(spitfire.QueueNotFound):
        client.stats(queue)


def test_workers_lists_a_connected_worker(server: ServerProcess, queue: str) -> None:
    app = spitfire.App(server.url)

    @app.job(queue=queue)
    def noop() -> None:
        return None

    with worker_thread(app, queues=[queue], concurrency=3) as worker:
        listed = [w for w in sf_json(server, "workers")["workers"] if w["id"] == worker.worker_id]
        assert len(listed) == 1 and listed[0]["queues"] == [queue] and listed[0]["active"] is True
        assert listed[0]["concurrency"] == 3 and listed[0]["pid"] == os.getpid()
        code, table, _ = sf_tty(server, "workers")
        assert code == 0 and str(worker.worker_id) in table and "active" in table


# -- wait -----------------------------------------------------------------------------------------------


def test_wait_for_success_failure_and_timeout(
    server: ServerProcess, queue: str, client: spitfire.Client
) -> None:
    app = spitfire.App(server.url)

    @app.job(queue=queue, max_attempts=1)
    def double(x: int) -> int:
        if x < 0:
            raise ValueError("negative input")
        return 2 * x

    parked = client.enqueue(queue, "double", {"x": 1}, delay=3600)
    started = time.monotonic()
    timed_out = sf(server, "wait", parked, "--timeout", "300ms")
    assert timed_out.returncode == 4 and "still scheduled after --timeout" in timed_out.stderr
    assert time.monotonic() - started < WAIT
    with worker_thread(app, queues=[queue]):
        ok = double.enqueue(21)
        done = sf(server, "wait", ok, "--timeout", "30s")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == 42
        bad = double.enqueue(-1)
        failed = sf(server, "wait", bad, "--timeout", "30s")
        assert failed.returncode == 1 and "dead" in failed.stderr and "negative input" in failed.stderr
        assert json.loads(failed.stdout)["state"] == "dead"
        wait_state(client, bad, "dead")
    missing = sf(server, "wait", "0" * 24)
    assert missing.returncode == 1 and "no job" in missing.stderr


# -- flags and errors -----------------------------------------------------------------------------------


def test_usage_errors_name_the_flag(server: ServerProcess, queue: str, client: spitfire.Client) -> None:
    cases: list[tuple[list[str], int, str]] = [
        (["enqueue", queue, "n", "--delay", "-5s"], 2, "argument --delay: '-5s' is negative"),
        (["enqueue", queue, "n", "--delay", "soon"], 2, "argument --delay: 'soon' is not a duration"),
        (["enqueue", queue, "n", "--priority", "42"], 1, "--priority"),
        (["enqueue", queue, "n", "--max-attempts", "0"], 1, "--max-attempts"),
        (["enqueue", queue, "n", "{bad json"], 2, "not valid JSON"),
        (["jobs", "list", "--limit", "0"], 2, "--limit must be 1 to 1000"),
        (["jobs", "list", "--state", "finished"], 2, "'finished' is not a job state"),
        (["queues", "purge", queue], 2, "the following arguments are required: --state"),
        (["queues", "purge", "no-such-queue-here", "--state", "dead"], 1, "no queue named"),
        (["queues", "set-durability", queue, "fast"], 2, "invalid choice: 'fast'"),
        (["queues", "pause", "no-such-queue-here"], 1, "no queue named"),
        (["stats", "--connect-timeout", "-1s"], 2, "argument --connect-timeout: '-1s' is negative"),
        (["wait", "x", "--timeout", "forever"], 2, "argument --timeout: 'forever' is not a duration"),
        (["get", "x", "--url", "http://localhost"], 2, "tcp://"),
    ]
    for argv, code, message in cases:
        done = sf(server, *argv)
        assert (done.returncode, message in done.stderr) == (code, True), (argv, done.stderr)
        assert "Traceback" not in done.stderr and "=" not in done.stderr.split("usage:")[0].replace(
            "==", ""
        ), argv
    assert client.list_jobs(queue).jobs == []  # nothing was enqueued by any of them


def test_unreachable_server_names_the_flags(tmp_path: Path) -> None:
    down = sf(None, "stats", "--url", "tcp://127.0.0.1:1", "--connect-timeout", "500ms")
    assert down.returncode == 3 and "--url" in down.stderr and "url=" not in down.stderr
    old = sf(None, "stats", "--url", "tcp://127.0.0.1:1", "--timeout", "0.5")
    assert old.returncode == 3 and "--timeout is deprecated here, use --connect-timeout" in old.stderr


def test_versions_and_help() -> None:
    version = spitfire.__version__
    assert sf(None, "--version").stdout.strip() == f"spitfire {version}"
    server_version = subprocess.run([SERVER, "--version"], capture_output=True, text=True, timeout=WAIT)
    assert server_version.returncode == 0 and server_version.stdout.startswith("spitfire-server ")
    server_help = subprocess.run([SERVER, "--help"], capture_output=True, text=True, timeout=WAIT).stdout
    assert "spitfire-server repair" in server_help and "64MiB" in server_help
    top = sf(None, "--help").stdout
    for command in ("worker", "enqueue", "get", "wait", "stats", "jobs", "queues", "workers", "schedules"):
        assert command in top
    assert "(default 10s)" in sf(None, "stats", "--help").stdout


def test_stats_and_schedules_on_a_terminal(
    server: ServerProcess, queue: str, client: spitfire.Client
) -> None:
    client.enqueue(queue, "n")
    name = f"s-{queue}"
    client.schedules.add(name, "0 3 * * *", queue, "report", {"kind": "daily"}, timezone="Europe/Berlin")
    try:
        code, out, err = sf_tty(server, "stats", "--queue", queue)
        lines = _plain(out).splitlines()
        # States no queue has jobs in are left out (ENQUEUED always shows).
        assert lines[0].split() == ["QUEUE", "PAUSED", "DURABILITY", "ENQUEUED", "TOTAL"]
        row = next(line for line in lines if line.startswith(queue))
        assert code == 0 and row.split()[1:] == ["group", "1", "1"] and "jobs," in err
        code, out, _ = sf_tty(server, "schedules", "list")
        row = next(line for line in _plain(out).splitlines() if line.startswith(name))
        assert code == 0 and "0 3 * * *" in row and "Europe/Berlin" in row and "(in " in row
        code, out, _ = sf_tty(server, "schedules", "pause", name)
        plain = _plain(out)
        assert code == 0 and "paused" in plain and '{"kind": "daily"}' in plain and "null" not in plain
        assert "next run" not in plain  # none while paused: left out
    finally:
        client.schedules.remove(name)
