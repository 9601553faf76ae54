"""The Raft journal in our WAL: entries, truncations, term and vote survive a restart; damage is
reported, never guessed; nothing is durable before the WAL says so."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from spitfire.raft import JOURNAL_LOG, DurableJournal, JournalRecord
from spitfire.wal import CorruptLogError, FileStorage
from spitfire.wal.api import Durability


async def _open(data_dir: Path) -> tuple[FileStorage, DurableJournal]:
    storage = FileStorage(data_dir)
    log_, recovery = storage.open_system_log(JOURNAL_LOG, Durability.GROUP)
    return storage, DurableJournal(log_, recovery)


async def _until_durable(journal: DurableJournal) -> None:
    done = asyncio.Event()
    journal.set_listener(lambda lsn: done.set() if lsn >= journal.last_lsn else None, lambda e: None)
    if journal.pending:
        await asyncio.wait_for(done.wait(), 10)


def test_entries_term_and_vote_survive_a_restart(tmp_path: Path) -> None:
    async def write() -> None:
        storage, journal = await _open(tmp_path)
        assert len(journal) == 0 and journal.term == 0 and journal.voted_for is None
        for index in range(1, 6):
            journal.add(b"\x00cmd%d" % index, index, 1 if index < 4 else 2)
        journal.record_term(2, "127.0.0.1:7902")
        assert journal.pending
        await _until_durable(journal)
        assert not journal.pending
        journal.deleteEntriesFrom(3)  # pysyncobj's habit before adding: nothing goes yet
        assert len(journal) == 5
        journal.add(b"\x00new4", 4, 3)  # a conflict (term 3, not 2): index 4 and 5 are replaced
        journal.record_term(3, None)
        await _until_durable(journal)
        await storage.close()

    async def read() -> list[tuple[bytes, int, int]]:
        storage, journal = await _open(tmp_path)
        try:
            assert (journal.term, journal.voted_for) == (3, None)
            assert not journal.pending
            return [journal[i] for i in range(len(journal))]
        finally:
            await storage.close()

    asyncio.run(write())
    entries = asyncio.run(read())
    assert entries == [
        (b"\x00cmd1", 1, 1),
        (b"\x00cmd2", 2, 1),
        (b"\x00cmd3", 3, 1),
        (b"\x00new4", 4, 3),
    ]


def test_slicing_and_negative_positions_as_pysyncobj_uses_them(tmp_path: Path) -> None:
    async def body() -> None:
        storage, journal = await _open(tmp_path)
        for index in range(1, 4):
            journal.add(b"x", index, 1)
        assert journal[-1][1] == 3
        assert [e[1] for e in journal[1:]] == [2, 3]
        assert journal.last_index == 3
        assert [e[1] for e in journal.entries(2)] == [1, 2]
        journal.deleteEntriesFrom(10)  # past the end: nothing to remove, nothing appended
        assert len(journal) == 3
        with pytest.raises(NotImplementedError, match="not compacted"):
            journal.deleteEntriesTo(1)
        await storage.close()

    asyncio.run(body())


def test_a_flipped_byte_in_the_journal_stops_start_up_with_the_file_named(tmp_path: Path) -> None:
    async def write() -> None:
        storage, journal = await _open(tmp_path)
        for index in range(1, 4):
            journal.add(b"payload-%d" % index, index, 1)
        await _until_durable(journal)
        journal.add(b"payload-4", 4, 1)  # a record after the damaged one: not a torn tail
        await _until_durable(journal)
        await storage.close()

    asyncio.run(write())
    segment = sorted((tmp_path / "meta" / JOURNAL_LOG / "wal").glob("*.seg"))[0]
    data = bytearray(segment.read_bytes())
    at = data.find(b"payload-2")
    data[at] ^= 0xFF
    segment.write_bytes(bytes(data))

    async def reopen() -> None:
        storage = FileStorage(tmp_path)
        try:
            storage.open_system_log(JOURNAL_LOG, Durability.GROUP)
        finally:
            await storage.close()

    with pytest.raises(CorruptLogError, match="raft"):
        asyncio.run(reopen())


def test_a_record_with_a_valid_checksum_but_a_bad_body_is_named(tmp_path: Path) -> None:
    async def write() -> None:
        storage = FileStorage(tmp_path)
        log_, _ = storage.open_system_log(JOURNAL_LOG, Durability.GROUP)
        log_.append(JournalRecord.ENTRY, b"\xc1not msgpack")
        await log_.flush()
        await storage.close()

    asyncio.run(write())

    async def reopen() -> None:
        storage = FileStorage(tmp_path)
        try:
            await _open_journal(storage)
        finally:
            await storage.close()

    async def _open_journal(storage: FileStorage) -> None:
        log_, recovery = storage.open_system_log(JOURNAL_LOG, Durability.GROUP)
        DurableJournal(log_, recovery)

    with pytest.raises(CorruptLogError, match="cannot be replayed"):
        asyncio.run(reopen())


def test_only_a_conflicting_entry_removes_entries_acknowledged_before(tmp_path: Path) -> None:
    async def body() -> None:
        storage, journal = await _open(tmp_path)
        for index in range(1, 5):
            journal.add(b"e%d" % index, index, 1)
        await _until_durable(journal)
        lsn = journal.last_lsn
        journal.deleteEntriesFrom(1)  # a heartbeat whose previous index is 1: entries 2.. stay
        journal.add(b"e2", 2, 1)  # the same entry again: held already, nothing written
        assert journal.last_lsn == lsn and journal.last_index == 4
        await storage.close()
        storage, journal = await _open(tmp_path)
        assert [journal[i][1] for i in range(len(journal))] == [1, 2, 3, 4]
        await storage.close()

    asyncio.run(body())
