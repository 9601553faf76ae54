"""The server session's bounds on clients that have not authenticated (item 8).

Sans-I/O: the "clock" is the ``now`` the test passes, so deadlines are exact and nothing sleeps.
"""

from __future__ import annotations

import struct

import pytest

from spitfire.protocol import messages as m
from spitfire.protocol.frames import HANDSHAKE_MAX_FRAME, FrameReader, FrameTooLarge, encode_frame
from spitfire.protocol.session import (
    ClientSession,
    ProtocolViolation,
    ServerSession,
    SessionState,
)

WELCOME = m.Welcome(1, "spitfire-server/test", 64 << 20, 1 << 20, 10.0)
T = m.MessageType


def only_error(server: ServerSession) -> tuple[m.Error, int]:
    [frame] = FrameReader().feed(server.data_to_send())
    assert frame.type == T.ERROR
    return m.decode_body(T.ERROR, frame.body), frame.request_id


def test_a_pre_hello_frame_over_64_kib_is_refused_on_its_header_alone() -> None:
    server = ServerSession(WELCOME, token="s3cret", max_frame=64 << 20)
    header = struct.pack(">IBI", 50 << 20, T.HELLO, 1)
    with pytest.raises(ProtocolViolation) as info:
        server.receive_data(header + b"x" * 1000)  # the 50 MiB body never has to arrive
    assert info.value.code is m.ErrorCode.TOO_LARGE
    error, request_id = only_error(server)
    assert (error.code, request_id) == ("TOO_LARGE", 0)
    assert "before a successful HELLO" in error.message and str(HANDSHAKE_MAX_FRAME) in error.message
    assert server.state is SessionState.CLOSED
    assert server._reader.buffered == 0  # nothing of it is kept


def test_a_pre_hello_frame_of_exactly_64_kib_is_read() -> None:
    server = ServerSession(WELCOME, max_frame=64 << 20)
    body = b"\x90" + b"\x00" * (HANDSHAKE_MAX_FRAME - 6)  # 5 header bytes + body == the limit
    with pytest.raises(ProtocolViolation) as info:  # read whole, then refused as not a HELLO
        server.receive_data(encode_frame(T.PING, 1, body))
    assert info.value.code is m.ErrorCode.BAD_REQUEST


def test_after_hello_large_frames_pipelined_behind_it_are_read_under_the_full_limit() -> None:
    client = ClientSession("tests", token="s3cret")
    payload = b"p" * (1 << 20)
    rid = client.request(T.ENQUEUE, m.Enqueue("q", "job", payload))
    server = ServerSession(WELCOME, token="s3cret", max_frame=64 << 20, now=0.0)
    data = client.data_to_send()
    requests = []
    for i in range(0, len(data), 1000):  # split anywhere: HELLO and the big frame share chunks
        requests += server.receive_data(data[i : i + 1000])
    assert [(r.type, r.request_id) for r in requests] == [(T.ENQUEUE, rid)]
    assert requests[0].message.payload == payload
    assert server.state is SessionState.OPEN


def test_a_large_frame_behind_a_refused_hello_is_never_buffered() -> None:
    client = ClientSession("tests", token="wrong")
    client.request(T.ENQUEUE, m.Enqueue("q", "job", b"p" * (1 << 20)))
    server = ServerSession(WELCOME, token="s3cret", max_frame=64 << 20)
    with pytest.raises(ProtocolViolation) as info:
        server.receive_data(client.data_to_send())
    assert info.value.code is m.ErrorCode.UNAUTHORIZED
    assert server._reader.buffered == 0


def test_the_handshake_deadline_closes_a_session_that_never_said_hello() -> None:
    server = ServerSession(WELCOME, now=100.0, handshake_timeout=2.5)
    assert server.timer() == 102.5
    server.handle_timer(102.4)  # early: nothing happens, the timer stays
    assert server.state is SessionState.HANDSHAKE and server.data_to_send() == b""
    assert server.timer() == 102.5
    with pytest.raises(ProtocolViolation) as info:
        server.handle_timer(102.5)
    assert info.value.code is m.ErrorCode.BAD_REQUEST
    error, request_id = only_error(server)
    assert request_id == 0 and "no successful HELLO within 2.5 s" in error.message
    assert server.timer() is None and server.state is SessionState.CLOSED


def test_a_half_sent_hello_does_not_extend_the_deadline() -> None:
    hello = ClientSession("tests").data_to_send()
    server = ServerSession(WELCOME, now=0.0, handshake_timeout=1.0)
    assert server.receive_data(hello[:-1]) == []
    with pytest.raises(ProtocolViolation):
        server.handle_timer(1.0)


def test_a_successful_hello_clears_the_timer() -> None:
    client = ClientSession("tests")
    server = ServerSession(WELCOME, now=0.0, handshake_timeout=1.0)
    server.receive_data(client.data_to_send())
    assert server.timer() is None
    server.handle_timer(1e9)  # a stale timer firing later does nothing
    assert server.state is SessionState.OPEN


def test_without_now_there_is_no_deadline() -> None:
    assert ServerSession(WELCOME).timer() is None


@pytest.mark.parametrize("given", ["s3cres", "s3cret-longer", "", "sécret"])
def test_wrong_tokens_of_any_length_or_alphabet_are_unauthorized(given: str) -> None:
    server = ServerSession(WELCOME, token="s3cret")
    hello = encode_frame(T.HELLO, 1, m.encode_body(m.Hello(1, "tests", given)))
    with pytest.raises(ProtocolViolation) as info:
        server.receive_data(hello)
    assert info.value.code is m.ErrorCode.UNAUTHORIZED


def test_a_non_ascii_token_is_accepted_when_it_matches() -> None:
    client = ClientSession("tests", token="jeton-é")
    server = ServerSession(WELCOME, token="jeton-é")
    server.receive_data(client.data_to_send())
    assert server.state is SessionState.OPEN


def test_close_frees_a_half_received_frame_and_queued_output() -> None:
    client = ClientSession("tests")
    server = ServerSession(WELCOME, max_frame=64 << 20)
    server.receive_data(client.data_to_send())
    server.receive_data(struct.pack(">IBI", 40 << 20, T.PING, 2) + b"x" * (1 << 20))
    assert server._reader.buffered > 1 << 20
    server.close()
    assert server._reader.buffered == 0 and server.data_to_send() == b""
    assert server.state is SessionState.CLOSED
    assert server.receive_data(encode_frame(T.PING, 3, b"\x90")) == []


def test_a_frame_reader_drops_its_buffer_when_a_length_is_out_of_range() -> None:
    reader = FrameReader(max_frame=1000)
    assert reader.feed(encode_frame(T.PING, 1, b"\x90")) != []
    reader = FrameReader(max_frame=1000)
    with pytest.raises(FrameTooLarge) as info:
        reader.feed(struct.pack(">IBI", 2000, 1, 1) + b"y" * 100)
    assert (info.value.length, info.value.max_frame) == (2000, 1000)
    assert reader.buffered == 0
