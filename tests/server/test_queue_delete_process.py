"""Deleting queues on a real spitfire-server ("Disk"): over the binary protocol and the SDK,
what a worker holding a job of the queue is told, the disk space it gives back, the queue limit,
and crashes: a SIGKILL right after the answer, and SIGKILLs inside the deletion (after its record
committed, before the directory is renamed; after the rename, before the tombstone is removed)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from protoclient import ProtoClient, ServerError, ServerProcess, run

import spitfire
from spitfire.protocol import messages as m
from spitfire.protocol.messages import ErrorCode, MessageType

#: Runs spitfire-server with a crash injected at one point of a queue deletion (``CRASH_AT``): the
#: process SIGKILLs itself, as a power cut or an OOM kill would stop it there.
CRASHING_SERVER = """
import os, shutil, signal, sys

at = os.environ["CRASH_AT"]
real_rename, real_rmtree = os.rename, shutil.rmtree


def rename(src, dst, *args, **kwargs):
    tomb = "/.deleted-" in str(dst)
    if tomb and at == "before-rename":
        os.kill(os.getpid(), signal.SIGKILL)
    return real_rename(src, dst, *args, **kwargs)


def rmtree(path, *args, **kwargs):
    if "/.deleted-" in str(path) and at == "before-removal":
        os.kill(os.getpid(), signal.SIGKILL)
    return real_rmtree(path, *args, **kwargs)


os.rename, shutil.rmtree = rename, rmtree
from spitfire.server.cli import main

sys.exit(main())
"""


def disk_usage(path: Path) -> int:
    """Bytes allocated under ``path`` as `du` counts them."""
    total = os.lstat(path).st_blocks * 512
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """Servers a test started; each is killed (by PID) at the end."""
    servers: list[ServerProcess] = []
    try:
        yield servers
    finally:
        for server in servers:
            server.kill()


def _start(servers: list[ServerProcess], data: Path, *args: str) -> ServerProcess:
    server = ServerProcess(data, *args)
    servers.append(server)
    return server.start()


async def _delete(c: ProtoClient, queue: str, force: bool = False) -> None:
    assert isinstance(await c.call(MessageType.DELETE_QUEUE, m.DeleteQueue(queue, force)), m.Ok)


def test_delete_over_the_protocol_frees_the_disk_and_stops_the_worker(
    tmp_path: Path, started: list[ServerProcess]
) -> None:
    data = tmp_path / "data"
    server = _start(started, data)

    async def main() -> None:
        producer = await ProtoClient.connect(server.port)
        worker = await ProtoClient.connect(server.port)
        for i in range(300):
            await producer.enqueue("bulk", payload=bytes([i % 256]) * 4096)
        kept = await producer.enqueue("kept")
        await worker.subscribe(["bulk"], 1)
        (held,) = await worker.deliveries(1)
        bulk_bytes = disk_usage(data / "queues" / "bulk")
        before = disk_usage(data)
        assert bulk_bytes >= 1 << 20

        with pytest.raises(ServerError) as refused:
            await _delete(producer, "bulk")
        assert refused.value.error.code == ErrorCode.CONFLICT
        assert "300 pending job(s)" in refused.value.error.message and "force" in refused.value.error.message
        with pytest.raises(ServerError) as unknown:
            await _delete(producer, "no-such-queue")
        assert unknown.value.error.code == ErrorCode.NOT_FOUND

        await _delete(producer, "bulk", force=True)
        push = await worker.push()
        assert push.type is MessageType.CANCEL_JOBS and push.message.job_ids == [held.job_id]
        assert not (data / "queues" / "bulk").exists()
        assert os.listdir(data / "queues") == ["kept"]
        assert disk_usage(data) <= before - bulk_bytes + 64 * 1024
        assert [q.name for q in (await producer.stats()).queues] == ["kept"]
        with pytest.raises(ServerError) as gone:
            await producer.get(held.job_id)
        assert gone.value.error.code == ErrorCode.NOT_FOUND
        done = await worker.ack(held.job_id)  # the worker's late outcome changes nothing
        assert [e.code for e in done.errors] == [ErrorCode.NOT_FOUND]

        # The worker kept its subscription by name: a new queue "bulk" is delivered to it.
        worker.send(MessageType.CREDIT, m.Credit(1))
        fresh = await producer.enqueue("bulk", payload=b"\x01")
        (delivered,) = await worker.deliveries(1)
        assert delivered.job_id == fresh.job_id and delivered.payload == b"\x01"
        assert (await producer.get(kept.job_id)).state == "enqueued"
        producer.close()
        worker.close()

    run(main())
    assert server.terminate() == 0


def test_sigkill_right_after_a_delete_keeps_the_queue_deleted(
    tmp_path: Path, started: list[ServerProcess]
) -> None:
    data = tmp_path / "data"
    server = _start(started, data)

    async def fill_and_delete() -> list[str]:
        c = await ProtoClient.connect(server.port)
        ids = [(await c.enqueue("doomed", idempotency_key=f"k{i}")).job_id for i in range(20)]
        await c.enqueue("kept")
        await _delete(c, "doomed", force=True)
        c.close()
        return ids

    ids = run(fill_and_delete())
    server.kill()  # SIGKILL at once after the answer
    server = _start(started, data)

    async def check() -> None:
        c = await ProtoClient.connect(server.port)
        assert [q.name for q in (await c.stats()).queues] == ["kept"]
        for job_id in ids[:3]:
            with pytest.raises(ServerError):
                await c.get(job_id)
        again = await c.enqueue("doomed", idempotency_key="k0")  # a new queue: the key is new too
        assert again.created and again.job_id not in ids
        c.close()

    run(check())
    assert sorted(os.listdir(data / "queues")) == ["doomed", "kept"]


@pytest.mark.parametrize("crash_at", ["before-rename", "before-removal"])
def test_a_crash_inside_a_deletion_leaves_the_queue_gone(
    tmp_path: Path, started: list[ServerProcess], monkeypatch: pytest.MonkeyPatch, crash_at: str
) -> None:
    """The process dies after QUEUE_DELETED committed but before the directory became a tombstone,
    or after the rename before the tombstone was removed: either way the next start has no queue
    and no file of it left."""
    data = tmp_path / "data"
    script = tmp_path / "crashing_server.py"
    script.write_text(CRASHING_SERVER)
    import protoclient

    monkeypatch.setattr(protoclient, "SERVER", [sys.executable, str(script)])
    monkeypatch.setenv("CRASH_AT", crash_at)
    server = _start(started, data)

    async def delete() -> str:
        c = await ProtoClient.connect(server.port)
        job = await c.enqueue("doomed")
        await c.enqueue("kept")
        with pytest.raises(ConnectionError):  # the server dies before it answers
            await _delete(c, "doomed", force=True)
        c.close()
        return job.job_id

    job_id = run(delete())
    assert server.proc is not None and server.proc.wait(30) == -9
    left = sorted(os.listdir(data / "queues"))
    assert left == (["doomed", "kept"] if crash_at == "before-rename" else [left[0], "kept"])
    assert left[0].startswith(".deleted-doomed-") or crash_at == "before-rename"

    monkeypatch.setattr(protoclient, "SERVER", [sys.executable, "-m", "spitfire.server.cli"])
    server = _start(started, data)

    async def check() -> None:
        c = await ProtoClient.connect(server.port)
        assert [q.name for q in (await c.stats()).queues] == ["kept"]
        with pytest.raises(ServerError):
            await c.get(job_id)
        c.close()

    run(check())
    assert os.listdir(data / "queues") == ["kept"]
    assert "removing" in server.log()


def test_max_queues_refuses_a_new_queue_with_a_clear_error(
    tmp_path: Path, started: list[ServerProcess]
) -> None:
    server = _start(started, tmp_path / "data", "--max-queues", "2")

    async def main() -> None:
        c = await ProtoClient.connect(server.port)
        await c.enqueue("a")
        await c.enqueue("b")
        with pytest.raises(ServerError) as refused:
            await c.enqueue("c")
        err = refused.value.error
        assert err.code == ErrorCode.CONFLICT
        assert "limit of 2 queues" in err.message and "--max-queues" in err.message
        await c.enqueue("a")  # existing queues go on
        await _delete(c, "b", force=True)
        await c.enqueue("c")
        assert sorted(q.name for q in (await c.stats()).queues) == ["a", "c"]
        c.close()

    run(main())


def test_the_sdk_deletes_queues(tmp_path: Path, started: list[ServerProcess]) -> None:
    server = _start(started, tmp_path / "data")
    with spitfire.Client(f"tcp://127.0.0.1:{server.port}") as client:
        job_id = client.enqueue("sdk-q", "job", {"n": 1})
        with pytest.raises(spitfire.Conflict, match="1 pending job"):
            client.delete_queue("sdk-q")
        client.delete_queue("sdk-q", force=True)
        with pytest.raises(spitfire.QueueNotFound):
            client.delete_queue("sdk-q")
        with pytest.raises(spitfire.JobNotFound):
            client.get(job_id)
        assert client.stats().queues == {}

    async def with_async_client() -> None:
        async with spitfire.AsyncClient(f"tcp://127.0.0.1:{server.port}") as client:
            job_id = await client.enqueue("sdk-async", "job", {})
            await client.delete_queue("sdk-async", force=True)
            with pytest.raises(spitfire.JobNotFound):
                await client.get(job_id)

    run(with_async_client())
