"""A slow or failing fdatasync under a real spitfire-server (``fsync_shim.py`` patches ``os.fdatasync``
in the server process): nothing is visible or answered before it is durable, and a failed fsync is
fail-stop (every waiting request gets an error, the process exits 3, the next start recovers)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest
from protoclient import ProtoClient, ServerError, ServerProcess, run

from spitfire.protocol.messages import MessageType
from spitfire.server.errors import StorageFailed
from spitfire.server.options import Address, ServerOptions
from spitfire.server.runtime import EXIT_STORAGE_FAILED, Server

SHIM = [sys.executable, str(Path(__file__).with_name("fsync_shim.py"))]
#: How long the shim's fdatasync sleeps while the test looks at the server.
SLOW = 1.0


def _start(tmp_path: Path) -> tuple[ServerProcess, Path]:
    control = tmp_path / "fsync-control"
    control.mkdir()
    proc = ServerProcess(tmp_path / "data", command=SHIM, env={"SPITFIRE_FSYNC_CONTROL": str(control)})
    return proc.start(), control


async def _ready_worker(port: int, queue: str) -> ProtoClient:
    """A worker subscribed to ``queue`` whose warm-up job has come and gone (the queue exists)."""
    producer = await ProtoClient.connect(port)
    worker = await ProtoClient.connect(port)
    await producer.enqueue(queue, payload=b"\x01")
    await worker.subscribe([queue], 10)
    (warm,) = await worker.deliveries(1)
    await worker.ack(warm.job_id)
    producer.close()
    return worker


def test_a_slow_fsync_delays_the_answer_the_duplicate_and_the_delivery(tmp_path: Path) -> None:
    server, control = _start(tmp_path)
    try:

        async def body() -> None:
            worker = await _ready_worker(server.port, "slow")
            a, b = await ProtoClient.connect(server.port), await ProtoClient.connect(server.port)
            (control / "slow").write_text(str(SLOW))
            started = time.monotonic()
            first = asyncio.ensure_future(a.enqueue("slow", idempotency_key="k"))
            await asyncio.sleep(0.2)
            dup = asyncio.ensure_future(b.enqueue("slow", idempotency_key="k"))
            stats = (await b.stats("slow")).queues[0]  # reads are not held up by the disk
            assert stats.counts["enqueued"] == 0 and stats.total == 1  # only the warm-up job
            delivered = await worker.deliveries(1, timeout=10)
            delivered_after = time.monotonic() - started
            original, duplicate = await first, await dup
            answered_after = time.monotonic() - started
            (control / "slow").unlink()
            assert original.created and not duplicate.created
            assert duplicate.job_id == original.job_id == delivered[0].job_id
            # Nothing before the fdatasync that covers the record returned (it sleeps SLOW seconds).
            assert delivered_after >= SLOW * 0.9 and answered_after >= SLOW * 0.9
            for client in (a, b, worker):
                client.close()

        run(body())
        assert server.terminate() == 0
    finally:
        server.kill()


def test_a_failed_fsync_answers_errors_and_stops_the_server(tmp_path: Path) -> None:
    server, control = _start(tmp_path)
    try:

        async def body() -> None:
            worker = await _ready_worker(server.port, "doomed")
            a, b = await ProtoClient.connect(server.port), await ProtoClient.connect(server.port)
            (control / "slow").write_text("0.5")
            (control / "fail").touch()
            first = asyncio.ensure_future(a.enqueue("doomed", idempotency_key="k"))
            await asyncio.sleep(0.1)
            dup = asyncio.ensure_future(b.enqueue("doomed", idempotency_key="k"))
            for task in (first, dup):
                with pytest.raises(ServerError, match="storage failed") as refused:
                    await task
                assert refused.value.code == "INTERNAL"
            # The worker never saw the refused job; the server tells it to go away instead.
            push = await worker.push(timeout=10)
            assert push.type is not MessageType.DELIVER
            for client in (a, b, worker):
                client.close()

        run(body())
        assert server.proc is not None
        assert server.proc.wait(30) == EXIT_STORAGE_FAILED
        log = server.log()
        assert "Input/output error" in log and ".seg" in log and "stopping" in log
    finally:
        server.kill()
    # The next start (a healthy disk) recovers what is durable; the warm-up job is there.
    again = ServerProcess(tmp_path / "data").start()
    try:

        async def check() -> None:
            client = await ProtoClient.connect(again.port)
            (info,) = (await client.stats("doomed")).queues
            assert info.counts["succeeded"] == 1
            await client.enqueue("doomed")  # and it takes writes again
            client.close()

        run(check())
        assert again.terminate() == 0
    finally:
        again.kill()


def test_readiness_turns_503_at_a_failed_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In process, to look at /ready's checks between the failure and the exit."""
    options = ServerOptions(
        data_dir=tmp_path / "data", listen=Address("127.0.0.1", 0), http=Address("127.0.0.1", 0), no_quic=True
    )

    async def body() -> None:
        server = Server(options)
        await server.start()
        try:
            assert server.engine is not None
            await server.engine.enqueue("q", "h", b"\x01", now=time.time())
            assert server.readiness() == {}

            def broken(fd: int) -> None:
                raise OSError(5, "Input/output error")

            monkeypatch.setattr("os.fdatasync", broken)
            with pytest.raises(StorageFailed):
                await server.engine.enqueue("q", "h", b"\x02", now=time.time())
            failing = server.readiness()
            assert "Input/output error" in failing["storage"] and "shutdown" in failing
            assert server.engine.pending("q") == 1
        finally:
            monkeypatch.undo()
            await server.drain()
            await server.close()

    asyncio.run(asyncio.wait_for(body(), 60))


def test_the_schedules_log_waits_for_its_fsync_and_a_failed_one_stops_the_server(tmp_path: Path) -> None:
    """A schedule is answered (and visible) only once durable; a failed fsync of its log is fail-stop
    and the next start has every schedule acknowledged before."""
    import re

    import httpx

    server, control = _start(tmp_path)

    def definition(name: str) -> dict[str, str]:
        return {"name": name, "cron": "0 3 * * *", "queue": "reports", "job": "build"}

    try:
        port = re.search(r"http://127\.0\.0\.1:(\d+)", server.banner)
        assert port, server.banner
        with httpx.Client(base_url=f"http://127.0.0.1:{port.group(1)}", timeout=30) as http:
            assert http.post("/api/schedules", json=definition("kept")).status_code == 201
            (control / "slow").write_text(str(SLOW))
            started = time.monotonic()
            assert http.post("/api/schedules", json=definition("slow")).status_code == 201
            assert time.monotonic() - started >= SLOW * 0.9  # answered after its fdatasync only
            (control / "slow").unlink()
            (control / "fail").touch()
            refused = http.post("/api/schedules", json=definition("doomed"))
            assert refused.status_code >= 500 and "storage failed" in refused.text
        assert server.proc is not None
        assert server.proc.wait(30) == EXIT_STORAGE_FAILED
    finally:
        server.kill()
    again = ServerProcess(tmp_path / "data").start()
    try:
        port = re.search(r"http://127\.0\.0\.1:(\d+)", again.banner)
        assert port
        names = [
            s["name"]
            for s in httpx.get(f"http://127.0.0.1:{port.group(1)}/api/schedules").json()["schedules"]
        ]
        # The refused one may be there or not (its bytes reached the page cache; only the fdatasync
        # was made to fail): it was never acknowledged. The acknowledged ones are there.
        assert names[-2:] == ["kept", "slow"] and set(names) <= {"doomed", "kept", "slow"}
        assert again.terminate() == 0
    finally:
        again.kill()


def test_the_definitions_log_waits_for_its_fsync_and_a_failed_one_stops_the_server(tmp_path: Path) -> None:
    """A job definition is answered (and applied to enqueues) only once durable; a failed fsync of its
    log is fail-stop and the next start has every definition acknowledged before."""
    from spitfire.protocol import messages as m

    server, control = _start(tmp_path)

    def definition(name: str) -> m.RegisterJobs:
        return m.RegisterJobs([m.JobDefinitionSpec(name, "q", max_attempts=4)])

    async def body() -> None:
        c = await ProtoClient.connect(server.port)
        try:
            await c.call(MessageType.REGISTER_JOBS, definition("kept"))
            (control / "slow").write_text(str(SLOW))
            started = time.monotonic()
            pending = asyncio.ensure_future(c.call(MessageType.REGISTER_JOBS, definition("slow")))
            await asyncio.sleep(SLOW / 4)
            # Not durable yet: an enqueue of it meanwhile does not take the definition's options.
            listed = await c.call(MessageType.LIST_JOB_DEFINITIONS, m.ListJobDefinitions())
            assert [d.name for d in listed.definitions] == ["kept"]
            await pending
            assert time.monotonic() - started >= SLOW * 0.9  # answered after its fdatasync only
            (control / "slow").unlink()
            (control / "fail").touch()
            with pytest.raises(ServerError) as err:
                await c.call(MessageType.REGISTER_JOBS, definition("doomed"))
            assert err.value.code == "INTERNAL" and "storage failed" in str(err.value)
        finally:
            c.close()

    async def after(port: int) -> list[str]:
        c = await ProtoClient.connect(port)
        try:
            listed = await c.call(MessageType.LIST_JOB_DEFINITIONS, m.ListJobDefinitions())
            return [d.name for d in listed.definitions]
        finally:
            c.close()

    try:
        run(body())
        assert server.proc is not None
        assert server.proc.wait(30) == EXIT_STORAGE_FAILED
    finally:
        server.kill()
    again = ServerProcess(tmp_path / "data").start()
    try:
        names = run(after(again.port))
        # The refused one may be there or not (only its fdatasync was made to fail): it was never
        # acknowledged. The acknowledged ones are there.
        assert {"kept", "slow"} <= set(names) <= {"doomed", "kept", "slow"}
        assert again.terminate() == 0
    finally:
        again.kill()
