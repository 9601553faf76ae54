"""``spitfire schemas check OLD NEW``: is NEW a compatible evolution of OLD?

Payloads are msgpack maps keyed by field *name*, and a job's messages live on in queues while
producers and workers are upgraded one by one, so NEW must read what OLD wrote and the other way
round. The proto3 rules apply (no reused field numbers, no type changes, removed fields
reserved), and since names are on the wire, a renamed field is a breaking change too, and so is a
removed field whose name is not reserved. A removed message or enum, a job whose name or queue
changes, and an enum value removed without reserving it are breaking as well.
"""

from __future__ import annotations

from .model import EnumSpec, FieldSpec, MessageSpec, Schema

__all__ = ["breaking_changes"]


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """One line per breaking change from ``old`` to ``new``, naming the message and field and what
    to do instead; empty when ``new`` is compatible."""
    out: list[str] = []
    for name, m in old.messages.items():
        n = new.messages.get(name)
        if n is None:
            out.append(f"{name}: message removed; keep it (payloads of it may still be queued)")
        else:
            out += _message(m, n)
    for name, e in old.enums.items():
        ne = new.enums.get(name)
        if ne is None:
            out.append(f"{name}: enum removed; keep it (payloads may still carry its values)")
        else:
            out += _enum(e, ne)
    return out


def _message(old: MessageSpec, new: MessageSpec) -> list[str]:
    out = _job(old, new)
    name = old.full_name
    new_by_number = {f.number: f for f in new.fields}
    new_by_name = {f.name: f for f in new.fields}
    for f in old.fields:
        n = new_by_number.get(f.number)
        if n is None:
            out += _removed(name, f, new, new_by_name.get(f.name))
            continue
        if n.name != f.name:
            out.append(
                f"{name}: field {f.name!r} ({f.number}) renamed to {n.name!r}; field names are on the wire: "
                f"keep {f.name!r}, or add a new field and reserve {f.number} and {f.name!r}"
            )
        if n.describe() != f.describe():
            out.append(
                f"{name}: field {f.name!r} ({f.number}) changed type from {f.describe()} to "
                f"{n.describe()}; add a new field instead and reserve this one"
            )
    old_numbers = {f.number for f in old.fields}
    for n in new.fields:
        if n.number in old_numbers:
            continue
        if old.reserves_number(n.number):
            out.append(f"{name}: field {n.name!r} reuses reserved number {n.number}; pick an unused number")
        if n.name in old.reserved_names:
            out.append(f"{name}: field {n.name!r} reuses a reserved name; pick another name")
    return out


def _removed(name: str, f: FieldSpec, new: MessageSpec, same_name: FieldSpec | None) -> list[str]:
    """A field of OLD whose number NEW no longer has."""
    out = []
    if same_name is not None:
        out.append(
            f"{name}: field {f.name!r} moved from number {f.number} to {same_name.number}; keep its "
            "number (protobuf readers go by number)"
        )
        return out
    if not new.reserves_number(f.number):
        out.append(
            f"{name}: field {f.name!r} ({f.number}) removed without reserving it: add `reserved {f.number};`"
        )
    if f.name not in new.reserved_names:
        out.append(
            f"{name}: field {f.name!r} ({f.number}) removed without reserving its name: "
            f'add `reserved "{f.name}";`'
        )
    return out


def _job(old: MessageSpec, new: MessageSpec) -> list[str]:
    name = old.full_name
    if old.job is None:
        return []
    if new.job is None:
        return [f"{name}: no longer declares job {old.job.name!r}; keep its (spitfire.*) options"]
    out = []
    if new.job.name != old.job.name:
        out.append(
            f"{name}: job name changed from {old.job.name!r} to {new.job.name!r}; queued jobs and "
            "workers know the old name: keep it with option (spitfire.job)"
        )
    if new.job.queue != old.job.queue:
        out.append(
            f"{name}: queue changed from {old.job.queue!r} to {new.job.queue!r}; workers of the old "
            "queue would stop getting the job: declare a new message for the new queue"
        )
    return out


def _enum(old: EnumSpec, new: EnumSpec) -> list[str]:
    out = []
    name = old.full_name
    new_numbers = {number for _, number in new.values}
    old_numbers = {number for _, number in old.values}
    for value, number in old.values:
        reserved = any(lo <= number <= hi for lo, hi in new.reserved_numbers)
        if number not in new_numbers and not reserved:
            out.append(
                f"{name}: value {value} ({number}) removed without reserving it: add `reserved {number};`"
            )
    for value, number in new.values:
        if number not in old_numbers and any(lo <= number <= hi for lo, hi in old.reserved_numbers):
            out.append(f"{name}: value {value} reuses reserved number {number}; pick an unused number")
    return out
