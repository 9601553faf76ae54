"""Pre-vote and sticky leadership over pysyncobj's election state (a stand-in for its fields): a
member whose timer ran out asks for pre-votes without moving its term, stands only with a
majority of grants, and members that heard a leader just now grant nothing and drop vote requests."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from spitfire.raft.prevote import PRE_VOTE, PRE_VOTE_ANSWER, TRANSFER, Elections


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class Peer:
    def __init__(self, address: str) -> None:
        self.address = address


class Transport:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send(self, node: Peer, message: dict[str, Any]) -> bool:
        self.sent.append((node.address, message))
        return True


def _node(clock: Clock, *, state: int = 0, term: int = 3, log: tuple[int, int] = (3, 10)) -> Any:
    b, c = Peer("b"), Peer("c")
    node = SimpleNamespace()
    node._SyncObj__raftState = state
    node._SyncObj__raftCurrentTerm = term
    node._SyncObj__raftLog = [(b"", 1, 0), (b"", log[1], log[0])]
    node._SyncObj__otherNodes = {b, c}
    node._SyncObj__connectedNodes = {b, c}
    node._SyncObj__raftElectionDeadline = clock.now + 1
    node._SyncObj__transferInProgress = False
    node._SyncObj__transport = Transport()
    node._SyncObj__generateRaftTimeout = lambda: 0.2
    node.peers = {"b": b, "c": c}
    return node


def _elections(clock: Clock, node: Any) -> tuple[Elections, list[int]]:
    kicks: list[int] = []
    e = Elections(node, 0.15, name=lambda peer: peer.address, kick=lambda: kicks.append(1), clock=clock)
    return e, kicks


def test_a_timed_out_member_asks_for_pre_votes_without_moving_its_term() -> None:
    clock = Clock()
    node = _node(clock)
    e, kicks = _elections(clock, node)
    clock.now += 0.5
    node._SyncObj__raftElectionDeadline = clock.now - 0.01
    e.before_tick()
    sent = node._SyncObj__transport.sent
    assert sorted(a for a, _ in sent) == ["b", "c"]
    ask = sent[0][1]
    assert ask["type"] == PRE_VOTE and ask["term"] == 4
    assert (ask["last_log_term"], ask["last_log_index"]) == (3, 10)
    assert node._SyncObj__raftCurrentTerm == 3  # no term, no vote, no candidate state
    assert node._SyncObj__raftState == 0
    assert node._SyncObj__raftElectionDeadline > clock.now  # pysyncobj does not stand in this tick
    # One grant (with its own) is a majority of three: the next tick lets pysyncobj stand.
    e.incoming(node.peers["b"], {"type": PRE_VOTE_ANSWER, "round": ask["round"], "term": 4, "granted": True})
    assert node._SyncObj__raftElectionDeadline == 0.0 and kicks == [1]
    sent.clear()
    e.before_tick()
    assert sent == [] and node._SyncObj__raftElectionDeadline == 0.0  # left for pysyncobj's election


def test_refusals_and_stale_answers_do_not_make_a_member_stand() -> None:
    clock = Clock()
    node = _node(clock)
    e, kicks = _elections(clock, node)
    clock.now += 0.5
    node._SyncObj__raftElectionDeadline = clock.now - 0.01
    e.before_tick()
    ask = node._SyncObj__transport.sent[0][1]
    e.incoming(node.peers["b"], {"type": PRE_VOTE_ANSWER, "round": ask["round"], "term": 4, "granted": False})
    e.incoming(
        node.peers["c"], {"type": PRE_VOTE_ANSWER, "round": ask["round"] - 1, "term": 4, "granted": True}
    )
    e.incoming(node.peers["c"], {"type": PRE_VOTE_ANSWER, "round": ask["round"], "term": 9, "granted": True})
    assert kicks == [] and node._SyncObj__raftElectionDeadline > clock.now


def test_a_member_that_heard_a_leader_just_now_refuses_pre_votes_and_drops_vote_requests() -> None:
    clock = Clock()
    node = _node(clock)
    e, _ = _elections(clock, node)
    clock.now += 1
    assert e.incoming(node.peers["b"], {"type": "append_entries", "term": 3}) is True
    clock.now += 0.1  # within the lower bound of the election timeout
    assert e.incoming(node.peers["c"], {"type": PRE_VOTE, "round": 1, "term": 4,
                                        "last_log_term": 3, "last_log_index": 10}) is False  # fmt: skip
    address, answer = node._SyncObj__transport.sent[-1]
    assert address == "c" and answer["type"] == PRE_VOTE_ANSWER and answer["granted"] is False
    vote = {"type": "request_vote", "term": 4, "last_log_term": 3, "last_log_index": 10}
    assert e.incoming(node.peers["c"], dict(vote)) is False and e.dropped_votes == 1
    assert e.incoming(node.peers["c"], {**vote, TRANSFER: True}) is True  # a leadership transfer
    clock.now += 0.06  # the lower bound has passed: grants and votes again
    e.incoming(node.peers["c"], {"type": PRE_VOTE, "round": 2, "term": 4,
                                 "last_log_term": 3, "last_log_index": 10})  # fmt: skip
    assert node._SyncObj__transport.sent[-1][1]["granted"] is True
    assert e.incoming(node.peers["c"], dict(vote)) is True


def test_pre_votes_are_refused_to_a_staler_log_a_lower_term_and_by_the_leader() -> None:
    clock = Clock()
    node = _node(clock, log=(3, 10))
    e, _ = _elections(clock, node)
    clock.now += 1
    sent = node._SyncObj__transport.sent

    def ask(term: int, last_term: int, last_index: int) -> bool:
        e.incoming(node.peers["b"], {"type": PRE_VOTE, "round": 1, "term": term,
                                     "last_log_term": last_term, "last_log_index": last_index})  # fmt: skip
        return bool(sent[-1][1]["granted"])

    assert ask(4, 3, 10) and ask(4, 4, 1)
    assert not ask(4, 3, 9)  # shorter log of the same term
    assert not ask(4, 2, 99)  # older last term
    assert not ask(3, 3, 10)  # not above this member's term
    node._SyncObj__raftState = 2
    assert not ask(4, 3, 10)  # the leader grants none
    assert not ask(4, "x", None)  # type: ignore[arg-type]  # malformed: refused, not crashed


def test_a_member_that_just_started_drops_vote_requests_for_the_lower_bound() -> None:
    clock = Clock()
    node = _node(clock)
    e, _ = _elections(clock, node)
    e.started()
    vote = {"type": "request_vote", "term": 4, "last_log_term": 3, "last_log_index": 10}
    assert e.incoming(node.peers["b"], dict(vote)) is False
    clock.now += 0.16
    assert e.incoming(node.peers["b"], dict(vote)) is True
