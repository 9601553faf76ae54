"""Request-dedupe tokens against a real single spitfire-server: a resent token answers the first
job (a restart in between too), a malformed one is BAD_REQUEST naming it, the token is never shown,
and a client given several addresses reaches the one that answers and tokens its enqueues."""

from __future__ import annotations

import asyncio
import urllib.request

import pytest
from sdk_helpers import ServerProcess, free_port

import spitfire
from spitfire.protocol.messages import Enqueue, EnqueueMany, MessageType

TOKEN = bytes.fromhex("9f3c1ad2e45b6708a1b2c3d4e5f60718")
OTHER = bytes.fromhex("00112233445566778899aabbccddeeff")


async def _send_twice(url: str, queue: str) -> tuple[list[str], list[str]]:
    """An ENQUEUE and an ENQUEUE_MANY, each sent twice with its token; the ids of each answer."""
    one = Enqueue(queue, "job", b"\x80", request_token=TOKEN)
    many = EnqueueMany(queue, "job", [b"\x80", b"\x81"], request_token=OTHER)
    async with spitfire.AsyncClient(url) as client:
        singles = [(await client._call(MessageType.ENQUEUE, one, queue=queue)).job_id for _ in range(2)]
        batches = [
            (await client._call(MessageType.ENQUEUE_MANY, many, queue=queue)).job_ids for _ in range(2)
        ]
    assert batches[0] == batches[1]
    return singles, batches[0]


def test_a_resent_token_answers_the_first_jobs_even_after_a_restart(own_server: ServerProcess) -> None:
    queue = "tokens"
    (single, again), batch = asyncio.run(_send_twice(own_server.url, queue))
    assert single == again
    own_server.terminate()
    own_server.start()
    (after, _), batch_after = asyncio.run(_send_twice(own_server.url, queue))
    assert after == single and batch_after == batch
    with spitfire.Client(own_server.url) as client:
        assert client.stats(queue).queues[queue].total == 3
        # Never shown: not the job's idempotency key, not in its HTTP record.
        assert client.get(single).idempotency_key is None
    url = f"http://127.0.0.1:{own_server.http_port}/api/jobs/{single}"
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    assert single in text
    assert TOKEN.hex() not in text and "request_token" not in text


@pytest.mark.parametrize("bad", [b"", b"x" * 65])
def test_a_malformed_token_is_bad_request_naming_it(server: ServerProcess, queue: str, bad: bytes) -> None:
    async def main() -> None:
        async with spitfire.AsyncClient(server.url) as client:
            for mtype, message in (
                (MessageType.ENQUEUE, Enqueue(queue, "job", b"\x80", request_token=bad)),
                (MessageType.ENQUEUE_MANY, EnqueueMany(queue, "job", [b"\x80"], request_token=bad)),
            ):
                with pytest.raises(spitfire.BadRequest) as info:
                    await client._call(mtype, message, queue=queue)
                assert info.value.field == "request_token"
            assert queue not in (await client.stats()).queues

    asyncio.run(main())


def test_a_client_of_several_addresses_reaches_the_one_that_answers(
    server: ServerProcess, queue: str
) -> None:
    """One address is down: the client connects to the other, and its enqueues carry tokens (so
    they are resent after a lost connection; a resend creates nothing twice)."""
    url = f"tcp://127.0.0.1:{free_port()},127.0.0.1:{server.port}"
    with spitfire.Client(url, connect_timeout=10) as client:
        assert client.url == url
        ids = [client.enqueue(queue, "job", {"n": n}) for n in range(5)]
        ids += client.enqueue_many(queue, "job", [{"n": 5}, {"n": 6}])
        assert client.async_client.endpoint.url == server.url
    assert len(set(ids)) == 7

    async def main() -> str:
        async with spitfire.AsyncClient([f"tcp://127.0.0.1:{free_port()}", server.url]) as client:
            job_id = await client.enqueue(queue, "job", {"n": 7})
            assert client.endpoint.url == server.url
            return str(job_id)

    ids.append(asyncio.run(main()))
    with spitfire.Client(server.url) as client:
        assert client.stats(queue).queues[queue].total == 8
