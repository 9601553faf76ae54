"""A Jepsen-style history of a cluster under faults, and its check.

Producers, workers and the test record every operation they attempt (`History.record`): enqueue
invoke and outcome (with the producer's logical request id, the key, carried in the payload),
deliveries, and ack invoke and outcome, each with the member it went to and the time. An outcome is
``ok`` (acknowledged), ``fail`` (refused: ``NOT_LEADER`` and the like, nothing was done) or ``info``
(indeterminate: the connection was cut before an answer, it may or may not have happened).

A producer retries a logical request that was not acknowledged, on the member it is pointed to,
with the same request token (PROTOCOL.md, "Request tokens"), as the SDKs do when given the cluster's
addresses: a retry of a request whose first attempt did commit answers that job instead of adding a
second. After the run the final state is read from the leader (`read_final`) and `History.check`
reports:

- **lost**: an acknowledged enqueue whose job is absent (must be none);
- **duplicated**: a logical request that became more than one job (must be none);
- **lost outcome**: an acknowledged ack whose job is not ``succeeded`` (must be none).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
from clusterhelpers import Member, ProtoClient, ServerError

from spitfire.protocol import messages as m
from spitfire.protocol.messages import ErrorCode, MessageType

__all__ = ["History", "Load", "Op", "Report", "read_final"]


@dataclass(frozen=True, slots=True)
class Op:
    process: str
    kind: str  # enqueue | deliver | ack
    phase: str  # invoke | ok | fail | info
    node: str
    at: float
    key: str | None = None
    job_id: str | None = None


@dataclass
class Report:
    lost: list[str]
    duplicated: dict[str, list[str]]
    lost_outcome: list[str]
    enqueued: int
    acked: int
    delivered: int
    indeterminate: int
    #: Jobs delivered more than once (at-least-once allows it; resumed leases make it rare).
    redelivered: int = 0

    def summary(self) -> str:
        return (
            f"{self.enqueued} enqueues acknowledged, {self.delivered} deliveries ({self.redelivered} jobs "
            f"delivered again), {self.acked} acks acknowledged, {self.indeterminate} indeterminate; lost "
            f"{len(self.lost)}, duplicated {len(self.duplicated)}, lost outcome {len(self.lost_outcome)}"
        )


class History:
    """Operations recorded by any thread, in the order recorded."""

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self._lock = threading.Lock()

    def record(self, process: str, kind: str, phase: str, node: str, **kw: Any) -> None:
        op = Op(process, kind, phase, node, time.monotonic(), **kw)
        with self._lock:
            self.ops.append(op)

    def check(self, final: dict[str, tuple[str, str | None]]) -> Report:
        """``final``: job id -> (state, key) of every job the leader holds at the end."""
        ops = list(self.ops)
        acknowledged = {op.job_id for op in ops if op.kind == "enqueue" and op.phase == "ok"}
        by_key: dict[str, list[str]] = collections.defaultdict(list)
        for job_id, (_state, key) in final.items():
            if key is not None:
                by_key[key].append(job_id)
        acked = {op.job_id for op in ops if op.kind == "ack" and op.phase == "ok"}
        deliveries = collections.Counter(op.job_id for op in ops if op.kind == "deliver")
        return Report(
            lost=sorted(j for j in acknowledged if j is not None and j not in final),
            duplicated={k: sorted(v) for k, v in by_key.items() if len(v) > 1},
            lost_outcome=sorted(j for j in acked if j is not None and final.get(j, ("",))[0] != "succeeded"),
            enqueued=len(acknowledged),
            acked=len(acked),
            delivered=sum(1 for op in ops if op.kind == "deliver"),
            indeterminate=sum(1 for op in ops if op.phase == "info"),
            redelivered=sum(1 for n in deliveries.values() if n > 1),
        )


def key_of(payload: bytes) -> str | None:
    try:
        value = msgspec.msgpack.decode(payload)
    except msgspec.DecodeError:
        return None
    return value[0] if isinstance(value, list) and value and isinstance(value[0], str) else None


async def read_final(leader: Member, queue: str) -> dict[str, tuple[str, str | None]]:
    """Every job of ``queue`` on ``leader``: id -> (state, key)."""
    client = await ProtoClient.connect(leader.listen)
    try:
        final: dict[str, tuple[str, str | None]] = {}
        cursor = None
        for _ in range(100_000):
            page = await client.call(
                MessageType.LIST_JOBS, m.ListJobs(queue=queue, limit=1000, cursor=cursor, newest_first=False)
            )
            for job in page.jobs:
                final[job.id] = (job.state, key_of(job.payload))
            cursor = page.cursor
            if cursor is None:
                return final
        raise AssertionError("LIST_JOBS did not end")
    finally:
        client.close()


class Load:
    """Producers and workers against whichever member leads, on one asyncio loop in a thread,
    recording into ``history`` until `stop`."""

    def __init__(
        self, members: list[Member], queue: str, history: History, producers: int = 2, workers: int = 1
    ):
        self.members = members
        self.queue = queue
        self.history = history
        self._by_listen = {f"127.0.0.1:{mb.listen}": mb for mb in members}
        self._stop = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(producers, workers), name="load", daemon=True)
        self.errors: list[BaseException] = []
        #: Per worker: the worker id of its last subscription, and the acks a lost connection cut.
        #: A new leader continues the leases, so the worker resumes its id there and sends those
        #: acks again.
        self._resume: dict[str, tuple[str | None, list[str]]] = {}

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the load did not stop"
        assert not self.errors, self.errors

    def _run(self, producers: int, workers: int) -> None:
        async def main() -> None:
            tasks = [asyncio.ensure_future(self._producer(f"producer-{i}")) for i in range(producers)]
            tasks += [asyncio.ensure_future(self._worker(f"worker-{i}")) for i in range(workers)]
            for result in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(result, BaseException):
                    self.errors.append(result)

        self._loop.run_until_complete(main())
        self._loop.close()

    def _targets(self) -> Iterator[Member]:
        return itertools.cycle(self.members)

    async def _connect(
        self, targets: Iterator[Member], hint: Member | None
    ) -> tuple[Member, ProtoClient] | None:
        member = hint or next(targets)
        if not member.alive:
            return None
        try:
            return member, await asyncio.wait_for(ProtoClient.connect(member.listen), 2)
        except (OSError, TimeoutError):
            return None

    def _hint(self, exc: ServerError) -> Member | None:
        return self._by_listen.get(exc.field or "") if exc.code == ErrorCode.NOT_LEADER else None

    async def _producer(self, name: str) -> None:
        h, targets = self.history, self._targets()
        conn: tuple[Member, ProtoClient] | None = None
        hint: Member | None = None
        for i in itertools.count():
            if self._stop.is_set():
                break
            key = f"{name}-{i}"
            payload = msgspec.msgpack.encode([key])
            token = os.urandom(16)  # one per logical request: every retry of it carries it
            for _attempt in range(1000):  # the same logical request until acknowledged
                if self._stop.is_set():
                    break
                if conn is None:
                    conn = await self._connect(targets, hint)
                    hint = None
                    if conn is None:
                        await asyncio.sleep(0.02)
                        continue
                member, client = conn
                if client.closed.is_set():  # the member went away: another one leads now
                    client.close()
                    conn = None
                    continue
                h.record(name, "enqueue", "invoke", member.node_id, key=key)
                try:
                    r = await asyncio.wait_for(
                        client.enqueue(self.queue, "job", payload, request_token=token), 5
                    )
                except ServerError as exc:
                    h.record(name, "enqueue", "fail" if exc.code == ErrorCode.NOT_LEADER else "info",
                             member.node_id, key=key)  # fmt: skip
                    hint = self._hint(exc)
                    client.close()
                    conn = None
                    await asyncio.sleep(0.01)
                except (ConnectionError, OSError, TimeoutError):
                    h.record(name, "enqueue", "info", member.node_id, key=key)
                    client.close()
                    conn = None
                else:
                    h.record(name, "enqueue", "ok", member.node_id, key=key, job_id=r.job_id)
                    break
        if conn is not None:
            conn[1].close()

    async def _worker(self, name: str) -> None:
        targets = self._targets()
        hint: Member | None = None
        self._resume[name] = (None, [])
        while not self._stop.is_set():
            conn = await self._connect(targets, hint)
            hint = None
            if conn is None:
                await asyncio.sleep(0.02)
                continue
            member, client = conn
            try:
                await self._serve(name, member, client)
            except ServerError as exc:
                hint = self._hint(exc)
                await asyncio.sleep(0.01)
            except (ConnectionError, OSError, TimeoutError):
                await asyncio.sleep(0.01)
            finally:
                client.close()

    async def _serve(self, name: str, member: Member, client: ProtoClient) -> None:
        """Take deliveries from ``member`` and ack them until stopped or cut."""
        h = self.history
        previous, cut = self._resume[name]
        subscribe = m.Subscribe([self.queue], 32, name, resume=previous)
        wid = (await asyncio.wait_for(client.call(MessageType.SUBSCRIBE, subscribe), 5)).worker_id
        self._resume[name] = (wid, [])
        if cut and wid == previous:  # the leases are this connection's: report the cut acks here
            await self._ack(name, member, client, cut)
        while not self._stop.is_set():
            if client.closed.is_set():
                raise ConnectionError("the member closed the connection")
            try:
                push = await client.push(0.2)
            except TimeoutError:
                continue
            if push.type is not MessageType.DELIVER:
                continue
            ids = [job.job_id for job in push.message.jobs]
            for job_id in ids:
                h.record(name, "deliver", "ok", member.node_id, job_id=job_id)
            await self._ack(name, member, client, ids)
            client.send(MessageType.CREDIT, m.Credit(len(ids)))

    async def _ack(self, name: str, member: Member, client: ProtoClient, ids: list[str]) -> None:
        """Ack ``ids``, recording each outcome; a cut ack is kept for the next subscription."""
        h = self.history
        for job_id in ids:
            h.record(name, "ack", "invoke", member.node_id, job_id=job_id)
        try:
            done = await asyncio.wait_for(client.ack(*ids), 5)
        except (ConnectionError, OSError, TimeoutError, ServerError):
            for job_id in ids:
                h.record(name, "ack", "info", member.node_id, job_id=job_id)
            wid, cut = self._resume[name]
            self._resume[name] = (wid, [*cut, *ids])
            raise
        failed = {e.index for e in done.errors}
        for index, job_id in enumerate(ids):
            h.record(name, "ack", "fail" if index in failed else "ok", member.node_id, job_id=job_id)
