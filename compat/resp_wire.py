"""RESP2 on the wire: requests in (hiredis's Reader behind a shape guard), replies out (`encode`).

A request is what every Redis client sends: an array of bulk strings (``*2\\r\\n$4\\r\\nLLEN\\r\\n$6\\r\\n
orders\\r\\n``). hiredis's Reader turns bytes into those arrays, but it cannot be given limits, and it
allocates an array's slots as soon as it reads the array's header, before one element has arrived:
after ``*1000000000\\r\\n`` (14 bytes) it holds an 8 GB list (untouched pages: the damage shows when
it is freed, 1.8 s with the event loop stopped), and ``*4294967295\\r\\n`` raises MemoryError. So
every byte first goes through `RequestReader`'s guard, which follows only the frames' shape (header
lines and bulk lengths, never the bulk bytes themselves) and refuses, before hiredis sees it,
anything that is not an array of bulk strings or is over a limit: more than ``max_args`` elements,
a bulk string over ``max_bulk`` bytes, a request over ``max_request`` bytes in all. Whatever
hiredis would refuse, the guard refuses first, with its own message (a property test checks that
hiredis never refuses what the guard let through). Inline commands (``PING\\r\\n`` typed into telnet)
are not supported: every client library and ``redis-cli`` send arrays.

Replies are encoded by `encode` from plain values: None (the nil bulk string), int, bytes and str
(bulk strings), `Status` (``+OK``), `RespError` (``-ERR ...``), `Raw` (already encoded) and lists of
these (arrays).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

import hiredis

__all__ = [
    "EMPTY_ARRAY",
    "NIL",
    "NIL_ARRAY",
    "OK",
    "Limits",
    "Raw",
    "Reply",
    "RequestReader",
    "RespError",
    "RespProtocolError",
    "Status",
    "encode",
    "error",
]

#: A header line (``*<count>\r\n`` or ``$<length>\r\n``) is at most this long: 20 digits and a sign fit.
MAX_HEADER = 32
_COUNT = re.compile(rb"(?:0|-?[1-9][0-9]{0,18})\Z")
_STAR = ord("*")
_DOLLAR = ord("$")

#: The nil bulk string (a missing value), the nil array (nothing, e.g. a blocking pop that timed
#: out), the empty array, and the ``+OK`` status.
NIL = b"$-1\r\n"
NIL_ARRAY = b"*-1\r\n"
EMPTY_ARRAY = b"*0\r\n"
OK = b"+OK\r\n"


class RespProtocolError(Exception):
    """The client broke RESP2's request framing or a size limit. The server answers
    ``-ERR Protocol error: <message>`` and closes the connection, as Redis does."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one request may hold (each limit is checked before hiredis buffers or allocates)."""

    #: Elements of one request array (the command's name and its arguments).
    max_args: int
    #: Bytes of one bulk string (a value, a key, a field).
    max_bulk: int
    #: Bytes of one request, headers included.
    max_request: int


class RequestReader:
    """Turns the bytes of one connection into requests (lists of bytes), in order, within `Limits`.

    `feed` takes whatever arrived and returns the requests it completed. A framing error or a
    broken limit does not raise: the requests complete before it are returned, and `error` says
    what went wrong (the caller answers those requests, then the error, then closes). After an
    error nothing more is read.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        #: Why the stream cannot be read further (None while it can).
        self.error: str | None = None
        #: Requests completed so far (a request half received for too long is told apart by it).
        self.completed = 0
        self._reader = hiredis.Reader()
        self._line = bytearray()  # a header line split across reads
        self._left = 0  # bulk strings still due in the current request
        self._skip = 0  # bytes of the current bulk string (and its CRLF) not received yet
        self._size = 0  # bytes of the current request so far

    @property
    def partial(self) -> bool:
        """True while a request has started but not completed."""
        return bool(self._left or self._line)

    def feed(self, data: bytes) -> list[list[bytes]]:
        """The requests ``data`` completes (after earlier data), each a non-empty list of bytes."""
        if self.error is not None:
            return []
        good, self.error = self._scan(data)
        self._reader.feed(data, 0, good)
        requests: list[list[bytes]] = []
        while True:
            try:
                request = self._reader.gets()
            except hiredis.HiredisError as exc:  # the guard lets only well-formed frames through
                self.error = str(exc)
                break
            if request is False:
                break
            if request:  # ``*0`` and ``*-1`` are nothing to do (as Redis treats them)
                requests.append(request)
        return requests

    def _scan(self, data: bytes) -> tuple[int, str | None]:
        """Follow the frames' shape through ``data``: returns how many bytes of it may reach
        hiredis (all of them, or up to the start of the request that breaks a rule) and the error."""
        i, n = 0, len(data)
        start = 0  # where the current request began in ``data`` (0: in an earlier read)
        while i < n:
            if self._skip:
                take = min(self._skip, n - i)
                self._skip -= take
                i += take
                if not self._skip:
                    self._left -= 1
                    if not self._left:
                        self._done()
                        start = i
                continue
            if not self._line:  # a header starts: its type byte is known at once (as hiredis does)
                if not self._left:
                    start = i
                problem = self._type_error(data[i])
                if problem is not None:
                    return start, problem
            room = MAX_HEADER - len(self._line)
            end = data.find(b"\n", i, i + room)
            if end < 0:
                if n - i >= room:
                    return start, "header line too long (an array or bulk header is expected)"
                self._line += data[i:]
                return n, None
            line = bytes(self._line) + data[i : end + 1]
            self._line.clear()
            i = end + 1
            problem = self._header(line)
            if problem is not None:
                return start, problem
            if not self._left:  # ``*0`` or ``*-1``: a request without elements
                start = i
        return n, None

    def _type_error(self, kind: int) -> str | None:
        """What is wrong with a header's type byte (None: it is the one expected here)."""
        if self._left:
            if kind == _DOLLAR:
                return None
            return f"expected '$', got {chr(kind)!r}: every element of a command is a bulk string"
        if kind == _STAR:
            return None
        return (
            f"expected '*', got {chr(kind)!r}: send each command as an array of bulk strings "
            "(inline commands are not supported)"
        )

    def _header(self, line: bytes) -> str | None:
        """Check one header line (CRLF included, type byte checked); None when it is fine."""
        if not self._left:
            return self._array_header(line)
        digits = line[1:-2]
        if line[-2:] != b"\r\n" or not _COUNT.match(digits) or digits[:1] == b"-":
            return "invalid bulk length"
        value = int(digits)
        limits = self.limits
        if value > limits.max_bulk:
            return f"a bulk string of {value} bytes is over the limit of {limits.max_bulk} bytes"
        self._size += len(line) + value + 2
        if self._size > limits.max_request:
            return f"a command of more than {limits.max_request} bytes is over the limit"
        self._skip = value + 2
        return None

    def _array_header(self, line: bytes) -> str | None:
        digits = line[1:-2]
        if line[-2:] != b"\r\n" or not _COUNT.match(digits) or int(digits) < -1:
            return "invalid multibulk length"
        value = int(digits)
        if value > self.limits.max_args:
            return f"a command of {value} elements is over the limit of {self.limits.max_args}"
        self._size = len(line)
        if value <= 0:
            self._done()
        else:
            self._left = value
        return None

    def _done(self) -> None:
        self.completed += 1
        self._size = 0


# -- replies ------------------------------------------------------------------------------------------


class Raw(bytes):
    """A reply already encoded (`NIL_ARRAY`, `EMPTY_ARRAY`): written as it is."""

    __slots__ = ()


class Status(str):
    """A status reply: ``+<text>`` (``Status("OK")``, ``Status("PONG")``)."""

    __slots__ = ()


class RespError(str):
    """An error reply: ``-<CODE> <message>`` (the text is the whole line, code first)."""

    __slots__ = ()


#: What `encode` takes: None is the nil bulk string; lists nest.
Reply: TypeAlias = "int | bytes | str | list[Reply] | None"


def error(code: str, message: str) -> RespError:
    """An error reply ``-<code> <message>``, the message on one line."""
    return RespError(f"{code} {' '.join(message.split())}")


def _line(text: str) -> bytes:
    return text.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")


def encode(value: Reply) -> bytes:
    """The RESP2 bytes of one reply.

    :raises TypeError: a value of another type (a bool, a float, a dict: the caller converts first).
    """
    out = bytearray()
    _encode_into(out, value)
    return bytes(out)


def _encode_into(out: bytearray, value: Reply) -> None:
    if value is None:
        out += NIL
    elif isinstance(value, Raw):
        out += value
    elif isinstance(value, RespError):
        out += b"-" + _line(value) + b"\r\n"
    elif isinstance(value, Status):
        out += b"+" + _line(value) + b"\r\n"
    elif isinstance(value, bytes):
        out += b"$%d\r\n" % len(value)
        out += value
        out += b"\r\n"
    elif isinstance(value, str):
        data = value.encode()
        out += b"$%d\r\n" % len(data)
        out += data
        out += b"\r\n"
    elif isinstance(value, bool):
        raise TypeError("RESP2 has no booleans: reply 1 or 0")
    elif isinstance(value, int):
        out += b":%d\r\n" % value
    elif isinstance(value, list):
        out += b"*%d\r\n" % len(value)
        for item in value:
            _encode_into(out, item)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as RESP2")
