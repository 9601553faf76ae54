"""The membership rules and the configuration a journal holds, without a cluster: what a change may
be, the exact bytes of a configuration entry, and how `Membership` follows a journal whose entries
a new leader replaces."""

from __future__ import annotations

import msgspec
import pytest

from spitfire.raft import LeaderInfo
from spitfire.raft.membership import (
    CONFIG_COMMAND,
    Configuration,
    Membership,
    MembershipError,
    check_change,
    decode_configuration,
    encode_configuration,
)

ABC = {"a": "127.0.0.1:7901", "b": "127.0.0.1:7902", "c": "127.0.0.1:7903"}


def _refused(op: str, node: str, raft: str | None, members: dict[str, str] = ABC) -> MembershipError:
    with pytest.raises(MembershipError) as info:
        check_change(members, op, node, raft)
    return info.value


def test_a_change_adds_or_removes_exactly_one_member() -> None:
    added = check_change(ABC, "add", "d", "127.0.0.1:7904")
    assert added == Configuration({**ABC, "d": "127.0.0.1:7904"}, "add", "d")
    removed = check_change(ABC, "remove", "b", None)
    assert removed.members == {"a": ABC["a"], "c": ABC["c"]} and (removed.op, removed.node) == ("remove", "b")
    assert check_change(ABC, "remove", "b", ABC["b"]).members == removed.members  # the address may be named


@pytest.mark.parametrize(
    ("op", "node", "raft", "code", "field"),
    [
        ("grow", "d", "127.0.0.1:7904", "INVALID_ARGUMENT", "op"),
        ("", "d", "127.0.0.1:7904", "INVALID_ARGUMENT", "op"),
        ("add", "", "127.0.0.1:7904", "INVALID_ARGUMENT", "id"),
        ("add", "d,e", "127.0.0.1:7904", "INVALID_ARGUMENT", "id"),
        ("add", "d=x", "127.0.0.1:7904", "INVALID_ARGUMENT", "id"),
        ("add", "x" * 65, "127.0.0.1:7904", "INVALID_ARGUMENT", "id"),
        ("add", "-d", "127.0.0.1:7904", "INVALID_ARGUMENT", "id"),
        ("add", "d", None, "INVALID_ARGUMENT", "raft"),
        ("add", "d", "127.0.0.1", "INVALID_ARGUMENT", "raft"),
        ("add", "d", "127.0.0.1:0", "INVALID_ARGUMENT", "raft"),
        ("add", "d", "127.0.0.1:65536", "INVALID_ARGUMENT", "raft"),
        ("add", "d", ":7904", "INVALID_ARGUMENT", "raft"),
        ("add", "d", "host name:7904", "INVALID_ARGUMENT", "raft"),
        ("add", "d", "h" * 300 + ":1", "INVALID_ARGUMENT", "raft"),
        ("add", "b", "127.0.0.1:7904", "CONFLICT", "id"),
        ("add", "d", "127.0.0.1:7902", "CONFLICT", "raft"),
        ("remove", "z", None, "NOT_FOUND", "id"),
        ("remove", "b", "127.0.0.1:7999", "INVALID_ARGUMENT", "raft"),
    ],
)
def test_a_bad_change_is_refused_naming_the_field(
    op: str, node: str, raft: str | None, code: str, field: str
) -> None:
    error = _refused(op, node, raft)
    assert (error.code, error.field) == (code, field), error.message
    assert error.message.startswith(field)


def test_the_only_member_cannot_be_removed() -> None:
    error = _refused("remove", "a", None, {"a": ABC["a"]})
    assert error.code == "CONFLICT" and "only member" in error.message


def test_a_configuration_entry_has_pinned_bytes() -> None:
    # pysyncobj puts the type byte (245) before these bytes; wal/FORMAT.md documents the layout.
    config = Configuration({"a": "127.0.0.1:7901", "d": "127.0.0.1:7904"}, "add", "d")
    body = encode_configuration(config)
    assert body.hex() == (
        "93"  # array of 3: members, op, node
        "82"
        "a161"
        "ae3132372e302e302e313a37393031"
        "a164"
        "ae3132372e302e302e313a37393034"
        "a3616464"
        "a164"
    )
    assert decode_configuration(bytes([CONFIG_COMMAND]) + body) == config
    assert decode_configuration(b"\x00" + body) is None  # a batch of records, not a configuration
    with pytest.raises(msgspec.DecodeError):
        decode_configuration(bytes([CONFIG_COMMAND]) + b"\xc1")


def test_leader_info_reads_entries_of_older_and_newer_builds() -> None:
    old = msgspec.msgpack.encode(["a", "127.0.0.1:7878", "http://127.0.0.1:7880"])
    assert msgspec.msgpack.decode(old, type=LeaderInfo) == LeaderInfo(
        "a", "127.0.0.1:7878", "http://127.0.0.1:7880", None, None
    )

    class Older(msgspec.Struct, array_like=True, frozen=True):
        node: str
        listen: str
        http: str

    new = msgspec.msgpack.encode(
        LeaderInfo("a", "127.0.0.1:7878", "http://127.0.0.1:7880", "http://127.0.0.1:8080", "127.0.0.1:6380")
    )
    assert msgspec.msgpack.decode(new, type=Older) == Older("a", "127.0.0.1:7878", "http://127.0.0.1:7880")


def _entry(index: int, term: int, config: Configuration | None = None) -> tuple[bytes, int, int]:
    command = b"\x00batch" if config is None else bytes([CONFIG_COMMAND]) + encode_configuration(config)
    return (command, index, term)


def test_membership_follows_appends_and_replacements() -> None:
    with_d = Configuration({**ABC, "d": "127.0.0.1:7904"}, "add", "d")
    without_b = Configuration({"a": ABC["a"], "c": ABC["c"], "d": "127.0.0.1:7904"}, "remove", "b")
    journal = [_entry(1, 0), _entry(2, 1), _entry(3, 1, with_d), _entry(4, 1)]
    m = Membership(ABC)
    assert m.current == ABC and m.index == 0
    assert m.refresh(journal) is True
    assert m.current == with_d.members and m.index == 3 and m.pending(2) and not m.pending(3)
    assert m.refresh(journal) is False  # nothing new
    journal += [_entry(5, 1), _entry(6, 1, without_b)]
    assert m.refresh(journal) is True and m.index == 6 and m.current == without_b.members
    assert m.at(4) == with_d.members and m.at(2) == ABC
    # A new leader (term 2) never had entry 6: its entry 6 replaces it, and the removal is undone.
    journal[5:] = [_entry(6, 2)]
    assert m.refresh(journal) is True and m.index == 3 and m.current == with_d.members
    # ... and a replacement that reaches below the first change undoes both.
    journal[2:] = [_entry(3, 3), _entry(4, 3)]
    assert m.refresh(journal) is True and m.index == 0 and m.current == ABC
    journal.append(_entry(5, 3, without_b))
    assert m.refresh(journal) is True and m.index == 5 and m.current == without_b.members


def test_membership_finds_the_replaced_entries_in_a_long_log_without_rescanning_it() -> None:
    with_d = Configuration({**ABC, "d": "127.0.0.1:7904"}, "add", "d")

    class Counting(list[tuple[bytes, int, int]]):
        reads = 0

        def __getitem__(self, item):  # type: ignore[no-untyped-def, override]
            Counting.reads += 1
            return super().__getitem__(item)

    journal = Counting([_entry(1, 0), _entry(2, 1, with_d)] + [_entry(i, 1) for i in range(3, 100_001)])
    m = Membership(ABC)
    m.refresh(journal)
    assert m.index == 2
    del journal[99_990:]
    journal.append(_entry(99_991, 2))
    Counting.reads = 0
    assert m.refresh(journal) is False and m.index == 2
    assert Counting.reads < 100  # a binary search and the new entry, not 100,000 entries
    del journal[1:]
    journal += [_entry(2, 4), _entry(3, 4)]
    assert m.refresh(journal) is True and m.index == 0


def test_membership_seeded_from_a_snapshot() -> None:
    m = Membership(ABC)
    m.seed({"a": ABC["a"]}, 50, 3)
    assert m.current == {"a": ABC["a"]} and m.index == 50
    journal = [_entry(50, 3), _entry(51, 3)]
    assert m.refresh(journal) is False and m.current == {"a": ABC["a"]}
