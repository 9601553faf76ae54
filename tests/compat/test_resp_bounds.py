"""The RESP listener's bounds: malformed and oversized requests, too many connections, half-sent
commands, clients that never authenticate or never read, pipelining, blocking pops whose client goes
away, and shutdown. Live server processes, plus an in-process listener where a test must see the
server's side (a wait in progress, a paused read)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import hiredis
import pytest
from resp_support import WAIT, RawClient, command, redis_port, resp_server, wait_for

from spitfire.compat.resp import RespServer
from spitfire.server.config import EngineConfig
from spitfire.server.consumers import Consumers
from spitfire.server.engine import Engine
from spitfire.wal import FileStorage

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with resp_server(tmp_path_factory.mktemp("bounds") / "data", "--handshake-timeout", "1") as proc:
        yield proc


@pytest.fixture
def port(server: object) -> int:
    return redis_port(server)  # type: ignore[arg-type]


MALFORMED = [
    pytest.param(b"+PING\r\n", "expected '*', got '+'", id="status-type-byte"),
    pytest.param(b"PING\r\n", "inline commands are not supported", id="inline"),
    pytest.param(b"*1\r\n:1\r\n", "expected '$', got ':'", id="integer-element"),
    pytest.param(b"*2\r\n$4\r\nLLEN\r\n*1\r\n", "expected '$', got '*'", id="nested-array"),
    pytest.param(b"*1\r\n$-3\r\n", "invalid bulk length", id="negative-bulk"),
    pytest.param(b"*-7\r\n", "", id="negative-array-is-nothing"),
    pytest.param(b"*4294967295\r\n", "over the limit", id="huge-array"),
    pytest.param(b"*1\r\n$9999999999\r\n", "over the limit", id="huge-bulk"),
    pytest.param(b"*1\r\n$4\r\nPI", "", id="truncated"),
    pytest.param(b"*ab\r\n", "invalid multibulk length", id="not-a-number"),
    pytest.param(b"\x00\xff\x00\xff\r\n", "expected '*'", id="garbage"),
]


@pytest.mark.parametrize(("data", "message"), MALFORMED)
def test_malformed_requests_get_an_error_and_the_server_goes_on(
    port: int, server: object, data: bytes, message: str
) -> None:
    with RawClient(port) as raw:
        raw.send(command("PING", "before") + data)
        assert raw.reply() == b"before"  # what came before the bad bytes is served
        if message:
            reply = raw.reply()
            assert (
                isinstance(reply, hiredis.ReplyError)
                and "Protocol error" in str(reply)
                and message in str(reply)
            )
            assert raw.closed_by_server()
        else:
            raw.sock.shutdown(socket.SHUT_WR)  # nothing to refuse yet: the server waits for more
            assert raw.closed_by_server()
    with RawClient(port) as other:
        assert other.call("PING") == b"PONG"
    assert "Traceback" not in server.log()  # type: ignore[attr-defined]


def test_huge_announced_sizes_cost_the_server_nothing(port: int, server: object) -> None:
    pid = server.pid  # type: ignore[attr-defined]
    before = _rss(pid)
    for data in (b"*4294967295\r\n", b"*1\r\n$2147483647\r\n", b"*20000\r\n" + b"$1\r\nx\r\n" * 19999):
        with RawClient(port) as raw:
            raw.send(data)
            if data.startswith(b"*20000"):  # within the limits: the command is waited for
                raw.sock.shutdown(socket.SHUT_WR)
            else:
                assert "over the limit" in str(raw.reply())
            assert raw.closed_by_server()
    assert _rss(pid) - before < 64 * 2**20


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_pipelined_commands_are_answered_in_order(port: int) -> None:
    with RawClient(port) as raw:
        batch = b"".join(command("RPUSH", "pipe", str(i)) + command("PING", f"m{i}") for i in range(300))
        raw.send(batch + command("LLEN", "pipe"))
        for i in range(300):
            assert raw.reply() == i + 1
            assert raw.reply() == f"m{i}".encode()
        assert raw.reply() == 300
        raw.send(b"".join(command("LPOP", "pipe") for _ in range(300)))
        assert [raw.reply() for _ in range(300)] == [str(i).encode() for i in range(300)]


def test_pipelined_pushes_commit_together_and_answer_in_order(port: int) -> None:
    with RawClient(port) as raw:
        pushes = b"".join(command("RPUSH", "pipe2", str(i)) for i in range(500))
        raw.send(
            pushes
            + command("LLEN", "pipe2")
            + command("XADD", "pipe2s", "*", "n", "1")
            + command("XLEN", "pipe2s")
        )
        assert [raw.reply() for _ in range(500)] == list(range(1, 501))  # each counts those before it
        assert raw.reply() == 500  # a command after pushes sees all of them
        assert len(raw.reply()) == 24 and raw.reply() == 1  # type: ignore[arg-type]
        raw.send(b"".join(command("LPOP", "pipe2") for _ in range(500)))
        assert [raw.reply() for _ in range(500)] == [str(i).encode() for i in range(500)]  # in order


def test_a_half_sent_command_is_cut_off(port: int) -> None:
    with RawClient(port) as raw:
        raw.send(b"*2\r\n$4\r\nLLEN\r\n$5\r\nabc")
        started = time.monotonic()
        reply = raw.reply()
        assert "was not completed within 1 s" in str(reply)
        assert raw.closed_by_server() and time.monotonic() - started < WAIT
    with RawClient(port) as slow:  # a trickle of bytes does not keep a command alive either
        data = command("LPUSH", "slow", "x" * 50)
        with contextlib.suppress(OSError):
            for i in range(0, len(data), 4):
                slow.send(data[i : i + 4])
                time.sleep(0.1)
        assert "was not completed" in str(slow.reply())


def test_past_max_connections_new_ones_are_told_and_closed(tmp_path: Path) -> None:
    with resp_server(tmp_path / "data", "--max-connections", "2") as proc:
        port = redis_port(proc)
        first, second = RawClient(port), RawClient(port)
        assert first.call("PING") == b"PONG" and second.call("PING") == b"PONG"
        with RawClient(port) as third:
            assert str(third.reply()) == "ERR max number of clients reached"
            assert third.closed_by_server()
        first.close()

        def admitted() -> bool:
            with RawClient(port) as again:
                return again.call("PING") == b"PONG"

        wait_for(admitted, "a connection to be admitted once one closed")
        second.close()


def test_a_connection_that_never_authenticates_is_closed(tmp_path: Path) -> None:
    args = ("--auth-token", "tok", "--handshake-timeout", "1")
    with resp_server(tmp_path / "data", *args) as proc, RawClient(redis_port(proc)) as raw:
        assert "no AUTH within the handshake timeout" in str(raw.reply())
        assert raw.closed_by_server()


# -- in process: the server's side can be seen --------------------------------------------------------


@contextlib.asynccontextmanager
async def listener(tmp_path: Path, **kw: object) -> AsyncIterator[tuple[Engine, RespServer, int]]:
    engine = Engine(FileStorage(tmp_path / "data"), EngineConfig())
    await engine.open(now=time.time())
    options: dict[str, object] = {"token": None, "max_connections": 100, "handshake_timeout": 10.0}
    options.update(kw)
    server = RespServer(Consumers(engine), max_payload=2**20, **options)  # type: ignore[arg-type]
    url = await server.start("127.0.0.1", 0)
    try:
        yield engine, server, int(url.rsplit(":", 1)[1])
    finally:
        await server.close(1.0)
        await engine.close()


class AsyncClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.parser = reader, writer, hiredis.Reader()

    @classmethod
    async def connect(cls, port: int) -> AsyncClient:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def reply(self) -> object:
        while (value := self.parser.gets()) is False:
            data = await asyncio.wait_for(self.reader.read(65536), WAIT)
            if not data:
                raise EOFError("closed")
            self.parser.feed(data)
        return value

    async def call(self, *args: bytes | str) -> object:
        self.writer.write(command(*args))
        return await self.reply()

    def close(self) -> None:
        self.writer.close()


async def until(predicate: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_a_blocking_pop_whose_client_goes_away_takes_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        async with listener(tmp_path) as (_engine, server, port):
            gone = await AsyncClient.connect(port)
            gone.writer.write(command("BRPOP", "bq", "0"))
            await until(lambda: server.consumers.waiters == 1, "the pop to wait")
            gone.close()
            await until(lambda: server.consumers.waiters == 0 and not server.connections, "the wait to end")
            client = await AsyncClient.connect(port)
            assert await client.call("LPUSH", "bq", "kept") == 1
            waiting = await AsyncClient.connect(port)
            waiting.writer.write(command("BLPOP", "other", "bq2", "0"))
            await until(lambda: server.consumers.waiters == 2, "a pop waiting on two queues")
            assert await client.call("RPUSH", "bq2", "woken") in (0, 1)
            assert await waiting.reply() == [b"bq2", b"woken"]
            assert await client.call("RPOP", "bq") == b"kept"
            client.close()
            waiting.close()

    asyncio.run(main())


def test_a_client_that_does_not_read_is_not_served_past_its_buffers(tmp_path: Path) -> None:
    async def main() -> None:
        async with listener(tmp_path) as (_engine, server, port):
            client = await AsyncClient.connect(port)
            big = "x" * 60_000
            client.writer.write(b"".join(command("PING", big) for _ in range(600)))  # 36 MB of answers
            (conn,) = server.connections.values()
            await until(lambda: not conn.writable, "the server to stop writing")
            await until(lambda: not conn.reading, "the server to stop reading")
            for _ in range(600):
                assert await client.reply() == big.encode()
            assert await client.call("PING") == b"PONG"
            client.close()

    asyncio.run(main())


def test_commands_held_up_behind_a_blocking_pop_are_not_timed_out(tmp_path: Path) -> None:
    async def main() -> None:
        async with listener(tmp_path, request_timeout=0.3) as (_, server, port):
            client = await AsyncClient.connect(port)
            pings = b"".join(command("PING", f"p{i}") for i in range(3000))
            partial = command("LLEN", "held")
            client.writer.write(command("BLPOP", "held", "0") + pings + partial[:9])
            (conn,) = server.connections.values()
            await until(lambda: not conn.reading, "the server to stop reading behind the pop")
            await asyncio.sleep(1.0)  # longer than the request timeout, on purpose
            assert server.connections  # not cut off: the server was not reading, the client was fine
            other = await AsyncClient.connect(port)
            assert await other.call("RPUSH", "held", "now") in (0, 1)
            assert await client.reply() == [b"held", b"now"]
            for i in range(3000):
                assert await client.reply() == f"p{i}".encode()
            client.writer.write(partial[9:])
            assert await client.reply() == 0
            client.close()
            other.close()

    asyncio.run(main())


def test_shutdown_answers_waiting_pops_and_closes(tmp_path: Path) -> None:
    async def main() -> None:
        async with listener(tmp_path) as (_engine, server, port):
            client = await AsyncClient.connect(port)
            client.writer.write(command("BRPOP", "sq", "0"))
            await until(lambda: server.consumers.waiters == 1, "the pop to wait")
            await server.close(5.0)
            assert await client.reply() is None
            with pytest.raises(EOFError):
                await client.reply()
            assert not server.connections
            client.close()

    asyncio.run(main())


def test_a_leader_that_cannot_confirm_its_leadership_serves_no_command(tmp_path: Path) -> None:
    """The cluster leader's read check gates every data command (a deposed or stalled leader
    answers ``-NOTLEADER`` and changes nothing); PING and the handshake are still answered."""

    async def main() -> None:
        async with listener(tmp_path) as (engine, server, port):
            confirmed: list[bool] = [False]
            asked: list[int] = []

            async def gate() -> str | None:
                asked.append(1)
                return None if confirmed[0] else "none (this member cannot confirm that it still leads)"

            server.commands.gate = gate
            client = await AsyncClient.connect(port)
            refused = await client.call("LPUSH", "gated", "x")
            assert str(refused).startswith("NOTLEADER none") and asked
            assert await client.call("PING") == b"PONG"
            assert engine.stats().total_jobs == 0
            confirmed[0] = True
            assert await client.call("LPUSH", "gated", "x") == 1
            assert await client.call("LLEN", "gated") == 1
            client.close()

    asyncio.run(main())
