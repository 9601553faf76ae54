"""Property tests: reassembly under any split, and no input raising anything but protocol errors."""

from __future__ import annotations

import itertools
import json
from importlib import resources

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spitfire.protocol import messages as m
from spitfire.protocol.frames import MAX_REQUEST_ID, Frame, FrameError, FrameReader, encode_frame
from spitfire.protocol.session import ClientSession, ProtocolViolation, ServerSession

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WELCOME = m.Welcome(1, "spitfire-server/test", 1 << 16, 1 << 12, 10.0)

frames_strategy = st.lists(
    st.builds(
        Frame,
        st.integers(0, 0xFF),
        st.integers(0, MAX_REQUEST_ID),
        st.binary(max_size=300),
    ),
    max_size=20,
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@SETTINGS
@given(frames=frames_strategy, cuts=st.lists(st.integers(0, 1 << 16), max_size=30))
def test_any_split_of_a_frame_stream_reassembles_identically(frames: list[Frame], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(*f) for f in frames)
    reader = FrameReader()
    out: list[Frame] = []
    for chunk in split(stream, cuts):
        out += reader.feed(chunk)
    assert out == frames
    assert reader.buffered == 0


@SETTINGS
@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 4000), max_size=10))
def test_random_bytes_only_ever_raise_frame_error(data: bytes, cuts: list[int]) -> None:
    reader = FrameReader(max_frame=1 << 16)
    try:
        for chunk in split(data, cuts):
            reader.feed(chunk)
    except FrameError:
        pass


def feed_server(chunks: list[bytes]) -> None:
    server = ServerSession(WELCOME, token=None, max_frame=1 << 16)
    try:
        for chunk in chunks:
            server.receive_data(chunk)
    except ProtocolViolation:
        assert server.data_to_send()  # an ERROR frame is queued for the peer


def feed_client(chunks: list[bytes]) -> None:
    client = ClientSession(max_frame=1 << 16)
    client.data_to_send()
    try:
        for chunk in chunks:
            client.receive_data(chunk)
    except ProtocolViolation:
        pass


@SETTINGS
@given(data=st.binary(max_size=2000), cuts=st.lists(st.integers(0, 4000), max_size=10))
def test_random_bytes_never_raise_anything_but_protocol_violation(data: bytes, cuts: list[int]) -> None:
    hello = encode_frame(m.MessageType.HELLO, 1, m.encode_body(m.Hello()))
    feed_server(split(data, cuts))
    feed_server(split(hello + data, cuts))  # past the handshake
    feed_client(split(data, cuts))


def _vector_frames() -> list[bytes]:
    text = (resources.files("spitfire.protocol") / "vectors" / "vectors.json").read_text(encoding="utf-8")
    return [bytes.fromhex(v["hex"]) for v in json.loads(text)["vectors"]]


VECTOR_FRAMES = _vector_frames()


@SETTINGS
@given(
    picks=st.lists(st.sampled_from(VECTOR_FRAMES), min_size=1, max_size=8),
    flips=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=6),
    cuts=st.lists(st.integers(0, 1 << 16), max_size=6),
)
def test_mutated_valid_frames_never_raise_anything_but_protocol_violation(
    picks: list[bytes], flips: list[tuple[int, int]], cuts: list[int]
) -> None:
    hello = encode_frame(m.MessageType.HELLO, 1, m.encode_body(m.Hello()))
    data = bytearray(b"".join(picks))
    for position, value in flips:
        data[position % len(data)] = value
    feed_server(split(hello + bytes(data), cuts))
    feed_client(split(bytes(data), cuts))
