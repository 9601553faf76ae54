"""Pre-vote and sticky leadership over pysyncobj's elections (pysyncobj has neither).

- **Pre-vote.** When a member's election timer runs out, pysyncobj would at once raise its term and
  ask for votes: a member that was cut off, and comes back, deposes a healthy leader that way.
  `Elections.before_tick` runs before each of pysyncobj's ticks and, when the timer has run out,
  asks every member for a *pre-vote* instead (``pre_vote``: the term it would stand in, its last
  log index and term), without changing its own term or vote, and re-arms the timer. A member
  grants one when it has not heard a leader for the election timeout's lower bound, does not lead,
  the proposed term is above its own and the asker's log is at least as up to date as its own.
  Only with a majority of grants (itself included) does the member let pysyncobj stand for
  election, in its next tick.
- **Sticky leadership.** A member drops a vote request (``request_vote``) that comes within the
  election timeout's lower bound after it last heard a leader (unless pysyncobj's leadership
  transfer asked for it): its term does not move and it votes for nobody. This is also what makes
  the leader's read lease safe (`spitfire.raft.readguard`). A member that starts counts as having
  just heard a leader (a fast restart cannot grant a vote that the lease rules out).

pysyncobj's private state is read and set here by its mangled names (the version is pinned; the
node checks the names it needs when it starts).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Elections"]

log = logging.getLogger("spitfire.raft")

_FOLLOWER, _CANDIDATE, _LEADER = 0, 1, 2
PRE_VOTE = "spitfire_pre_vote"
PRE_VOTE_ANSWER = "spitfire_pre_vote_answer"
#: Set on a vote request of a leadership transfer (the followers heard the leader just now).
TRANSFER = "spitfire_transfer"


class Elections:
    """Pre-vote and sticky leadership for one `spitfire.raft.RaftNode` (pysyncobj's SyncObj)."""

    def __init__(
        self,
        node: Any,
        low: float,
        *,
        name: Callable[[Any], str],
        kick: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._node = node
        self._low = low
        self._name = name
        self._kick = kick
        self._clock = clock
        #: When this member last accepted a leader's ``append_entries`` (or started).
        self.heard_leader_at = clock()
        self._round = 0
        self._round_term: int | None = None
        self._grants: set[str] = set()
        self._go = False
        #: A leadership transfer asked this member to stand, as of the current tick.
        self._transferring = False
        #: Counters for tests and logs.
        self.rounds = 0
        self.dropped_votes = 0

    # -- pysyncobj's state ----------------------------------------------------------------------------

    @property
    def _state(self) -> int:
        return int(self._node._SyncObj__raftState)

    @property
    def _term(self) -> int:
        return int(self._node._SyncObj__raftCurrentTerm)

    def _last_log(self) -> tuple[int, int]:
        entry = self._node._SyncObj__raftLog[-1]
        return int(entry[2]), int(entry[1])  # (term, index): compared as Raft compares logs

    def _voters(self) -> int:
        return len(self._node._SyncObj__otherNodes) + 1

    def started(self) -> None:
        """The node starts ticking now."""
        self.heard_leader_at = self._clock()

    def recently_heard(self) -> bool:
        """A leader was heard within the election timeout's lower bound."""
        return self._clock() - self.heard_leader_at < self._low

    # -- hooks ----------------------------------------------------------------------------------------

    def before_tick(self) -> None:
        """Run a pre-vote where pysyncobj would now stand for election."""
        node = self._node
        if self._state == _LEADER:
            self._round_term = None
            return
        now = self._clock()
        go, self._go = self._go, False
        # pysyncobj clears its flag in the very tick that sends the transfer's vote requests, before
        # it sends them: remember it for `outgoing`.
        self._transferring = bool(node._SyncObj__transferInProgress)
        if node._SyncObj__raftElectionDeadline >= now or node._SyncObj__transferInProgress:
            return  # (a leader was heard since the pre-vote passed: no election after all)
        if go:  # the pre-vote passed: pysyncobj stands for election in this tick
            return
        if not node._SyncObj__connectedNodes and self._voters() > 1:
            return  # pysyncobj waits for a connection anyway
        self._round += 1
        self.rounds += 1
        self._round_term = self._term + 1
        self._grants = set()
        node._SyncObj__raftElectionDeadline = now + node._SyncObj__generateRaftTimeout()
        last_term, last_index = self._last_log()
        ask = {"type": PRE_VOTE, "round": self._round, "term": self._round_term,
               "last_log_term": last_term, "last_log_index": last_index}  # fmt: skip
        for other in list(node._SyncObj__otherNodes):
            node._SyncObj__transport.send(other, dict(ask))
        self._maybe_go()

    def outgoing(self, message: dict[str, Any]) -> None:
        """Mark the vote requests of a leadership transfer (they must not be dropped)."""
        if message.get("type") == "request_vote" and (
            self._transferring or self._node._SyncObj__transferInProgress
        ):
            message[TRANSFER] = True

    def incoming(self, sender: Any, message: dict[str, Any]) -> bool:
        """Look at a message before pysyncobj does: False when it is consumed or dropped here."""
        kind = message.get("type")
        if kind == "append_entries":
            if _int(message.get("term")) >= self._term:
                self.heard_leader_at = self._clock()
            return True
        if kind == "request_vote":
            if self._state != _LEADER and self.recently_heard() and not message.get(TRANSFER):
                self.dropped_votes += 1
                log.debug("raft: vote request of %s dropped: a leader was heard just now", self._name(sender))
                return False
            return True
        if kind == PRE_VOTE:
            self._answer(sender, message)
            return False
        if kind == PRE_VOTE_ANSWER:
            self._count(sender, message)
            return False
        return True

    # -- pre-vote -------------------------------------------------------------------------------------

    def _answer(self, sender: Any, message: dict[str, Any]) -> None:
        term = _int(message.get("term"))
        theirs = (_int(message.get("last_log_term")), _int(message.get("last_log_index")))
        granted = (
            self._state != _LEADER
            and not self.recently_heard()
            and term > self._term
            and theirs >= self._last_log()
        )
        self._node._SyncObj__transport.send(
            sender, {"type": PRE_VOTE_ANSWER, "round": message.get("round"), "term": term, "granted": granted}
        )

    def _count(self, sender: Any, message: dict[str, Any]) -> None:
        if (
            message.get("granted") is not True
            or message.get("round") != self._round
            or self._round_term is None
            or message.get("term") != self._round_term
            or self._round_term != self._term + 1  # the term moved meanwhile: that round is over
            or self._state == _LEADER
        ):
            return
        self._grants.add(self._name(sender))
        self._maybe_go()

    def _maybe_go(self) -> None:
        if len(self._grants) + 1 > self._voters() / 2:
            log.info(
                "raft: pre-vote for term %s granted by a majority: standing for election", self._round_term
            )
            self._round_term = None
            self._go = True
            self._node._SyncObj__raftElectionDeadline = 0.0
            self._kick()


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else -1
