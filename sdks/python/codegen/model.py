"""What `spitfire codegen` and `spitfire schemas check` know of a set of ``.proto`` files: the job
payload messages, their fields and enums, and the Spitfire job options, as plain data.

`spitfire.codegen.load` builds it from protoc's descriptors; the generators and the compatibility
check read only this (no protobuf import here).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "BACKOFF_KINDS",
    "SCALARS",
    "BackoffSpec",
    "EnumSpec",
    "FieldSpec",
    "FileSpec",
    "JobSpec",
    "MessageSpec",
    "Schema",
    "SchemaError",
    "TypeRef",
]

#: proto3 scalar types, by protoc's type number (FieldDescriptorProto.Type); 10 (group) is proto2 only,
#: 11 (message) and 14 (enum) are references.
SCALARS: dict[int, str] = {
    1: "double",
    2: "float",
    3: "int64",
    4: "uint64",
    5: "int32",
    6: "fixed64",
    7: "fixed32",
    8: "bool",
    9: "string",
    12: "bytes",
    13: "uint32",
    15: "sfixed32",
    16: "sfixed64",
    17: "sint32",
    18: "sint64",
}

#: The kinds of retry delay policy the server knows (`spitfire.protocol.messages.Backoff`).
BACKOFF_KINDS = ("exponential", "fixed", "linear", "delays")


class SchemaError(Exception):
    """A ``.proto`` file cannot be read or is outside what Spitfire supports; the message says
    which file, message or field and what to change."""


@dataclass(frozen=True, slots=True)
class TypeRef:
    """The type of a field's value (of each element of a repeated field, of a map's keys or values)."""

    #: "scalar", "message" or "enum".
    kind: str
    #: The proto scalar type ("int32", "string"...) when ``kind`` is "scalar"; else "".
    scalar: str = ""
    #: The full name of the message or enum ("example.jobs.Urgency") when not a scalar; else "".
    ref: str = ""

    def describe(self) -> str:
        """The type as a ``.proto`` file spells it (full names for messages and enums)."""
        return self.scalar or self.ref


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a message."""

    name: str
    number: int
    #: The value's type (the element's for a repeated field, the value's for a map).
    type: TypeRef
    repeated: bool = False
    #: The map's key type when the field is a ``map<K, V>`` (``type`` is V then).
    map_key: TypeRef | None = None
    #: proto3 ``optional``, or a member of a ``oneof``: the field may be absent (None).
    optional: bool = False
    #: The oneof it belongs to, if any (not the synthetic one of ``optional``).
    oneof: str | None = None
    comment: str = ""

    def describe(self) -> str:
        """The field's type as a ``.proto`` file spells it: ``repeated string``, ``map<string, int32>``..."""
        if self.map_key is not None:
            return f"map<{self.map_key.describe()}, {self.type.describe()}>"
        if self.repeated:
            return f"repeated {self.type.describe()}"
        if self.oneof is not None:
            return f"{self.type.describe()} (in oneof {self.oneof})"
        return f"optional {self.type.describe()}" if self.optional else self.type.describe()


@dataclass(frozen=True, slots=True)
class BackoffSpec:
    """The ``(spitfire.backoff)`` option, with Spitfire's defaults filled in."""

    kind: str = "exponential"
    base: float = 1.0
    factor: float = 2.0
    cap: float = 3600.0
    jitter: bool = False
    delays: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job declared by a message's ``(spitfire.*)`` options."""

    #: The job (handler) name on the wire.
    name: str
    queue: str = "default"
    max_attempts: int | None = None
    backoff: BackoffSpec | None = None
    priority: int | None = None
    #: Seconds.
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class EnumSpec:
    """A proto3 enum: its values travel as their numbers."""

    full_name: str
    #: The name in generated code: the name within the package, nested names joined by "_".
    name: str
    #: (name, number) in declaration order; the first is the default (proto3 makes it 0).
    values: tuple[tuple[str, int], ...]
    file: str
    reserved_numbers: tuple[tuple[int, int], ...] = ()
    reserved_names: tuple[str, ...] = ()
    comment: str = ""


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """A proto3 message (map entries excluded)."""

    full_name: str
    #: The name in generated code: the name within the package, nested names joined by "_".
    name: str
    fields: tuple[FieldSpec, ...]
    file: str
    #: Ranges of reserved field numbers, inclusive at both ends.
    reserved_numbers: tuple[tuple[int, int], ...] = ()
    reserved_names: tuple[str, ...] = ()
    #: Set when the message declares a job (it has a ``(spitfire.*)`` option).
    job: JobSpec | None = None
    comment: str = ""

    def reserves_number(self, number: int) -> bool:
        """Whether ``number`` is in a ``reserved`` range of the message."""
        return any(lo <= number <= hi for lo, hi in self.reserved_numbers)


@dataclass(frozen=True, slots=True)
class FileSpec:
    """One ``.proto`` file given on the command line."""

    #: Its name as protoc knows it (relative to its include directory): "example.proto".
    name: str
    package: str
    #: Messages and enums defined in it (nested ones too), in declaration order.
    messages: tuple[MessageSpec, ...]
    enums: tuple[EnumSpec, ...]
    #: Files it imports, by protoc name (spitfire/options.proto included).
    imports: tuple[str, ...] = ()
    comment: str = ""

    @property
    def stem(self) -> str:
        """The generated module's name: the file's path without ``.proto``, "/" as "_"."""
        return self.name.removesuffix(".proto").replace("/", "_").replace("-", "_").replace(".", "_")


@dataclass(slots=True)
class Schema:
    """The files asked for, and every message and enum they can see (imports included)."""

    files: list[FileSpec]
    messages: dict[str, MessageSpec] = field(default_factory=dict)
    enums: dict[str, EnumSpec] = field(default_factory=dict)

    def jobs(self) -> list[MessageSpec]:
        """The job messages of the files asked for, in order."""
        return [m for f in self.files for m in f.messages if m.job is not None]
