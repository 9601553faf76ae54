"""Job definitions of ``.proto`` job schemas, for ``spitfire schemas push``.

Each job message (a message with a ``(spitfire.*)`` option) becomes the definition the server keeps
for its job name (docs/job-definitions.md): the queue, priority, max_attempts, backoff and timeout of
its options, and the JSON Schema (Draft 2020-12) of its payload derived from the message, with
``validate`` on, so that the server checks every payload of the job at enqueue, naming the field.

The schema accepts the payloads the generated code sends and the generated Python Structs decode,
as the server sees them: decoded from msgpack into JSON values (bytes as base64 strings, map keys
as strings). Every field may be absent (proto3 gives it its default), unknown fields are allowed
(older and newer schemas read each other's payloads), integers carry their proto type's range,
enums their numbers, ``optional``, oneof and message fields may be null (a message field's errors
name the field inside it: ``sizes[0].width``, ``crop.height``). Messages and enums are
``$defs`` named by their full proto names, so nested and recursive messages take one entry each.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec

from spitfire.protocol.messages import Backoff, JobDefinitionSpec

from .model import BackoffSpec, EnumSpec, FieldSpec, MessageSpec, Schema, SchemaError, TypeRef

__all__ = ["MAX_SCHEMA_BYTES", "definitions", "payload_schema", "render"]

#: The largest schema the server keeps for one job definition, in bytes of JSON.
MAX_SCHEMA_BYTES = 64 * 1024
#: The most definitions one registration may carry (the server's limit).
MAX_DEFINITIONS = 10_000

_INT32 = {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
_UINT32 = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}
_INT64 = {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}
# No maximum: msgpack carries no integer past 2**64 - 1 (as the generated Python's UInt64).
_UINT64 = {"type": "integer", "minimum": 0}
#: JSON Schema of each proto3 scalar, as the server sees its value.
_SCALARS: dict[str, dict[str, Any]] = {
    "double": {"type": "number"},
    "float": {"type": "number"},
    "int32": _INT32,
    "sint32": _INT32,
    "sfixed32": _INT32,
    "uint32": _UINT32,
    "fixed32": _UINT32,
    "int64": _INT64,
    "sint64": _INT64,
    "sfixed64": _INT64,
    "uint64": _UINT64,
    "fixed64": _UINT64,
    "bool": {"type": "boolean"},
    "string": {"type": "string"},
    # msgpack bin: the server checks JSON's view of a payload, where bytes are base64 text.
    "bytes": {"type": "string", "contentEncoding": "base64"},
}
#: Map keys as the server sees them (JSON object keys are strings): integers' decimal digits.
_KEY_PATTERNS = {
    **dict.fromkeys(("int32", "sint32", "sfixed32", "int64", "sint64", "sfixed64"), "^-?[0-9]+$"),
    **dict.fromkeys(("uint32", "fixed32", "uint64", "fixed64"), "^[0-9]+$"),
}
_NULL = {"type": "null"}


def payload_schema(message: MessageSpec, schema: Schema) -> dict[str, Any]:
    """The JSON Schema of the payload of job message ``message``: a ``$ref`` to its entry in
    ``$defs``, which holds every message and enum it reaches (each once, so recursion is fine)."""
    defs: dict[str, Any] = {}
    pending = [message.full_name]
    while pending:  # a work list, not recursion: nesting depth does not matter
        name = pending.pop()
        if name in defs:
            continue
        enum = schema.enums.get(name)
        defs[name] = _enum(enum) if enum is not None else _message(schema.messages[name], pending)
    return {"$ref": _ref(message.full_name), "$defs": dict(sorted(defs.items()))}


def _ref(full_name: str) -> str:
    return f"#/$defs/{full_name}"


def _enum(e: EnumSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"title": e.full_name, "enum": list(dict.fromkeys(n for _, n in e.values))}
    if e.comment:
        out["description"] = e.comment
    return out


def _message(m: MessageSpec, pending: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"title": m.full_name, "type": "object"}
    if m.comment:
        out["description"] = m.comment
    out["properties"] = {fd.name: _field(m, fd, pending) for fd in m.fields}
    return out


def _value(t: TypeRef, pending: list[str]) -> dict[str, Any]:
    if t.kind == "scalar":
        return dict(_SCALARS[t.scalar])
    pending.append(t.ref)
    return {"$ref": _ref(t.ref)}


def _field(m: MessageSpec, fd: FieldSpec, pending: list[str]) -> dict[str, Any]:
    value = _value(fd.type, pending)
    out: dict[str, Any]
    if fd.map_key is not None:
        out = {"type": "object", "additionalProperties": value}
        key = fd.map_key.scalar
        if key in _KEY_PATTERNS:
            out["propertyNames"] = {"pattern": _KEY_PATTERNS[key]}
        elif key == "bool":
            # JSON has no such keys: the server could check no payload that fills the map.
            raise SchemaError(
                f"{m.full_name}.{fd.name}: map<bool, ...> cannot be checked by the server (JSON object "
                "keys are strings); use map<string, ...> or a repeated message"
            )
    elif fd.repeated:
        out = {"type": "array", "items": value}
    elif fd.type.kind == "message":
        # Null is "not set". if/then rather than anyOf: the validator then names the field at fault
        # inside the message (anyOf would only say that the message fits neither branch).
        out = {"if": {"type": "object"}, "then": value, "else": _NULL}
    elif fd.optional and "type" in value:
        out = {**value, "type": [value["type"], "null"]}  # `optional` and oneof members: None is "not set"
    elif fd.optional:
        out = {"anyOf": [value, _NULL]}
    else:
        out = value
    if fd.comment:
        out["description"] = fd.comment
    return out


def _backoff(b: BackoffSpec | None) -> Backoff | None:
    """The wire's Backoff, as the generated code builds it (`Backoff.of_delays` for delays)."""
    if b is None:
        return None
    if b.kind == "delays":
        return Backoff.of_delays(list(b.delays), jitter=b.jitter)
    return Backoff(b.kind, base=b.base, factor=b.factor, cap=b.cap, jitter=b.jitter)


def definitions(schema: Schema) -> list[tuple[MessageSpec, JobDefinitionSpec]]:
    """The job definition of each job message of the schema's files, in order, with its message.

    :raises SchemaError: the files declare no job, two messages declare the same job name, there are
        too many, or a payload's schema is larger than the server keeps.
    """
    jobs = schema.jobs()
    if not jobs:
        files = ", ".join(f.name for f in schema.files)
        raise SchemaError(
            f"{files}: no job message to push; a job is a message with a (spitfire.*) option, e.g. "
            'option (spitfire.queue) = "emails";'
        )
    if len(jobs) > MAX_DEFINITIONS:
        raise SchemaError(f"{len(jobs)} job messages: the server takes at most {MAX_DEFINITIONS} at once")
    out: list[tuple[MessageSpec, JobDefinitionSpec]] = []
    by_name: dict[str, str] = {}
    for m in jobs:
        job = m.job
        assert job is not None
        if job.name in by_name:
            raise SchemaError(
                f"{m.full_name}: job name {job.name!r} is also {by_name[job.name]}'s; give one of them "
                "another (spitfire.job)"
            )
        by_name[job.name] = m.full_name
        text = msgspec.json.encode(payload_schema(m, schema), order="sorted").decode()
        size = len(text.encode())
        if size > MAX_SCHEMA_BYTES:
            raise SchemaError(
                f"{m.full_name}: the JSON Schema of its payload takes {size} bytes; the server keeps at "
                f"most {MAX_SCHEMA_BYTES} per job: split the message, or shorten its comments"
            )
        spec = JobDefinitionSpec(
            name=job.name,
            queue=job.queue,
            priority=job.priority or 0,
            max_attempts=job.max_attempts,
            backoff=_backoff(job.backoff),
            timeout=job.timeout,
            schema=text,
            validate=True,
        )
        out.append((m, spec))
    return out


def render(pushed: Sequence[tuple[MessageSpec, JobDefinitionSpec]]) -> str:
    """The definitions as ``--dry-run`` prints them: JSON, each with the message it comes from and
    its schema as a JSON object."""
    items = []
    for m, d in pushed:
        b = d.backoff
        backoff = None if b is None else msgspec.structs.asdict(b)
        items.append(
            {
                "name": d.name,
                "source": m.full_name,
                "queue": d.queue,
                "priority": d.priority,
                "max_attempts": d.max_attempts,
                "backoff": backoff,
                "timeout": d.timeout,
                "validate": d.validate,
                "schema": json.loads(d.schema or "null"),
            }
        )
    return json.dumps(items, indent=2, ensure_ascii=False) + "\n"
