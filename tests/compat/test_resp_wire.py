"""RESP2 on the wire: the reply encoder against hiredis's reader, and the request reader's guard."""

from __future__ import annotations

import time

import hiredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spitfire.compat.resp_wire import (
    NIL_ARRAY,
    Limits,
    Raw,
    RequestReader,
    RespError,
    Status,
    encode,
    error,
)

LIMITS = Limits(max_args=100, max_bulk=1000, max_request=10_000)


def command(*args: bytes) -> bytes:
    """A request as clients send it (hiredis's own encoder)."""
    return bytes(hiredis.pack_command(args))


def decode_reply(data: bytes) -> object:
    reader = hiredis.Reader()
    reader.feed(data)
    value = reader.gets()
    assert reader.gets() is False, "one reply, nothing after it"
    return value


# -- replies ----------------------------------------------------------------------------------------------

replies = st.recursive(
    st.none() | st.integers(-(2**63), 2**63 - 1) | st.binary(max_size=50) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5),
    max_leaves=20,
)


def expected(value: object) -> object:
    """What hiredis reads back for a reply value (strings come back as bytes)."""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, list):
        return [expected(v) for v in value]
    return value


@settings(max_examples=300, deadline=None)
@given(replies)
def test_every_reply_reads_back_as_it_was_encoded(value: object) -> None:
    assert decode_reply(encode(value)) == expected(value)  # type: ignore[arg-type]


def test_status_error_and_raw_replies() -> None:
    assert encode(Status("OK")) == b"+OK\r\n"
    assert encode(error("ERR", "two\r\nlines")) == b"-ERR two lines\r\n"
    reply = decode_reply(encode(error("WRONGPASS", "no")))
    assert isinstance(reply, hiredis.ReplyError) and str(reply) == "WRONGPASS no"
    assert encode(Raw(NIL_ARRAY)) == b"*-1\r\n" and decode_reply(b"*-1\r\n") is None
    assert encode(RespError("ERR x\ny")) == b"-ERR x y\r\n"  # a status or error is always one line
    assert (
        encode([b"a", None, 1, [], [Status("PONG")]])
        == b"*5\r\n$1\r\na\r\n$-1\r\n:1\r\n*0\r\n*1\r\n+PONG\r\n"
    )


@pytest.mark.parametrize("bad", [True, 1.5, {"a": 1}, (1, 2)])
def test_values_resp2_cannot_carry_are_refused(bad: object) -> None:
    with pytest.raises(TypeError):
        encode(bad)  # type: ignore[arg-type]


# -- requests ---------------------------------------------------------------------------------------------

args_lists = st.lists(st.binary(max_size=40), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(st.lists(args_lists, min_size=1, max_size=8), st.data())
def test_requests_come_out_whole_and_in_order_however_the_bytes_are_split(
    requests: list[list[bytes]], data: st.DataObject
) -> None:
    stream = b"".join(command(*r) for r in requests)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    reader = RequestReader(LIMITS)
    out: list[list[bytes]] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        out += reader.feed(stream[last:cut])
        last = cut
    assert out == requests
    assert reader.error is None and not reader.partial
    assert reader.completed == len(requests)


def test_a_request_half_received_is_partial() -> None:
    reader = RequestReader(LIMITS)
    whole = command(b"LPUSH", b"q", b"value")
    assert reader.feed(whole[:7]) == [] and reader.partial
    assert reader.feed(whole[7:]) == [[b"LPUSH", b"q", b"value"]] and not reader.partial


def test_empty_and_null_arrays_are_nothing_to_do() -> None:
    reader = RequestReader(LIMITS)
    assert reader.feed(b"*0\r\n*-1\r\n" + command(b"PING")) == [[b"PING"]]
    assert reader.error is None and reader.completed == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"+PING\r\n", "expected '*', got '+'"),
        (b"PING\r\n", "inline commands are not supported"),
        (b"*1\r\n:5\r\n", "expected '$', got ':'"),
        (b"*1\r\n*1\r\n$1\r\na\r\n", "expected '$', got '*'"),
        (b"*x\r\n", "invalid multibulk length"),
        (b"*-2\r\n", "invalid multibulk length"),
        (b"*-0\r\n", "invalid multibulk length"),
        (b"*+1\r\n", "invalid multibulk length"),
        (b"*1\r\n$-1\r\n", "invalid bulk length"),
        (b"*1\r\n$-5\r\n", "invalid bulk length"),
        (b"*1\r\n$1x\r\n", "invalid bulk length"),
        (b"*1\r\n$01\r\na\r\n", "invalid bulk length"),
        (b"*1\n", "invalid multibulk length"),
        (b"*101\r\n", "a command of 101 elements is over the limit of 100"),
        (b"*4294967295\r\n", "over the limit of 100"),
        (b"*99999999999999999999\r\n", "invalid multibulk length"),
        (b"*1\r\n$1001\r\n", "a bulk string of 1001 bytes is over the limit of 1000 bytes"),
        (b"*1\r\n$" + b"9" * 40, "header line too long"),
        (b"*" + b"1" * 40 + b"\r\n", "header line too long"),
    ],
)
def test_malformed_or_oversized_requests_are_refused_before_hiredis_sees_them(
    data: bytes, message: str
) -> None:
    reader = RequestReader(LIMITS)
    started = time.perf_counter()
    assert reader.feed(data) == []
    assert reader.error is not None and message in reader.error
    assert time.perf_counter() - started < 0.5  # nothing was allocated for the announced sizes
    assert reader.feed(command(b"PING")) == []  # nothing is read after an error


def test_a_request_over_the_byte_limit_is_refused() -> None:
    reader = RequestReader(Limits(max_args=100, max_bulk=1000, max_request=2500))
    data = command(b"LPUSH", b"q", b"a" * 1000, b"b" * 1000, b"c" * 1000)
    assert reader.feed(data) == []
    assert reader.error == "a command of more than 2500 bytes is over the limit"


def test_the_requests_before_a_bad_one_are_returned_with_the_error() -> None:
    reader = RequestReader(LIMITS)
    good = command(b"PING") + command(b"LLEN", b"q")
    assert reader.feed(good + b"*1\r\n$1\r\nx\r\n" + b"$3\r\n") == [[b"PING"], [b"LLEN", b"q"], [b"x"]]
    assert reader.error is not None and "expected '*', got '$'" in reader.error


def test_a_bad_header_split_across_reads_is_caught() -> None:
    reader = RequestReader(LIMITS)
    assert reader.feed(command(b"PING") + b"*42949") == [[b"PING"]]
    assert reader.error is None and reader.partial
    assert reader.feed(b"67295\r\n") == []
    assert reader.error is not None and "over the limit" in reader.error


#: The guard's own messages: hiredis must never be the one to refuse a stream (it would refuse it
#: after allocating for it, or with a message that says less).
GUARD_MESSAGES = (
    "expected '",
    "invalid multibulk length",
    "invalid bulk length",
    "header line too long",
    "a command of",
    "a bulk string of",
)


@st.composite
def mutated_streams(draw: st.DrawFn) -> bytes:
    requests = draw(st.lists(args_lists, min_size=1, max_size=4))
    buf = bytearray(
        b"".join(command(*r) for r in requests) + draw(st.sampled_from([b"", b"*0\r\n", b"*-1\r\n"]))
    )
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(buf)))
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip" and at < len(buf):
            buf[at] = draw(st.integers(0, 255))
        elif op == "cut":
            del buf[at : at + draw(st.integers(1, 6))]
        else:
            buf[at:at] = draw(
                st.sampled_from([b"*", b"$", b"\r\n", b"\n", b"\r", b"-1", b"-0", b"0", b"+1", b"99"])
            )
    return bytes(buf)


@settings(max_examples=1000, deadline=None)
@given(mutated_streams(), st.data())
def test_hiredis_never_refuses_what_the_guard_let_through(data: bytes, draw: st.DataObject) -> None:
    cut = draw.draw(st.integers(0, len(data)))
    reader = RequestReader(LIMITS)
    out = reader.feed(data[:cut]) + reader.feed(data[cut:])
    assert reader.error is None or reader.error.startswith(GUARD_MESSAGES), reader.error
    if reader.error is None:  # the same requests as hiredis alone reads from the bytes
        plain = hiredis.Reader()
        plain.feed(data)
        expected: list[object] = []
        while (request := plain.gets()) is not False:
            if request:
                expected.append(request)
        assert out == expected
