"""Frame codec: the length-prefixed envelope every message travels in (PROTOCOL.md, "Frames").

A frame is a 9-byte header followed by a msgpack body::

    offset  size  field
    0       4     length      big-endian u32: bytes after this field (5 + body length)
    4       1     type        `MessageType` of the body
    5       4     request id  big-endian u32 chosen by the client; 0 on pushes and no-reply frames
    9       n     body        msgpack (see messages.py)

Sans-I/O: `FrameReader.feed` takes bytes as they arrive and returns whole frames; `encode_frame`
returns bytes. Neither touches a socket or a clock.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

#: Bytes of the header: length (4), type (1), request id (4).
HEADER_SIZE = 9
#: Bytes of the header after the length field (type + request id), counted in ``length``.
LENGTH_OVERHEAD = 5
#: Largest frame (after the length field) a peer accepts unless the handshake says otherwise:
#: 1 MiB payloads in batches of 100 fit with room to spare, and a corrupt length cannot make a
#: reader buffer gigabytes.
DEFAULT_MAX_FRAME = 64 * 2**20
#: Largest frame a server accepts before the handshake succeeded (PROTOCOL.md, "Limits"): a HELLO is
#: a few hundred bytes, so a peer that has not authenticated cannot make the server buffer more.
HANDSHAKE_MAX_FRAME = 64 * 2**10
#: Largest request id; ids wrap around to 1 (0 is reserved for frames that get no answer).
MAX_REQUEST_ID = 2**32 - 1

_HEADER = struct.Struct(">IBI")
_pack_header = _HEADER.pack
_unpack_header = _HEADER.unpack_from


class FrameError(ValueError):
    """The byte stream is not a valid sequence of frames; the connection cannot continue."""


class FrameTooLarge(FrameError):
    """A frame announces a length above the reader's ``max_frame`` (both are attributes)."""

    def __init__(self, length: int, max_frame: int) -> None:
        self.length = length
        self.max_frame = max_frame
        super().__init__(
            f"frame length {length} is over the limit of {max_frame} bytes: the peer does not speak "
            "this protocol, the stream is corrupt, or the frame is too large"
        )


class Frame(NamedTuple):
    """One decoded frame: its message type, request id and undecoded msgpack body."""

    type: int
    request_id: int
    body: bytes


def encode_frame(message_type: int, request_id: int, body: bytes) -> bytes:
    """The frame carrying ``body``; raises FrameError for an out-of-range type or id."""
    if not 0 <= message_type <= 0xFF:
        raise FrameError(f"message type {message_type} does not fit in one byte")
    if not 0 <= request_id <= MAX_REQUEST_ID:
        raise FrameError(f"request id {request_id} does not fit in 32 bits")
    return _pack_header(len(body) + LENGTH_OVERHEAD, message_type, request_id) + body


class FrameReader:
    """Reassembles frames from a byte stream split at arbitrary points.

    `feed` raises FrameError when a frame announces a length below the header or above
    ``max_frame``, as soon as its header has arrived (the body is never waited for); after that the
    stream is unusable, the buffered bytes are dropped and the connection should be closed.
    ``max_frame`` may be changed between calls (a server raises it once the peer authenticated).
    """

    __slots__ = ("_buffer", "_start", "max_frame")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()
        self._start = 0

    @property
    def buffered(self) -> int:
        """Bytes received that do not form a whole frame yet."""
        return len(self._buffer) - self._start

    def feed(self, data: bytes | bytearray | memoryview, limit: int | None = None) -> list[Frame]:
        """Add received bytes; return every frame they complete, in order.

        With ``limit``, return at most that many frames and keep the bytes after them buffered:
        ``feed(b"")`` goes on from there (e.g. after raising ``max_frame``).
        """
        buf = self._buffer
        buf += data
        frames: list[Frame] = []
        start = self._start
        end = len(buf)
        while end - start >= HEADER_SIZE and (limit is None or len(frames) < limit):
            length, message_type, request_id = _unpack_header(buf, start)
            if length < LENGTH_OVERHEAD or length > self.max_frame:
                self.clear()
                if length > self.max_frame:
                    raise FrameTooLarge(length, self.max_frame)
                raise FrameError(
                    f"frame length {length} is outside 5..{self.max_frame}: "
                    "the peer does not speak this protocol, or the stream is corrupt"
                )
            stop = start + 4 + length
            if stop > end:
                break
            frames.append(Frame(message_type, request_id, bytes(buf[start + HEADER_SIZE : stop])))
            start = stop
        if start == end:
            buf.clear()
            start = 0
        elif start > 65536 and start * 2 > end:
            del buf[:start]
            start = 0
        self._start = start
        return frames

    def clear(self) -> None:
        """Drop every buffered byte (the connection is over: free its memory now)."""
        self._buffer = bytearray()
        self._start = 0
