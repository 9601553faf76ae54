"""A cluster member (``--cluster``): a Raft node that runs the engine only while it leads.

Start-up: lock the data directory, listen at --http (``/api/cluster`` answers; every other API
request answers 503 ``NOT_LEADER`` naming the leader's HTTP URL), open the Raft journal
(``<data-dir>/meta/raft/``), start the Raft node, and listen at --listen, where every request is
answered ``NOT_LEADER`` with the leader's address. Once this member is elected and has applied its
term's first entry (so it holds every committed entry), it builds the engine over the committed
entries (`spitfire.raft.ReplicatedStorage`), serves the binary protocol and the HTTP API like a
single node, and tells the others where it serves (in the next entry).

A leader that loses the leadership (check-quorum: no majority heard within the lease) restarts its
own process at once, keeping its pid (``execv``): nothing it held in memory can be served stale,
requests waiting for a commit are cut (clients retry on the new leader; the records may still
commit there, or be discarded), and it comes back as a follower.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hmac
import logging
import os
import signal
import sys
import time
from typing import Any

from spitfire.protocol.messages import PROTOCOL_VERSION, ErrorCode, MessageType, Pong, Welcome
from spitfire.protocol.session import Request
from spitfire.raft import (
    JOURNAL_LOG,
    ClusterConfig,
    LeaderInfo,
    RaftNode,
    ReplicatedStorage,
    Role,
)
from spitfire.raft.compaction import JOURNAL_SEGMENT_SIZE, CompactingJournal, CompactingNode, Compactor
from spitfire.raft.driver import ThreadCompactor, ThreadJournal, ThreadNode
from spitfire.wal import FileStorage, WalConfig
from spitfire.wal.api import Durability

from . import cluster_admin
from .confirmed import ConfirmedService, resp_unconfirmed, unconfirmed
from .engine import Engine
from .listener import ConnectionHub
from .options import ServerOptions
from .runtime import (
    SERVER_NAME,
    ListenError,
    Server,
    check_port_free,
    describe,
    describe_json,
    exit_code,
    tune_garbage_collector,
)
from .service import Peer

log = logging.getLogger("spitfire.server.cluster")

#: Seconds between two looks at whether this member leads yet.
LEAD_POLL = 0.02


class Standby:
    """The binary protocol on a member that does not lead: every request is answered NOT_LEADER
    (with the leader's ``host:port`` when known); PING is answered, so clients can tell it is up."""

    def __init__(self, member: Member) -> None:
        self.member = member
        self.connections = 0
        self.dispatcher: Any = None

    def handle(self, conn: Peer, request: Request) -> None:
        if request.type is MessageType.PING:
            conn.session.reply(request, Pong(), MessageType.PONG)
        elif request.request_id:  # frames that take no answer (CREDIT, START) are dropped
            leader = self.member.leader_info()
            where = f"; the leader is at {leader.listen}" if leader else "; no leader is elected yet, retry"
            conn.session.error(
                request.request_id,
                ErrorCode.NOT_LEADER,
                f"this cluster member ({self.member.config.node_id}) does not lead{where}",
                leader.listen if leader else None,
            )
        conn.schedule_flush()

    def connection_closed(self, conn: Peer) -> None:
        pass


class Member:
    """One cluster member around a `Server` (whose listeners, HTTP server and wiring it reuses)."""

    def __init__(self, server: Server, config: ClusterConfig) -> None:
        self.server = server
        self.config = config
        self.node: RaftNode | None = None
        self.journal_storage: FileStorage | None = None
        self._journal: CompactingJournal | None = None
        self.compactor: Compactor | None = None
        self._leading = False

    # -- start-up ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the journal, start the Raft node, answer as a follower.

        :raises ListenError: a port (binary, HTTP or Raft) is taken.
        :raises StorageError: the journal cannot be recovered.
        """
        server, opts = self.server, self.server.options
        existed = opts.data_dir.is_dir()
        if not existed:
            self._check_ports()
        opts.data_dir.mkdir(parents=True, exist_ok=True)
        server._lock.acquire()
        if existed:
            self._check_ports()
        queues = opts.data_dir / "queues"
        if queues.is_dir() and any(queues.iterdir()):
            raise ListenError(
                f"{opts.data_dir} holds a single node's queues; a cluster member keeps its data in the "
                "Raft log: start it with an empty --data-dir (or without --cluster)"
            )
        await server._start_http()
        server.http.cluster = self.cluster_endpoint
        server.http.standby = self.standby_error
        # Compaction deletes whole segments of the journal: keep them modest.
        storage = self.journal_storage = FileStorage(
            opts.data_dir, WalConfig(segment_size=JOURNAL_SEGMENT_SIZE)
        )
        server.storage = storage  # /ready's disk checks
        journal_log, recovery = storage.open_system_log(JOURNAL_LOG, Durability.GROUP)
        threaded = self.config.driver == "thread"  # --raft-driver (spitfire.raft.driver)
        journal = self._journal = (
            ThreadJournal(journal_log, recovery, asyncio.get_running_loop())
            if threaded
            else CompactingJournal(journal_log, recovery)
        )
        compactor = self.compactor = (ThreadCompactor if threaded else Compactor)(
            journal, opts.data_dir, every=opts.snapshot_every
        )
        try:
            node = self.node = (ThreadNode if threaded else CompactingNode)(
                self.config,
                journal,  # type: ignore[arg-type]
                compactor,  # type: ignore[arg-type]
                on_role=self._role,
                on_failure=self._failed,
            )
        except Exception as exc:  # pysyncobj's BindError
            raise ListenError(
                f"cannot serve Raft on {self.config.raft_address}: {exc}; is another member running "
                "there? Check --cluster and --node-id"
            ) from exc
        node.learn_addresses()
        cluster_admin.install(self)  # membership changes, and the followers' compat and RESP answers
        # Now, not when leading: a full collection then would stall the loop past the lease.
        tune_garbage_collector()
        node.start()
        server.hub = ConnectionHub(
            Standby(self),  # type: ignore[arg-type]
            self._welcome(),
            opts.auth_token,
            max_connections=opts.max_connections,
            handshake_timeout=opts.handshake_timeout,
        )
        await server._listen()
        await server._listen_redis(not_leader=lambda: cluster_admin.resp_not_leader(self))

    def _check_ports(self) -> None:
        self.server._check_ports()
        host, _, port = self.config.raft_address.rpartition(":")
        try:
            check_port_free(host, int(port), udp=False)
        except ListenError as exc:
            raise ListenError(
                str(exc).replace("--listen", "--cluster (this member's raft address)")
            ) from None

    def _welcome(self) -> Welcome:
        opts = self.server.options
        return Welcome(
            PROTOCOL_VERSION,
            SERVER_NAME,
            max_frame=64 * 2**20,
            max_payload=opts.max_payload,
            heartbeat_interval=opts.heartbeat_interval,
        )

    def banner(self) -> str:
        server = self.server
        http = server.http.url if server.http is not None else f"http://{server.options.http}"
        members = self.node.members if self.node is not None else self.config.members
        return (
            f"spitfire-server cluster member {self.config.node_id} started\n"
            f"  raft:        {self.config.raft_address}  (members: "
            f"{', '.join(f'{k}={v}' for k, v in members.items())})\n"
            f"  binary:      tcp://{server.address}  (NOT_LEADER until this member leads)\n"
            f"  http:        {http}/api/cluster"
        )

    # -- leading -------------------------------------------------------------------------------------

    async def wait_leadership(self) -> bool:
        """Wait until this member leads with every committed entry applied (True), or the server
        is asked to stop (False)."""
        stopping = asyncio.ensure_future(self.server._stopping.wait())
        try:
            while not stopping.done():
                node = self.node
                assert node is not None
                if node.leader_ready:
                    return True
                # The node's state moves on its ticks (every few ms): look again after one.
                await asyncio.wait([stopping], timeout=LEAD_POLL)
            return False
        finally:
            stopping.cancel()

    async def lead(self) -> None:
        """Build the engine over every committed entry and serve like a single node."""
        server, node = self.server, self.node
        assert node is not None and self.journal_storage is not None and server.http is not None
        started = time.perf_counter()
        journal_storage = self.journal_storage
        assert self.compactor is not None
        # Each log from its newest snapshot and the records after it (the Raft snapshot's state and
        # the entries committed since), as a single node recovers.
        recovered = self.compactor.recovered()
        replayed = self.compactor.state.record_count
        storage = ReplicatedStorage(node.propose, recovered, space=lambda: journal_storage.low_on_space)
        # Deliveries and lease extensions are logged, so that the next leader continues the leases.
        engine = server.engine = Engine(storage, dataclasses.replace(server.engine_config(), log_leases=True))
        engine.on_failure = self._engine_failed
        await engine.open(now=time.time())
        await asyncio.sleep(0)  # let the node tick between the steps: its lease is short
        standby = server.hub
        server._wire(engine)
        if standby is not None and server.hub is not None:  # the listeners keep the standby's hub
            # Served only while the lease holds or a majority confirms it (raft/readguard.py).
            standby.service = ConfirmedService(server.service, node.reads.check, self.config.node_id)  # type: ignore[assignment]
            server.hub = standby
        if server.service is not None:  # deliveries too
            server.service.dispatcher.gate = node.reads.check
        self._leading = True
        if node.role is not Role.LEADER:  # deposed while the engine was built
            self._restart("lost the leadership while taking over")
        storage.announce(cluster_admin.leader_info(self))
        stats = engine.stats()
        log.info(
            "leading term %d: %d jobs in %d queues from the snapshot at index %d and %d records "
            "after it, in %.3f s",
            node.term,
            stats.total_jobs,
            len(stats.queues),
            self.compactor.journal.snapshot_index,
            replayed,
            time.perf_counter() - started,
        )
        await asyncio.sleep(0)
        await server._listen_redis()
        if server.redis is not None:  # RESP commands are served only while the leadership holds too
            server.redis.commands.gate = node.reads.http_gate(lambda: resp_unconfirmed(self.config.node_id))
        gate = node.reads.http_gate(lambda: unconfirmed(self.config.node_id))
        server.http.gate = gate
        if server.compat is not None:
            server.compat.gate = gate
        await server._serve_http()
        log.info("serving as the leader %.3f s after taking over", time.perf_counter() - started)

    # -- role changes and failures ----------------------------------------------------------------------

    def _role(self, role: Role) -> None:
        if self._leading and role is not Role.LEADER:
            self._restart(f"lost the leadership (now {role.value})")

    def _engine_failed(self, reason: str) -> None:
        node = self.node
        if node is not None and node.role is not Role.LEADER:
            self._restart(f"lost the leadership while committing ({reason})")
        else:
            self.server._storage_failed(reason)

    def _failed(self, reason: str) -> None:
        self.server._storage_failed(reason)

    def _restart(self, why: str) -> None:
        """Come back as a follower: replace this process by a fresh one (same pid, same arguments).
        Like a crash, and as safe: what was acknowledged is committed on a majority."""
        log.warning("restarting as a follower: %s", why)
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, sys.orig_argv)

    # -- what followers say -------------------------------------------------------------------------------

    def leader_info(self) -> LeaderInfo | None:
        node = self.node
        leader = None if node is None else node.leader_id
        if node is None or leader is None or leader == self.config.node_id:
            return None
        return node.addresses.get(leader)

    def standby_error(self) -> dict[str, Any]:
        """The HTTP API's 503 body on a member that does not lead."""
        leader = self.leader_info()
        where = f"; the leader is at {leader.http}" if leader else "; no leader is elected yet, retry"
        return {
            "error": {
                "code": "NOT_LEADER",
                "message": f"this cluster member ({self.config.node_id}) does not lead{where}",
                "leader": leader.http if leader else None,
            }
        }

    def cluster_endpoint(self, scope: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``GET /api/cluster`` as (status, JSON body): the token checked as on every API route."""
        if scope.get("method") != "GET":
            return 405, _error("METHOD_NOT_ALLOWED", "GET /api/cluster only")
        token = self.server.options.auth_token
        if token is not None:
            given = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
                return 401, _error("UNAUTHORIZED", "missing or wrong token: send Authorization: Bearer TOKEN")
        return 200, self.status()

    def status(self) -> dict[str, Any]:
        """``GET /api/cluster``: this member's view of every member."""
        node = self.node
        server = self.server
        if node is None:
            return {"node": self.config.node_id, "leader": None, "term": 0, "nodes": [],
                    "membership": {"index": 0, "pending": False}}  # fmt: skip
        me = self.config.node_id
        leader = node.leader_id
        connected = node.connected()
        matches = node.match_indexes()
        last = node.last_index
        commit = node.commit_index
        nodes = []
        members = node.members
        if me not in members:  # removed: its own row last, as "removed"
            members = {**members, me: self.config.raft_address}
        for member, raft in members.items():
            known = node.addresses.get(member)
            entry: dict[str, Any] = {
                "id": member,
                "raft": raft,
                "listen": known.listen if known else None,
                "http": known.http if known else None,
            }
            if member == me:
                leader_commit = node.leader_commit_index()
                entry["role"] = node.role.value if me in node.members else Role.REMOVED.value
                entry["listen"] = str(server.address)
                entry["http"] = server.http.url if server.http is not None else None
                entry["commit_index"] = commit
                entry["applied_index"] = node.applied_index
                entry["snapshot_index"] = self._journal.snapshot_index if self._journal else 0
                if node.role is Role.LEADER:
                    entry["lag"] = 0
                else:
                    entry["lag"] = (
                        None if leader_commit is None else max(0, leader_commit - node.applied_index)
                    )
            else:
                role = (
                    Role.LEADER if member == leader else Role.FOLLOWER if member in connected else Role.DOWN
                )
                entry["role"] = role.value
                match = matches.get(member)
                entry["commit_index"] = None if match is None else min(match, commit)
                entry["applied_index"] = None
                entry["lag"] = None if match is None else max(0, last - match)
            nodes.append(entry)
        membership = node.members_sync.membership
        return {
            "node": me,
            "leader": leader,
            "term": node.term,
            "membership": {"index": membership.index, "pending": membership.pending(commit)},
            "nodes": nodes,
        }

    # -- shutdown -------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the engine (its last commits wait a bounded time), stop the Raft node, close the
        journal; the server then only stops HTTP and releases the lock."""
        server = self.server
        if not self._leading:  # a leader's were closed by `Server.drain`
            server.listeners.close()
            if server.hub is not None:
                server.hub.close_all()
        if server.engine is not None:
            with contextlib.suppress(Exception):
                await server.engine.close()
            server.engine = None
        if self.node is not None:
            self.node.close()
        if self.journal_storage is not None:
            with contextlib.suppress(Exception):
                await self.journal_storage.close()
            server.storage = None


async def serve_cluster(options: ServerOptions) -> int:
    """`spitfire.server.runtime.serve` for ``--cluster``: follow, lead when elected, until SIGTERM."""
    assert options.cluster is not None
    server = Server(options)
    member = Member(server, options.cluster)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stop)
    try:
        await member.start()
        print(member.banner(), flush=True)
        if await member.wait_leadership():
            await member.lead()
            print(describe_json(server) if options.log_format == "json" else describe(server), flush=True)
            await server.run_until_stopped()
            await server.drain()
    finally:
        await member.close()
        await server.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return exit_code(server)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}
