"""`Client`: the synchronous client. It drives an `AsyncClient` on a private event loop.

The loop runs in one daemon thread shared by every `Client` of the process, so a `Client` works in
any program: scripts, threads, web frameworks, and Jupyter notebooks (whose own loop is already
running in the main thread). Calls from many threads at once are safe: they are all handed to the
one loop, which pipelines them on the client's connection.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar, Unpack

from .client import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, AsyncClient, BatchOptions, EnqueueOptions
from .models import Job, Stats

__all__ = ["Client", "run_sync"]

T = TypeVar("T")


class _LoopThread:
    """One event loop in a daemon thread, started on first use and again after a fork."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            # A forked child inherits the loop object but not the thread running it.
            if self._loop is None or self._pid != os.getpid() or not self._alive():
                self._start()
            assert self._loop is not None
            return self._loop

    def _alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        thread = threading.Thread(target=run, name="spitfire-client-loop", daemon=True)
        thread.start()
        ready.wait()
        self._loop, self._thread, self._pid = loop, thread, os.getpid()

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread


_LOOP = _LoopThread()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the shared client loop and wait for its result (used by Client and App)."""
    if _LOOP.in_loop_thread():
        coro.close()
        raise RuntimeError(
            "a synchronous spitfire call was made from the client's own event loop thread; "
            "use AsyncClient (await) there instead"
        )
    fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, _LOOP.loop())
    return fut.result()


class Client:
    """A synchronous client of one spitfire-server: the methods of `AsyncClient`, without await.

    ``url``, ``auth_token``, ``timeout``, ``connect_timeout`` and ``tls_ca`` are as in `AsyncClient`,
    and so are reconnection and which requests are resent after a dropped connection. Thread-safe:
    share one `Client` between threads; their requests are pipelined on one connection.

    Use it as ``with Client(...) as client:`` or call `close`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        auth_token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        tls_ca: str | None = None,
    ) -> None:
        self._async = AsyncClient(
            url, auth_token=auth_token, timeout=timeout, connect_timeout=connect_timeout, tls_ca=tls_ca
        )

    @property
    def url(self) -> str:
        return self._async.url

    @property
    def async_client(self) -> AsyncClient:
        """The AsyncClient this client drives (it lives on the private loop thread)."""
        return self._async

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def connect(self) -> None:
        """Connect now instead of on first use (see `AsyncClient.connect`)."""
        run_sync(self._async.connect())

    def close(self) -> None:
        """Close the connection. Idempotent."""
        run_sync(self._async.close())

    def enqueue(self, queue: str, name: str, payload: Any = None, **options: Unpack[EnqueueOptions]) -> str:
        """Add a job; returns its id once durable. See `AsyncClient.enqueue`."""
        return run_sync(self._async.enqueue(queue, name, payload, **options))

    def enqueue_many(
        self, queue: str, name: str, payloads: Sequence[Any], **options: Unpack[BatchOptions]
    ) -> list[str]:
        """Add one job per payload in one request; returns their ids. See `AsyncClient.enqueue_many`."""
        return run_sync(self._async.enqueue_many(queue, name, payloads, **options))

    def get(self, job_id: str) -> Job:
        """The job's record; `JobNotFound` if unknown. See `AsyncClient.get`."""
        return run_sync(self._async.get(job_id))

    def cancel(self, job_id: str) -> Job:
        """Cancel a job. See `AsyncClient.cancel`."""
        return run_sync(self._async.cancel(job_id))

    def retry(self, job_id: str) -> Job:
        """Run a dead or cancelled job again. See `AsyncClient.retry`."""
        return run_sync(self._async.retry(job_id))

    def delete(self, job_id: str) -> Job:
        """Delete a job. See `AsyncClient.delete`."""
        return run_sync(self._async.delete(job_id))

    def stats(self, queue: str | None = None) -> Stats:
        """Jobs per state per queue. See `AsyncClient.stats`."""
        return run_sync(self._async.stats(queue))

    def pause(self, queue: str) -> None:
        """Stop delivering the queue's jobs. See `AsyncClient.pause`."""
        run_sync(self._async.pause(queue))

    def resume(self, queue: str) -> None:
        """Deliver the queue's jobs again. See `AsyncClient.resume`."""
        run_sync(self._async.resume(queue))

    def delete_queue(self, queue: str, *, force: bool = False) -> None:
        """Delete a queue and its jobs (pending ones only with ``force``). See
        `AsyncClient.delete_queue`."""
        run_sync(self._async.delete_queue(queue, force=force))

    def ping(self) -> float:
        """Round trip to the server in seconds."""
        return run_sync(self._async.ping())
