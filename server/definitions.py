"""Job definitions the server knows: each job name's default queue and options, and the JSON Schema
of its arguments, registered by workers (REGISTER_JOBS) and applied to every enqueue of that name.

A definition is keyed by the job (handler) name. The latest registration of a name replaces its
definition; one identical to what the server holds writes nothing; every change is logged (a line
naming the job and what changed). Definitions live in the server's system log ``meta/definitions``
(records DEFINITIONS_SET and DEFINITION_DELETED, wal/FORMAT.md) and its snapshots, under the
engine's rule: commit, then apply. So they hold while no worker is connected and survive restarts.

An enqueue of a defined job takes, for each option it leaves unset (None; a priority of 0), the
definition's value, and only then the server's default (`Defaults.fill`). With ``validate`` the
payload (msgpack) is checked against the schema before anything is written (`Defaults.check`):
decoded, turned into JSON-shaped values the way msgspec does (bytes as base64, datetimes as RFC 3339
strings), and validated with jsonschema-rs (Draft 2020-12, no network: a remote ``$ref`` is refused
at registration). The error names the field, e.g. ``payload.to``.

Bounded: at most `MAX_DEFINITIONS` definitions, each schema at most `MAX_SCHEMA_BYTES` of JSON nested
at most `MAX_SCHEMA_DEPTH` deep, all schemas together at most `MAX_TOTAL_SCHEMA_BYTES`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import jsonschema_rs
import msgspec

from spitfire.wal.api import Recovery, Storage, StorageError

from . import records as rec
from . import validation as v
from .building import DEFAULT_OPTIONS, JobOptions
from .config import EngineConfig
from .errors import DefinitionNotFound, PayloadTooLarge, TooManyDefinitions, ValidationError
from .records import (
    DefinitionDeleted,
    DefinitionOptions,
    DefinitionSpec,
    DefinitionsSet,
    JobDefinition,
    RecordType,
)
from .system_log import SystemLog, read_snapshot, replay

__all__ = ["Defaults", "DefinitionOptions", "DefinitionSpec", "Definitions", "JobDefinition"]

log = logging.getLogger("spitfire.server.definitions")

#: Definitions one server holds at most (and one registration names at most).
MAX_DEFINITIONS = 10_000
#: Largest schema of one definition, in bytes of JSON.
MAX_SCHEMA_BYTES = 64 * 1024
#: Largest sum of every definition's schema, in bytes (a full listing still fits in one frame).
MAX_TOTAL_SCHEMA_BYTES = 16 * 2**20
#: Deepest nesting of arrays and objects in a schema (the validator recurses over it).
MAX_SCHEMA_DEPTH = 64
#: Longest "registered by" kept (a client's name), in characters.
MAX_REGISTERED_BY = 300
#: Longest validation message passed on (the validator's messages quote the offending value).
MAX_MESSAGE = 300
#: Records in the definitions log after which a snapshot is written.
SNAPSHOT_EVERY = 100
#: The system log's name (``<data-dir>/meta/definitions``).
LOG_NAME = "definitions"

_RECORDS = (RecordType.DEFINITIONS_SET, RecordType.DEFINITION_DELETED)
_decoders = {int(t): msgspec.msgpack.Decoder(rec.BODY_TYPES[t]) for t in _RECORDS}
_snapshot_decoder = msgspec.msgpack.Decoder(rec.DefinitionsSnapshot)
_encode = msgspec.msgpack.Encoder().encode
_json_decode = msgspec.json.decode
_EMPTY_MAP = b"\x80"
_NIL = b"\xc0"


def _depth(value: Any) -> int:
    """How deep arrays and objects nest in a decoded JSON value (iteratively: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_SCHEMA_DEPTH:
                stack.extend((x, depth + 1) for x in (item.values() if isinstance(item, dict) else item))
    return deepest


def _short(text: str) -> str:
    first = text.strip().splitlines()[0] if text.strip() else text
    return first if len(first) <= MAX_MESSAGE else first[: MAX_MESSAGE - 3] + "..."


def compile_schema(schema: str, field: str) -> tuple[str, jsonschema_rs.Validator]:
    """The canonical text (keys sorted) and the validator of a schema.

    :raises ValidationError: naming ``field``: not JSON, not an object or boolean, too deep, or not
        a valid Draft 2020-12 schema (a ``$ref`` outside the schema is refused: nothing is fetched).
    """
    try:
        value = _json_decode(schema)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ValidationError(field, f"is not JSON ({_short(str(exc))})") from None
    if not isinstance(value, dict | bool):
        raise ValidationError(field, "must be a JSON Schema: an object (or true/false)")
    if _depth(value) > MAX_SCHEMA_DEPTH:
        raise ValidationError(field, f"nests deeper than {MAX_SCHEMA_DEPTH} levels")
    try:
        validator = jsonschema_rs.Draft202012Validator(value, offline=True)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        why = _short(getattr(exc, "message", None) or str(exc))
        raise ValidationError(field, f"is not a valid JSON Schema: {why}") from None
    return msgspec.json.encode(value, order="sorted").decode(), validator


def _path(prefix: str, path: Sequence[str | int]) -> str:
    out = prefix
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


class Defaults:
    """What an enqueue of one defined job takes from its definition, built once per change."""

    __slots__ = ("backoff", "definition", "max_attempts", "options", "priority", "timeout", "validator")

    def __init__(self, definition: JobDefinition, validator: jsonschema_rs.Validator | None) -> None:
        self.definition = definition
        o = definition.spec.options
        self.priority = o.priority
        self.max_attempts = o.max_attempts
        self.backoff = o.backoff
        self.timeout = o.timeout
        #: The options of an enqueue that sets none (checked at registration: the engine's fast path
        #: takes them as they are).
        self.options = JobOptions(
            priority=o.priority, max_attempts=o.max_attempts, backoff=o.backoff, timeout=o.timeout
        )
        #: Checks payloads (None: the definition does not ask to validate).
        self.validator = validator

    def fill(self, options: JobOptions) -> JobOptions:
        """``options`` with each unset one (None; priority 0) taken from the definition."""
        if options is DEFAULT_OPTIONS:
            return self.options
        o = options
        priority = o.priority or self.priority
        attempts = self.max_attempts if o.max_attempts is None else o.max_attempts
        backoff = self.backoff if o.backoff is None else o.backoff
        timeout = self.timeout if o.timeout is None else o.timeout
        if (priority, attempts, backoff, timeout) == (o.priority, o.max_attempts, o.backoff, o.timeout):
            return o
        return msgspec.structs.replace(
            o, priority=priority, max_attempts=attempts, backoff=backoff, timeout=timeout
        )

    def batch(self, payloads: Sequence[object], options: JobOptions, limit: int) -> JobOptions:
        """`check` each payload of a batch (naming ``payloads[i]``), then `fill` ``options``."""
        if self.validator is not None:
            for i, payload in enumerate(payloads):
                self.check(payload, f"payloads[{i}]", limit)
        return self.fill(options)

    def check(self, payload: object, field: str, limit: int) -> None:
        """Check a payload against the schema (when the definition validates).

        :raises ValidationError: naming the field at fault, e.g. ``payload.to`` or ``payloads[2].to``.
        """
        validator = self.validator
        if validator is None or not isinstance(payload, bytes) or len(payload) > limit:
            return  # not bytes, or too large: the builder refuses it with its own error
        data = _EMPTY_MAP if payload == _NIL else payload  # no payload: a call without arguments
        try:
            # JSON's view of the payload, as msgspec encodes Python values to JSON: bytes as base64,
            # datetimes as RFC 3339 strings, map keys as strings.
            value = msgspec.to_builtins(msgspec.msgpack.decode(data), str_keys=True)
            error = next(iter(validator.iter_errors(value)), None)
        except (msgspec.DecodeError, TypeError, ValueError, RecursionError) as exc:
            why = _short(str(exc))
            raise ValidationError(field, f"is not msgpack the schema can check ({why})") from None
        if error is None:
            return
        path = list(error.instance_path)
        if error.kind.name == "required":
            path.append(str(error.kind.as_dict().get("property", "")))
        job = self.definition.spec.name
        raise ValidationError(_path(field, path), f"{_short(error.message)} (the schema of job {job!r})")


class Definitions:
    """Every job definition of one server and their log. Single-threaded: the event loop's.

    `register` and `delete` validate (raising a typed error and changing nothing), append a record,
    wait for its commit, and only then apply it; `defaults` is what enqueues read.
    """

    def __init__(
        self,
        storage: Storage,
        config: EngineConfig,
        *,
        on_failure: Callable[[StorageError], None] | None = None,
    ) -> None:
        self.config = config
        #: Definitions by job name.
        self.items: dict[str, JobDefinition] = {}
        #: What an enqueue of each defined name takes (the same dict object for the engine's lifetime).
        self.defaults: dict[str, Defaults] = {}
        #: Bytes of every definition's schema together.
        self.schema_bytes = 0
        self.log = SystemLog(storage, LOG_NAME, self._apply, on_failure=on_failure)
        self._lock = asyncio.Lock()
        #: Validators compiled by a registration waiting for its commit, by name (`_apply` takes them).
        self._compiled: dict[str, jsonschema_rs.Validator] = {}

    # -- life cycle -------------------------------------------------------------------------------------

    def open(self) -> None:
        """Recover the definitions from their log (snapshot, then records)."""
        self.log.open(self._recover)

    def _recover(self, recovery: Recovery, where: str) -> int:
        version = rec.DEFINITIONS_SNAPSHOT_VERSION
        snap = read_snapshot(recovery, _snapshot_decoder, version, "the job definitions snapshot")
        if snap is not None:
            for d in snap.definitions:
                self._put(d)
        start = recovery.snapshot_lsn if snap is not None else 0
        return replay(recovery, where, _decoders, self._apply, "job definitions", start)

    # -- apply (only ever a durable record) -------------------------------------------------------------

    def _apply(self, rtype: int, body: Any) -> None:
        if rtype == RecordType.DEFINITIONS_SET:
            for d in body.definitions:
                self._put(d)
        elif rtype == RecordType.DEFINITION_DELETED:
            old = self.items.pop(body.name, None)
            self.defaults.pop(body.name, None)
            if old is not None:
                self.schema_bytes -= len(old.spec.schema or "")

    def _put(self, d: JobDefinition) -> None:
        name = d.spec.name
        old = self.items.get(name)
        if old is not None:
            self.schema_bytes -= len(old.spec.schema or "")
        self.items[name] = d
        self.schema_bytes += len(d.spec.schema or "")
        validator = self._compiled.pop(name, None)
        if d.spec.validate and validator is None and d.spec.schema is not None:
            try:  # recovery: compiled again (a registration hands over the one it checked)
                validator = compile_schema(d.spec.schema, "schema")[1]
            except ValidationError as exc:  # a schema this build no longer accepts: keep, do not check
                log.error("job definition %r: %s; its payloads are not validated", name, exc)
        self.defaults[name] = Defaults(d, validator if d.spec.validate else None)

    # -- commands ---------------------------------------------------------------------------------------

    def check(self, spec: object, where: str) -> tuple[DefinitionSpec, jsonschema_rs.Validator | None]:
        """``spec`` checked (its schema in canonical form) and its schema's validator, or a
        `ValidationError` naming the field under ``where`` (e.g. ``definitions[2].max_attempts``)."""
        if not isinstance(spec, DefinitionSpec):
            raise ValidationError(where, "must be a job definition")
        c = self.config
        o = spec.options
        if not isinstance(o, DefinitionOptions):
            raise ValidationError(f"{where}.options", "must be the definition's options")
        with _under(where):
            v.check_name("name", spec.name, c)
            if spec.queue is not None:
                v.check_queue(spec.queue, c)
            v.check_priority(o.priority)
            if o.max_attempts is not None:
                v.check_max_attempts(o.max_attempts)
            v.check_backoff(o.backoff)
            if o.timeout is not None:
                v.check_timeout("timeout", o.timeout, c)
        if not isinstance(spec.validate, bool):
            raise ValidationError(f"{where}.validate", "must be true or false")
        schema, validator = spec.schema, None
        if schema is not None:
            if not isinstance(schema, str):
                raise ValidationError(f"{where}.schema", "must be a JSON Schema as JSON text")
            size = len(schema.encode("utf-8", "surrogatepass"))
            if size > MAX_SCHEMA_BYTES:
                raise PayloadTooLarge(size, MAX_SCHEMA_BYTES, f"{where}.schema")
            schema, validator = compile_schema(schema, f"{where}.schema")
            if len(schema) > MAX_SCHEMA_BYTES:
                raise PayloadTooLarge(len(schema), MAX_SCHEMA_BYTES, f"{where}.schema")
        elif spec.validate:
            raise ValidationError(f"{where}.validate", "needs a schema to validate payloads against")
        if schema != spec.schema:
            spec = msgspec.structs.replace(spec, schema=schema)
        return spec, validator

    async def register(
        self, specs: Sequence[DefinitionSpec], registered_by: str, now: float
    ) -> list[tuple[JobDefinition, bool]]:
        """Create or replace the definitions of the jobs ``specs`` name (the others stay as they
        are), all in one durable record; returns each as the server now holds it, and whether it
        changed. Identical ones are not written (when none changed, nothing is).

        :raises ValidationError: naming the field (``definitions[i].<field>``); nothing changes.
        :raises PayloadTooLarge: a schema over `MAX_SCHEMA_BYTES`. :raises TooManyDefinitions: past
            `MAX_DEFINITIONS` definitions or `MAX_TOTAL_SCHEMA_BYTES` of schemas.
        """
        if isinstance(specs, str | bytes) or not isinstance(specs, Sequence):
            raise ValidationError("definitions", "must be a list of job definitions")
        if len(specs) > MAX_DEFINITIONS:
            raise ValidationError("definitions", f"must hold at most {MAX_DEFINITIONS} definitions")
        by = registered_by[:MAX_REGISTERED_BY] if isinstance(registered_by, str) else ""
        checked: dict[str, tuple[DefinitionSpec, jsonschema_rs.Validator | None]] = {}
        for i, raw in enumerate(specs):
            spec, validator = self.check(raw, f"definitions[{i}]")
            if spec.name in checked:
                raise ValidationError(f"definitions[{i}].name", f"job {spec.name!r} is defined twice")
            checked[spec.name] = (spec, validator)
        async with self._lock:  # one registration at a time: each is checked against the last
            changed = [
                (spec, validator)
                for spec, validator in checked.values()
                if (old := self.items.get(spec.name)) is None or old.spec != spec
            ]
            if changed:
                self._check_room([spec for spec, _ in changed])
                before = {spec.name: self.items.get(spec.name) for spec, _ in changed}
                made = [
                    JobDefinition(spec, by, now if (b := before[spec.name]) is None else b.created_at, now)
                    for spec, _ in changed
                ]
                self._compiled = {spec.name: val for spec, val in changed if val is not None}
                try:
                    await self.log.commit(RecordType.DEFINITIONS_SET, DefinitionsSet(made))
                finally:
                    self._compiled = {}
                for d in made:
                    log.info("%s", describe_change(d, before[d.spec.name]))
        names = {spec.name for spec, _ in changed}
        return [(self.items[name], name in names) for name in checked]

    def _check_room(self, changed: list[DefinitionSpec]) -> None:
        """:raises TooManyDefinitions: ``changed`` would pass a limit."""
        items = self.items
        new = sum(1 for spec in changed if spec.name not in items)
        if len(items) + new > MAX_DEFINITIONS:
            raise TooManyDefinitions(
                f"the server already has {len(items)} job definitions and at most {MAX_DEFINITIONS}: "
                f"this registration adds {new}; delete unused ones (DELETE /api/job-definitions/NAME)"
            )
        size = self.schema_bytes
        for spec in changed:
            old = items.get(spec.name)
            size += len(spec.schema or "") - (len(old.spec.schema or "") if old is not None else 0)
        if size > MAX_TOTAL_SCHEMA_BYTES:
            raise TooManyDefinitions(
                f"the job definitions' schemas would take {size} bytes, over the server's limit of "
                f"{MAX_TOTAL_SCHEMA_BYTES}; delete unused definitions or register smaller schemas"
            )

    def get(self, name: str) -> JobDefinition:
        """The definition of job ``name``. :raises DefinitionNotFound:"""
        d = self.items.get(name) if isinstance(name, str) else None
        if d is None:
            raise DefinitionNotFound(str(name))
        return d

    def all(self) -> list[JobDefinition]:
        """Every definition, by job name."""
        return [self.items[n] for n in sorted(self.items)]

    async def delete(self, name: str, now: float) -> JobDefinition:
        """Forget the definition of job ``name`` (its jobs keep their options); returns it as it was.

        :raises DefinitionNotFound:
        """
        async with self._lock:
            d = self.get(name)
            await self.log.commit(RecordType.DEFINITION_DELETED, DefinitionDeleted(name, now))
        log.info("job definition %r deleted", name)
        return d

    # -- snapshots --------------------------------------------------------------------------------------

    async def maybe_snapshot(self) -> None:
        """Write a snapshot once `SNAPSHOT_EVERY` records follow the last one (the engine's tick)."""
        if self.log.unsnapshotted >= SNAPSHOT_EVERY:
            await self.snapshot()

    async def snapshot(self) -> int:
        """Write a snapshot of every definition at the applied LSN; returns that LSN."""

        def chunk() -> bytes:
            everything = list(self.items.values())
            return _encode(rec.DefinitionsSnapshot(rec.DEFINITIONS_SNAPSHOT_VERSION, everything))

        return await self.log.snapshot(chunk)


class _under(contextlib.AbstractContextManager[None]):
    """Re-raise a `ValidationError` with its field under ``prefix`` (``definitions[2].`` + field)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, ValidationError) and not isinstance(exc, PayloadTooLarge):
            raise ValidationError(f"{self.prefix}.{exc.field}", str(exc).partition(": ")[2]) from None


def _summary(spec: DefinitionSpec) -> dict[str, str]:
    """The fields of a definition as a log line shows them ("default": the server's applies)."""
    o = spec.options
    return {
        "queue": repr(spec.queue),
        "priority": str(o.priority),
        "max_attempts": "default" if o.max_attempts is None else str(o.max_attempts),
        "backoff": "default" if o.backoff is None else o.backoff.kind.name.lower(),
        "timeout": "default" if o.timeout is None else f"{o.timeout:g}s",
        "schema": "none" if spec.schema is None else f"{len(spec.schema)} bytes",
        "validate": "on" if spec.validate else "off",
    }


def describe_change(d: JobDefinition, old: JobDefinition | None) -> str:
    """One log line naming the job and what changed (or, for a new one, what it holds)."""
    new = _summary(d.spec)
    if old is None:
        fields = ", ".join(f"{k} {v}" for k, v in new.items())
        return f"job definition {d.spec.name!r} registered by {d.registered_by or 'unknown'}: {fields}"
    before = _summary(old.spec)
    changes = [f"{k} {before[k]} -> {new[k]}" for k in new if new[k] != before[k]]
    if old.spec.schema != d.spec.schema and before["schema"] == new["schema"]:
        changes.append("schema changed")
    if old.spec.options.backoff != d.spec.options.backoff and before["backoff"] == new["backoff"]:
        changes.append("backoff changed")
    return f"job definition {d.spec.name!r} changed by {d.registered_by or 'unknown'}: {', '.join(changes)}"
