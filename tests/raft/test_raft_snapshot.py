"""Raft snapshots without processes: the replicated state a member applies, the engine's snapshots
travelling through the Raft log, a Raft snapshot written by the WAL and recovered from (the newest,
or the previous one when the newest is damaged), and the journal compacted after it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest
from pysyncobj import pickle as syncobj_pickle  # type: ignore[import-untyped]

from spitfire.raft import Batch, LeaderInfo, NotLeaderError, ReplicatedStorage
from spitfire.raft.batch import DROPPED, SnapshotPart, encode_batch
from spitfire.raft.compaction import CompactingJournal, Compactor
from spitfire.raft.journal import JOURNAL_LOG
from spitfire.raft.node import Commit
from spitfire.raft.snapshot import (
    PART_ABORT,
    PART_CHUNK,
    PART_END,
    LogHead,
    ReplicatedState,
    SnapshotMeta,
    decode_raft_snapshot,
    encode_raft_snapshot,
)
from spitfire.server.config import EngineConfig
from spitfire.server.engine import Engine
from spitfire.wal import FileStorage
from spitfire.wal.api import Durability
from spitfire.wal.snapshot import list_snapshots


def command(batch: Batch) -> bytes:
    """A batch as pysyncobj's journal holds it (a call of the node's replicated method)."""
    return b"\x00" + syncobj_pickle.dumps((0, (encode_batch(batch),), None))


def test_the_state_keeps_each_logs_snapshot_and_the_records_after_it() -> None:
    state = ReplicatedState()
    state.apply(1, b"\x01")  # pysyncobj's no-op
    state.apply(2, command(Batch([("a", 1, 1, b"r1"), ("a", 2, 1, b"r2"), ("b", 1, 1, b"x")])))
    # The leader's engine snapshots "a" at LSN 2 while LSN 3 commits: chunks, then the end.
    parts = [SnapshotPart("a", 2, PART_CHUNK, b"c1"), SnapshotPart("a", 2, PART_CHUNK, b"c2")]
    state.apply(3, command(Batch([("a", 3, 1, b"r3")], None, parts)))
    assert state.logs["a"].snapshot_lsn == 0  # not before its end is applied
    state.apply(
        4, command(Batch([], LeaderInfo("n", "h:1", "http://h:2"), [SnapshotPart("a", 2, PART_END, count=2)]))
    )
    a = state.logs["a"]
    assert (a.snapshot_lsn, a.chunks, [r[1] for r in a.records]) == (2, [b"c1", b"c2"], [3])
    # An abandoned snapshot changes nothing; a dropped log is forgotten.
    state.apply(
        5,
        command(
            Batch(
                [("b", 0, DROPPED, b"")],
                None,
                [SnapshotPart("a", 3, PART_CHUNK, b"z"), SnapshotPart("a", 3, PART_ABORT)],
            )
        ),
    )
    assert "b" not in state.logs and state.logs["a"].pending is None and state.logs["a"].snapshot_lsn == 2
    # An end whose chunks this member did not all see (they were before its Raft snapshot) is ignored.
    state.apply(
        6,
        command(
            Batch([], None, [SnapshotPart("a", 3, PART_CHUNK, b"z"), SnapshotPart("a", 3, PART_END, count=2)])
        ),
    )
    assert state.logs["a"].snapshot_lsn == 2
    assert state.index == 6 and state.addresses["n"].listen == "h:1"
    recovery = state.recovered()["a"]
    assert recovery.snapshot_lsn == 2 and list(recovery.snapshot_chunks) == [b"c1", b"c2"]
    assert [(r.lsn, r.body) for r in recovery.records] == [(3, b"r3")]


def test_a_raft_snapshot_round_trips_the_state() -> None:
    state = ReplicatedState()
    records = [("q", lsn, 1, bytes([lsn % 256]) * 10) for lsn in range(1, 10_001)]
    state.apply(1, command(Batch([*records, ("meta/schedules", 1, 20, b"s")])))
    meta = SnapshotMeta(1, 1, 3, 2, b"\x01", 4, "a", [("a", "h:1")], [LeaderInfo("a", "h:1", "u")], 2)
    chunks: list[bytes] = []

    async def encode() -> None:
        await encode_raft_snapshot(meta, state.capture(), chunks.append)

    asyncio.run(encode())
    meta2, again = decode_raft_snapshot(chunks)
    assert meta2 == meta
    assert again.logs["q"].records == records and again.logs["meta/schedules"].records[0][2] == 20


def test_engine_snapshots_travel_through_the_raft_log_and_a_new_engine_opens_over_them() -> None:
    async def body() -> None:
        state = ReplicatedState()

        def propose(batch: Batch, done: Commit) -> None:  # a healthy majority commits at once
            state.apply(state.index + 1, command(batch))
            asyncio.get_running_loop().call_soon(done, True, None)

        engine = Engine(ReplicatedStorage(propose), EngineConfig(snapshot_every=50))  # type: ignore[arg-type]
        await engine.open(now=1000.0)
        ids = [(await engine.enqueue("emails", "send", b"\x80", now=1000.0))[0].id for _ in range(120)]
        await engine.snapshot("emails")
        kept = [(await engine.enqueue("emails", "send", b"\x81", now=1000.0))[0].id for _ in range(3)]
        await engine.close()
        log = state.logs["emails"]
        assert log.snapshot_lsn >= 120 and len(log.records) == 3  # the snapshot's records are dropped
        again = Engine(ReplicatedStorage(propose, state.recovered()))  # type: ignore[arg-type]
        await again.open(now=1001.0)
        assert all(again.table.get(i) is not None for i in ids + kept)
        await again.close()

    asyncio.run(body())


class FakeNode:
    """What a `Compactor` asks of its node: the index known safe, and the members."""

    def __init__(self) -> None:
        self.safe_index = 0
        self.config = type("Config", (), {"members": {"a": "127.0.0.1:1"}})()

    def members_at(self, index: int) -> dict[str, str]:
        return dict(self.config.members)


async def _open(data: Path) -> tuple[FileStorage, CompactingJournal, Compactor, FakeNode]:
    storage = FileStorage(data)
    log_, recovery = storage.open_system_log(JOURNAL_LOG, Durability.GROUP)
    journal = CompactingJournal(log_, recovery)
    compactor = Compactor(journal, data, every=100)
    node = FakeNode()
    compactor.attach(node)  # type: ignore[arg-type]
    return storage, journal, compactor, node


async def _grow(journal: CompactingJournal, compactor: Compactor, node: Any, entries: int) -> None:
    """Append ``entries`` entries of 10 records each, commit and apply them."""
    last = journal.last_index
    queue_lsn = compactor.state.logs["q"].last_lsn if "q" in compactor.state.logs else 0
    if last == 0:
        journal.add(b"\x01", 1, 1)
        last = 1
    for i in range(entries):
        records = [("q", queue_lsn + k + 1, 1, b"job %d" % (queue_lsn + k + 1)) for k in range(10)]
        queue_lsn += 10
        journal.add(command(Batch(records)), last + i + 1, 1)
    await journal.flush()
    node.safe_index = journal.last_index
    compactor.advance()


def test_a_snapshot_compacts_the_journal_and_recovery_starts_from_it(tmp_path: Path) -> None:
    async def body() -> None:
        storage, journal, compactor, node = await _open(tmp_path)
        await _grow(journal, compactor, node, 30)
        first = await compactor.snapshot()
        assert first == 31 and journal.first_index == 30 and journal.snapshot_index == 31
        await _grow(journal, compactor, node, 5)
        await storage.close()
        assert (tmp_path / "meta" / "raft-transfer.snap").is_file()

        storage, journal, compactor, node = await _open(tmp_path)
        assert journal.snapshot_index == 31 and journal.first_index == 30 and journal.last_index == 36
        assert compactor.state.index == 31  # the snapshot; entries after it apply once known safe
        node.safe_index = 36
        compactor.advance()
        assert [r[1] for r in compactor.state.logs["q"].records] == list(range(1, 351))
        await storage.close()

    asyncio.run(body())


def test_a_flipped_byte_in_the_newest_snapshot_falls_back_to_the_previous_one(tmp_path: Path) -> None:
    async def body() -> None:
        storage, journal, compactor, node = await _open(tmp_path)
        for _ in range(3):
            await _grow(journal, compactor, node, 20)
            await compactor.snapshot()
        await _grow(journal, compactor, node, 4)
        expected = list(compactor.state.logs["q"].records)
        await storage.close()
        snaps = list_snapshots(tmp_path / "meta" / "raft" / "snapshots")
        assert len(snaps) == 2  # the newest two are kept
        newest = snaps[-1][1]
        data = bytearray(newest.read_bytes())
        data[len(data) // 2] ^= 0x40
        newest.write_bytes(bytes(data))

        storage, journal, compactor, node = await _open(tmp_path)
        assert journal.snapshot_lsn == snaps[0][0]  # the previous one
        assert newest.with_name(newest.name + ".broken").exists()
        node.safe_index = journal.last_index
        compactor.advance()
        assert compactor.state.logs["q"].records == expected
        await storage.close()

    asyncio.run(body())


def test_a_snapshot_cut_short_by_a_crash_is_ignored(tmp_path: Path) -> None:
    async def body() -> None:
        storage, journal, compactor, node = await _open(tmp_path)
        await _grow(journal, compactor, node, 20)
        await compactor.snapshot()
        await _grow(journal, compactor, node, 20)
        expected = list(compactor.state.logs["q"].records)
        await storage.close()
        # What a SIGKILL during the next snapshot's write leaves: a partial ``.tmp``.
        snaps = tmp_path / "meta" / "raft" / "snapshots"
        newest = list_snapshots(snaps)[-1][1]
        (snaps / "snap-00000000000000099999.snap.tmp").write_bytes(newest.read_bytes()[:100])
        storage, journal, compactor, node = await _open(tmp_path)
        assert not list(snaps.glob("*.tmp"))
        node.safe_index = journal.last_index
        compactor.advance()
        assert compactor.state.logs["q"].records == expected
        await storage.close()

    asyncio.run(body())


def test_an_installed_snapshot_replaces_the_journal_and_survives_a_restart(tmp_path: Path) -> None:
    async def body() -> None:
        leader_dir, follower_dir = tmp_path / "leader", tmp_path / "follower"
        storage, journal, compactor, node = await _open(leader_dir)
        await _grow(journal, compactor, node, 40)
        await compactor.snapshot()
        expected = list(compactor.state.logs["q"].records)
        await storage.close()

        fstorage, fjournal, fcompactor, fnode = await _open(follower_dir)
        fjournal.add(b"\x01", 1, 1)
        fjournal.record_term(3, "a")
        received = follower_dir / "meta" / "raft-transfer.snap"
        received.write_bytes((leader_dir / "meta" / "raft-transfer.snap").read_bytes())
        first, last = fcompactor.install(received)
        assert (first[1], last[1]) == (40, 41)
        # pysyncobj then clears the journal and adds both entries: held already, nothing changes.
        fjournal.clear()
        fjournal.add(*first)
        fjournal.add(*last)
        assert (fjournal.first_index, fjournal.last_index, len(fjournal)) == (40, 41, 2)
        assert fcompactor.state.logs["q"].records == expected
        fjournal.add(command(Batch([("q", 411, 1, b"after")])), 42, 3)
        await fstorage.close()

        fstorage, fjournal, fcompactor, fnode = await _open(follower_dir)
        assert (fjournal.term, fjournal.voted_for) == (3, "a")  # its own, not the leader's
        assert (fjournal.snapshot_index, fjournal.last_index) == (41, 42)
        fnode.safe_index = 42
        fcompactor.advance()
        assert fcompactor.state.logs["q"].records == [*expected, ("q", 411, 1, b"after")]
        await fstorage.close()

    asyncio.run(body())


def test_a_damaged_transfer_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    async def body() -> None:
        storage, journal, compactor, node = await _open(tmp_path / "l")
        await _grow(journal, compactor, node, 10)
        await compactor.snapshot()
        await storage.close()
        fstorage, fjournal, fcompactor, _ = await _open(tmp_path / "f")
        fjournal.add(b"\x01", 1, 1)
        data = bytearray((tmp_path / "l" / "meta" / "raft-transfer.snap").read_bytes())
        data[200] ^= 1
        received = tmp_path / "f" / "meta" / "raft-transfer.snap"
        received.write_bytes(bytes(data))
        from spitfire.wal.api import StorageError

        with pytest.raises(StorageError, match="not valid"):
            fcompactor.install(received)
        assert (fjournal.first_index, fjournal.last_index, fjournal.snapshot_index) == (1, 1, 0)
        await fstorage.close()

    asyncio.run(body())


def test_the_bytes_of_snapshot_structures_are_pinned() -> None:
    """wal/FORMAT.md ("Raft journal", "Raft snapshot"): a batch's parts, a LogHead, a SnapshotMeta."""
    meta = SnapshotMeta(1, 7, 3, 2, b"\x01", 4, None, [("a", "h:1")], [], 0)
    assert msgspec.msgpack.encode(meta).hex() == "9a01070302c40101" + "04c0" + "9192a161a3683a31" + "9000"
    assert msgspec.msgpack.encode(LogHead("q", 5, 1, 2)).hex() == "94a171050102"
    part = SnapshotPart("q", 5, PART_END, b"", 2)
    assert encode_batch(Batch([], None, [part])).hex() == "9390c091" + "95a1710501c40002"
    # An entry written before snapshots existed (two elements) reads with no parts.
    assert msgspec.msgpack.decode(bytes.fromhex("9290c0"), type=Batch).parts == []


def test_an_engine_snapshot_whose_entry_is_not_committed_fails_and_an_aborted_one_says_so() -> None:
    async def body() -> None:
        proposed: list[tuple[Batch, Commit]] = []
        storage = ReplicatedStorage(lambda batch, done: proposed.append((batch, done)))
        log_, _ = storage.open_log("q", Durability.GROUP)
        writer = log_.snapshot(0)
        writer.add(b"chunk")
        finishing = asyncio.ensure_future(writer.finish())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        parts = [p for batch, _ in proposed for p in batch.parts]
        assert [(p.kind, p.data, p.count) for p in parts] == [(PART_CHUNK, b"chunk", 0), (PART_END, b"", 1)]
        for _, done in proposed:
            done(False, "the leader changed")
        with pytest.raises(NotLeaderError, match="the leader changed"):
            await finishing
        other = log_.snapshot(0)
        other.abort()
        other.abort()  # once only
        await asyncio.sleep(0)
        assert [p.kind for p in proposed[-1][0].parts] == [PART_ABORT]

    asyncio.run(body())
