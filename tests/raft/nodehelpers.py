"""Helpers of the tests that run Raft nodes in this process: free ports, waiting on a condition."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def free_ports(count: int) -> list[int]:
    """``count`` loopback ports free now (bound together, so they differ)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


async def until(what: str, check: Callable[[], T | None], timeout: float = 30.0) -> T:
    """``check()``'s first truthy value, polled every 10 ms; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what}: not within {timeout} s")
