"""simplequeue's stale claims are reaped back to pending by the engine's maintenance, driven here
in-process with a clock moved past the lease (no waiting), and a nack puts a job behind the waiting
ones: the app over a real engine, through ASGI."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import httpx
import uvloop

from spitfire.compat.http import CompatApp
from spitfire.server.backpressure import Backpressure, Limits
from spitfire.server.dispatcher import Dispatcher
from spitfire.server.engine import Engine
from spitfire.server.service import Service
from spitfire.wal.memory import MemoryState, MemoryStorage

Body = Callable[[httpx.AsyncClient, Engine], Awaitable[None]]


def run(body: Body) -> None:
    async def main() -> None:
        engine = Engine(MemoryStorage(MemoryState()))
        await engine.open(time.time())
        dispatcher = Dispatcher(engine, time.time)
        service = Service(engine, dispatcher, Backpressure(Limits(100, 2**20, 100, 2**20), engine))
        compat = CompatApp(engine, service)
        await compat.app.start()  # type: ignore[no-untyped-call]
        transport = httpx.ASGITransport(app=compat.app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://compat") as client:
                await body(client, engine)
        finally:
            await compat.app.stop()  # type: ignore[no-untyped-call]
            await engine.close()

    uvloop.run(main())


def test_a_stale_claim_is_reaped_back_to_pending() -> None:
    async def body(client: httpx.AsyncClient, engine: Engine) -> None:
        await client.post("/topics/orders/enqueue", json={"id": "job-1", "payload": {"item": "book"}})
        first = (await client.post("/topics/orders/claim", json={"worker_id": "w1"})).json()
        assert first["attempts"] == 1
        await engine.tick(time.time() + 3600)  # far past the lease: maintenance reaps the claim
        status = (await client.get("/topics/orders/status")).json()
        assert status == {"pending": 1, "claimed": 0, "completed": 0, "total": 1}
        late = await client.post("/topics/orders/ack", json={"job_id": "job-1"})
        assert late.status_code == 409  # not claimed any more: the ack is refused, the job stays pending
        second = (await client.post("/topics/orders/claim", json={"worker_id": "w2"})).json()
        assert second == {"id": "job-1", "payload": {"item": "book"}, "attempts": 2}
        assert engine.get(engine.find_by_key("orders", "job-1").id).worker == "simplequeue:w2"  # type: ignore[union-attr]

    run(body)


def test_reaping_never_sends_a_simplequeue_job_to_the_dead_letters() -> None:
    async def body(client: httpx.AsyncClient, engine: Engine) -> None:
        await client.post("/topics/t/enqueue", json={"id": "j", "payload": 1})
        now = time.time()
        for i in range(30):  # more than the default 25 attempts
            r = await client.post("/topics/t/claim", json={"worker_id": "w"})
            assert r.status_code == 200 and r.json()["attempts"] == i + 1
            now += 3600
            await engine.tick(now)
        assert (await client.get("/topics/t/status")).json()["pending"] == 1

    run(body)


def test_a_nacked_job_is_pending_again_behind_the_waiting_ones() -> None:
    async def body(client: httpx.AsyncClient, engine: Engine) -> None:
        for name in ("a", "b"):
            await client.post("/topics/t/enqueue", json={"id": name, "payload": name})
        first = (await client.post("/topics/t/claim", json={"worker_id": "w"})).json()
        assert first["id"] == "a"
        assert (await client.post("/topics/t/nack", json={"job_id": "a"})).json() == {"status": "ok"}
        order = [(await client.post("/topics/t/claim", json={"worker_id": "w"})).json() for _ in range(2)]
        assert [(c["id"], c["attempts"]) for c in order] == [("b", 1), ("a", 1)]

    run(body)
