"""session.py as two in-memory peers: handshake, violations, pipelining, pushes.

The "network" is a function call: bytes from one session's `data_to_send` go straight into the
other's `receive_data` (aioquic's test style), so every scenario is deterministic.
"""

from __future__ import annotations

import struct

import pytest

from spitfire.protocol import messages as m
from spitfire.protocol.frames import FrameReader, encode_frame
from spitfire.protocol.session import (
    ClientSession,
    ProtocolViolation,
    Request,
    ServerSession,
    SessionState,
)

WELCOME = m.Welcome(1, "spitfire-server/test", 1 << 20, 1 << 16, 10.0)
T = m.MessageType


def open_pair(token: str | None = None) -> tuple[ClientSession, ServerSession]:
    client = ClientSession("tests", token=token)
    server = ServerSession(WELCOME, token=token, max_frame=1 << 20)
    assert server.receive_data(client.data_to_send()) == []
    assert client.receive_data(server.data_to_send()) == []
    assert client.state is SessionState.OPEN and server.state is SessionState.OPEN
    return client, server


def violation(server: ServerSession, data: bytes) -> tuple[ProtocolViolation, m.Error, int]:
    """Feed ``data``; return the violation raised and the ERROR frame queued (with its request id)."""
    with pytest.raises(ProtocolViolation) as info:
        server.receive_data(data)
    [frame] = FrameReader().feed(server.data_to_send())
    assert frame.type == T.ERROR
    error = m.decode_body(frame.type, frame.body)
    assert error.code == info.value.code
    assert server.state is SessionState.CLOSED
    assert server.receive_data(encode_frame(T.PING, 9, m.encode_body(m.Ping()))) == []
    return info.value, error, frame.request_id


def test_handshake() -> None:
    client, server = open_pair(token="s3cret")
    assert client.welcome == WELCOME
    assert server.hello == m.Hello(1, "tests", "s3cret")


@pytest.mark.parametrize(("client_token", "reason"), [(None, "no auth token"), ("wrong", "wrong")])
def test_a_bad_token_is_unauthorized_on_both_ends(client_token: str | None, reason: str) -> None:
    client = ClientSession(token=client_token)
    server = ServerSession(WELCOME, token="s3cret")
    exc, error, request_id = violation(server, client.data_to_send())
    assert exc.code is m.ErrorCode.UNAUTHORIZED and reason in error.message
    assert request_id == 1  # the HELLO's id
    with pytest.raises(ProtocolViolation) as info:
        client.receive_data(encode_frame(T.ERROR, 1, m.encode_body(error)))
    assert info.value.code is m.ErrorCode.UNAUTHORIZED
    assert client.state is SessionState.CLOSED


def test_an_unsupported_version_is_refused_on_both_ends() -> None:
    client = ClientSession(version=99)
    server = ServerSession(WELCOME)
    exc, error, _ = violation(server, client.data_to_send())
    assert exc.code is m.ErrorCode.UNSUPPORTED_VERSION and "99" in error.message
    with pytest.raises(ProtocolViolation) as info:
        client.receive_data(encode_frame(T.ERROR, 1, m.encode_body(error)))
    assert info.value.code is m.ErrorCode.UNSUPPORTED_VERSION


def test_the_first_frame_must_be_hello() -> None:
    exc, _, request_id = violation(ServerSession(WELCOME), encode_frame(T.PING, 5, m.encode_body(m.Ping())))
    assert exc.code is m.ErrorCode.BAD_REQUEST and "HELLO" in exc.message
    assert request_id == 5


def test_a_second_hello_is_a_violation() -> None:
    _, server = open_pair()
    exc, _, request_id = violation(server, encode_frame(T.HELLO, 7, m.encode_body(m.Hello())))
    assert exc.code is m.ErrorCode.BAD_REQUEST and "once" in exc.message
    assert request_id == 7


@pytest.mark.parametrize("mtype", [T.WELCOME, T.DELIVER, T.ERROR])
def test_a_server_only_type_from_a_client_is_a_violation(mtype: m.MessageType) -> None:
    _, server = open_pair()
    body = m.encode_body(m.Error("X", "y")) if mtype is T.ERROR else b"\x90"
    exc, _, request_id = violation(server, encode_frame(mtype, 3, body))
    assert exc.code is m.ErrorCode.BAD_REQUEST and "server message" in exc.message
    assert request_id == 3


@pytest.mark.parametrize(
    ("mtype", "body"),
    [
        (0x30, b"\x90"),  # unknown type
        (T.ENQUEUE, b"\xc1"),  # never-used msgpack byte
        (T.ENQUEUE, b"\x93\xa1q"),  # truncated
        (T.ENQUEUE, b"\x90"),  # required fields missing
        (T.GET, b"\x91\x05"),  # wrong field type
        (T.GET, b"\x91\xa2\xff\xfe"),  # invalid UTF-8
        (T.CREDIT, b"\x81\xa7credits\x01"),  # a map where an array is expected
        (T.PING, b"\x90\x90"),  # trailing bytes
        (T.PING, b""),  # empty body
    ],
)
def test_a_garbage_body_is_bad_request_with_the_frames_id(mtype: int, body: bytes) -> None:
    _, server = open_pair()
    exc, _, request_id = violation(server, encode_frame(mtype, 11, body))
    assert exc.code is m.ErrorCode.BAD_REQUEST
    assert request_id == 11


def test_frame_lengths_out_of_range_close_with_request_id_zero() -> None:
    _, server = open_pair()
    exc, _, request_id = violation(server, struct.pack(">IBI", (1 << 20) + 1, T.PING, 4))
    assert (exc.code, request_id) == (m.ErrorCode.TOO_LARGE, 0)
    _, server = open_pair()
    exc, _, request_id = violation(server, struct.pack(">IBI", 3, T.PING, 4))
    assert (exc.code, request_id) == (m.ErrorCode.BAD_REQUEST, 0)


def test_requests_pipelined_behind_hello_are_served_after_the_handshake() -> None:
    client = ClientSession()
    ids = [client.request(T.PING, m.Ping()) for _ in range(3)]
    server = ServerSession(WELCOME)
    requests = server.receive_data(client.data_to_send())
    assert [(r.type, r.request_id) for r in requests] == [(T.PING, i) for i in ids]


def test_pipelined_requests_and_out_of_order_replies() -> None:
    client, server = open_pair()
    sent = {client.request(T.GET, m.JobRef(f"job-{i}")): f"job-{i}" for i in range(200)}
    data = client.data_to_send()
    requests: list[Request] = []
    for i in range(0, len(data), 7):  # arbitrary segmenting
        requests += server.receive_data(data[i : i + 7])
    assert [r.request_id for r in requests] == list(sent)
    for request in reversed(requests):
        server.reply(request, m.Enqueued(request.message.job_id, True, "enqueued"))
    responses = client.receive_data(server.data_to_send())
    assert [r.request_id for r in responses] == list(reversed(sent))
    assert all(sent[r.request_id] == r.message.job_id for r in responses)


def test_no_reply_types_use_request_id_zero_and_get_no_answer() -> None:
    client, server = open_pair()
    assert client.request(T.CREDIT, m.Credit(5)) == 0
    assert client.request(T.START, m.JobIds(["a"])) == 0
    requests = server.receive_data(client.data_to_send())
    assert [(r.type, r.request_id) for r in requests] == [(T.CREDIT, 0), (T.START, 0)]
    for request in requests:
        server.reply(request, m.Ok(), T.OK)
    assert server.data_to_send() == b""


def test_pushes_and_errors_reach_the_client() -> None:
    client, server = open_pair()
    delivery = m.Delivery("j1", "q", "n", b"\x80", 1, 3, 30.0)
    server.push(T.DELIVER, m.Deliver([delivery]))
    server.push(T.GOAWAY, m.GoAway("bye"))
    server.error(8, m.ErrorCode.BUSY, "full", retry_after=0.25)
    responses = client.receive_data(server.data_to_send())
    assert [(r.type, r.request_id) for r in responses] == [(T.DELIVER, 0), (T.GOAWAY, 0), (T.ERROR, 8)]
    assert responses[0].message.jobs == [delivery]
    assert responses[2].message == m.Error("BUSY", "full", None, 0.25)


def test_frames_queued_together_leave_in_one_buffer() -> None:
    client, _ = open_pair()
    assert client.data_to_send() == b""
    for _ in range(5):
        client.request(T.PING, m.Ping())
    data = client.data_to_send()
    assert len(FrameReader().feed(data)) == 5
    assert client.data_to_send() == b""


def test_the_client_rejects_bad_server_frames() -> None:
    client, _ = open_pair()
    with pytest.raises(ProtocolViolation):
        client.receive_data(encode_frame(0x70, 0, b"\x90"))
    assert client.state is SessionState.CLOSED
    assert client.receive_data(encode_frame(T.PONG, 2, b"\x90")) == []

    client, _ = open_pair()
    with pytest.raises(ProtocolViolation):
        client.receive_data(struct.pack(">IBI", 2, T.PONG, 0))


def test_an_unknown_error_code_answering_hello_is_reported_as_internal() -> None:
    client = ClientSession()
    with pytest.raises(ProtocolViolation) as info:
        client.receive_data(encode_frame(T.ERROR, 1, m.encode_body(m.Error("FROM_THE_FUTURE", "?"))))
    assert info.value.code is m.ErrorCode.INTERNAL


def test_a_non_welcome_answer_to_hello_is_a_violation() -> None:
    client = ClientSession()
    with pytest.raises(ProtocolViolation):
        client.receive_data(encode_frame(T.PONG, 1, m.encode_body(m.Pong())))
    assert client.welcome is None
