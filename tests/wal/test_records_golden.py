"""Golden bytes of every log record type and snapshot chunk (wal/vectors/records.json).

If one of these fails, the bytes the engine writes changed: a log written by this build would be
misread by older servers (or older logs by this one). Either undo the change, or make it compatible
(new fields at the end, with defaults; wal/FORMAT.md "Record bodies") and regenerate the vectors
with ``.venv/bin/python -m spitfire.server.record_vectors``, so that the change is visible in review.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from spitfire.index.job import JobState
from spitfire.server import record_vectors as gen
from spitfire.server import records as rec
from spitfire.server.records import RecordType
from spitfire.wal.format import check_record, encode_record, record_size


def load() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(gen.OUTPUT.read_text(encoding="utf-8"))
    assert document["format"] == gen.FILE_FORMAT
    return document


DOCUMENT = load()
RECORDS: list[dict[str, Any]] = DOCUMENT["records"]
CHUNKS: list[dict[str, Any]] = DOCUMENT["snapshot_chunks"]
RETIRED: list[dict[str, Any]] = DOCUMENT["retired_history"]


def test_the_file_is_what_the_generator_writes() -> None:
    assert gen.OUTPUT.read_text(encoding="utf-8") == gen.render(), (
        "wal/vectors/records.json is stale: run .venv/bin/python -m spitfire.server.record_vectors"
    )


def test_every_record_type_has_a_vector() -> None:
    assert {v["type"] for v in RECORDS} == {t.name for t in RecordType}
    assert all(RecordType[v["type"]] == v["type_byte"] for v in RECORDS)


def test_a_full_job_sets_every_field_to_a_non_default_value() -> None:
    (vector,) = [v for v in RECORDS if v["name"] == "job-enqueued-every-field"]
    job = gen.build(rec.Job, vector["body"])
    # Required fields get a blank value here, optional ones their default.
    defaults = rec.Job("", "", "", b"", JobState.ENQUEUED, 0.0)
    unset = [f for f in rec.Job.__struct_fields__ if getattr(job, f) == getattr(defaults, f)]
    assert unset == [], "give every field of the full Job a non-default value"


@pytest.mark.parametrize("vector", RECORDS, ids=[v["name"] for v in RECORDS])
def test_record_body_bytes(vector: dict[str, Any]) -> None:
    rtype = RecordType[vector["type"]]
    body = gen.build(rec.BODY_TYPES[rtype], vector["body"])
    golden = bytes.fromhex(vector["body_hex"])
    assert rec.encode(body) == golden  # encoding the description gives the golden bytes
    decoded = rec.decode(vector["type_byte"], golden)
    assert decoded == body and gen.describe(decoded) == vector["body"]  # and back


@pytest.mark.parametrize("vector", RECORDS, ids=[v["name"] for v in RECORDS])
def test_framed_record_bytes(vector: dict[str, Any]) -> None:
    body = bytes.fromhex(vector["body_hex"])
    framed = bytes.fromhex(vector["record_hex"])
    assert encode_record(vector["type_byte"], body) == framed
    assert len(framed) == record_size(len(body)) and len(framed) % 8 == 0
    assert check_record(framed, 0, len(framed)) == (vector["type_byte"], len(body), "")


@pytest.mark.parametrize("vector", CHUNKS, ids=[v["name"] for v in CHUNKS])
def test_snapshot_chunk_bytes(vector: dict[str, Any]) -> None:
    kinds = {"QueueMeta": rec.QueueMeta, "JobChunk": rec.JobChunk, "HistoryChunk": rec.HistoryChunk}
    systems = {"SchedulesSnapshot": rec.SchedulesSnapshot, "DefinitionsSnapshot": rec.DefinitionsSnapshot}
    cls = {**kinds, **systems}[vector["kind"]]
    body = gen.build(cls, vector["body"])
    golden = bytes.fromhex(vector["hex"])
    assert rec.encode(body) == golden
    decoded = gen.chunk_decoder(vector["kind"]).decode(golden)
    assert decoded == body and gen.describe(decoded) == vector["body"]


@pytest.mark.parametrize("vector", RETIRED, ids=[v["name"] for v in RETIRED])
def test_retired_history_record_bytes(vector: dict[str, Any]) -> None:
    body = gen.build(rec.RetiredHistory, vector["body"])
    golden = bytes.fromhex(vector["hex"])
    assert rec.encode(body) == golden
    decoded = gen.chunk_decoder(vector["kind"]).decode(golden)
    assert decoded == body and gen.describe(decoded) == vector["body"]
    framed = bytes.fromhex(vector["record_hex"])
    assert encode_record(vector["type_byte"], golden) == framed
    assert check_record(framed, 0, len(framed)) == (vector["type_byte"], len(golden), "")


def test_a_history_chunk_reads_as_an_empty_job_chunk_in_older_builds() -> None:
    (vector,) = [v for v in CHUNKS if v["name"] == "history-chunk"]
    assert rec.chunk_decoder.decode(bytes.fromhex(vector["hex"])) == rec.JobChunk([])


def test_a_meta_written_before_the_history_field_reads_as_no_history() -> None:
    # queue-meta-empty as builds before the history graph wrote it (no trailing field).
    meta = rec.meta_decoder.decode(bytes.fromhex("9501c2a56173796e6390a0"))
    assert meta.history is False and meta.durability == "async"


def test_a_held_key_is_stored_as_an_infinite_float64() -> None:
    (meta,) = [v for v in CHUNKS if v["name"] == "queue-meta"]
    assert "cb7ff0000000000000" in meta["hex"]  # msgpack float64 +inf
