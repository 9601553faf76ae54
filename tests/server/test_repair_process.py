"""`spitfire-server repair` against a real server's data directory: real jobs, real damage on disk."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from protoclient import ProtoClient, ServerProcess, run

SERVER = [sys.executable, "-m", "spitfire.server.cli"]
QUEUE = "emails"


def _repair(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SERVER, "repair", "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def _start_and_count(data: Path) -> int:
    """Start a server on ``data``, stop it with SIGTERM, return how many jobs it recovered."""
    srv = ServerProcess(data).start()
    try:
        assert srv.terminate() == 0
    finally:
        srv.kill()
    found = re.findall(r"recovered (\d+) jobs", srv.log())
    assert found, srv.log()
    return int(found[-1])


def _enqueue(data: Path, n: int) -> None:
    srv = ServerProcess(data).start()
    try:

        async def go() -> None:
            c = await ProtoClient.connect(srv.port)
            for i in range(n):
                await c.enqueue(QUEUE, payload=b"\x81\xa1i" + bytes([i]))
            c.close()

        run(go())
        assert srv.terminate() == 0
    finally:
        srv.kill()


def test_one_flipped_byte_in_a_50_job_log_drops_exactly_one_job(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _enqueue(data, 50)
    (segment,) = sorted((data / "queues" / QUEUE / "wal").glob("*.seg"))
    raw = bytearray(segment.read_bytes())
    # The 25th record's body: walk the framing to find it.
    off = 64
    for _ in range(24):
        off += (12 + int.from_bytes(raw[off + 4 : off + 8], "little") + 7) & -8
    raw[off + 30] ^= 0xFF
    segment.write_bytes(bytes(raw))

    refused = subprocess.run([*SERVER, "--data-dir", str(data)], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and f"offset {off}" in refused.stderr and "Traceback" not in refused.stderr

    dry = _repair(data, "--dry-run")
    assert dry.returncode == 1 and "1 record(s) dropped" in dry.stdout and "(LSN 25)" in dry.stdout
    assert segment.read_bytes() == bytes(raw)  # the dry run changed nothing

    declined = _repair(data)  # no terminal to ask on: declined, damage left, non-zero exit
    assert declined.returncode == 1 and "left unchanged" in declined.stdout
    assert segment.read_bytes() == bytes(raw)

    done = _repair(data, "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 record(s) dropped" in done.stdout and "ignored when the server starts" in done.stdout
    assert _start_and_count(data) == 49
    assert _repair(data, "--yes").stdout.strip().endswith("nothing to repair")


def test_repair_refuses_a_data_dir_that_does_not_exist(tmp_path: Path) -> None:
    out = _repair(tmp_path / "missing", "--yes")
    assert out.returncode == 2 and "does not exist" in out.stderr
    assert not (tmp_path / "missing").exists()


def test_a_record_with_a_valid_crc_but_an_unknown_type_is_named_at_start(tmp_path: Path) -> None:
    import asyncio

    from spitfire.wal import Durability, FileStorage, WalConfig

    data = tmp_path / "data"
    _enqueue(data, 3)

    async def append_unknown() -> None:
        storage = FileStorage(data, WalConfig())
        log, _ = storage.open_log(QUEUE, Durability.GROUP)
        log.append(200, b"\x91\x01")  # a type no release knows, with a valid CRC
        log.append(3, b"\xc1")  # JOB_SUCCEEDED whose body is not msgpack
        await storage.close()

    asyncio.run(append_unknown())
    refused = subprocess.run([*SERVER, "--data-dir", str(data)], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "record LSN 4" in refused.stderr and "type 200" in refused.stderr and ".seg" in refused.stderr
    assert "--skip-record emails:4" in refused.stderr
    assert _repair(data, "--yes", "--skip-record", "emails:4").returncode == 0

    refused = subprocess.run([*SERVER, "--data-dir", str(data)], capture_output=True, text=True, timeout=60)
    assert (
        refused.returncode == 1 and "record LSN 5" in refused.stderr and "does not decode" in refused.stderr
    )
    assert _repair(data, "--yes", "--skip-record", "emails:5").returncode == 0
    assert _start_and_count(data) == 3
