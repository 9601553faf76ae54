"""Leader following and resends with request tokens, against in-memory fake servers (sdk_fakeserver):
a follower answers NOT_LEADER naming the leader (or none, during an election), a leader drops a
connection with an enqueue in flight. The sync Client and the AsyncClient behave alike."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from sdk_fakeserver import FakeServer

import spitfire
from spitfire.protocol.messages import Error, ErrorCode, MessageType
from spitfire.protocol.session import Request


def not_leader(leader: Callable[[], str | None]) -> Callable[[Request], tuple[Error, int]]:
    """A follower: every request but PING is NOT_LEADER naming ``leader()``."""

    def answer(request: Request) -> tuple[Error, int]:
        return Error(ErrorCode.NOT_LEADER.value, "this member does not lead", leader()), MessageType.ERROR

    return answer


def run(test: Callable[[FakeServer, FakeServer], Awaitable[None]]) -> None:
    async def main() -> None:
        follower, leader = FakeServer(), FakeServer()
        await follower.start()
        await leader.start()
        try:
            await asyncio.wait_for(test(follower, leader), 30)
        finally:
            await follower.stop()
            await leader.stop()

    asyncio.run(main())


def urls(*servers: FakeServer) -> str:
    return "tcp://" + ",".join(f"127.0.0.1:{s.port}" for s in servers)


def enqueues(server: FakeServer) -> list[Request]:
    return [r for r in server.requests if r.type in (MessageType.ENQUEUE, MessageType.ENQUEUE_MANY)]


def test_a_not_leader_answer_sends_the_request_to_the_named_leader() -> None:
    async def test(follower: FakeServer, leader: FakeServer) -> None:
        follower.custom = not_leader(lambda: f"127.0.0.1:{leader.port}")
        async with spitfire.AsyncClient(urls(follower, leader)) as client:
            job_id = await client.enqueue("q", "n", 1)
            ids = await client.enqueue_many("q", "n", [2, 3])
            await client.ping()
            assert client.endpoint.port == leader.port
        assert job_id.startswith("job-") and len(ids) == 2
        (first,) = enqueues(follower)  # asked once, then never again
        sent = enqueues(leader)
        assert len(sent) == 2 and all(r.message.request_token is not None for r in sent)
        assert first.message.request_token == sent[0].message.request_token  # the same request, resent

    run(test)


def test_while_no_leader_is_known_the_client_tries_the_next_address() -> None:
    async def test(follower: FakeServer, leader: FakeServer) -> None:
        follower.custom = not_leader(lambda: None)  # an election: no leader yet
        async with spitfire.AsyncClient(urls(follower, leader)) as client:
            await client.enqueue("q", "n", 1)
        assert len(enqueues(follower)) == 1 and len(enqueues(leader)) == 1

    run(test)


def test_not_leader_is_raised_once_the_connect_timeout_passes() -> None:
    async def test(follower: FakeServer, other: FakeServer) -> None:
        follower.custom = other.custom = not_leader(lambda: None)
        async with spitfire.AsyncClient(urls(follower, other), connect_timeout=0.5) as client:
            with pytest.raises(spitfire.NotLeader) as info:
                await client.get("j1")
        assert info.value.leader is None
        assert len(follower.requests) + len(other.requests) >= 3  # it kept trying, with pauses

    run(test)


def test_an_enqueue_cut_by_a_lost_connection_is_resent_with_its_token() -> None:
    async def test(follower: FakeServer, leader: FakeServer) -> None:
        follower.custom = not_leader(lambda: f"127.0.0.1:{leader.port}")
        leader.drop_on = {MessageType.ENQUEUE}  # the first attempt is cut, the resend answered
        async with spitfire.AsyncClient(urls(leader, follower)) as client:
            await client.enqueue("q", "n", 1)
        tokens = [r.message.request_token for r in enqueues(leader)]
        assert len(tokens) == 2 and tokens[0] is not None and tokens[0] == tokens[1]

    run(test)


def test_one_address_sends_no_token_and_does_not_resend_an_enqueue() -> None:
    async def test(_follower: FakeServer, server: FakeServer) -> None:
        server.drop_on = {MessageType.ENQUEUE}
        async with spitfire.AsyncClient(server.url) as client:
            with pytest.raises(spitfire.ConnectionLost):
                await client.enqueue("q", "n", 1)
            await client.enqueue("q", "n", 2)
        assert [r.message.request_token for r in enqueues(server)] == [None, None]

    run(test)


def test_one_address_raises_not_leader_as_before() -> None:
    async def test(follower: FakeServer, leader: FakeServer) -> None:
        follower.custom = not_leader(lambda: f"127.0.0.1:{leader.port}")
        async with spitfire.AsyncClient(follower.url) as client:
            with pytest.raises(spitfire.NotLeader) as info:
                await client.enqueue("q", "n", 1)
        assert info.value.leader == f"127.0.0.1:{leader.port}"
        assert enqueues(leader) == []

    run(test)


def test_the_sync_client_follows_the_leader_and_resends_with_its_token() -> None:
    async def test(follower: FakeServer, leader: FakeServer) -> None:
        follower.custom = not_leader(lambda: f"127.0.0.1:{leader.port}")
        leader.drop_on = {MessageType.ENQUEUE_MANY}

        def use() -> None:
            with spitfire.Client([f"tcp://127.0.0.1:{follower.port}", leader.url]) as client:
                assert client.enqueue("q", "n", 1).startswith("job-")
                assert len(client.enqueue_many("q", "n", [2, 3])) == 2
                assert client.stats().total_jobs == 2

        await asyncio.to_thread(use)
        many = [r for r in enqueues(leader) if r.type is MessageType.ENQUEUE_MANY]
        assert len(many) == 2 and many[0].message.request_token == many[1].message.request_token
        assert many[0].message.request_token is not None

    run(test)
