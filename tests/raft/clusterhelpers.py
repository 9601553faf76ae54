"""Three (or more) real spitfire-server processes forming a cluster on loopback ports.

Every process is stopped by its pid (SIGTERM, then SIGKILL) when the cluster closes; every wait is
bounded in time and polls a condition (a member's ``GET /api/cluster``), never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1] / "server"))
from protoclient import ProtoClient, ServerError

from spitfire.raft import JOURNAL_LOG, decode_command
from spitfire.raft.journal import JournalRecord
from spitfire.wal import FileStorage
from spitfire.wal.api import Durability

SERVER = [sys.executable, "-m", "spitfire.server.cli"]
#: Longest any one wait of a cluster test may take (the machine is shared and loaded).
WAIT = 30.0
_POLL = 0.02

__all__ = [
    "WAIT", "Cluster", "Member", "ProtoClient", "ServerError", "cluster", "enqueue_jobs", "job_states",
    "journal_job_ids",
]  # fmt: skip


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (held together while picked)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Member:
    node_id: str
    data_dir: Path
    raft: int
    listen: int
    http: int
    members: str
    log_path: Path
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        argv = [
            *SERVER,
            "--node-id", self.node_id,
            "--cluster", self.members,
            "--data-dir", str(self.data_dir),
            "--listen", f"127.0.0.1:{self.listen}",
            "--http", f"127.0.0.1:{self.http}",
            "--no-quic",
            *self.extra,
        ]  # fmt: skip
        out = self.log_path.open("ab")
        self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        out.close()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, by pid, and reap."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(WAIT)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a bounded wait."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.kill()

    def http_get(self, path: str) -> tuple[int, Any]:
        """(status, JSON body) of a GET; (0, None) when the member does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}{path}", timeout=2) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.loads(exc.read() or b"null")
        except (OSError, ValueError):
            return 0, None

    def cluster(self) -> dict[str, Any] | None:
        status, body = self.http_get("/api/cluster")
        return body if status == 200 else None

    def me(self) -> dict[str, Any] | None:
        view = self.cluster()
        if view is None:
            return None
        return next(n for n in view["nodes"] if n["id"] == self.node_id)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


class Cluster:
    def __init__(self, root: Path, size: int = 3, extra: list[str] | None = None) -> None:
        ports = free_ports(3 * size)
        ids = [chr(ord("a") + i) for i in range(size)]
        members = ",".join(f"{n}=127.0.0.1:{ports[i]}" for i, n in enumerate(ids))
        self.members = [
            Member(
                n,
                root / n / "data",
                ports[i],
                ports[size + i],
                ports[2 * size + i],
                members,
                root / f"{n}.log",
                list(extra or []),
            )
            for i, n in enumerate(ids)
        ]
        for m in self.members:
            m.data_dir.parent.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        for m in self.members:
            m.start()

    def close(self) -> None:
        for m in self.members:
            m.stop()

    def alive(self) -> list[Member]:
        return [m for m in self.members if m.alive]

    def leader(self, timeout: float = WAIT, among: list[Member] | None = None) -> Member:
        """The member that leads and serves the binary protocol (polled until one does)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in among or self.alive():
                me = m.me()
                if me is not None and me["role"] == "leader" and _serves(m):
                    return m
            time.sleep(_POLL)
        raise AssertionError(f"no leader serving within {timeout:.0f} s; logs:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {m.node_id}\n{m.log_text()[-3000:]}" for m in self.members)

    def wait(self, what: str, check: Any, timeout: float = WAIT) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(_POLL)
        raise AssertionError(f"{what}: not within {timeout:.0f} s; logs:\n{self.logs()}")


def _serves(m: Member) -> bool:
    status, _ = m.http_get("/api/queues")
    return status == 200


@contextlib.contextmanager
def cluster(root: Path, size: int = 3, extra: list[str] | None = None) -> Iterator[Cluster]:
    c = Cluster(root, size, extra)
    try:
        c.start()
        yield c
    finally:
        c.close()


def journal_job_ids(data_dir: Path) -> set[str]:
    """Ids of the jobs whose enqueue records a member's Raft journal holds (read offline)."""

    async def read() -> set[str]:
        import msgspec

        storage = FileStorage(data_dir)
        try:
            _log, recovery = storage.open_system_log(JOURNAL_LOG, Durability.GROUP)
            ids: set[str] = set()
            for record in recovery.records:
                if record.rtype != JournalRecord.ENTRY:
                    continue
                _index, _term, command = msgspec.msgpack.decode(record.body)
                batch = decode_command(command)
                for _name, _lsn, rtype, body in batch.records if batch else ():
                    if rtype == 1:  # JOB_ENQUEUED: the Job array starts with its id
                        ids.add(msgspec.msgpack.decode(body)[0])
            return ids
        finally:
            await storage.close()

    return asyncio.run(read())


async def enqueue_jobs(member: Member, queue: str, count: int) -> list[str]:
    """``count`` single enqueues on ``member``; their job ids."""
    client = await ProtoClient.connect(member.listen)
    try:
        return [(await client.enqueue(queue, "job", b"\x91\x01")).job_id for _ in range(count)]
    finally:
        client.close()


async def job_states(member: Member, ids: list[str]) -> dict[str, str]:
    """The state of each job of ``ids`` on ``member``."""
    client = await ProtoClient.connect(member.listen)
    try:
        return {i: (await client.get(i)).state for i in ids}
    finally:
        client.close()
