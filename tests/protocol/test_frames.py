"""frames.py: the 9-byte header codec and stream reassembly."""

from __future__ import annotations

import struct

import pytest

from spitfire.protocol.frames import (
    DEFAULT_MAX_FRAME,
    HEADER_SIZE,
    MAX_REQUEST_ID,
    Frame,
    FrameError,
    FrameReader,
    FrameTooLarge,
    encode_frame,
)
from spitfire.protocol.messages import MessageType, Ping, encode_body
from spitfire.protocol.session import ClientSession

FRAMES = [
    Frame(0x01, 1, b"\x93\x01\xa0\xc0"),
    Frame(0x02, 2, b"\x90"),
    Frame(0x7F, 0, b""),
    Frame(0xFF, MAX_REQUEST_ID, bytes(range(256)) * 3),
    Frame(0x48, 0, b"\x91\x90"),
]
STREAM = b"".join(encode_frame(*f) for f in FRAMES)


def test_header_layout() -> None:
    frame = encode_frame(0x03, 0x01020304, b"abc")
    assert frame == b"\x00\x00\x00\x08" + b"\x03" + b"\x01\x02\x03\x04" + b"abc"
    assert len(frame) == HEADER_SIZE + 3


@pytest.mark.parametrize("offset", range(len(STREAM) + 1))
def test_a_stream_split_at_any_offset_reassembles(offset: int) -> None:
    reader = FrameReader()
    frames = reader.feed(STREAM[:offset]) + reader.feed(STREAM[offset:])
    assert frames == FRAMES
    assert reader.buffered == 0


def test_a_stream_fed_byte_by_byte_reassembles() -> None:
    reader = FrameReader()
    frames: list[Frame] = []
    for i in range(len(STREAM)):
        frames += reader.feed(STREAM[i : i + 1])
    assert frames == FRAMES


def test_partial_frames_are_buffered_until_complete() -> None:
    reader = FrameReader()
    data = encode_frame(0x02, 9, b"\x90")
    assert reader.feed(data[:4]) == []
    assert reader.buffered == 4
    assert reader.feed(data[4:-1]) == []
    assert reader.feed(memoryview(data[-1:])) == [Frame(0x02, 9, b"\x90")]
    assert reader.buffered == 0


def test_the_buffer_is_compacted_while_a_frame_is_pending() -> None:
    """Many whole frames then a partial one: the consumed prefix is dropped, the tail kept."""
    reader = FrameReader()
    whole = encode_frame(0x02, 1, b"x" * 1000) * 100
    tail = encode_frame(0x02, 2, b"y" * 50)
    assert len(reader.feed(whole + tail[:20])) == 100
    assert reader.buffered == 20
    assert reader.feed(tail[20:]) == [Frame(0x02, 2, b"y" * 50)]


@pytest.mark.parametrize("length", [0, 1, 4])
def test_a_length_below_the_header_raises_frame_error(length: int) -> None:
    with pytest.raises(FrameError) as info:
        FrameReader().feed(struct.pack(">IBI", length, 2, 1))
    assert not isinstance(info.value, FrameTooLarge)


def test_a_length_above_max_frame_raises_frame_too_large() -> None:
    reader = FrameReader(max_frame=100)
    assert reader.feed(encode_frame(0x02, 1, b"z" * 95)) == [Frame(0x02, 1, b"z" * 95)]  # exactly 100
    with pytest.raises(FrameTooLarge):
        reader.feed(encode_frame(0x02, 1, b"z" * 96))


def test_the_default_max_frame_is_64_mib_and_checked_from_the_header_alone() -> None:
    assert DEFAULT_MAX_FRAME == 64 * 2**20
    with pytest.raises(FrameTooLarge):
        FrameReader().feed(struct.pack(">IBI", DEFAULT_MAX_FRAME + 1, 3, 1))  # no body needed


@pytest.mark.parametrize(("mtype", "request_id"), [(-1, 1), (256, 1), (1, -1), (1, MAX_REQUEST_ID + 1)])
def test_encode_rejects_out_of_range_header_fields(mtype: int, request_id: int) -> None:
    with pytest.raises(FrameError):
        encode_frame(mtype, request_id, b"")


def test_request_ids_count_up_and_wrap_to_one_never_zero() -> None:
    session = ClientSession()  # HELLO took id 1
    assert session.request(MessageType.PING, Ping()) == 2
    session._next_id = MAX_REQUEST_ID  # white-box: skip four billion requests
    assert session.request(MessageType.PING, Ping()) == MAX_REQUEST_ID
    assert session.request(MessageType.PING, Ping()) == 1
    frames = FrameReader().feed(session.data_to_send())
    assert [f.request_id for f in frames] == [1, 2, MAX_REQUEST_ID, 1]
    assert frames[-1].body == encode_body(Ping())
