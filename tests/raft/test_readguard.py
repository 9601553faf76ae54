"""The leader's read check: a lease renewed by heartbeat rounds a majority echoed, requests that
wait (in order, bounded) for a round sent after they arrived, and refusals (timeout, not leading)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from spitfire.raft.readguard import STAMP, ReadGuard


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _guard(
    clock: Clock, *, members: int = 3, leading: Callable[[], bool] = lambda: True, max_waiting: int = 100
) -> tuple[ReadGuard, list[int]]:
    pokes: list[int] = []
    guard = ReadGuard(
        lambda: members, 0.135, 0.3, leading=leading, poke=lambda: pokes.append(1), clock=clock,
        max_waiting=max_waiting,
    )  # fmt: skip
    return guard, pokes


def _run(test: Callable[[], None]) -> None:
    async def main() -> None:
        test()

    asyncio.run(main())


def test_a_majority_echo_opens_a_lease_that_ends_on_time() -> None:
    def test() -> None:
        clock = Clock()
        guard, _ = _guard(clock)
        assert not guard.held()  # nothing echoed yet in this term
        stamp = guard.stamp(4)
        clock.now += 0.01
        guard.echoed("b", stamp)  # one follower and the leader: a majority of three
        assert guard.held()
        clock.now = stamp[1] + 0.134
        assert guard.held()
        clock.now = stamp[1] + 0.135
        assert not guard.held()

    _run(test)


def test_a_waiting_request_needs_a_round_sent_after_it_arrived() -> None:
    def test() -> None:
        clock = Clock()
        guard, pokes = _guard(clock)
        old = guard.stamp(4)  # sent before the request
        clock.now += 1.0  # (the lease of any earlier round is over)
        outcomes: list[bool] = []
        assert guard.check(outcomes.append) is False
        assert pokes == [1]  # a round is asked for at once
        guard.echoed("b", old)  # an answer to a round older than the request: not enough
        assert outcomes == []
        clock.now += 0.01
        new = guard.stamp(4)
        guard.echoed("c", new)
        assert outcomes == [True]
        assert guard.waiting == 0

    _run(test)


def test_requests_wait_in_order_and_later_ones_do_not_overtake() -> None:
    def test() -> None:
        clock = Clock()
        guard, _ = _guard(clock)
        order: list[str] = []
        guard.check(lambda ok: order.append("first"))
        stamp = guard.stamp(1)
        # The lease would hold once echoed, but the first request still waits: the second queues.
        assert guard.check(lambda ok: order.append("second")) is False
        guard.echoed("b", stamp)
        assert order == ["first", "second"]
        assert guard.check(lambda ok: order.append("third")) is True

    _run(test)


def test_a_request_not_confirmed_in_time_is_refused() -> None:
    async def main() -> None:
        guard = ReadGuard(lambda: 3, 0.135, 0.05, leading=lambda: True, poke=lambda: None)
        done = asyncio.get_running_loop().create_future()
        assert guard.check(done.set_result) is False
        assert await asyncio.wait_for(done, 5) is False
        assert guard.waiting == 0

    asyncio.run(main())


def test_a_member_that_does_not_lead_refuses_at_once_and_the_queue_is_bounded() -> None:
    def test() -> None:
        clock = Clock()
        leading = [False]
        guard, pokes = _guard(clock, leading=lambda: leading[0], max_waiting=2)
        outcomes: list[bool] = []
        assert guard.check(outcomes.append) is False
        assert outcomes == [False] and pokes == []
        leading[0] = True
        for _ in range(3):
            guard.check(outcomes.append)
        assert outcomes == [False, False] and guard.waiting == 2  # the third was refused
        guard.refuse_all()
        assert outcomes == [False, False, False, False]

    _run(test)


def test_echoes_of_another_term_or_malformed_count_nothing() -> None:
    def test() -> None:
        clock = Clock()
        guard, _ = _guard(clock)
        stamp = guard.stamp(4)
        guard.echoed("b", (3, stamp[1]))
        for bad in (None, "x", (4,), (4, "now"), [4, None], (4, 1, 2)):
            guard.echoed("b", bad)
        assert not guard.held()
        guard.stamp(5)  # a new term forgets what was confirmed in the old one
        guard.echoed("b", stamp)
        assert not guard.held()

    _run(test)


@pytest.mark.parametrize(("members", "need"), [(1, 0), (3, 1), (5, 2)])
def test_the_majority_counts_the_leader(members: int, need: int) -> None:
    def test() -> None:
        clock = Clock()
        guard, _ = _guard(clock, members=members)
        stamp = guard.stamp(2)
        for i in range(need - 1):
            guard.echoed(f"m{i}", stamp)
            assert not guard.held()
        if need:
            guard.echoed("last", stamp)
        assert guard.held()

    _run(test)


def test_a_follower_echoes_the_stamp_of_the_message_it_accepted() -> None:
    def test() -> None:
        guard, _ = _guard(Clock())
        guard.accepted("leader", {"type": "append_entries", STAMP: (7, 1.5)})
        answer: dict[str, object] = {"type": "next_node_idx"}
        guard.answer("leader", answer)
        assert answer[STAMP] == (7, 1.5)
        again: dict[str, object] = {"type": "next_node_idx"}
        guard.answer("leader", again)  # owed once
        assert STAMP not in again

    _run(test)
