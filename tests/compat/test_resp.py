"""The RESP2 listener with real clients: the issue's walk-through with redis-cli and with redis-py,
jobs pushed over RESP run by a Spitfire Python worker and seen over the HTTP API, auth."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from resp_support import WAIT, RawClient, redis_cli, redis_port, resp_server

import spitfire

pytestmark = pytest.mark.timeout(120)
_ID = re.compile(r"[0-9a-f]{24}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with resp_server(tmp_path_factory.mktemp("resp") / "data") as proc:
        yield proc


@pytest.fixture
def port(server: object) -> int:
    return redis_port(server)  # type: ignore[arg-type]


@pytest.fixture
def r(port: int) -> Iterator[redis.Redis]:
    client = redis.Redis(port=port, protocol=2, socket_timeout=WAIT)
    try:
        yield client
    finally:
        client.close()


def test_the_walk_through_with_redis_cli(port: int) -> None:
    cli = lambda *args: redis_cli(port, *args).strip()  # noqa: E731
    assert cli("LPUSH", "cli:orders", '{"item":"book"}') == "(integer) 1"
    assert cli("RPUSH", "cli:orders", '{"item":"pen"}', '{"item":"notebook"}') == "(integer) 3"
    assert cli("LLEN", "cli:orders") == "(integer) 3"
    assert cli("RPOP", "cli:orders") == '"{\\"item\\":\\"book\\"}"'
    entry = cli("XADD", "cli:events", "*", "action", "click", "user", "alice").strip('"')
    assert _ID.fullmatch(entry), entry
    assert cli("XGROUP", "CREATE", "cli:events", "default", "$", "MKSTREAM") == "OK"
    read = cli("XREADGROUP", "GROUP", "default", "worker1", "COUNT", "1", "STREAMS", "cli:events", ">")
    assert read.split("\n") == [
        '1) 1) "cli:events"',
        f'   2) 1) 1) "{entry}"',
        '         2) 1) "action"',
        '            2) "click"',
        '            3) "user"',
        '            4) "alice"',
    ]
    assert cli("XACK", "cli:events", "default", entry) == "(integer) 1"
    assert cli("XLEN", "cli:events") == "(integer) 1"
    info = [line.strip() for line in cli("XINFO", "STREAM", "cli:events").split("\n")]
    assert info[:8] == [
        '1) "length"', "2) (integer) 1", '3) "pending"', "4) (integer) 0",
        '5) "claimed"', "6) (integer) 0", '7) "completed"', "8) (integer) 1",
    ]  # fmt: skip
    assert cli("PING") == "PONG"


def test_the_walk_through_with_redis_py(r: redis.Redis) -> None:
    assert r.lpush("py:orders", '{"item":"book"}') == 1
    assert r.rpush("py:orders", '{"item":"pen"}', '{"item":"notebook"}') == 3
    assert r.llen("py:orders") == 3
    assert r.rpop("py:orders") == b'{"item":"book"}'
    assert r.lpop("py:orders", 5) == [b'{"item":"pen"}', b'{"item":"notebook"}']
    assert r.rpop("py:orders") is None and r.lpop("py:orders", 2) is None
    entry = r.xadd("py:events", {"action": "click", "user": "alice"}, maxlen=1000)
    assert _ID.fullmatch(entry.decode())
    assert r.xgroup_create("py:events", "default", id="$", mkstream=True) is True
    got = r.xreadgroup("default", "worker1", {"py:events": ">"}, count=1)
    assert got == [[b"py:events", [(entry, {b"action": b"click", b"user": b"alice"})]]]
    assert r.xreadgroup("default", "worker1", {"py:events": ">"}, count=1) == []
    pending = r.xreadgroup("default", "worker1", {"py:events": "0"})
    assert pending == [[b"py:events", [(entry, {b"action": b"click", b"user": b"alice"})]]]
    assert r.xreadgroup("default", "worker2", {"py:events": "0"}) == [[b"py:events", []]]
    assert r.xack("py:events", "other-group", entry) == 0
    assert r.xack("py:events", "default", entry, entry) == 1
    assert r.xreadgroup("default", "worker1", {"py:events": "0"}) == [[b"py:events", []]]
    assert r.xlen("py:events") == 1
    info = r.xinfo_stream("py:events")
    assert (info["length"], info["pending"], info["claimed"], info["completed"]) == (1, 0, 0, 1)
    assert r.ping() is True


def test_blocking_pops_and_reads_wait_for_a_push(r: redis.Redis, port: int) -> None:
    assert r.brpop(["py:empty"], timeout=0.2) is None
    assert r.xreadgroup("g", "c", {"py:empty-stream": ">"}, block=200) == []
    results: list[object] = []
    other = redis.Redis(port=port, protocol=2, socket_timeout=WAIT)
    blocked = threading.Thread(target=lambda: results.append(other.blpop(["py:b1", "py:b2"], timeout=WAIT)))
    blocked.start()
    # Whether the pop is already waiting or arrives after the push, it gets the job (the wake-up
    # itself is checked in-process, where the waits can be seen: test_resp_bounds.py).
    assert r.lpush("py:b2", "wake up") in (0, 1)
    blocked.join(WAIT)
    other.close()
    assert results == [(b"py:b2", b"wake up")]


def test_values_that_are_not_json_objects_come_back_as_they_went_in(r: redis.Redis) -> None:
    values = [b"plain text", b"\xff\xfe binary", b"123", b"[1, 2, 3]", b'{"a": {"b": [1, 2]}}', b""]
    r.rpush("py:values", *values)
    assert [r.lpop("py:values") for _ in values] == [
        b"plain text", b"\xff\xfe binary", b"123", b"[1,2,3]", b'{"a":{"b":[1,2]}}', b"",
    ]  # fmt: skip


def test_a_json_name_names_the_handler_and_comes_back(r: redis.Redis, server: object) -> None:
    r.lpush("py:named", '{"name": "send_email", "to": "a@b.c"}')
    [job] = _jobs_of(server, "py:named")
    assert (job["name"], job["payload"]) == ("send_email", {"to": "a@b.c"})
    assert json.loads(r.rpop("py:named")) == {"name": "send_email", "to": "a@b.c"}
    entry = r.xadd("py:named-stream", {"name": "resize", "width": "640"})
    got = r.xreadgroup("g", "c", {"py:named-stream": ">"})
    assert got == [[b"py:named-stream", [(entry, {b"name": b"resize", b"width": b"640"})]]]


def _jobs_of(server: object, queue: str) -> list[dict[str, object]]:
    url = f"{server.http_url}/api/queues/{queue}/jobs"  # type: ignore[attr-defined]
    return httpx.get(url, timeout=WAIT).json()["jobs"]  # type: ignore[no-any-return]


def test_errors_name_the_command_or_the_field(r: redis.Redis) -> None:
    with pytest.raises(redis.ResponseError, match="unknown command 'FLUSHALL'"):
        r.execute_command("FLUSHALL")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments for 'lpush' command"):
        r.execute_command("LPUSH", "q")
    with pytest.raises(redis.ResponseError, match="queue: use 1 to 128 characters"):
        r.lpush("bad key!", "x")
    with pytest.raises(redis.ResponseError, match="count: must be an integer from 1 to 1000"):
        r.lpop("q", 5000)
    with pytest.raises(redis.ResponseError, match="NOPROTO"):
        r.execute_command("HELLO", "3")
    with pytest.raises(redis.ResponseError, match="requires the key to exist"):
        r.xgroup_create("py:no-such-stream", "g")
    with pytest.raises(redis.ResponseError, match=r"XADD takes \* as the id"):
        r.xadd("py:s", {"a": "b"}, id="1-1")
    with pytest.raises(redis.ResponseError, match="no such key"):
        r.xinfo_stream("py:no-such-stream")
    assert r.execute_command("COMMAND") == {}  # an empty array, which redis-py reads as a table
    hello = r.execute_command("HELLO", "2")
    assert hello[:6] == [b"server", b"spitfire", b"version", b"0.1.0", b"proto", 2]
    assert r.ping() is True  # every refusal above changed nothing and kept the connection


def test_a_resp_job_runs_on_a_python_worker_and_shows_over_http(
    r: redis.Redis, server: object, tmp_path: Path
) -> None:
    (tmp_path / "tasks.py").write_text(
        textwrap.dedent(
            """
            import spitfire

            app = spitfire.App()

            @app.job(queue="py:work", name="py:work")
            def work(item: str) -> str:
                return item.upper()

            @app.job(queue="py:work")
            def send_email(to: str) -> str:
                return "sent to " + to

            @app.job(queue="py:work-stream", name="py:work-stream")
            def on_event(action: str, user: str) -> str:
                return f"{user} {action}"
            """
        )
    )
    r.rpush("py:work", '{"item": "book"}', '{"name": "send_email", "to": "a@b.c"}')
    entry = r.xadd("py:work-stream", {"action": "click", "user": "alice"}).decode()
    url = f"tcp://127.0.0.1:{server.port}"  # type: ignore[attr-defined]
    done = subprocess.run(
        [sys.executable, "-m", "spitfire.cli", "worker", "tasks:app", "--burst", "--url", url],
        cwd=tmp_path, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = {job["name"]: job for job in _jobs_of(server, "py:work")}
    assert jobs["py:work"]["state"] == "succeeded" and jobs["py:work"]["result"] == "BOOK"
    assert jobs["send_email"]["state"] == "succeeded" and jobs["send_email"]["result"] == "sent to a@b.c"
    job = httpx.get(f"{server.http_url}/api/jobs/{entry}", timeout=WAIT).json()  # type: ignore[attr-defined]
    assert (job["queue"], job["state"], job["result"]) == ("py:work-stream", "succeeded", "alice click")
    with spitfire.Client(url) as client:
        assert client.get(entry).payload == {"action": "click", "user": "alice"}
    assert r.llen("py:work") == 0


def test_jobs_from_the_sdk_are_popped_and_read_over_resp(r: redis.Redis, server: object) -> None:
    url = f"tcp://127.0.0.1:{server.port}"  # type: ignore[attr-defined]
    with spitfire.Client(url) as client:
        first = client.enqueue("py:sdk", "send_email", {"to": "x@y.z"})
        second = client.enqueue("py:sdk", "resize", {"width": 640, "sizes": [1, 2]}, priority=5)
    got = r.xreadgroup("g", "c", {"py:sdk": ">"}, count=1)
    assert got == [
        [b"py:sdk", [(second.encode(), {b"name": b"resize", b"width": b"640", b"sizes": b"[1,2]"})]]
    ]
    assert json.loads(r.rpop("py:sdk")) == {"name": "send_email", "to": "x@y.z"}
    assert str(first)


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with resp_server(tmp_path_factory.mktemp("resp-auth") / "data", "--auth-token", "s3cret") as proc:
        yield proc


def test_with_a_token_nothing_works_before_auth(locked: object) -> None:
    port = redis_port(locked)  # type: ignore[arg-type]
    with RawClient(port) as raw:
        assert str(raw.call("LLEN", "q")) == "NOAUTH Authentication required."
        assert str(raw.call("PING")) == "NOAUTH Authentication required."
        assert str(raw.call("AUTH", "wrong")).startswith("WRONGPASS")
        assert raw.call("AUTH", "default", "s3cret") == b"OK"
        assert raw.call("LLEN", "q") == 0
    with RawClient(port) as raw:
        assert raw.call("HELLO", "2", "AUTH", "default", "s3cret")[:2] == [b"server", b"spitfire"]  # type: ignore[index]
        assert raw.call("PING") == b"PONG"
    good = redis.Redis(port=port, password="s3cret", protocol=2, socket_timeout=WAIT)
    assert good.lpush("q", "x") == 1 and good.rpop("q") == b"x"
    good.close()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=port, password="nope", protocol=2, socket_timeout=WAIT).ping()
    assert redis_cli(port, "PING", token="s3cret").strip() == "PONG"


def test_auth_without_a_server_token_is_refused(r: redis.Redis) -> None:
    with pytest.raises(redis.AuthenticationError, match="without any password configured"):
        r.execute_command("AUTH", "x")  # (redis-py knows Redis's message: the same error class)
    assert r.execute_command("AUTH", "default", "anything") is True  # as Redis's password-less user
