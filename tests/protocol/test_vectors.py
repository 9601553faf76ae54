"""Golden vectors: every frame in protocol/vectors/vectors.json decodes to its description and the
description encodes to the frame, byte for byte. SDKs in other languages run the same two checks."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import msgspec
import pytest

from spitfire.protocol import messages as m
from spitfire.protocol.frames import FrameReader, encode_frame
from spitfire.protocol.vectors import generate


def load_vectors() -> list[dict[str, Any]]:
    """The vectors as shipped in the package (so a missing package-data entry fails here)."""
    text = (resources.files("spitfire.protocol") / "vectors" / "vectors.json").read_text(encoding="utf-8")
    document = json.loads(text)
    assert document["format"] == 1
    vectors: list[dict[str, Any]] = document["vectors"]
    return vectors


VECTORS = load_vectors()


def describe(value: Any) -> Any:
    """A message as the vectors describe it: structs as objects by field name, bytes as hex."""
    if isinstance(value, msgspec.Struct):
        return {name: describe(getattr(value, name)) for name in value.__struct_fields__}
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [describe(v) for v in value]
    if isinstance(value, dict):
        return {k: describe(v) for k, v in value.items()}
    return value


def build(info: msgspec.inspect.Type, value: Any) -> Any:
    """The Python value a description stands for, guided by the field types of messages.py."""
    if isinstance(info, msgspec.inspect.StructType):
        assert set(value) == {f.name for f in info.fields}, "a description names every field"
        return info.cls(**{f.name: build(f.type, value[f.name]) for f in info.fields})
    if isinstance(info, msgspec.inspect.UnionType):
        if value is None:
            return None
        (inner,) = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        return build(inner, value)
    if isinstance(info, msgspec.inspect.BytesType):
        return bytes.fromhex(value)
    if isinstance(info, msgspec.inspect.ListType):
        return [build(info.item_type, v) for v in value]
    if isinstance(info, msgspec.inspect.DictType):
        return {k: build(info.value_type, v) for k, v in value.items()}
    if isinstance(info, msgspec.inspect.FloatType):
        return float(value)
    return value


def ids(vector: dict[str, Any]) -> str:
    return str(vector["name"])


@pytest.mark.parametrize("vector", VECTORS, ids=ids)
def test_decoding_the_frame_gives_the_description(vector: dict[str, Any]) -> None:
    data = bytes.fromhex(vector["hex"])
    reader = FrameReader()
    [frame] = reader.feed(data)
    assert reader.buffered == 0
    assert frame.type == vector["type_byte"] == m.MessageType[vector["type"]]
    assert frame.request_id == vector["request_id"]
    message = m.decode_body(frame.type, frame.body)
    assert type(message) is m.BODY_TYPES[m.MessageType(frame.type)]
    assert describe(message) == vector["body"]


@pytest.mark.parametrize("vector", VECTORS, ids=ids)
def test_encoding_the_description_gives_the_frame(vector: dict[str, Any]) -> None:
    mtype = m.MessageType[vector["type"]]
    message = build(msgspec.inspect.type_info(m.BODY_TYPES[mtype]), vector["body"])
    frame = encode_frame(mtype, vector["request_id"], m.encode_body(message))
    assert frame.hex() == vector["hex"]


def test_every_message_type_has_a_vector() -> None:
    assert {m.MessageType[v["type"]] for v in VECTORS} == set(m.MessageType)
    assert len({v["name"] for v in VECTORS}) == len(VECTORS)


def test_the_committed_file_is_what_the_generator_writes() -> None:
    """A change to messages.py that alters bytes must come with regenerated vectors (and PROTOCOL.md)."""
    shipped = (resources.files("spitfire.protocol") / "vectors" / "vectors.json").read_text(encoding="utf-8")
    assert shipped == generate.render(), "run: python -m spitfire.protocol.vectors.generate"


def test_the_protocol_document_ships_with_the_package() -> None:
    text = (resources.files("spitfire.protocol") / "PROTOCOL.md").read_text(encoding="utf-8")
    for mtype in m.MessageType:
        assert mtype.name in text, f"PROTOCOL.md does not mention {mtype.name}"
    for code in m.ErrorCode:
        assert code.value in text, f"PROTOCOL.md does not mention {code.value}"


def test_shorter_and_longer_bodies_decode_for_compatibility() -> None:
    """Versioning rule: missing trailing fields take defaults; unknown trailing fields are ignored."""
    short = msgspec.msgpack.encode(["emails", "send_email", b"x"])
    assert m.decode_body(m.MessageType.ENQUEUE, short) == m.Enqueue("emails", "send_email", b"x")
    longer = msgspec.msgpack.encode([3, "a field from a newer version", {"nested": [1]}])
    assert m.decode_body(m.MessageType.CREDIT, longer) == m.Credit(3)
    # SUBSCRIBE from a client older than host, pid and concurrency: the 3-field array still decodes.
    old = msgspec.msgpack.encode([["emails"], 4, "old-worker"])
    assert m.decode_body(m.MessageType.SUBSCRIBE, old) == m.Subscribe(["emails"], 4, "old-worker", "", 0, 0)
    full = next(v for v in VECTORS if v["name"] == "job-full")
    job = msgspec.msgpack.decode(bytes.fromhex(full["hex"])[9:])
    job[0]["a_new_key"] = [1, 2]
    assert m.decode_body(m.MessageType.JOB, msgspec.msgpack.encode(job)).job.id == generate.JOB_A


def test_the_worked_examples_in_the_protocol_document_are_what_the_encoder_writes() -> None:
    text = (resources.files("spitfire.protocol") / "PROTOCOL.md").read_text(encoding="utf-8")
    blocks = ["".join(block.split()) for block in text.split("```")[1::2]]
    hello = encode_frame(m.MessageType.HELLO, 1, m.encode_body(m.Hello(1, "py/0.1", "tok")))
    welcome = m.Welcome(1, "spitfire-server/0.1.0", 64 * 2**20, 2**20, 10.0)
    payload = msgspec.msgpack.encode({"to": "a@b.c"})
    enqueue = m.Enqueue("emails", "send_email", payload, priority=5, delay=2.5)
    for frame in (
        hello,
        encode_frame(m.MessageType.WELCOME, 1, m.encode_body(welcome)),
        encode_frame(m.MessageType.ENQUEUE, 2, m.encode_body(enqueue)),
    ):
        assert frame.hex() in blocks
