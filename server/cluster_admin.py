"""What a cluster member answers beyond its Raft role: membership changes, and the compatibility
listeners' answers on a member that does not lead.

- `ClusterAdmin` is ``POST /api/cluster/members`` (the route is dashboard/cluster.py): the token,
  then one `spitfire.raft.MemberSync.change`, answered once the configuration entry is committed.
  The rules (one change at a time, no duplicate id or address, never below one member) are the
  Raft layer's (`spitfire.raft.membership`); this module maps them to HTTP statuses.
- `install` wires a `Member` for them (at start, before it leads): the HTTP API's follower answers
  and browser redirect, ``--compat-http``'s 503 ``NOT_LEADER`` naming the leader's compatibility
  URL, ``--redis``'s ``-NOTLEADER host:port`` errors, and the leader's step-down once its own
  removal is committed.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import TYPE_CHECKING, Any

from spitfire.raft import LeaderInfo, MembershipError

if TYPE_CHECKING:
    from .cluster import Member

__all__ = ["CHANGE_TIMEOUT", "ClusterAdmin", "check_token", "install", "leader_info"]

log = logging.getLogger("spitfire.server.cluster")

#: Seconds a membership change may take to commit before the request is answered 504 (it may
#: still commit: GET /api/cluster tells).
CHANGE_TIMEOUT = 30.0

#: The HTTP status of each `MembershipError` code.
STATUS = {"INVALID_ARGUMENT": 422, "NOT_FOUND": 404, "CONFLICT": 409, "NOT_LEADER": 503}


def _error(code: str, message: str, field: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    body.update(extra)
    return {"error": body}


def check_token(scope: dict[str, Any], token: str | None) -> tuple[int, dict[str, Any]] | None:
    """None when the request may go on (no token configured, or ``Authorization: Bearer`` it),
    else the 401 answer. Compared in constant time."""
    if token is None:
        return None
    given = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
    scheme, _, value = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
        return 401, _error("UNAUTHORIZED", "missing or wrong token: send Authorization: Bearer TOKEN")
    return None


class ClusterAdmin:
    """``POST /api/cluster/members`` of one member (dashboard/cluster.py's `ClusterAdmin` shape)."""

    def __init__(self, member: Member) -> None:
        self.member = member

    def authorize(self, scope: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
        """The 401 answer, or None when the token is right (or none is configured)."""
        return check_token(scope, self.member.server.options.auth_token)

    async def change(self, op: str, node: str, raft: str | None) -> tuple[int, dict[str, Any]]:
        """Add or remove one member; (status, JSON body). 200 once the new configuration is
        committed; 422/404/409 refused (nothing changed); 503 ``NOT_LEADER`` on a member that does
        not lead (with the leader's URL); 503 ``NOT_COMMITTED`` when the entry was discarded or the
        leadership changed; 504 ``TIMEOUT`` when it did not commit within `CHANGE_TIMEOUT`."""
        member = self.member
        raft_node = member.node
        if raft_node is None:
            return 503, member.standby_error()
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[tuple[bool, str | None]] = loop.create_future()

        def done(ok: bool, why: str | None) -> None:
            if not outcome.done():
                outcome.set_result((ok, why))

        before = dict(raft_node.members)
        try:
            config = raft_node.members_sync.change(op, node, raft, done)
        except MembershipError as exc:
            if exc.code == "NOT_LEADER":
                return 503, member.standby_error()
            return STATUS.get(exc.code, 422), _error(exc.code, exc.message, exc.field)
        raft_node._kick()  # propose in this loop pass, not at the next tick
        address = config.members.get(node) if op == "add" else before.get(node)
        log.info("membership: proposed to %s %s (%s)", op, node, address or "")
        try:
            ok, why = await asyncio.wait_for(asyncio.shield(outcome), CHANGE_TIMEOUT)
        except TimeoutError:
            return 504, _error(
                "TIMEOUT",
                f"the change was not committed within {CHANGE_TIMEOUT:g} s (a majority of the new "
                "configuration may be down); it may still commit: see GET /api/cluster",
            )
        if not ok:
            return 503, _error(
                "NOT_COMMITTED",
                f"the change was not committed ({why}); see GET /api/cluster, then retry on the leader",
            )
        log.info("membership: %s %s committed at entry %d", op, node, raft_node.members_sync.membership.index)
        return 200, {
            "change": {"op": op, "id": node, "raft": address},
            "index": raft_node.members_sync.membership.index,
            "cluster": member.status(),
        }


def leader_info(member: Member) -> LeaderInfo:
    """Where this member serves as the leader: announced in its first entry, so that followers point
    every kind of client (binary, HTTP, compatibility HTTP, RESP) at it."""
    server = member.server
    redis = None if server.redis is None else str(server.redis.url).removeprefix("redis://")
    compat = None if server.compat is None else str(server.compat.url)
    return LeaderInfo(member.config.node_id, str(server.address), server.http.url, compat, redis)


def install(member: Member) -> None:
    """Wire what a member answers before it leads (and the leader's step-down when removed)."""
    server = member.server
    node_id = member.config.node_id
    server.http.cluster_admin = ClusterAdmin(member)

    def leader_http() -> str | None:
        leader = member.leader_info()
        return leader.http if leader is not None else None

    server.http.leader_url = leader_http
    if server.compat is not None:

        def compat_standby() -> dict[str, Any]:
            leader = member.leader_info()
            url = None if leader is None else leader.compat
            if url is not None:
                where = f"; the leader serves these APIs at {url}"
            elif leader is not None:
                where = f"; the leader ({leader.node}) serves no --compat-http"
            else:
                where = "; no leader is elected yet, retry"
            return _error("NOT_LEADER", f"this cluster member ({node_id}) does not lead{where}", leader=url)

        server.compat.standby = compat_standby
    if member.node is not None:
        member.node.members_sync.on_removed = lambda: step_down(member)


def resp_not_leader(member: Member) -> str:
    """The text of a ``-NOTLEADER`` RESP error: the leader's RESP ``host:port`` (or ``none``) first."""
    leader = member.leader_info()
    me = member.config.node_id
    if leader is not None and leader.redis is not None:
        return f"{leader.redis} (this member, {me}, does not lead: send commands to the leader there)"
    if leader is not None:
        return f"none (this member, {me}, does not lead, and the leader, {leader.node}, serves no --redis)"
    return f"none (this member, {me}, does not lead and no leader is elected yet: retry shortly)"


def step_down(member: Member) -> None:
    """The leader's removal is committed: hand the leadership to the most caught-up member (Raft's
    TimeoutNow, best effort), and restart as a member that is no longer one (it then takes no
    part: stop it) once that member leads, or after the election timeout's lower bound."""
    node = member.node
    assert node is not None
    node.transferLeadership()
    asyncio.get_running_loop().call_later(
        node.config.election_timeout[0], member._restart, "removed from the cluster"
    )
