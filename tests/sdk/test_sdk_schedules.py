"""Recurring schedules through the SDK and the CLI against a real server: every
``client.schedules`` operation, sync and async; bad definitions name their field and create nothing;
``@app.cron`` declarations, their registration when a worker starts, and a once-a-second schedule
whose jobs the worker runs; ``spitfire schedules ...``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sdk_helpers import CLI, WAIT, ServerProcess, WorkerProcess, wait_until, worker_thread

import spitfire


@pytest.fixture
def name() -> str:
    return f"s-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def cleanup(client: spitfire.Client) -> Iterator[list[str]]:
    """Schedule names a test made; removed from the shared server at the end (they would tick on)."""
    names: list[str] = []
    yield names
    for n in names:
        with contextlib.suppress(spitfire.ScheduleNotFound):
            client.schedules.remove(n)


# -- client.schedules ---------------------------------------------------------------------------------


def test_every_operation_through_the_sync_client(
    client: spitfire.Client, queue: str, name: str, cleanup: list[str]
) -> None:
    cleanup.append(name)
    backoff = spitfire.Backoff("fixed", 2.0)
    s = client.schedules.add(
        name, "0 3 * * *", queue, "build_report", {"kind": "daily"}, timezone="Europe/Berlin",
        misfire="once", priority=5, max_attempts=3, backoff=backoff, timeout=30, headers={"team": "a"},
    )  # fmt: skip
    assert isinstance(s, spitfire.Schedule)
    assert (s.name, s.cron, s.timezone, s.queue, s.job, s.misfire) == (
        name, "0 3 * * *", "Europe/Berlin", queue, "build_report", "once",
    )  # fmt: skip
    assert s.payload == {"kind": "daily"}
    assert s.options == spitfire.ScheduleOptions(5, 3, backoff, 30.0, {"team": "a"})
    assert not s.paused and s.next_run_at is not None and s.last_job_id is None

    same = client.schedules.add(
        name, "0 3 * * *", queue, "build_report", {"kind": "daily"}, timezone="Europe/Berlin",
        misfire="once", priority=5, max_attempts=3, backoff=backoff, timeout=30, headers={"team": "a"},
    )  # fmt: skip
    assert same == s  # identical: returned as it is
    with pytest.raises(spitfire.Conflict) as conflict:
        client.schedules.add(name, "0 4 * * *", queue, "build_report")
    assert name in str(conflict.value) and "schedules.put(" in str(conflict.value)

    replaced = client.schedules.put(name, "0 4 * * *", queue, "build_report", {"kind": "weekly"})
    assert replaced.cron == "0 4 * * *" and replaced.payload == {"kind": "weekly"}
    assert replaced.timezone == "UTC" and replaced.options.priority == 0
    assert client.schedules.upsert == client.schedules.put
    assert client.schedules.get(name) == replaced
    assert name in [x.name for x in client.schedules.list()]

    paused = client.schedules.pause(name)
    assert paused.paused and paused.next_run_at is None
    job_id = client.schedules.trigger(name)  # paused or not
    job = client.get(job_id)
    assert (job.queue, job.name, job.payload) == (queue, "build_report", {"kind": "weekly"})
    assert job.headers["spitfire-schedule"] == name and "spitfire-tick" in job.headers
    resumed = client.schedules.resume(name)
    assert not resumed.paused and resumed.next_run_at is not None
    assert (resumed.last_job_id, resumed.last_job_state) == (job_id, "enqueued")
    client.delete(job_id)
    assert client.schedules.get(name).last_job_state is None  # the job is gone

    removed = client.schedules.remove(name)
    assert removed.name == name
    for op in (client.schedules.get, client.schedules.remove, client.schedules.trigger):
        with pytest.raises(spitfire.ScheduleNotFound) as missing:
            op(name)
        assert missing.value.name == name and isinstance(missing.value, KeyError)


def test_every_operation_through_the_async_client(server: ServerProcess, queue: str, name: str) -> None:
    async def body() -> None:
        async with spitfire.AsyncClient(server.url) as c:
            made = await c.schedules.add(name, "*/5 * * * *", queue, "noop", misfire="all")
            assert made.payload == {} and made.misfire == "all"
            assert await c.schedules.add(name, "*/5 * * * *", queue, "noop", misfire="all") == made
            with pytest.raises(spitfire.Conflict):
                await c.schedules.add(name, "@hourly", queue, "noop")
            assert (await c.schedules.put(name, "@HOURLY", queue, "noop")).cron == "@hourly"
            assert (await c.schedules.get(name)).cron == "@hourly"
            assert name in [s.name for s in await c.schedules.list()]
            assert (await c.schedules.pause(name)).paused
            assert not (await c.schedules.resume(name)).paused
            job_id = await c.schedules.trigger(name)
            assert (await c.get(job_id)).headers["spitfire-schedule"] == name
            assert (await c.schedules.remove(name)).last_job_id == job_id
            with pytest.raises(spitfire.ScheduleNotFound):
                await c.schedules.get(name)

    asyncio.run(asyncio.wait_for(body(), WAIT))


@pytest.mark.parametrize(
    ("cron", "kwargs", "field"),
    [
        ("every day", {}, "cron"),
        ("0 3 * * * * *", {}, "cron"),
        ("0 3 * * *", {"timezone": "Mars/Olympus"}, "timezone"),
        ("0 3 * * *", {"misfire": "sometimes"}, "misfire"),
        ("0 3 * * *", {"priority": 11}, "options.priority"),
        ("0 3 * * *", {"timeout": -1}, "options.timeout"),
    ],
)
def test_a_bad_definition_names_the_field_and_creates_nothing(
    client: spitfire.Client, queue: str, name: str, cron: str, kwargs: dict[str, Any], field: str
) -> None:
    with pytest.raises(spitfire.BadRequest) as err:
        client.schedules.add(name, cron, queue, "noop", **kwargs)
    assert err.value.field == field, err.value
    with pytest.raises(spitfire.ScheduleNotFound):
        client.schedules.get(name)


def test_an_unknown_option_is_refused_before_anything_is_sent(client: spitfire.Client, queue: str) -> None:
    with pytest.raises(TypeError, match="unexpected option"):
        client.schedules.add("x", "@daily", queue, "noop", delay=5)  # type: ignore[call-arg]


# -- @app.cron ----------------------------------------------------------------------------------------


def test_app_cron_declarations_stack_over_and_under_app_job() -> None:
    app = spitfire.App("tcp://127.0.0.1:1")

    @app.cron("0 3 * * *", timezone="Europe/Berlin", kwargs={"kind": "nightly"})
    @app.job(queue="reports", priority=3, max_attempts=2)
    def build_report(kind: str, pages: int = 1) -> None: ...

    @app.job(queue="mail")
    @app.cron("*/15 * * * *", name="digest-often", kwargs={"to": "a@b.c"}, misfire="once")
    @app.cron("@daily", kwargs={"to": "b@c.d"}, priority=7)
    def digest(to: str) -> None: ...

    assert list(app.crons) == ["build_report", "digest-often", "digest"]  # in source order
    nightly = app.crons["build_report"]
    assert (nightly.cron, nightly.timezone, nightly.job) == ("0 3 * * *", "Europe/Berlin", build_report)
    assert nightly.options == {"priority": 3, "max_attempts": 2}  # the job's options
    m = nightly.message()
    assert (m.name, m.queue, m.job, m.replace) == ("build_report", "reports", "build_report", True)
    assert spitfire.models.decode_value(m.payload) == {"kind": "nightly"}  # pages left at its default
    assert app.crons["digest"].options == {"priority": 7}
    assert app.crons["digest-often"].misfire == "once"

    with pytest.raises(ValueError, match="already has a schedule named 'digest'"):
        app.cron("@hourly", kwargs={"to": "x"})(digest)
    with pytest.raises(spitfire.JobArgumentError) as bad:
        app.cron("@hourly", name="bad", kwargs={"kind": 5})(build_report)
    assert bad.value.argument == "kind" and "@app.cron('@hourly')" in str(bad.value)
    with pytest.raises(spitfire.JobArgumentError, match="missing a required argument"):
        app.cron("@hourly", name="bad")(build_report)
    with pytest.raises(ValueError, match="misfire"):
        app.cron("@hourly", misfire="never")
    with pytest.raises(TypeError, match="unexpected option"):
        app.cron("@hourly", delay=3)  # type: ignore[call-arg]
    assert "bad" not in app.crons


def test_register_schedules_upserts_by_name_and_app_schedule_creates(
    server: ServerProcess, client: spitfire.Client, queue: str, name: str, cleanup: list[str]
) -> None:
    app = spitfire.App(server.url)
    cleanup.extend([name, f"{name}-adhoc"])

    @app.cron("0 3 * * *", name=name, kwargs={"n": 1})
    @app.job(queue=queue)
    def count(n: int) -> None: ...

    try:
        [first] = app.register_schedules()
        assert (first.name, first.job, first.queue, first.payload) == (name, "count", queue, {"n": 1})
        client.schedules.put(name, "@hourly", queue, "count")  # changed on the server ...
        [again] = app.register_schedules()  # ... the code's definition wins at the next start
        assert again.cron == "0 3 * * *" and again.created_at == first.created_at

        adhoc = app.schedule(count, "@weekly", name=f"{name}-adhoc", kwargs={"n": 2})
        assert (adhoc.cron, adhoc.payload) == ("@weekly", {"n": 2})
        assert app.schedule(count, "@weekly", name=f"{name}-adhoc", kwargs={"n": 2}) == adhoc
        with pytest.raises(spitfire.Conflict, match="replace=True"):
            app.schedule(count, "@daily", name=f"{name}-adhoc", kwargs={"n": 2})
        assert (
            app.schedule(count, "@daily", name=f"{name}-adhoc", kwargs={"n": 2}, replace=True).cron
            == "@daily"
        )

        app.cron("bad cron", name=f"{name}-bad", kwargs={"n": 3})(count)
        with pytest.raises(spitfire.BadRequest) as err:
            app.register_schedules()
        assert err.value.field == "cron" and f"{name}-bad" in str(err.value)
    finally:
        app.close()


def test_a_worker_registers_the_apps_schedules_and_runs_a_once_a_second_schedule(
    server: ServerProcess, client: spitfire.Client, queue: str, name: str, cleanup: list[str]
) -> None:
    cleanup.append(name)
    app = spitfire.App(server.url)
    ran: list[tuple[str, str]] = []
    twice = threading.Event()

    @app.cron("* * * * * *", name=name, kwargs={"label": "tick"})
    @app.job(queue=queue)
    def beat(label: str) -> None:
        ctx = spitfire.context()
        ran.append((label, ctx.headers["spitfire-tick"]))
        if len(ran) >= 2:
            twice.set()

    try:
        with pytest.raises(spitfire.ScheduleNotFound):
            client.schedules.get(name)
        with worker_thread(app):
            assert twice.wait(WAIT), f"the schedule's jobs did not run twice within {WAIT} s: {ran}"
            client.schedules.pause(name)  # no more ticks while the worker stops
        s = client.schedules.get(name)
        assert s.cron == "* * * * * *" and s.last_job_id is not None
        assert all(label == "tick" for label, _ in ran)
        ticks = [tick for _, tick in ran]
        assert len(set(ticks)) == len(ticks), "a tick ran twice"
    finally:
        app.close()


def test_spitfire_worker_registers_at_start_and_refuses_to_start_on_a_bad_schedule(
    server: ServerProcess,
    client: spitfire.Client,
    tmp_path: Path,
    queue: str,
    name: str,
    cleanup: list[str],
    worker_processes: list[WorkerProcess],
) -> None:
    cleanup.append(name)
    source = f"""
        import spitfire
        app = spitfire.App({server.url!r})

        @app.cron(CRON, name={name!r}, timezone="Europe/Berlin")
        @app.job(queue={queue!r})
        def nightly() -> None: ...
    """
    good = WorkerProcess(tmp_path / "good", source.replace("CRON", repr("30 2 * * *")))
    worker_processes.append(good)
    s = wait_until(lambda: _maybe_get(client, name), what="the worker to register its schedule")
    assert (s.cron, s.timezone, s.job, s.queue) == ("30 2 * * *", "Europe/Berlin", "nightly", queue)
    good.kill()

    bad = WorkerProcess(tmp_path / "bad", source.replace("CRON", repr("30 2 * *")))
    worker_processes.append(bad)
    assert bad.wait() == 1
    assert f"schedule {name!r}" in bad.output() and "cron" in bad.output()
    assert client.schedules.get(name).cron == "30 2 * * *"  # unchanged


def _maybe_get(client: spitfire.Client, name: str) -> spitfire.Schedule | None:
    try:
        return client.schedules.get(name)
    except spitfire.ScheduleNotFound:
        return None


# -- the CLI ------------------------------------------------------------------------------------------


def _cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "schedules", *args, "--url", server.url], capture_output=True, text=True, timeout=WAIT
    )


def test_the_cli_runs_every_schedule_operation(
    server: ServerProcess, client: spitfire.Client, queue: str, name: str, cleanup: list[str]
) -> None:
    cleanup.append(name)
    add = (
        "add",
        name,
        "0 3 * * *",
        queue,
        "build_report",
        '{"kind": "daily"}',
        "--timezone",
        "Europe/Berlin",
    )
    made = _cli(server, *add, "--priority", "4", "--job-timeout", "2m", "--misfire", "all")
    assert made.returncode == 0, made.stderr
    shown = json.loads(made.stdout)
    assert (shown["name"], shown["cron"], shown["timezone"], shown["payload"]) == (
        name, "0 3 * * *", "Europe/Berlin", {"kind": "daily"},
    )  # fmt: skip
    assert shown["options"]["priority"] == 4 and shown["options"]["timeout"] == 120.0
    assert shown["misfire"] == "all" and shown["paused"] is False

    conflict = _cli(server, "add", name, "0 4 * * *", queue, "build_report")
    assert conflict.returncode == 1 and "--replace" in conflict.stderr
    replaced = _cli(server, "add", name, "0 4 * * *", queue, "build_report", "--replace")
    assert replaced.returncode == 0 and json.loads(replaced.stdout)["cron"] == "0 4 * * *"

    listed = _cli(server, "list")
    assert listed.returncode == 0 and name in [s["name"] for s in json.loads(listed.stdout)["schedules"]]
    assert json.loads(_cli(server, "get", name).stdout)["name"] == name
    assert json.loads(_cli(server, "pause", name).stdout)["paused"] is True
    assert json.loads(_cli(server, "resume", name).stdout)["paused"] is False
    triggered = _cli(server, "trigger", name)
    assert triggered.returncode == 0
    job_id = triggered.stdout.strip()
    assert client.get(job_id).headers["spitfire-schedule"] == name
    [mine] = [s for s in json.loads(_cli(server, "list").stdout)["schedules"] if s["name"] == name]
    assert mine["last_job_id"] == job_id and mine["last_job_state"] == "enqueued"

    removed = _cli(server, "rm", name)
    assert removed.returncode == 0 and json.loads(removed.stdout)["last_job_id"] == job_id
    gone = _cli(server, "rm", name)
    assert gone.returncode == 1 and f"no schedule named {name!r}" in gone.stderr


def test_the_cli_names_the_field_of_a_bad_definition(server: ServerProcess, queue: str, name: str) -> None:
    bad_cron = _cli(server, "add", name, "0 3 * *", queue, "noop")
    # The error names the command line's operand or flag, not the API's field.
    assert bad_cron.returncode == 1 and "CRON: '0 3 * *' has 4 fields" in bad_cron.stderr
    bad_tz = _cli(server, "add", name, "0 3 * * *", queue, "noop", "--timezone", "Nowhere/Else")
    assert bad_tz.returncode == 1 and "--timezone" in bad_tz.stderr, bad_tz.stderr
    bad_json = _cli(server, "add", name, "0 3 * * *", queue, "noop", "{not json")
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    assert _cli(server, "get", name).returncode == 1  # nothing was created
    unreachable = subprocess.run(
        [*CLI, "schedules", "list", "--url", "tcp://127.0.0.1:1", "--connect-timeout", "1s"],
        capture_output=True, text=True, timeout=WAIT,
    )  # fmt: skip
    assert unreachable.returncode == 3
