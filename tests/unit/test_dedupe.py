"""The request-dedupe token store (server/dedupe.py): expiry by record time, bounds under a hostile
client, refusal of a token reused for another request, and one request per token at a time."""

from __future__ import annotations

import asyncio
import os
import tracemalloc

import pytest

from spitfire.server.dedupe import MAX_TOKEN_BYTES, RequestTokens, TokenEntry, check_token
from spitfire.server.errors import ValidationError

T0 = 1_700_000_000.0


def test_a_token_is_found_until_its_ttl_then_forgotten() -> None:
    tokens = RequestTokens(ttl=60.0)
    tokens.record(b"t", "q", "h", ["a", "b"], T0)
    assert tokens.lookup(b"t", "q", "h", T0 + 59.9) == TokenEntry("q", "h", ("a", "b"), T0 + 60.0)
    assert tokens.lookup(b"t", "q", "h", T0 + 60.0) is None
    assert tokens.lookup(b"unknown", "q", "h", T0) is None
    tokens.record(b"u", "q", "h", ["c"], T0 + 61.0)  # a later record trims the expired one
    assert len(tokens) == 1 and tokens.job_count == 1


def test_a_token_of_another_queue_or_name_is_refused() -> None:
    tokens = RequestTokens()
    tokens.record(b"t", "q", "h", ["a"], T0)
    for queue, name in (("other", "h"), ("q", "other")):
        with pytest.raises(ValidationError, match="already used") as info:
            tokens.lookup(b"t", queue, name, T0)
        assert info.value.field == "request_token"


@pytest.mark.parametrize("bad", [b"", b"x" * (MAX_TOKEN_BYTES + 1), "text", 1, bytearray(b"x"), [b"x"]])
def test_check_token_refuses_what_is_not_1_to_64_bytes(bad: object) -> None:
    with pytest.raises(ValidationError) as info:
        check_token(bad)
    assert info.value.field == "request_token"


def test_check_token_accepts_none_and_bytes() -> None:
    assert check_token(None) is None
    assert check_token(b"x" * MAX_TOKEN_BYTES) == b"x" * MAX_TOKEN_BYTES


def test_the_count_bound_forgets_the_oldest_first() -> None:
    tokens = RequestTokens(max_tokens=3)
    for i in range(5):
        tokens.record(bytes([i]), "q", "h", [str(i)], T0)
    assert len(tokens) == 3
    assert tokens.lookup(bytes([0]), "q", "h", T0) is None and tokens.lookup(bytes([1]), "q", "h", T0) is None
    assert tokens.lookup(bytes([4]), "q", "h", T0) is not None


def test_the_job_bound_counts_every_id_of_a_batch() -> None:
    tokens = RequestTokens(max_jobs=10)
    tokens.record(b"a", "q", "h", [str(i) for i in range(6)], T0)
    tokens.record(b"b", "q", "h", [str(i) for i in range(6)], T0)
    assert len(tokens) == 1 and tokens.job_count == 6
    assert tokens.lookup(b"b", "q", "h", T0) is not None


def test_recording_a_token_again_replaces_it() -> None:
    tokens = RequestTokens()
    tokens.record(b"t", "q", "h", ["a", "b"], T0)
    tokens.record(b"t", "q", "h", ["c"], T0 + 1)
    assert len(tokens) == 1 and tokens.job_count == 1
    entry = tokens.lookup(b"t", "q", "h", T0 + 1)
    assert entry is not None and entry.job_ids == ("c",)


def test_a_million_distinct_tokens_stay_bounded() -> None:
    """A hostile client that sends a fresh token with each of 1,000,000 enqueues: the store keeps
    its bound, and its memory stays what the bound allows (not what 1M tokens would take)."""
    tokens = RequestTokens(max_tokens=50_000)
    tracemalloc.start()
    try:
        for i in range(1_000_000):
            tokens.record(os.urandom(16), "q", "h", ("019b76daa800000000964b48",), T0 + i / 1000)
        current, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(tokens) == 50_000 and tokens.job_count == 50_000
    assert current < 50_000 * 400  # bytes: a few hundred per token at most


def test_snapshot_entries_are_per_queue_and_restore_as_written() -> None:
    tokens = RequestTokens()
    tokens.record(b"a", "q", "h", ["1"], T0)
    tokens.record(b"b", "other", "h", ["2"], T0)
    (kept,) = tokens.of_queue("q")
    again = RequestTokens()
    again.restore(*kept)
    assert again.lookup(b"a", "q", "h", T0) == TokenEntry("q", "h", ("1",), kept[1].expires_at)


def test_one_request_per_token_at_a_time() -> None:
    async def main() -> list[str]:
        tokens = RequestTokens()
        order: list[str] = []
        release = asyncio.Event()

        async def first() -> None:
            async with tokens.exclusive(b"t"):
                order.append("first in")
                await release.wait()
                order.append("first out")

        async def second() -> None:
            async with tokens.exclusive(b"t"):
                order.append("second in")

        async def other() -> None:
            async with tokens.exclusive(b"u"):
                order.append("other in")

        a = asyncio.ensure_future(first())
        await asyncio.sleep(0)
        b = asyncio.ensure_future(second())
        c = asyncio.ensure_future(other())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(a, b, c)
        return order

    assert asyncio.run(main()) == ["first in", "other in", "first out", "second in"]


def test_waiters_of_one_token_enter_one_at_a_time_and_a_cancelled_one_holds_nothing() -> None:
    async def main() -> tuple[list[str], int]:
        tokens = RequestTokens()
        order: list[str] = []
        gates = {name: asyncio.Event() for name in ("a", "b", "c")}

        async def holder(name: str) -> None:
            async with tokens.exclusive(b"t"):
                order.append(f"{name} in")
                await gates[name].wait()
                order.append(f"{name} out")

        a = asyncio.ensure_future(holder("a"))
        await asyncio.sleep(0)
        cancelled = asyncio.ensure_future(holder("x"))
        b = asyncio.ensure_future(holder("b"))
        c = asyncio.ensure_future(holder("c"))
        for _ in range(3):
            await asyncio.sleep(0)
        cancelled.cancel()  # a waiter that gives up: the holder and the other waiters go on
        for _ in range(3):
            await asyncio.sleep(0)
        assert order == ["a in"]
        gates["a"].set()
        await a
        for _ in range(3):
            await asyncio.sleep(0)
        assert order == ["a in", "a out", "b in"]  # one waiter in; the other waits for it
        gates["b"].set()
        gates["c"].set()
        await asyncio.gather(b, c)
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        return order, len(tokens._inflight)

    order, held = asyncio.run(main())
    assert order == ["a in", "a out", "b in", "b out", "c in", "c out"]
    assert held == 0  # nothing is left held


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError, match="above zero"):
        RequestTokens(ttl=0)
