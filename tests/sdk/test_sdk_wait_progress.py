"""The SDK's results and progress against a real server: `wait` (sync, async, `JobId.wait`) returns
the result or raises the job's error; `ctx.progress` reaches the server coalesced; a job this worker
has no handler for goes dead at once; `enqueue_many` on decorated jobs; too-large ints."""

from __future__ import annotations

import asyncio
import logging
import pickle
import threading
import time

import msgspec
import pytest
from sdk_helpers import ServerProcess, run_burst, wait_state, wait_until, worker_thread

import spitfire
from spitfire.protocol.messages import MessageType


def test_wait_returns_the_result_and_raises_the_jobs_error(
    server: ServerProcess, client: spitfire.Client, queue: str
) -> None:
    app = spitfire.App(server.url)

    @app.job(queue=queue, max_attempts=2, backoff=spitfire.Backoff("fixed", 0.01))
    def add(a: int, b: int) -> int:
        if a < 0:
            raise ValueError("negative")
        return a + b

    ok = add.enqueue(2, 3)
    assert isinstance(ok, str) and ok.created and ok == str(ok)
    bad = add.enqueue(-1, 0)
    with worker_thread(app):
        assert ok.wait(timeout=30) == 5
        with pytest.raises(spitfire.JobFailed) as failed:
            client.wait(bad, timeout=30)
    assert failed.value.job.state == "dead" and "ValueError: negative" in str(failed.value)
    assert "2 attempt" in str(failed.value)
    # A finished job is answered at once, again and again.
    assert client.wait(ok, timeout=0) == 5
    assert pickle.loads(pickle.dumps(ok)) == ok and type(pickle.loads(pickle.dumps(ok))) is str
    # A JobId in a payload encodes as its string.
    nested = client.enqueue(queue + "-x", "noop", {"parent": ok})
    assert client.get(nested).payload == {"parent": str(ok)}


def test_wait_times_out_and_cancel_raises(client: spitfire.Client, queue: str) -> None:
    job_id = client.enqueue(queue, "later", None, delay=3600)
    started = time.monotonic()
    with pytest.raises(spitfire.WaitTimeout) as timed_out:
        client.wait(job_id, timeout=0.3)
    assert time.monotonic() - started >= 0.25 and timed_out.value.job.state == "scheduled"
    threading.Timer(0.3, lambda: spitfire.Client(client.url).cancel(job_id)).start()
    with pytest.raises(spitfire.JobCancelled) as cancelled:
        job_id.wait(timeout=30)
    assert cancelled.value.job.state == "cancelled"
    with pytest.raises(spitfire.JobNotFound):
        client.wait("019b76daa800000000964b48", timeout=1)


def test_async_wait(server: ServerProcess, queue: str) -> None:
    async def body() -> None:
        async with spitfire.AsyncClient(server.url) as c:
            job_id = await c.enqueue(queue, "later", None, delay=3600)
            assert isinstance(job_id, spitfire.AsyncJobId) and job_id.created
            waiter = asyncio.ensure_future(job_id.wait(timeout=30))
            await asyncio.sleep(0.2)
            assert not waiter.done()
            await c.cancel(job_id)
            with pytest.raises(spitfire.JobCancelled):
                await waiter
            with pytest.raises(spitfire.WaitTimeout):
                await c.wait(await c.enqueue(queue, "later", None, delay=3600), timeout=0.2)

    asyncio.run(asyncio.wait_for(body(), 60))


def test_progress_is_coalesced_and_visible(
    server: ServerProcess, client: spitfire.Client, queue: str
) -> None:
    app = spitfire.App(server.url)
    release = threading.Event()

    @app.job(queue=queue)
    def resize(n: int) -> str:
        ctx = spitfire.context()
        for i in range(n):
            ctx.progress((i + 1) / n, f"resized {i + 1} of {n}")
        release.wait(20)
        return "done"

    @app.job(queue=queue)
    async def slow(n: int) -> None:
        for i in range(n):
            spitfire.context().progress(i / n)
            await asyncio.sleep(0.01)

    job_id = resize.enqueue(10_000)
    with worker_thread(app) as worker:
        job = wait_until(
            lambda: (j := client.get(job_id)).progress is not None and j.progress.value == 1.0 and j,
            what="the last progress report",
        )
        assert job.progress.message == "resized 10000 of 10000"
        with pytest.raises(ValueError):
            spitfire.JobContext("x", "q", "n", 1, 1, {}, 1.0).progress(1.5)
        release.set()
        assert job_id.wait(timeout=30) == "done"
        assert client.get(job_id).progress is None  # final: dropped
        sent: list[object] = []
        conn = worker._conn
        assert conn is not None
        original = conn.send

        def spy(message_type: int, message: msgspec.Struct) -> None:
            if message_type == MessageType.PROGRESS:
                sent.append(message)
            original(message_type, message)

        conn.send = spy  # type: ignore[method-assign]
        started = time.monotonic()
        slow.enqueue(100).wait(timeout=30)
        elapsed = time.monotonic() - started
    # 100 reports over ~1 s: at most one per 0.25 s (plus the first).
    assert 1 <= len(sent) <= elapsed / 0.25 + 2, (len(sent), elapsed)


def test_unknown_handler_goes_dead_at_once(
    server: ServerProcess, client: spitfire.Client, queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = spitfire.App(server.url)

    @app.job(queue=queue)
    def known() -> None:
        pass

    job_id = client.enqueue(queue, "renamed_handler", {}, max_attempts=25)
    bad_args = client.enqueue(queue, "known", {"unexpected": "x", "count": "y"})
    with caplog.at_level(logging.INFO, logger="spitfire.worker"):
        run_burst(app)
    job = wait_state(client, job_id, "dead")
    assert job.attempts == 1 and "no job named 'renamed_handler'" in (job.last_error or "")
    assert any(
        r.levelno == logging.ERROR and job_id in r.getMessage() and "is dead" in r.getMessage()
        for r in caplog.records
    )
    assert client.get(bad_args).state in ("succeeded", "dead")  # extra keys are ignored by design
    assert any("succeeded in" in r.getMessage() for r in caplog.records)


def test_failures_log_the_attempt_and_what_happens_next(
    server: ServerProcess, client: spitfire.Client, queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = spitfire.App(server.url)

    @app.job(queue=queue, max_attempts=2, backoff=spitfire.Backoff("fixed", 0.01))
    def flaky() -> None:
        raise RuntimeError("nope")

    job_id = flaky.enqueue()
    with caplog.at_level(logging.INFO, logger="spitfire.worker"):
        run_burst(app)
    assert wait_state(client, job_id, "dead").attempts == 2
    lines = [r.getMessage() for r in caplog.records if job_id in r.getMessage()]
    assert any("attempt 1/2" in m and "will retry" in m for m in lines), lines
    assert any("attempt 2/2" in m and "no attempts left: dead" in m for m in lines), lines


def test_enqueue_many_on_decorated_jobs_and_big_ints(
    server: ServerProcess, client: spitfire.Client, queue: str
) -> None:
    app = spitfire.App(server.url)

    @app.job(queue=queue, priority=3)
    def square(x: int) -> int:
        return x * x

    ids = square.enqueue_many([{"x": 2}, (3,), {"x": 4}])
    assert len(ids) == 3 and client.get(ids[0]).priority == 3
    with pytest.raises(spitfire.JobArgumentError) as err:
        square.enqueue_many([{"x": 1}, {"x": "two"}])
    assert "calls[1]" in str(err.value) and err.value.argument == "x"
    with pytest.raises(spitfire.JobArgumentError) as big:
        square.enqueue(2**70)
    assert big.value.argument == "x"
    run_burst(app)
    assert [client.wait(i, timeout=10) for i in ids] == [4, 9, 16]
    assert msgspec.msgpack.decode(client.get(ids[1]).raw_payload) == {"x": 3}


def test_wait_survives_a_server_sigkill_and_restart(own_server: ServerProcess, queue: str) -> None:
    """WAIT is resent on the restarted server (it changes nothing); the outcome still arrives."""
    client = spitfire.Client(own_server.url, connect_timeout=30)
    job_id = client.enqueue(queue, "later", None, delay=3600)
    outcome: list[BaseException] = []

    def waiting() -> None:
        try:
            job_id.wait(timeout=60)
        except BaseException as exc:  # what the waiter raised is the test's result
            outcome.append(exc)

    thread = threading.Thread(target=waiting, daemon=True)
    thread.start()
    wait_until(lambda: "spitfire_waiters 1" in _metrics(own_server), what="the server to hold the waiter")
    own_server.kill()  # SIGKILL: no GOAWAY, the waiter's connection just drops
    restarted = ServerProcess(own_server.data_dir, own_server.port).start()
    try:
        wait_until(lambda: "spitfire_waiters 1" in _metrics(restarted), what="the waiter to come back")
        with spitfire.Client(restarted.url) as other:
            other.cancel(job_id)
        thread.join(30)
        assert len(outcome) == 1 and isinstance(outcome[0], spitfire.JobCancelled), outcome
    finally:
        client.close()
        restarted.kill()


def _metrics(server: ServerProcess) -> str:
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/metrics", timeout=5) as r:
            return str(r.read().decode())
    except OSError:
        return ""
