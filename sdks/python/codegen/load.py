"""Read ``.proto`` files with protoc (from ``grpcio-tools``) into a `Schema`.

protoc parses the files and writes a descriptor set (``--descriptor_set_out --include_imports
--include_source_info``); it is read back with ``google.protobuf.descriptor_pb2``. The
``(spitfire.*)`` message options are read through a descriptor pool of the same files, so that
protobuf itself decodes them.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from .model import (
    BACKOFF_KINDS,
    SCALARS,
    BackoffSpec,
    EnumSpec,
    FieldSpec,
    FileSpec,
    JobSpec,
    MessageSpec,
    Schema,
    SchemaError,
    TypeRef,
)

__all__ = ["OPTIONS_PROTO", "load", "options_include_dir"]

#: The protoc name of the file that defines the ``(spitfire.*)`` options.
OPTIONS_PROTO = "spitfire/options.proto"
#: Seconds protoc may take (it takes milliseconds; a hang must not hang the caller).
PROTOC_TIMEOUT = 60.0
#: Lines of protoc's errors passed on (a hostile file can make it repeat one error thousands of times).
PROTOC_ERROR_LINES = 20

# FieldDescriptorProto labels and types, and SourceCodeInfo path tags (descriptor.proto).
_LABEL_REPEATED = 3
_TYPE_GROUP, _TYPE_MESSAGE, _TYPE_ENUM = 10, 11, 14
_FILE_MESSAGE, _FILE_ENUM = 4, 5
_MESSAGE_FIELD, _MESSAGE_NESTED, _MESSAGE_ENUM = 2, 3, 4

#: The job option names: the ``extend google.protobuf.MessageOptions`` fields of options.proto.
_OPTIONS = ("queue", "job", "max_attempts", "backoff", "priority", "timeout")
_PRIORITY_MAX = 10


def options_include_dir() -> Path:
    """The directory holding ``spitfire/options.proto`` as the package ships it."""
    return Path(str(resources.files("spitfire.codegen") / "proto"))


def _protobuf_include_dir() -> Path:
    """grpcio-tools' copy of google/protobuf/*.proto (descriptor.proto, which options.proto imports)."""
    return Path(str(resources.files("grpc_tools") / "_proto"))


def load(files: Sequence[str | Path], include: Sequence[str | Path] = ()) -> Schema:
    """Parse ``files`` (and what they import) into a `Schema`.

    Imports are looked up in ``include``, then in each file's own directory, then in the
    package's copy of ``spitfire/options.proto`` and protobuf's own ``.proto`` files.

    :raises SchemaError: protoc refused a file (its errors are in the message), a file is not
        proto3, or it uses something Spitfire payloads cannot carry.
    """
    # spitfire/options.proto among the files (schemas/**/*.proto): it is found as an import anyway,
    # and given by another path protoc would see its definitions twice.
    paths = [Path(f) for f in files if Path(f).resolve().parts[-2:] != ("spitfire", "options.proto")]
    if not paths and files:
        raise SchemaError("only spitfire/options.proto given: pass the .proto files of your jobs")
    if not paths:
        raise SchemaError("no .proto files given: pass one or more, e.g. schemas/*.proto")
    for p in paths:
        if not p.is_file():
            raise SchemaError(f"{p}: no such file")
    dirs = _unique([*map(Path, include), *(p.parent for p in paths)])
    dirs += [options_include_dir(), _protobuf_include_dir()]
    fds = _run_protoc(paths, dirs)
    names = [_protoc_name(p, dirs) for p in paths]
    return _schema(fds, names)


def _unique(dirs: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for d in dirs:
        if d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def _protoc_name(path: Path, dirs: Sequence[Path]) -> str:
    """The name protoc gives ``path``: relative to the first include directory holding it."""
    resolved = path.resolve()
    for d in dirs:
        try:
            return resolved.relative_to(d.resolve()).as_posix()
        except ValueError:
            continue
    raise SchemaError(f"{path} is in none of the include directories")  # its parent is one


def _run_protoc(paths: Sequence[Path], dirs: Sequence[Path]) -> descriptor_pb2.FileDescriptorSet:
    with tempfile.TemporaryDirectory(prefix="spitfire-codegen-") as tmp:
        out = Path(tmp) / "descriptors.pb"
        args = [sys.executable, "-m", "grpc_tools.protoc", *(f"-I{d}" for d in dirs)]
        args += [f"--descriptor_set_out={out}", "--include_imports", "--include_source_info"]
        args += [str(p) for p in paths]
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=PROTOC_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise SchemaError(f"protoc did not finish within {PROTOC_TIMEOUT:.0f} s") from None
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            errors = "\n".join(lines[:PROTOC_ERROR_LINES])
            if len(lines) > PROTOC_ERROR_LINES:
                errors += f"\n... and {len(lines) - PROTOC_ERROR_LINES} more lines of errors"
            raise SchemaError(f"protoc could not parse the .proto files:\n{errors}")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _schema(fds: descriptor_pb2.FileDescriptorSet, wanted: Sequence[str]) -> Schema:
    by_name = {f.name: f for f in fds.file}
    options_class = _options_class(fds)
    schema = Schema(files=[])
    specs: dict[str, FileSpec] = {}
    for f in fds.file:
        if f.package.startswith("google.protobuf") or f.name == OPTIONS_PROTO:
            continue
        spec = _file(f, options_class)
        specs[f.name] = spec
        schema.messages.update((m.full_name, m) for m in spec.messages)
        schema.enums.update((e.full_name, e) for e in spec.enums)
    for name in _unique_names(wanted):
        if name == OPTIONS_PROTO:
            continue  # spitfire/options.proto given among schemas/**.proto: nothing to generate
        if name not in specs:
            raise SchemaError(f"{name}: protobuf's own files cannot be generated; import them instead")
        schema.files.append(specs[name])
    for spec in schema.files:
        _check_references(by_name[spec.name], schema)
    return schema


def _unique_names(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _options_class(fds: descriptor_pb2.FileDescriptorSet) -> Any | None:
    """``google.protobuf.MessageOptions`` of a pool built from the set, which knows its extensions."""
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    names = [f.name for f in fds.file]
    classes = message_factory.GetMessageClassesForFiles(names, pool)  # registers the extensions
    return classes.get("google.protobuf.MessageOptions")  # None: nothing imports options.proto


class _Comments:
    """Leading comments of a file's definitions, by SourceCodeInfo path."""

    def __init__(self, f: descriptor_pb2.FileDescriptorProto) -> None:
        self.by_path = {
            tuple(loc.path): _clean(loc.leading_comments)
            for loc in f.source_code_info.location
            if loc.leading_comments
        }

    def __call__(self, path: tuple[int, ...]) -> str:
        return self.by_path.get(path, "")


def _clean(comment: str) -> str:
    lines = [line[1:] if line.startswith(" ") else line for line in comment.splitlines()]
    return "\n".join(lines).strip()


def _file(f: descriptor_pb2.FileDescriptorProto, options_class: Any) -> FileSpec:
    if f.syntax != "proto3":
        syntax = f.syntax or "proto2"
        raise SchemaError(f'{f.name}: is {syntax}; Spitfire schemas are proto3: add syntax = "proto3";')
    comments = _Comments(f)
    messages: list[MessageSpec] = []
    enums: list[EnumSpec] = []
    prefix = f".{f.package}." if f.package else "."
    for i, e in enumerate(f.enum_type):
        enums.append(_enum(e, prefix, "", f.name, comments((_FILE_ENUM, i))))
    for i, m in enumerate(f.message_type):
        _message(m, prefix, "", f, (_FILE_MESSAGE, i), comments, options_class, messages, enums)
    header = comments((12,))  # the comment above `syntax`
    return FileSpec(f.name, f.package, tuple(messages), tuple(enums), tuple(f.dependency), header)


def _enum(
    e: descriptor_pb2.EnumDescriptorProto, prefix: str, outer: str, file: str, comment: str
) -> EnumSpec:
    return EnumSpec(
        full_name=(prefix + outer + e.name)[1:],
        name=(outer + e.name).replace(".", "_"),
        values=tuple((v.name, v.number) for v in e.value),
        file=file,
        reserved_numbers=tuple((r.start, r.end) for r in e.reserved_range),  # inclusive in enums
        reserved_names=tuple(e.reserved_name),
        comment=comment,
    )


def _message(
    m: descriptor_pb2.DescriptorProto,
    prefix: str,
    outer: str,
    f: descriptor_pb2.FileDescriptorProto,
    path: tuple[int, ...],
    comments: _Comments,
    options_class: Any,
    messages: list[MessageSpec],
    enums: list[EnumSpec],
) -> None:
    if m.options.map_entry:
        return
    full_name = (prefix + outer + m.name)[1:]
    maps = {
        f"{prefix}{outer}{m.name}.{n.name}": n for n in m.nested_type if n.options.map_entry
    }  # map<K, V> fields point at these
    fields = tuple(
        _field(fd, m, maps, full_name, comments((*path, _MESSAGE_FIELD, i))) for i, fd in enumerate(m.field)
    )
    messages.append(
        MessageSpec(
            full_name=full_name,
            name=(outer + m.name).replace(".", "_"),
            fields=fields,
            file=f.name,
            reserved_numbers=tuple((r.start, r.end - 1) for r in m.reserved_range),  # end exclusive
            reserved_names=tuple(m.reserved_name),
            job=_job(m, full_name, options_class),
            comment=comments(path),
        )
    )
    inner = f"{outer}{m.name}."
    for i, e in enumerate(m.enum_type):
        enums.append(_enum(e, prefix, inner, f.name, comments((*path, _MESSAGE_ENUM, i))))
    for i, n in enumerate(m.nested_type):
        nested_path = (*path, _MESSAGE_NESTED, i)
        _message(n, prefix, inner, f, nested_path, comments, options_class, messages, enums)


def _type(fd: descriptor_pb2.FieldDescriptorProto, where: str) -> TypeRef:
    if fd.type == _TYPE_MESSAGE:
        return TypeRef("message", ref=fd.type_name.lstrip("."))
    if fd.type == _TYPE_ENUM:
        return TypeRef("enum", ref=fd.type_name.lstrip("."))
    if fd.type == _TYPE_GROUP or fd.type not in SCALARS:
        raise SchemaError(f"{where}: groups are proto2 only; use a message")
    return TypeRef("scalar", scalar=SCALARS[fd.type])


def _field(
    fd: descriptor_pb2.FieldDescriptorProto,
    m: descriptor_pb2.DescriptorProto,
    maps: dict[str, descriptor_pb2.DescriptorProto],
    full_name: str,
    comment: str,
) -> FieldSpec:
    where = f"{full_name}.{fd.name}"
    oneof = None
    if fd.HasField("oneof_index") and not fd.proto3_optional:
        oneof = m.oneof_decl[fd.oneof_index].name
    entry = maps.get(fd.type_name) if fd.type == _TYPE_MESSAGE else None
    if entry is not None:
        key, value = entry.field[0], entry.field[1]
        return FieldSpec(fd.name, fd.number, _type(value, where), map_key=_type(key, where), comment=comment)
    return FieldSpec(
        name=fd.name,
        number=fd.number,
        type=_type(fd, where),
        repeated=fd.label == _LABEL_REPEATED,
        optional=fd.proto3_optional or oneof is not None,
        oneof=oneof,
        comment=comment,
    )


def _job(m: descriptor_pb2.DescriptorProto, full_name: str, options_class: Any) -> JobSpec | None:
    if options_class is None:
        return None
    options = options_class.FromString(m.options.SerializeToString())
    given = {fd.name: value for fd, value in options.ListFields() if fd.full_name.startswith("spitfire.")}
    if not given:
        return None
    name = given.get("job") or _snake(m.name)
    priority = given.get("priority")
    if priority is not None and priority > _PRIORITY_MAX:
        raise SchemaError(f"{full_name}: (spitfire.priority) = {priority}: use 0..{_PRIORITY_MAX}")
    timeout = given.get("timeout")
    if timeout is not None and timeout <= 0:
        raise SchemaError(f"{full_name}: (spitfire.timeout) = {timeout}: give seconds above 0")
    max_attempts = given.get("max_attempts")
    if max_attempts is not None and max_attempts < 1:
        raise SchemaError(f"{full_name}: (spitfire.max_attempts) = 0: give 1 or more, or leave it out")
    backoff = _backoff(given["backoff"], full_name) if "backoff" in given else None
    return JobSpec(
        name=name,
        queue=given.get("queue") or "default",
        max_attempts=max_attempts,
        backoff=backoff,
        priority=priority,
        timeout=float(timeout) if timeout is not None else None,
    )


def _backoff(b: Any, full_name: str) -> BackoffSpec:
    delays = tuple(float(d) for d in b.delays)
    kind = b.kind or ("delays" if delays else "exponential")
    if kind not in BACKOFF_KINDS:
        raise SchemaError(
            f"{full_name}: (spitfire.backoff) kind {kind!r}: use one of {', '.join(BACKOFF_KINDS)}"
        )
    if kind == "delays" and not delays:
        raise SchemaError(f'{full_name}: (spitfire.backoff) kind "delays" needs delays: [1, 5, 30]')
    if any(d < 0 for d in delays):
        raise SchemaError(f"{full_name}: (spitfire.backoff) delays must be 0 or more seconds")
    defaults = BackoffSpec()
    return BackoffSpec(
        kind=kind,
        base=float(b.base) or defaults.base,
        factor=float(b.factor) or defaults.factor,
        cap=float(b.cap) or defaults.cap,
        jitter=bool(b.jitter),
        delays=delays,
    )


def _snake(name: str) -> str:
    """SendEmail -> send_email, HTTPRequest -> http_request (the Python SDK's default job names)."""
    out: list[str] = []
    for i, c in enumerate(name):
        before = name[i - 1] if i else ""
        after = name[i + 1] if i + 1 < len(name) else ""
        if c.isupper() and (before.islower() or before.isdigit() or (before.isupper() and after.islower())):
            out.append("_")
        out.append(c.lower())
    return "".join(out)


def _check_references(f: descriptor_pb2.FileDescriptorProto, schema: Schema) -> None:
    """Refuse field types the generators cannot express (well-known types such as Timestamp)."""
    for m in (m for m in schema.messages.values() if m.file == f.name):
        for fd in m.fields:
            for t in (fd.type, fd.map_key):
                if t is None or t.kind == "scalar":
                    continue
                if t.ref.startswith("google.protobuf."):
                    raise SchemaError(
                        f"{m.full_name}.{fd.name}: {t.ref} is not supported in job payloads; use a "
                        "scalar (e.g. int64 milliseconds for a time, a string for a duration)"
                    )
                if t.ref not in schema.messages and t.ref not in schema.enums:
                    raise SchemaError(f"{m.full_name}.{fd.name}: unknown type {t.ref}")
