"""Before recovery is done the HTTP listener already answers: /health 200, /ready and the API 503."""

from __future__ import annotations

import asyncio

import httpx
import uvloop

from spitfire.dashboard import HttpServer


def test_before_recovery_health_answers_and_the_rest_is_503() -> None:
    async def body() -> None:
        http = HttpServer(None, "127.0.0.1", 0, grace=1)
        await http.start()
        try:
            async with httpx.AsyncClient(base_url=http.url, timeout=10) as client:
                health = await client.get("/health")
                assert health.status_code == 200 and health.json()["status"] == "ok"
                ready = await client.get("/ready")
                assert ready.status_code == 503 and "recovery" in ready.json()["checks"]
                api = await client.post("/api/queues/q/jobs", json={"name": "a"})
                assert api.status_code == 503 and api.json()["error"]["code"] == "STARTING"
                assert api.headers["retry-after"] == "1"
        finally:
            await http.stop()
        await asyncio.sleep(0)

    uvloop.run(body())
