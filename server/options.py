"""Command-line options of spitfire-server (README.md), validated at construction."""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass
from pathlib import Path

from spitfire.index.history import (
    DEFAULT_RETAIN_CANCELLED,
    DEFAULT_RETAIN_DEAD,
    DEFAULT_RETAIN_MAX_PER_STATE,
    DEFAULT_RETAIN_SUCCEEDED,
)
from spitfire.protocol import units
from spitfire.protocol.session import HANDSHAKE_TIMEOUT
from spitfire.raft import ClusterConfig, parse_members
from spitfire.server.config import DEFAULT_MAX_QUEUES, DEFAULT_SNAPSHOT_EVERY
from spitfire.wal.api import Durability

#: Where the server keeps its data unless told otherwise.
DEFAULT_DATA_DIR = "./spitfire-data"
#: Binary protocol: TCP on this address, QUIC on the same UDP port.
DEFAULT_LISTEN = "127.0.0.1:7878"
#: REST API, dashboard, SSE, /metrics, /health, /ready.
DEFAULT_HTTP = "127.0.0.1:7880"
#: Environment variable that supplies the auth token when --auth-token is not given.
AUTH_TOKEN_ENV = "SPITFIRE_AUTH_TOKEN"
#: Backpressure: pending (not finished) jobs one queue may hold before enqueues answer BUSY.
DEFAULT_MAX_QUEUE_JOBS = 1_000_000
#: Backpressure: pending payload bytes one queue may hold.
DEFAULT_MAX_QUEUE_BYTES = 2**30
#: Backpressure: pending jobs of all queues together (~1 KiB of memory each, payload aside).
DEFAULT_MAX_JOBS = 4_000_000
#: Backpressure: pending payload bytes of all queues together.
DEFAULT_MAX_BYTES = 2 * 2**30
#: Largest payload (and result) accepted, in bytes.
DEFAULT_MAX_PAYLOAD = 2**20
#: How often workers are asked to heartbeat, in seconds (they go faster for short leases).
DEFAULT_HEARTBEAT_INTERVAL = 10.0
#: On SIGTERM, how long in-flight requests may take to finish before connections are closed.
DEFAULT_SHUTDOWN_GRACE = 5.0
#: Binary-protocol connections (TCP and QUIC) open at once past which new ones are refused.
DEFAULT_MAX_CONNECTIONS = 10_000
#: Seconds a binary-protocol connection has to complete its HELLO before it is closed.
DEFAULT_HANDSHAKE_TIMEOUT = HANDSHAKE_TIMEOUT


class OptionsError(ValueError):
    """An option is invalid; the message says which and how to fix it."""


def parse_duration(text: str, flag: str) -> float:
    """Seconds in ``30`` (plain seconds, as the other time flags take), ``2.5s``, ``500ms``, ``10m``,
    ``1h30m`` or ``7d`` (`spitfire.protocol.units`, the grammar of the ``spitfire`` CLI's ``--delay``).

    :raises OptionsError: naming ``flag``, for anything else (negative durations included).
    """
    try:
        return units.parse_duration(text)
    except ValueError as exc:
        raise OptionsError(f"{flag} {exc}") from None


@dataclass(frozen=True, slots=True)
class Address:
    """A host and port to listen on."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str, flag: str) -> Address:
        """Parse ``host:port`` or ``[v6]:port``; raise OptionsError naming ``flag`` otherwise."""
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise OptionsError(f"{flag} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:7878")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            port = int(port_text)
        except ValueError:
            raise OptionsError(f"{flag} {text!r}: the port must be a number") from None
        if not 0 <= port <= 65535:
            raise OptionsError(f"{flag} {text!r}: the port must be between 0 and 65535")
        return cls(host, port)

    @property
    def is_loopback(self) -> bool:
        """True when only this machine can reach the address."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Everything spitfire-server was asked to do."""

    #: Directory holding meta/, queues/<queue>/{wal,snapshots}/ and tls/.
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    #: Durability of queues that have not chosen their own.
    durability: Durability = Durability.GROUP
    #: Binary protocol address (TCP, and QUIC on the same UDP port).
    listen: Address = Address("127.0.0.1", 7878)
    #: HTTP address.
    http: Address = Address("127.0.0.1", 7880)
    #: RESP2 address (Redis clients' list and stream commands, docs/compat.md); None: not served.
    redis: Address | None = None
    #: Token every client must present; None means no authentication (loopback only).
    auth_token: str | None = None
    #: Serve TCP only.
    no_quic: bool = False
    log_level: str = "info"
    #: "text" or "json".
    log_format: str = "text"
    #: Certificate and key (PEM) of QUIC and, when given, of HTTPS at --http; None: QUIC uses a
    #: self-signed pair in <data-dir>/tls/ and --http serves plain HTTP.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Backpressure limits on pending jobs and pending payload bytes (per queue and in total).
    max_queue_jobs: int = DEFAULT_MAX_QUEUE_JOBS
    max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES
    max_jobs: int = DEFAULT_MAX_JOBS
    max_bytes: int = DEFAULT_MAX_BYTES
    #: Largest payload and result accepted, in bytes.
    max_payload: int = DEFAULT_MAX_PAYLOAD
    #: Most queues at once: creating one more is refused (TOO_MANY_QUEUES) until one is deleted.
    max_queues: int = DEFAULT_MAX_QUEUES
    #: Heartbeat interval announced to workers, in seconds.
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    #: Seconds in-flight requests get to finish on SIGTERM/SIGINT.
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE
    #: A queue is snapshotted once this many records follow its last snapshot (0: never).
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY
    #: Seconds finished jobs are kept, per finished state, before retention forgets them.
    retain_succeeded: float = DEFAULT_RETAIN_SUCCEEDED
    retain_dead: float = DEFAULT_RETAIN_DEAD
    retain_cancelled: float = DEFAULT_RETAIN_CANCELLED
    #: Most jobs kept per queue in each finished state (the oldest are forgotten first).
    retain_max_per_queue: int = DEFAULT_RETAIN_MAX_PER_STATE
    #: Open binary-protocol connections past which new ones are refused (BUSY, then closed).
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    #: Seconds a connection has to complete its HELLO before it is closed.
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    #: Where the HTTP APIs of Vesper, the crash-resilient queue and simplequeue are served
    #: (docs/compat.md); None: not served.
    compat_http: Address | None = None
    #: Make OpenTelemetry spans of enqueues, commits and deliveries, exported over OTLP/HTTP as the
    #: OTEL_* environment variables say (docs/tracing.md); needs the ``otel`` extra.
    otel: bool = False
    #: URL of a trace in the tracing UI, with ``{trace_id}`` where the id goes: the dashboard links
    #: a job's trace id there (None: it shows the id alone).
    trace_url_template: str | None = None
    #: ``--node-id`` and ``--cluster``: a Raft member (docs/ha.md); None: a single node.
    cluster: ClusterConfig | None = None

    def __post_init__(self) -> None:
        self._check_limits()
        self._check_tracing()
        if self.log_format not in ("text", "json"):
            raise OptionsError(f"--log-format {self.log_format!r}: choose text or json")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise OptionsError(f"--log-level {self.log_level!r}: choose debug, info, warning or error")
        if self.auth_token is not None and not self.auth_token.strip():
            raise OptionsError("--auth-token is empty: give a token, or leave the flag out")
        binds = (("--listen", self.listen), ("--http", self.http))
        compat = [("--compat-http", self.compat_http)] if self.compat_http is not None else []
        for flag, addr in binds:
            if self.compat_http is not None and self.compat_http.port and self.compat_http == addr:
                raise OptionsError(
                    f"--compat-http {addr} is also {flag}'s address: give it a port of its own"
                )
        exposed = [f"{flag} {addr}" for flag, addr in (*binds, *compat) if not addr.is_loopback]
        if exposed and self.auth_token is None:
            raise OptionsError(
                f"refusing to listen on a non-loopback address ({', '.join(exposed)}) without an auth "
                f"token: anyone who can reach it could enqueue and run jobs. Pass --auth-token TOKEN "
                f"(or set {AUTH_TOKEN_ENV}), or bind to 127.0.0.1."
            )
        if self.redis is not None and not self.redis.is_loopback and self.auth_token is None:
            raise OptionsError(
                f"refusing to serve RESP on a non-loopback address (--redis {self.redis}) without an auth "
                f"token: anyone who can reach it could enqueue and take jobs. Pass --auth-token TOKEN (or "
                f"set {AUTH_TOKEN_ENV}), or bind it to 127.0.0.1."
            )

    def warnings(self) -> list[str]:
        """Settings that are allowed but risky, one sentence each (the server logs them at start):
        an auth token sent in clear text over a non-loopback plain-HTTP bind."""
        out: list[str] = []
        if self.auth_token is not None and self.redis is not None and not self.redis.is_loopback:
            out.append(
                f"--redis {self.redis} is a non-loopback address: RESP has no TLS, so the auth token "
                "(AUTH) and every value cross the network unencrypted. Bind it to 127.0.0.1, or tunnel it."
            )
        if self.auth_token is not None and not self.http.is_loopback and self.tls_cert is None:
            out.append(
                f"--http {self.http} is a non-loopback address served as plain HTTP: the auth token "
                "crosses the network unencrypted. Give --tls-cert and --tls-key to serve HTTPS, or put "
                "a TLS-terminating proxy in front."
            )
        compat = self.compat_http
        if (
            self.auth_token is not None
            and compat is not None
            and not compat.is_loopback
            and self.tls_cert is None
        ):
            out.append(
                f"--compat-http {compat} is a non-loopback address served as plain HTTP: the auth token "
                "crosses the network unencrypted. Give --tls-cert and --tls-key to serve HTTPS."
            )
        return out

    def _check_tracing(self) -> None:
        template = self.trace_url_template
        if template is not None and (
            "{trace_id}" not in template or not template.startswith(("http://", "https://"))
        ):
            raise OptionsError(
                f"--trace-url-template {template!r}: give an http:// or https:// URL with {{trace_id}} "
                "where the trace id goes, e.g. 'https://tempo.example/trace/{trace_id}'"
            )
        if self.otel:
            needed = ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")
            if any(_missing(name) for name in needed):
                raise OptionsError(
                    "--otel needs the OpenTelemetry SDK and its OTLP/HTTP exporter: "
                    "pip install 'spitfire[otel]'"
                )

    def _check_limits(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise OptionsError("--tls-cert and --tls-key go together: give both, or neither")
        for flag, value in (
            ("--max-queue-jobs", self.max_queue_jobs),
            ("--max-queue-bytes", self.max_queue_bytes),
            ("--max-jobs", self.max_jobs),
            ("--max-bytes", self.max_bytes),
            ("--max-payload", self.max_payload),
            ("--max-queues", self.max_queues),
            ("--max-connections", self.max_connections),
        ):
            if value < 1:
                raise OptionsError(f"{flag} {value}: must be at least 1")
        if not 0 < self.heartbeat_interval <= 3600:
            raise OptionsError(f"--heartbeat-interval {self.heartbeat_interval}: must be in (0, 3600]")
        if self.snapshot_every < 0:
            raise OptionsError(f"--snapshot-every {self.snapshot_every}: must be 0 (never) or more")
        if not 0 < self.handshake_timeout <= 3600:
            raise OptionsError(f"--handshake-timeout {self.handshake_timeout}: must be in (0, 3600]")
        if not 0 <= self.shutdown_grace <= 3600:
            raise OptionsError(f"--shutdown-grace {self.shutdown_grace}: must be in [0, 3600]")
        for flag, seconds in (
            ("--retain-succeeded", self.retain_succeeded),
            ("--retain-dead", self.retain_dead),
            ("--retain-cancelled", self.retain_cancelled),
        ):
            if not 0 <= seconds < math.inf:
                raise OptionsError(f"{flag} {seconds}: must be a duration of 0 or more, e.g. 24h or 7d")
        if self.retain_max_per_queue < 0:
            raise OptionsError(
                f"--retain-max-per-queue {self.retain_max_per_queue}: must be 0 (keep none) or more"
            )


def cluster_config(
    node_id: str | None,
    cluster: str | None,
    election_timeout: float,
    join: bool = False,
    driver: str = "loop",
) -> ClusterConfig | None:
    """``--node-id``, ``--cluster``, ``--election-timeout`` and ``--join`` as a `ClusterConfig` (None
    when neither of the first two is given: a single node).

    :raises OptionsError: one is given without the other (or ``--join`` without both), a member is
        malformed, the node id is not a member, or the timeout is out of range.
    """
    if node_id is None and cluster is None:
        if join:
            raise OptionsError(
                "--join needs --node-id and --cluster (every member and this one): e.g. --node-id d "
                "--cluster a=127.0.0.1:7901,b=127.0.0.1:7902,c=127.0.0.1:7903,d=127.0.0.1:7904 --join"
            )
        return None
    if node_id is None or cluster is None:
        raise OptionsError(
            "--node-id and --cluster go together: e.g. --node-id a --cluster "
            "a=127.0.0.1:7901,b=127.0.0.1:7902,c=127.0.0.1:7903"
        )
    if not 0.01 <= election_timeout <= 60:
        raise OptionsError(f"--election-timeout {election_timeout}: must be between 10ms and 60s")
    try:
        return ClusterConfig(
            node_id,
            parse_members(cluster),
            (election_timeout, 2 * election_timeout),
            join=join,
            driver=driver,
        )
    except ValueError as exc:
        raise OptionsError(f"--cluster: {exc}") from None


def auth_token_from_env(flag_value: str | None) -> str | None:
    """The token from the flag, else from SPITFIRE_AUTH_TOKEN, else None."""
    if flag_value is not None:
        return flag_value
    return os.environ.get(AUTH_TOKEN_ENV) or None


def _missing(module: str) -> bool:
    """True when ``module`` cannot be imported (its package, or a parent package, is absent)."""
    from importlib.util import find_spec

    try:
        return find_spec(module) is None
    except ModuleNotFoundError:  # a parent package is missing
        return True
