"""Every magic number and byte layout of the on-disk format, in one place (`wal/FORMAT.md`).

All integers are little-endian. Each constant carries the reason for its value.
"""

from __future__ import annotations

import re
import struct

# --- segments -------------------------------------------------------------------------------------

#: First 8 bytes of every segment: "SPFWAL" plus CR LF, so a text-mode copy or a wrong file is caught.
SEGMENT_MAGIC = b"SPFWAL\r\n"
#: The only segment/snapshot format version this build reads and writes.
FORMAT_VERSION = 1
#: Segment header: magic, version u16, header size u16, reserved u32, segment number u64, base LSN
#: u64, segment size u64, 20 reserved zero bytes, crc32c u32 of the 60 bytes before it.
SEGMENT_HEADER = struct.Struct("<8sHHIQQQ20xI")
#: 64 bytes: keeps the first record 8-byte aligned and leaves room for future fields.
SEGMENT_HEADER_SIZE = SEGMENT_HEADER.size
#: Magic + version only: read first so a future layout is reported as a version, not as damage.
SEGMENT_PREFIX = struct.Struct("<8sH")
#: Segment files are named by their number in hex so that names sort in log order.
SEGMENT_NAME = "{:016x}.seg"
#: Matches a segment file name.
SEGMENT_NAME_RE = re.compile(r"^([0-9a-f]{16})\.seg$")

# --- records --------------------------------------------------------------------------------------

#: Record header: crc32c u32 (over bytes [4, 12 + length)), body length u32, type u8, 3 zero bytes.
RECORD_HEADER = struct.Struct("<IIB3x")
#: 12 bytes: the CRC first so that length and type are covered by it.
RECORD_HEADER_SIZE = RECORD_HEADER.size
#: The part of the header the CRC covers (length, type, padding), packed before the body.
RECORD_LEN_TYPE = struct.Struct("<IB3x")
#: The CRC field alone.
U32 = struct.Struct("<I")
#: Records start on 8-byte boundaries so a length field never straddles a sector (etcd's reason).
RECORD_ALIGN = 8
#: Record type 0 is never valid: zero-filled (preallocated) space reads as "end of log".
RECORD_TYPE_END = 0
#: Record type 255 belongs to the WAL, never to the engine: a SKIP record, written only by
#: `spitfire-server repair` over damaged bytes, stands for the records that were lost there so that
#: the LSNs of the records after it stay what they were. Recovery never hands it to the engine.
RECORD_TYPE_SKIP = 255
#: Body of a SKIP record: how many LSNs it stands for (u32, >= 1), then zeros up to the next record.
SKIP_BODY = struct.Struct("<I")
#: The smallest record: a 12-byte header and up to 4 bytes of body, padded to 8 (a SKIP fits in it).
MIN_RECORD_SIZE = 16

# --- snapshots ------------------------------------------------------------------------------------

#: Snapshot files are named by the LSN they were started at, zero-padded so names sort by LSN.
SNAPSHOT_NAME = "snap-{:020d}.snap"
#: Matches a (final) snapshot file name.
SNAPSHOT_NAME_RE = re.compile(r"^snap-(\d{20})\.snap$")
#: Suffix of a snapshot still being written; never read, removed by recovery.
TMP_SUFFIX = ".tmp"
#: Suffix given to a snapshot that failed validation, so it is kept for inspection but never used.
BROKEN_SUFFIX = ".broken"
#: Snapshot record type: the first record; body is SNAPSHOT_HEADER.
SNAP_TYPE_HEADER = 1
#: Snapshot record type: one chunk exactly as passed to `SnapshotWriter.add`.
SNAP_TYPE_CHUNK = 2
#: Snapshot record type: the last record; body is SNAPSHOT_END (the chunk count marks completeness).
SNAP_TYPE_END = 3
#: Body of the snapshot header record: magic, format version u16, 6 reserved zero bytes, LSN u64.
SNAPSHOT_HEADER = struct.Struct("<8sH6xQ")
#: Magic in the snapshot header record body.
SNAPSHOT_MAGIC = b"SPFSNAP\n"
#: Body of the snapshot end record: number of chunk records u64.
SNAPSHOT_END = struct.Struct("<Q")

# --- layout ---------------------------------------------------------------------------------------

#: The one queue-name rule (PROTOCOL.md, API.md; checked by ``server.validation.check_queue`` and by
#: the storage). Names double as directory names under ``queues/``: the first character is never
#: ``.``, ``:`` or ``-``, so ``.`` and ``..`` (and option-like names) cannot be queues, and ``/`` is
#: never allowed, so a name cannot leave the data directory. ``:`` (common in Redis keys) is fine in
#: a Linux file name.
QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}\Z")  # \Z: "$" would pass "a\n"
#: `QUEUE_NAME_RE` in words, for error messages.
QUEUE_NAME_RULE = "use 1 to 128 characters from A-Z a-z 0-9 _ . : -, starting with a letter, a digit or _"
#: `<data-dir>/queues/<queue>/...`
QUEUES_DIR = "queues"
#: `<data-dir>/meta/<name>/...`: the server's own logs (`Storage.open_system_log`), and ``meta/lock``.
SYSTEM_DIR = "meta"
#: The `QueueLog.queue` of a system log: ``meta/<name>`` (a "/" is never in a queue name).
SYSTEM_PREFIX = SYSTEM_DIR + "/"
#: A deleted queue's directory is renamed to ``<TOMBSTONE_PREFIX><queue>-<n>`` in ``queues/`` (never a
#: valid queue name: it starts with a dot) before its files are removed; start-up removes leftovers.
TOMBSTONE_PREFIX = ".deleted-"
#: Segment files of one queue.
WAL_DIR = "wal"
#: Snapshot files of one queue.
SNAPSHOTS_DIR = "snapshots"

#: Zero-check chunk: compare 1 MiB at a time against zeros (memcmp speed, bounded memory).
ZERO_CHUNK_SIZE = 1 << 20
