"""Throw generated and mutated RESP at a live server (hypothesis); it must answer or close, never
fail, and keep serving everyone else.

Each example is one connection: valid commands with hostile arguments, valid commands with a few
bytes flipped, cut or inserted, and plain garbage. The client half-closes after sending (the
server answers what it completed, then closes) and reads for a bounded time. Afterwards a normal
client is served and the server's log holds no traceback.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from resp_support import RawClient, command, redis_port, resp_server

pytestmark = pytest.mark.timeout(300)

NAMES = [
    "PING", "QUIT", "COMMAND", "HELLO", "AUTH", "LPUSH", "RPUSH", "LLEN", "LPOP", "RPOP", "BLPOP", "BRPOP",
    "XADD", "XGROUP", "XREADGROUP", "XACK", "XLEN", "XINFO", "GET", "SET", "CLIENT",
]  # fmt: skip
WORDS = [
    "fuzz", "fuzz:q", "*", ">", "0", "-1", "0.01", "1e400", "nan", "GROUP", "STREAMS", "COUNT", "BLOCK",
    "NOACK", "MKSTREAM", "MAXLEN", "~", "CREATE", "STREAM", "2", "3", '{"name": 5}',
    '{"name": "x", "a": [1, {"b": 2}]}', "[[[[[[[[[[]]]]]]]]]]", "99999999999999999999999", "", "\x00",
    "é" * 100, "bad key!",
]  # fmt: skip

arguments = st.one_of(st.sampled_from(WORDS), st.text(max_size=30), st.binary(max_size=30))
commands = st.builds(
    lambda name, args: command(name, *args),
    st.sampled_from(NAMES) | st.text(min_size=1, max_size=10),
    st.lists(arguments, max_size=6),
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    buf = bytearray(b"".join(draw(st.lists(commands, min_size=1, max_size=4))))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(0, max(0, len(buf) - 1)))
        if op == "flip" and buf:
            buf[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del buf[at : at + draw(st.integers(1, 8))]
        else:
            buf[at:at] = draw(
                st.sampled_from([b"*", b"$", b"\r\n", b"-1", b"9999999999", b"*3\r\n", b"\x00"])
            )
    return bytes(buf)


streams = st.one_of(
    st.lists(commands, min_size=1, max_size=5).map(b"".join), mutated(), st.binary(max_size=200)
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with resp_server(tmp_path_factory.mktemp("fuzz") / "data") as proc:
        yield proc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=streams)
def test_fuzzed_resp_never_hurts_the_server(server: object, data: bytes) -> None:
    port = redis_port(server)  # type: ignore[arg-type]
    with RawClient(port, timeout=3.0) as raw:
        try:
            raw.send(data)
            raw.sock.shutdown(socket.SHUT_WR)
            raw.closed_by_server()  # a blocking pop may hold it open: the read times out, then we close
        except OSError:
            pass  # closed by the server while we were still sending
    with RawClient(port) as client:
        assert client.call("PING") == b"PONG"


def test_after_the_fuzz_the_log_has_no_traceback(server: object) -> None:
    with RawClient(redis_port(server)) as client:  # type: ignore[arg-type]
        assert client.call("LPUSH", "fuzz-after", "x") == 1
        assert client.call("RPOP", "fuzz-after") == b"x"
    log = server.log()  # type: ignore[attr-defined]
    assert "Traceback" not in log and "failed" not in log, log[-5000:]
