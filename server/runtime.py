"""Runs the server: recovers the data directory, serves the binary protocol, shuts down cleanly.

Start-up: lock the data directory, listen at --http (``spitfire.dashboard``, uvicorn on this same
loop: /health answers at once, /ready and the API answer 503 until recovery is done), recover the
data directory, then listen (TCP, and QUIC on the same port number unless --no-quic), serve the
HTTP API, and print what is served. SIGTERM and SIGINT: stop accepting, end the HTTP API (event streams
closed, in-flight requests finished), send GOAWAY to every connection, let in-flight requests
finish (at most ``shutdown_grace`` seconds), close the connections, fsync every log and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from spitfire.protocol.messages import PROTOCOL_VERSION, Welcome
from spitfire.protocol.tcp import serve_tcp
from spitfire.server.backpressure import Backpressure, Limits
from spitfire.server.config import EngineConfig
from spitfire.server.datadir import DataDirLock
from spitfire.server.dispatcher import Dispatcher
from spitfire.server.engine import Engine
from spitfire.server.listener import ConnectionHub, Listeners
from spitfire.server.maintenance import Maintenance
from spitfire.server.options import Address, ServerOptions
from spitfire.server.service import Service
from spitfire.server.tracehooks import Tracer
from spitfire.wal import FileStorage

log = logging.getLogger("spitfire.server")

#: The server's name in WELCOME.
SERVER_NAME = "spitfire-server/0.1.0"
#: Exit code after a fail-stop (a failed fdatasync): the next start recovers what is durable.
EXIT_STORAGE_FAILED = 3
#: /ready answers 503 when the data directory's file system has less free space than this.
READY_MIN_FREE = 16 * 2**20
#: Seconds the shutdown waits for the last spans to be exported (``--otel``).
TRACE_EXPORT_GRACE = 5.0


class ListenError(Exception):
    """The server cannot listen where it was told to (port in use, address not local, bad TLS files)."""


#: Allocations between young collections once the server runs (CPython's default is 700). Every
#: request allocates a few short-lived tracked objects; with the default, the few alive at each young
#: collection get promoted and trigger full collections so often that their traversal of the
#: index's big containers stalled the loop for 50-150 ms at 20,000 enqueues/s (measured A/B with the
#: collector on and off). Jobs themselves are not tracked (gc=False), so little is ever collectable.
GC_THRESHOLDS = (50_000, 20, 100)


def check_port_free(host: str, port: int, *, udp: bool, http: bool = False, flag: str = "--http") -> None:
    """Fail fast when the binary protocol's port is taken, before creating the data directory and
    recovering it (which can take a while): bind and release it (TCP, and UDP for QUIC).

    :raises ListenError: the port is in use or the address is not local (an HTTP port's message
        names its ``flag``).
    """
    if port == 0:
        return
    kinds = [(socket.SOCK_STREAM, "tcp")] + ([(socket.SOCK_DGRAM, "udp")] if udp else [])
    for kind, name in kinds:
        try:
            infos = socket.getaddrinfo(host, port, type=kind)
            family, _, _, _, address = infos[0]
            with socket.socket(family, kind) as sock:
                if kind == socket.SOCK_STREAM:  # as the real listener does: TIME_WAIT is no conflict
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(address)
        except OSError as exc:
            why = exc.strerror or exc
            if http:
                raise ListenError(
                    f"cannot serve HTTP on {host}:{port}: {why}; is another server running there? "
                    f"Pick another {flag}"
                ) from exc
            hint = " (use --no-quic to serve TCP only)" if name == "udp" else ""
            raise ListenError(
                f"cannot listen on {name}://{host}:{port}: {why}; is another server running there? "
                f"Pick another --listen{hint}"
            ) from exc


def tune_garbage_collector() -> None:
    """Freeze what recovery built (never collectable) and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class Server:
    """One spitfire-server: storage, engine, maintenance and listeners, on the running event loop."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.storage: FileStorage | None = None
        self.engine: Engine | None = None
        self.service: Service | None = None
        self.hub: ConnectionHub | None = None
        self.maintenance: Maintenance | None = None
        self.listeners = Listeners()
        #: Where the binary protocol is served (the port is the bound one when 0 was asked for).
        self.address = options.listen
        self._stopping = asyncio.Event()
        self._lock = DataDirLock(options.data_dir)
        self._background: set[asyncio.Task[None]] = set()
        #: The HTTP API (spitfire.dashboard.server.HttpServer) once serving.
        self.http: Any = None
        #: The compatibility listener (an HttpServer serving spitfire.compat) with --compat-http.
        self.compat: Any = None
        #: Why the storage failed (fail-stop), once it has.
        self.failure: str | None = None
        #: The RESP2 listener (spitfire.compat.resp.RespServer) once serving (--redis).
        self.redis: Any = None
        #: Makes the OpenTelemetry spans (``--otel``; server/tracing.py), else None.
        self.tracer: Tracer | None = None

    async def start(self) -> None:
        """Open the data directory, recover every queue, then start serving."""
        started = time.perf_counter()
        opts = self.options
        # A taken port fails before any work: before a new data directory is created, and before
        # an existing one is recovered (after its lock, whose "in use by pid N" says more when a
        # second server is started on the same directory).
        existed = opts.data_dir.is_dir()
        if not existed:
            self._check_ports()
        opts.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        if existed:
            self._check_ports()
        await self._start_http()
        self.storage = FileStorage(opts.data_dir)
        engine = self.engine = Engine(self.storage, self.engine_config())
        engine.on_failure = self._storage_failed
        await engine.open(now=time.time())
        stats = engine.stats()
        log.info(
            "recovered %d jobs in %d queues from %s in %.3f s",
            stats.total_jobs,
            len(stats.queues),
            opts.data_dir,
            time.perf_counter() - started,
        )
        self._wire(engine)
        tune_garbage_collector()
        await self._listen()
        await self._listen_redis()
        await self._serve_http()

    def engine_config(self) -> EngineConfig:
        """The engine's configuration from the options."""
        opts = self.options
        return EngineConfig(
            durability=opts.durability,
            max_payload=opts.max_payload,
            max_result=opts.max_payload,
            max_queues=opts.max_queues,
            snapshot_every=opts.snapshot_every,
            retain_succeeded=opts.retain_succeeded,
            retain_dead=opts.retain_dead,
            retain_cancelled=opts.retain_cancelled,
            retain_max_per_queue=opts.retain_max_per_queue,
        )

    def _check_ports(self) -> None:
        """:raises ListenError: the binary protocol's or the HTTP port is taken."""
        opts = self.options
        if opts.redis is not None:
            try:
                check_port_free(opts.redis.host, opts.redis.port, udp=False)
            except ListenError as exc:
                why = getattr(exc.__cause__, "strerror", None) or exc.__cause__
                raise ListenError(
                    f"cannot serve RESP on {opts.redis}: {why}; is another server running there? "
                    "Pick another --redis"
                ) from exc
        check_port_free(opts.listen.host, opts.listen.port, udp=not opts.no_quic)
        check_port_free(opts.http.host, opts.http.port, udp=False, http=True)
        if opts.compat_http is not None:
            check_port_free(
                opts.compat_http.host, opts.compat_http.port, udp=False, http=True, flag="--compat-http"
            )

    def _wire(self, engine: Engine) -> None:
        opts = self.options
        maintenance = self.maintenance = Maintenance(engine)
        dispatcher = Dispatcher(engine, time.time, maintenance.note)
        engine.on_ready = dispatcher.on_ready
        limits = Limits(opts.max_queue_jobs, opts.max_queue_bytes, opts.max_jobs, opts.max_bytes)
        backpressure = Backpressure(limits, engine)
        engine.admission = backpressure.admit
        engine.on_deadline = maintenance.note
        self.service = Service(engine, dispatcher, backpressure)
        if opts.otel:
            self._trace(engine, dispatcher, self.service)
        welcome = Welcome(
            PROTOCOL_VERSION,
            SERVER_NAME,
            max_frame=64 * 2**20,
            max_payload=opts.max_payload,
            heartbeat_interval=opts.heartbeat_interval,
        )
        self.hub = ConnectionHub(
            self.service,
            welcome,
            opts.auth_token,
            max_connections=opts.max_connections,
            handshake_timeout=opts.handshake_timeout,
        )
        dispatcher.all_ready()

    def _trace(self, engine: Engine, dispatcher: Dispatcher, service: Service) -> None:
        """``--otel``: hand the tracer's hooks to the parts that report to it (imported only now:
        without the flag no OpenTelemetry module is loaded)."""
        from spitfire.server.tracing import ServerTracer

        tracer = self.tracer = ServerTracer.from_env()
        service.tracer = tracer
        engine.commits.on_durable = tracer.durable
        dispatcher.on_deliver = tracer.delivered
        log.info("tracing: spans go over OTLP/HTTP as the OTEL_* environment variables say")

    async def _stop_tracing(self) -> None:
        """Export the spans still buffered, waiting at most `TRACE_EXPORT_GRACE` seconds (an
        unreachable collector must not hold the exit up: its exporter retries for longer)."""
        tracer = self.tracer
        if tracer is None:
            return
        self.tracer = None
        done = asyncio.get_running_loop().create_future()

        def shutdown() -> None:
            try:
                tracer.shutdown()
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                    done.get_loop().call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        # A daemon thread, not the loop's executor: the interpreter would wait for that one at exit.
        threading.Thread(target=shutdown, name="spitfire-trace-export", daemon=True).start()
        try:
            await asyncio.wait_for(done, TRACE_EXPORT_GRACE)
        except TimeoutError:
            log.warning("tracing: the last spans were not exported within %.0f s", TRACE_EXPORT_GRACE)

    async def _listen(self) -> None:
        assert self.hub is not None
        opts = self.options
        host, port = opts.listen.host, opts.listen.port
        try:
            tcp = await serve_tcp(host, port, self.hub.factory)
        except OSError as exc:
            raise ListenError(f"cannot listen on tcp://{opts.listen}: {exc.strerror or exc}") from exc
        if port == 0 and tcp.sockets:
            port = int(tcp.sockets[0].getsockname()[1])
        self.address = Address(host, port)
        self.listeners.add(tcp, f"tcp://{self.address}")
        if not opts.no_quic:
            await self._listen_quic(host, port)

    async def _listen_quic(self, host: str, port: int) -> None:
        assert self.hub is not None
        opts = self.options
        try:  # imported lazily: QUIC (aioquic, cryptography) is optional at run time
            from spitfire.protocol.quic import serve_quic
            from spitfire.server.tls import ensure_certificate
        except ImportError as exc:
            log.warning("QUIC is not available (%s); serving TCP only", exc)
            return
        try:
            if opts.tls_cert is not None and opts.tls_key is not None:
                cert, key = opts.tls_cert, opts.tls_key
            else:
                cert, key = ensure_certificate(Path(opts.data_dir) / "tls")
            quic = await serve_quic(
                host,
                port,
                self.hub.factory,
                certfile=str(cert),
                keyfile=str(key),
                max_connections=opts.max_connections,
                stream_timeout=opts.handshake_timeout,
            )
        except (OSError, ValueError) as exc:  # port in use, unreadable or mismatched PEM files
            raise ListenError(
                f"cannot serve QUIC on udp port {port}: {exc} (use --tls-cert/--tls-key, or --no-quic)"
            ) from exc
        self.listeners.add(quic, f"quic://{self.address}")

    async def _listen_redis(self, not_leader: Callable[[], str] | None = None) -> None:
        """Serve RESP2 at --redis, when given (imported here: compat uses the server). A cluster
        member that does not lead listens with ``not_leader`` (the text of its ``-NOTLEADER``
        errors) and no engine; once it leads, the same listener is given the engine."""
        opts = self.options
        if opts.redis is None:
            return
        from spitfire.compat.resp import RespServer
        from spitfire.server.consumers import Consumers

        if self.redis is not None:  # a cluster member's listener, refusing with NOTLEADER until now
            assert self.engine is not None
            self.redis.serve(Consumers(self.engine))
            return
        assert self.engine is not None or not_leader is not None
        redis = RespServer(
            None if self.engine is None else Consumers(self.engine),
            not_leader=not_leader,
            token=opts.auth_token,
            max_connections=opts.max_connections,
            handshake_timeout=opts.handshake_timeout,
            max_payload=opts.max_payload,
        )
        try:
            await redis.start(opts.redis.host, opts.redis.port)
        except OSError as exc:
            raise ListenError(f"cannot serve RESP on {opts.redis}: {exc.strerror or exc}") from exc
        self.redis = redis

    async def _start_http(self) -> None:
        """Listen at --http before recovery: /health answers, /ready says 503 until the API is served
        (imported here: the dashboard uses the server)."""
        from spitfire.dashboard import HttpServer

        opts = self.options
        http = HttpServer(
            None, opts.http.host, opts.http.port, grace=opts.shutdown_grace,
            certfile=opts.tls_cert, keyfile=opts.tls_key,  # HTTPS only with explicit files
        )  # fmt: skip
        try:
            await http.start()
        except OSError as exc:
            raise ListenError(f"cannot serve HTTP on {opts.http}: {exc.strerror or exc}") from exc
        self.http = http
        if opts.compat_http is not None:  # its /health and /healthz answer during recovery too
            compat = HttpServer(
                None, opts.compat_http.host, opts.compat_http.port, grace=opts.shutdown_grace,
                certfile=opts.tls_cert, keyfile=opts.tls_key, health_paths=frozenset({"/health", "/healthz"}),
            )  # fmt: skip
            try:
                await compat.start()
            except OSError as exc:
                raise ListenError(
                    f"cannot serve HTTP on {opts.compat_http} (--compat-http): {exc.strerror or exc}"
                ) from exc
            self.compat = compat

    async def _serve_http(self) -> None:
        """Serve the HTTP API over the recovered engine."""
        from spitfire.dashboard import create_app

        assert self.engine is not None and self.service is not None and self.http is not None
        service = self.service
        dashboard = create_app(
            self.engine,
            service,
            service.dispatcher,
            service.backpressure,
            auth_token=self.options.auth_token,
            ready=self.readiness,
            options=self.options,
            listen=list(self.listeners.urls),
            http_url=self.http.url,
        )
        await self.http.serve(dashboard)
        if self.compat is not None:
            from spitfire.compat.http import CompatApp

            compat = CompatApp(
                self.engine, service, auth_token=self.options.auth_token, ready=self.readiness,
                metrics=dashboard.metrics.render, heartbeat_interval=self.options.heartbeat_interval,
            )  # fmt: skip
            await self.compat.serve(compat)

    def _storage_failed(self, reason: str) -> None:
        """Fail-stop: the engine takes no more writes; stop serving and exit non-zero, so that
        recovery on the next start decides what is durable (never retry a failed fsync)."""
        if self.failure is None:
            self.failure = reason
            log.critical(
                "stopping: %s. Writes are refused from now on; the server exits with code %d and the "
                "next start recovers what is durable",
                reason,
                EXIT_STORAGE_FAILED,
            )
            self.stop()

    def readiness(self) -> dict[str, str]:
        """Failing readiness checks by name (empty when ready): recovered, not stopping, storage
        working (no failed fsync), log writable (the data directory is writable with free space, and
        the storage is not low on space: 503 whenever enqueues would be refused with NO_SPACE)."""
        failing: dict[str, str] = {}
        if self.engine is None or self.service is None:
            failing["recovery"] = "the data directory is being recovered"
        if self.failure is not None:
            failing["storage"] = self.failure
        if self._stopping.is_set():
            failing["shutdown"] = "the server is shutting down"
        data_dir = self.options.data_dir
        try:
            st = os.statvfs(data_dir)
            if not os.access(data_dir, os.W_OK):
                failing["log"] = f"{data_dir} is not writable"
            elif st.f_bavail * st.f_frsize < READY_MIN_FREE:
                failing["log"] = f"less than {READY_MIN_FREE // 2**20} MiB free in {data_dir}"
        except OSError as exc:
            failing["log"] = f"{data_dir}: {exc.strerror or exc}"
        if "log" not in failing and self.storage is not None and self.storage.low_on_space:
            # A segment could not be allocated: enqueues get NO_SPACE, however much statvfs shows.
            failing["log"] = f"disk full: new WAL segments cannot be allocated in {data_dir}"
        return failing

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)

    def _background_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_coro(), exc_info=task.exception())

    async def run_until_stopped(self) -> None:
        """Run maintenance until `stop` is called (by a signal or a test)."""
        assert self.maintenance is not None
        runner = asyncio.get_running_loop().create_task(self.maintenance.run())
        try:
            await self._stopping.wait()
        finally:
            self.maintenance.stop()
            await runner

    def stop(self) -> None:
        """Ask the server to shut down (idempotent)."""
        self._stopping.set()

    async def drain(self) -> None:
        """Stop accepting, GOAWAY every connection, let in-flight requests finish, close them."""
        if self.redis is not None:  # its commands in progress finish; then it closes
            await self.redis.close(self.options.shutdown_grace)
        if self.http is not None:
            await self.http.stop()
        if self.compat is not None:
            await self.compat.stop()
        if self.hub is None or self.service is None:
            return
        self.listeners.close()
        self.service.dispatcher.stop()
        self.hub.shutting_down = True
        self.hub.goaway("the server is shutting down")
        grace = self.options.shutdown_grace
        try:
            await asyncio.wait_for(self.service.wait_idle(), grace)
        except TimeoutError:
            log.warning(
                "%d requests still in flight after %.1f s; closing anyway", self.service.inflight, grace
            )
        self.hub.close_all()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.service.dispatcher.wait_released(), grace)
        for task in list(self._background):
            task.cancel()
        await asyncio.sleep(0)  # let the transports write what was flushed

    async def close(self) -> None:
        """Flush everything to disk and release files."""
        await self._stop_tracing()
        try:
            if self.redis is not None:  # still serving when start-up failed
                await self.redis.close(0)
            if self.http is not None:  # still serving when start-up failed
                await self.http.stop()
            if self.compat is not None:
                await self.compat.stop()
            if self.engine is not None:
                await self.engine.close()
            elif self.storage is not None:
                await self.storage.close()
        finally:
            self._lock.release()


def describe(server: Server) -> str:
    """The start-up banner: what this server serves and where its data lives."""
    options = server.options
    quic = next((u for u in server.listeners.urls if u.startswith("quic://")), None)
    if quic is None:
        quic = "(QUIC off: --no-quic)" if options.no_quic else "(QUIC not available)"
    redis = "" if server.redis is None else f"  redis:       {server.redis.url}  (RESP2: docs/compat.md)\n"
    http = server.http.url if server.http is not None else f"http://{options.http}"
    compat = ""
    if server.compat is not None:
        apis = "Vesper, crash-resilient queue, simplequeue: docs/compat.md"
        compat = f"  compat http: {server.compat.url}  ({apis})\n"
    return (
        f"spitfire-server ready\n"
        f"  data dir:    {options.data_dir.resolve()}\n"
        f"  durability:  {options.durability.value} (default for new queues)\n"
        f"  binary:      tcp://{server.address}  {quic}\n"
        f"  http:        {http}/api  (REST API, /api/events, /metrics, /health, /ready, /openapi.json)\n"
        f"{redis}"
        f"  dashboard:   {http}/\n"
        f"{compat}"
        "  stop with Ctrl-C or SIGTERM: in-flight requests finish, logs are fsynced before exit"
    )


def describe_json(server: Server) -> str:
    """The start-up banner as one JSON object (``--log-format json``): what `describe` says, by key."""
    import json

    options = server.options
    http = server.http.url if server.http is not None else f"http://{options.http}"
    return json.dumps(
        {
            "ts": round(time.time(), 6),
            "level": "info",
            "logger": "spitfire.server",
            "msg": "spitfire-server ready",
            "data_dir": str(options.data_dir.resolve()),
            "durability": options.durability.value,
            "redis": None if server.redis is None else server.redis.url,
            "listen": list(server.listeners.urls),
            "http": f"{http}/api",
            "dashboard": f"{http}/",
            "compat_http": None if server.compat is None else server.compat.url,
        }
    )


async def serve(options: ServerOptions) -> int:
    """Start, print the banner, run until SIGTERM/SIGINT, drain, flush and return the exit code."""
    if options.cluster is not None:  # a Raft member: the engine runs while it leads
        from spitfire.server.cluster import serve_cluster

        return await serve_cluster(options)
    server = Server(options)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stop)
    try:
        await server.start()
        if options.log_format == "json":  # one structured line, like every other log line
            print(describe_json(server), flush=True)
        else:
            print(describe(server), flush=True)
        await server.run_until_stopped()
        await server.drain()
    finally:
        await server.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return exit_code(server)


def exit_code(server: Server) -> int:
    """The process's exit status once ``server`` has stopped (logged): `EXIT_STORAGE_FAILED` after a
    storage failure, else 0."""
    if server.failure is not None:
        log.critical("stopped after a storage failure: %s", server.failure)
        return EXIT_STORAGE_FAILED
    log.info("stopped cleanly")
    return 0
