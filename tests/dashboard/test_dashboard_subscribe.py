"""SUBSCRIBE's host, pid and concurrency over a real connection: shown by GET /api/workers, checked
by the server (BAD_REQUEST naming the field, nothing registered), and optional (a client that
sends the older 3-field body subscribes as before)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from httphelpers import HttpServer

from spitfire.protocol import messages as m
from spitfire.protocol.messages import MessageType

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))
from protoclient import ProtoClient, ServerError


class OldSubscribe(m.Body):
    """SUBSCRIBE as clients before host, pid and concurrency encode it (3 fields)."""

    queues: list[str]
    credits: int
    name: str = ""


def _worker(server: HttpServer, worker_id: str) -> dict[str, Any]:
    (w,) = [w for w in server.http.get("/api/workers").json()["workers"] if w["id"] == worker_id]
    return w


def test_subscribe_fields_old_and_new_and_bad(server: HttpServer, queue: str) -> None:
    async def body() -> None:
        new = await ProtoClient.connect(server.tcp_port)
        described = m.Subscribe([queue], 5, "box:77", host="box", pid=77, concurrency=4)
        wid = (await new.call(MessageType.SUBSCRIBE, described)).worker_id
        w = _worker(server, wid)
        assert (w["host"], w["pid"], w["concurrency"], w["name"], w["queues"]) == (
            "box",
            77,
            4,
            "box:77",
            [queue],
        )
        old = await ProtoClient.connect(server.tcp_port)
        old_id = (await old.call(MessageType.SUBSCRIBE, OldSubscribe([queue], 1, "legacy"))).worker_id
        w = _worker(server, old_id)
        assert (w["host"], w["pid"], w["concurrency"], w["name"]) == (None, None, None, "legacy")
        for bad, field in [
            (m.Subscribe([queue], 1, host="h" * 256), "host"),
            (m.Subscribe([queue], 1, pid=-1), "pid"),
            (m.Subscribe([queue], 1, pid=2**31), "pid"),
            (m.Subscribe([queue], 1, concurrency=-3), "concurrency"),
        ]:
            c = await ProtoClient.connect(server.tcp_port)
            with pytest.raises(ServerError) as info:
                await c.call(MessageType.SUBSCRIBE, bad)
            assert info.value.code == "BAD_REQUEST" and info.value.field == field
            c.close()
        workers = server.http.get("/api/workers").json()["workers"]
        assert sorted(w["id"] for w in workers if queue in w["queues"]) == sorted([wid, old_id])
        new.close()
        old.close()

    asyncio.run(body())
