"""Stored msgpack values (payloads, results) as JSON text, bounded in depth: for the HTTP API and
for ``spitfire get``.

Payloads are opaque bytes to the server; they are decoded only when a person or an HTTP client
asks to read a job. Decoding and encoding nest one C stack frame per container, so a small payload
nested thousands deep (2 KB of ``0x91`` bytes) would raise `RecursionError` and turn every read of
its queue into an error. `msgpack_to_json` therefore answers a value nested more than
`MAX_JSON_DEPTH` containers deep, like any value JSON cannot carry (extension types, binary or
compound map keys, bytes that are not msgpack), as ``{"$msgpack": "<base64 of the bytes>"}``.
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec

#: Most containers (arrays, maps) nested in a value answered as plain JSON: ``[[1]]`` is 2 deep,
#: a scalar 0. Deeper values are answered as ``{"$msgpack": "<base64>"}``.
MAX_JSON_DEPTH = 64

__all__ = ["MAX_JSON_DEPTH", "msgpack_to_json"]

# First bytes of msgpack container headers: fixmap, fixarray, array 16/32, map 16/32. Every
# container of a value starts with one of them, so a value holding at most MAX_JSON_DEPTH of these
# bytes (counted in C by bytes.translate) cannot be nested deeper: most payloads skip the walk.
_CONTAINER_HEADS = bytes([*range(0x80, 0xA0), 0xDC, 0xDD, 0xDE, 0xDF])
_decode = msgspec.msgpack.decode
_encode = msgspec.json.encode


def msgpack_to_json(data: bytes) -> bytes:
    """The JSON text of the msgpack value ``data``: the value itself when it is plain data nested
    at most `MAX_JSON_DEPTH` containers deep, else ``{"$msgpack": "<base64 of data>"}``.

    Never raises, whatever ``data`` holds, and never nests more than a bounded number of frames.
    """
    containers = len(data) - len(data.translate(None, _CONTAINER_HEADS))
    try:
        value = _decode(data)
        if containers > MAX_JSON_DEPTH and _deeper_than(value, MAX_JSON_DEPTH):
            return _opaque(data)
        return _encode(value)
    except (RecursionError, msgspec.DecodeError, msgspec.EncodeError, TypeError, ValueError, OverflowError):
        # RecursionError: nested deeper than the interpreter's recursion limit; msgspec stops
        # there cleanly. The others: not msgpack, or nothing JSON can carry.
        return _opaque(data)


def _opaque(data: bytes) -> bytes:
    return b'{"$msgpack":"%s"}' % base64.b64encode(data)


def _deeper_than(value: Any, limit: int) -> bool:
    """True when ``value`` nests more than ``limit`` lists and dicts (iterative, level by level:
    the check itself never recurses). Map keys are not walked: a compound key is not JSON anyway."""
    level: list[Any] = [value] if type(value) is list or type(value) is dict else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[Any] = []
        for container in level:
            items = container.values() if type(container) is dict else container
            below.extend(x for x in items if type(x) is list or type(x) is dict)
        level = below
    return False
