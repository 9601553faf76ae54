"""Job definitions through the SDK and the CLI against a real server: a worker registers its app's
``@app.job`` definitions when it starts, and then an enqueue from the CLI or a plain client that sets
no option gets the definition's; ``validate=True`` refuses a bad payload naming the field;
``client.job_definitions()`` (sync and async) and ``spitfire jobs defs``; and a worker against a
server older than definitions says so once and goes on."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import uuid
from typing import Any

import msgspec
import pytest
from sdk_fakeserver import FakeServer
from sdk_helpers import CLI, WAIT, ServerProcess, worker_thread

import spitfire
from spitfire.protocol import messages as m
from spitfire.protocol.messages import MessageType
from spitfire.protocol.session import Request


def make_app(server: ServerProcess, queue: str, job: str) -> spitfire.App:
    app = spitfire.App(server.url)

    @app.job(queue=queue, name=job, max_attempts=5, timeout=30, priority=2, backoff=[1, 5], validate=True)
    def send_email(to: str, subject: str = "hello") -> None:
        return None

    return app


def cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args, "--url", server.url],
        capture_output=True,
        text=True,
        timeout=WAIT,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def job() -> str:
    return f"send-{uuid.uuid4().hex[:10]}"


def test_a_job_function_describes_its_definition() -> None:
    app = spitfire.App("tcp://127.0.0.1:1")

    @app.job(queue="emails", max_attempts=5, timeout=30, backoff=[1, 5], validate=True)
    def send_email(to: str, subject: str = "hello") -> None: ...

    @app.job
    def plain(n: int) -> None: ...

    d = send_email.definition()
    assert (d.name, d.queue, d.priority, d.max_attempts, d.timeout, d.validate) == (
        "send_email", "emails", 0, 5, 30.0, True,
    )  # fmt: skip
    assert d.backoff == spitfire.Backoff.of_delays([1, 5])
    schema = json.loads(d.schema or "")
    args = schema["$defs"][schema["$ref"].rpartition("/")[2]]
    assert args["properties"] == {"to": {"type": "string"}, "subject": {"type": "string"}}
    assert args["required"] == ["to"]
    assert [x.name for x in app.definitions()] == ["plain", "send_email"]
    assert plain.definition() == m.JobDefinitionSpec("plain", "default", schema=plain.schema)

    with pytest.raises(TypeError, match="validate=True needs argument type hints"):

        @app.job(validate=True)
        def opaque(blob: msgspec.msgpack.Ext) -> None: ...


def test_a_worker_registers_then_cli_and_client_enqueues_get_the_definition(
    server: ServerProcess, client: spitfire.Client, queue: str, job: str
) -> None:
    app = make_app(server, queue, job)
    with worker_thread(app):
        definitions = {d.name: d for d in client.job_definitions()}
        d = definitions[job]
        assert (d.queue, d.priority, d.max_attempts, d.timeout, d.validate) == (queue, 2, 5, 30.0, True)
        assert d.backoff == spitfire.Backoff.of_delays([1, 5]) and d.registered_by.startswith(
            "spitfire-python/"
        )
        assert d.schema["$ref"].endswith("_args")
    # The worker is gone: the definition stays on the server.
    done = cli(server, "enqueue", queue, job, '{"to": "a@b.c"}')
    assert done.returncode == 0, done.stderr
    got = client.get(done.stdout.strip())
    assert (got.max_attempts, got.timeout, got.priority) == (5, 30.0, 2)
    plain = client.get(client.enqueue(queue, job, {"to": "x@y.z"}, max_attempts=9))
    assert (plain.max_attempts, plain.timeout) == (9, 30.0)  # what the enqueue sets wins

    refused = cli(server, "enqueue", queue, job, '{"to": 42}')
    assert refused.returncode != 0 and "payload.to" in refused.stderr, refused.stderr
    with pytest.raises(spitfire.BadRequest) as err:
        client.enqueue(queue, job, {"subject": "no recipient"})
    assert err.value.field == "payload.to"
    assert "the schema of job" in err.value.message


def test_job_definitions_async_and_the_cli(server: ServerProcess, queue: str, job: str) -> None:
    app = make_app(server, queue, job)
    assert app.register_jobs() is True
    assert app.register_jobs() is True  # identical: nothing written, no error

    async def listed() -> list[spitfire.JobDefinition]:
        async with spitfire.AsyncClient(server.url) as c:
            return await c.job_definitions()

    (d,) = [x for x in asyncio.run(listed()) if x.name == job]
    assert d.max_attempts == 5

    as_json = cli(server, "jobs", "defs", "--json")
    assert as_json.returncode == 0, as_json.stderr
    (row,) = [x for x in json.loads(as_json.stdout)["definitions"] if x["name"] == job]
    assert (row["queue"], row["max_attempts"], row["timeout"], row["validate"]) == (queue, 5, 30.0, True)
    assert row["backoff"]["delays"] == [1.0, 5.0] and row["schema"]["$ref"].endswith("_args")

    table = cli(server, "jobs", "defs", "--human")
    assert table.returncode == 0 and "NAME" in table.stdout and job in table.stdout, table.stdout
    one = cli(server, "jobs", "defs", job, "--human")
    assert one.returncode == 0 and "max attempts" in one.stdout and '"$defs"' in one.stdout, one.stdout
    missing = cli(server, "jobs", "defs", "no-such-job", "--json")
    assert missing.returncode == 1 and "no job definition named 'no-such-job'" in missing.stderr


def test_a_refused_definition_names_its_job(server: ServerProcess) -> None:
    app = spitfire.App(server.url)

    @app.job(name="bad\x01name")
    def f() -> None: ...

    with pytest.raises(spitfire.BadRequest) as err:
        app.register_jobs()
    assert err.value.field == "definitions[0].name" and "job 'bad\\x01name'" in err.value.message


# -- a server older than job definitions --------------------------------------------------------------


def test_a_worker_against_an_older_server_logs_once_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    """The fake answers REGISTER_JOBS as a server that does not know the type does (ERROR "unknown
    message type 40", then it closes the connection) and serves the worker's SUBSCRIBE after."""

    async def main() -> None:
        server = FakeServer()

        def answer(request: Request) -> tuple[Any, int] | None:
            if request.type is MessageType.REGISTER_JOBS:
                asyncio.get_running_loop().call_soon(close_all)
                return m.Error("BAD_REQUEST", "unknown message type 40"), MessageType.ERROR
            if request.type is MessageType.SUBSCRIBE:
                return m.Subscribed("w-1"), MessageType.SUBSCRIBED
            if request.type is MessageType.UNSUBSCRIBE:
                return m.Ok(), MessageType.OK
            return None

        def close_all() -> None:
            for c in server.connections:
                if c.stream is not None:
                    c.stream.close()

        server.custom = answer
        await server.start()
        app = spitfire.App(server.url)

        @app.job(queue="q", max_attempts=3)
        def work() -> None: ...

        worker = spitfire.Worker(app, handle_signals=False, grace=0.5)
        task = asyncio.create_task(worker.serve())
        try:
            async with asyncio.timeout(WAIT):
                while worker.worker_id is None:
                    await asyncio.sleep(0.02)
            worker.stop()
            assert await asyncio.wait_for(task, WAIT) == 0
        finally:
            task.cancel()
            await server.stop()
        registers = [r for r in server.requests if r.type is MessageType.REGISTER_JOBS]
        assert len(registers) == 1  # not sent again after the refusal

    with caplog.at_level(logging.INFO, "spitfire.worker"):
        asyncio.run(main())
    older = [r for r in caplog.records if "does not keep job definitions" in r.getMessage()]
    assert len(older) == 1 and older[0].levelno == logging.WARNING


def test_app_register_jobs_returns_false_against_an_older_server() -> None:
    async def main() -> bool:
        server = FakeServer()
        server.custom = lambda r: (
            (m.Error("BAD_REQUEST", "unknown message type 40"), MessageType.ERROR)
            if r.type is MessageType.REGISTER_JOBS
            else None
        )
        await server.start()
        try:
            app = spitfire.App(server.url)

            @app.job
            def work() -> None: ...

            async with spitfire.AsyncClient(server.url) as c:
                return await app.register_jobs_async(c)
        finally:
            await server.stop()

    assert asyncio.run(main()) is False
