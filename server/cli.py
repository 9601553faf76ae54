"""The spitfire-server command.

spitfire-server [--data-dir ./spitfire-data] [--durability group|sync|async]
                [--listen 127.0.0.1:7878] [--http 127.0.0.1:7880]
                [--auth-token TOKEN | env SPITFIRE_AUTH_TOKEN] [--redis HOST:PORT]
                [--no-quic] [--log-level info] [--log-format text|json]
                [--tls-cert PEM --tls-key PEM] [--max-queue-jobs N] [--max-queue-bytes B]
                [--max-jobs N] [--max-bytes B] [--max-payload B] [--max-queues N]
                [--heartbeat-interval S]
                [--shutdown-grace S] [--retain-succeeded 24h] [--retain-dead 7d]
                [--retain-cancelled 7d] [--retain-max-per-queue N]
                [--max-connections N] [--handshake-timeout S]
                [--compat-http HOST:PORT]
                [--otel] [--trace-url-template URL]
                [--node-id ID --cluster ID=HOST:PORT,... [--election-timeout 150ms] [--join]
                 [--raft-driver loop|thread]]
spitfire-server repair --data-dir DIR [--yes] [--dry-run] [--skip-record QUEUE:LSN]
spitfire-server cluster status | add ID=HOST:PORT | remove ID  [--http URL] [--auth-token T] [--json]
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import uvloop

from spitfire.index.history import DEFAULT_RETAIN_MAX_PER_STATE
from spitfire.protocol import units
from spitfire.protocol.logs import configure_logging
from spitfire.raft import ELECTION_TIMEOUT
from spitfire.raft.node import DRIVERS
from spitfire.server.config import DEFAULT_MAX_QUEUES, DEFAULT_SNAPSHOT_EVERY
from spitfire.server.datadir import DataDirInUseError, DataDirLock
from spitfire.server.options import (
    DEFAULT_DATA_DIR,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_HTTP,
    DEFAULT_LISTEN,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_JOBS,
    DEFAULT_MAX_PAYLOAD,
    DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_MAX_QUEUE_JOBS,
    DEFAULT_SHUTDOWN_GRACE,
    Address,
    OptionsError,
    ServerOptions,
    auth_token_from_env,
    cluster_config,
    parse_duration,
)
from spitfire.wal.api import Durability, StorageError


def serve_parser() -> argparse.ArgumentParser:
    """Flags of the server (README.md lists them)."""
    p = argparse.ArgumentParser(
        prog="spitfire-server",
        description="Run the Spitfire job server. Sizes: 4096, 1k, 64MiB, 10MB; durations: 90, 500ms, "
        "30s, 1h30m, 7d.",
        epilog="other command: spitfire-server repair --data-dir DIR [--yes] [--dry-run] [--skip-record "
        "QUEUE:LSN] checks a data directory and repairs a damaged log (see spitfire-server repair --help); "
        "spitfire-server cluster status|add|remove shows and changes a cluster's members (docs/ha.md)",
    )
    p.add_argument("--version", action="version", version=f"spitfire-server {_version()}")
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="data directory (default %(default)s)")
    p.add_argument(
        "--durability",
        choices=[d.value for d in Durability],
        default=Durability.GROUP.value,
        help="default durability of queues (default %(default)s)",
    )
    p.add_argument("--listen", default=DEFAULT_LISTEN, help="binary protocol address (default %(default)s)")
    p.add_argument("--http", default=DEFAULT_HTTP, help="HTTP address (default %(default)s)")
    p.add_argument(
        "--compat-http",
        default=None,
        metavar="HOST:PORT",
        help="serve the HTTP APIs of Vesper, crash-resilient queue and simplequeue there (docs/compat.md; "
        "default: off)",
    )
    p.add_argument(
        "--auth-token",
        default=None,
        help="token clients must present (default $SPITFIRE_AUTH_TOKEN, else none: no auth)",
    )
    p.add_argument(
        "--redis",
        default=None,
        metavar="HOST:PORT",
        help="serve RESP2 there: Redis clients' list and stream commands over the queues, see "
        "docs/compat.md (default: off)",
    )
    p.add_argument(
        "--no-quic", action="store_true", help="serve TCP only (default: TCP and QUIC on the --listen port)"
    )
    p.add_argument("--log-level", default="info", help="debug, info, warning or error (default %(default)s)")
    p.add_argument(
        "--log-format", default="text", choices=["text", "json"], help="log line format (default %(default)s)"
    )
    p.add_argument(
        "--tls-cert",
        default=None,
        help="certificate (PEM) of QUIC and of HTTPS at --http (default: QUIC self-signed, plain HTTP)",
    )
    p.add_argument("--tls-key", default=None, help="private key (PEM) of --tls-cert (default: none)")
    limits = p.add_argument_group("backpressure (enqueues answer BUSY past these; acks keep working)")
    limits.add_argument(
        "--max-queue-jobs",
        type=int,
        default=DEFAULT_MAX_QUEUE_JOBS,
        metavar="N",
        help="pending jobs of one queue (default %(default)s)",
    )
    limits.add_argument(
        "--max-queue-bytes",
        type=_size,
        default=DEFAULT_MAX_QUEUE_BYTES,
        metavar="SIZE",
        help="payload bytes of one queue's pending jobs, e.g. 1GiB (default %(default)s)",
    )
    limits.add_argument(
        "--max-jobs",
        type=int,
        default=DEFAULT_MAX_JOBS,
        metavar="N",
        help="pending jobs of all queues (default %(default)s)",
    )
    limits.add_argument(
        "--max-bytes",
        type=_size,
        default=DEFAULT_MAX_BYTES,
        metavar="SIZE",
        help="payload bytes of all queues, e.g. 4GiB (default %(default)s)",
    )
    limits.add_argument(
        "--max-payload",
        type=_size,
        default=DEFAULT_MAX_PAYLOAD,
        metavar="SIZE",
        help="largest payload, e.g. 1MiB; TOO_LARGE past it (default %(default)s)",
    )
    p.add_argument(
        "--max-queues",
        type=int,
        default=DEFAULT_MAX_QUEUES,
        metavar="N",
        help="most queues at once: creating one more is refused (TOO_MANY_QUEUES) until one is deleted "
        "(default %(default)s)",
    )
    p.add_argument(
        "--heartbeat-interval",
        type=_duration,
        default=DEFAULT_HEARTBEAT_INTERVAL,
        metavar="DURATION",
        help="how often workers heartbeat, in seconds or e.g. 5s (default %(default)s)",
    )
    p.add_argument(
        "--snapshot-every",
        type=int,
        default=DEFAULT_SNAPSHOT_EVERY,
        metavar="N",
        help="snapshot a queue after N records in its log (0: never; default %(default)s)",
    )
    p.add_argument(
        "--shutdown-grace",
        type=_duration,
        default=DEFAULT_SHUTDOWN_GRACE,
        metavar="S",
        help="seconds in-flight requests get on SIGTERM (default %(default)s)",
    )
    retention = p.add_argument_group(
        "retention (finished jobs are forgotten after this long, or when a queue holds more than N in "
        "one finished state; durations: 90, 30s, 10m, 24h, 7d)"
    )
    for state, default in (("succeeded", "24h"), ("dead", "7d"), ("cancelled", "7d")):
        retention.add_argument(
            f"--retain-{state}",
            default=default,
            metavar="DURATION",
            help=f"keep {state} jobs this long (default %(default)s)",
        )
    retention.add_argument(
        "--retain-max-per-queue",
        type=int,
        default=DEFAULT_RETAIN_MAX_PER_STATE,
        metavar="N",
        help="keep at most N succeeded, N dead and N cancelled jobs per queue (default %(default)s)",
    )
    tracing = p.add_argument_group("tracing (OpenTelemetry; docs/tracing.md)")
    tracing.add_argument(
        "--otel",
        action="store_true",
        help="export spans of enqueues, commits and deliveries over OTLP/HTTP, configured by the OTEL_* "
        "environment variables (default: off; needs pip install 'spitfire[otel]')",
    )
    tracing.add_argument(
        "--trace-url-template",
        default=None,
        metavar="URL",
        help="link the dashboard shows for a job's trace id, e.g. 'https://tempo.example/trace/{trace_id}' "
        "(default: none, the id alone)",
    )
    cluster = p.add_argument_group("cluster (Raft; docs/ha.md). Without them: a single node")
    cluster.add_argument("--node-id", default=None, help="this member's id in --cluster (default: none)")
    cluster.add_argument(
        "--cluster",
        default=None,
        metavar="ID=HOST:PORT,...",
        help="every member's Raft address, this one's included (default: none, a single node)",
    )
    cluster.add_argument(
        "--join",
        action="store_true",
        help="a new member, to be added with spitfire-server cluster add: stands for election only once "
        "the cluster's log adds it (default: off; start it with an empty --data-dir)",
    )
    cluster.add_argument(
        "--election-timeout",
        type=_duration,
        default=ELECTION_TIMEOUT[0],
        metavar="DURATION",
        help="a follower that hears no leader for between this and twice this stands for election "
        "(default %(default)ss, for a LAN)",
    )
    cluster.add_argument(
        "--raft-driver",
        choices=DRIVERS,
        default="loop",
        help="what ticks Raft: the event loop, or a thread of its own (measured slower: docs/ha.md; "
        "no membership changes with it) (default %(default)s)",
    )
    conns = p.add_argument_group("connections (binary protocol, TCP and QUIC)")
    conns.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="open connections past which new ones are refused: an ERROR frame (BUSY) and closed "
        "(default %(default)s)",
    )
    conns.add_argument(
        "--handshake-timeout",
        type=_duration,
        default=DEFAULT_HANDSHAKE_TIMEOUT,
        metavar="S",
        help="seconds a new connection has to send a valid HELLO before it is closed (default %(default)s)",
    )
    return p


def _size(text: str) -> int:
    # A negative value goes through, to be refused by ServerOptions with the flag's own rule.
    if text.strip().startswith("-"):
        return -_size(text.strip()[1:])
    try:
        return units.parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(text: str) -> float:
    if text.strip().startswith("-"):
        return -_duration(text.strip()[1:])
    try:
        return units.parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spitfire")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def repair_parser() -> argparse.ArgumentParser:
    """Flags of `spitfire-server repair`."""
    p = argparse.ArgumentParser(
        prog="spitfire-server repair",
        description="Make damaged logs startable again, dropping only the damaged records: every record "
        "that checks out is kept with its LSN. Shows the plan with what it drops and asks first. "
        "Exit status: 0 nothing left to repair, 1 damage left in place (declined, --dry-run, or not "
        "repairable), 2 bad arguments or no such data directory.",
    )
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="data directory (default %(default)s)")
    p.add_argument(
        "--yes", action="store_true", help="do not ask before repairing (default: ask on a terminal)"
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing (default: repair)")
    p.add_argument(
        "--skip-record",
        metavar="QUEUE:LSN",
        default=None,
        help="drop one record whose checksum is valid but that the server cannot decode (start-up "
        "names it); it becomes a SKIP record (default: none)",
    )
    return p


def parse_options(argv: Sequence[str]) -> ServerOptions:
    """Turn command-line arguments into validated ServerOptions."""
    args = serve_parser().parse_args(argv)
    return ServerOptions(
        data_dir=Path(args.data_dir),
        durability=Durability(args.durability),
        listen=Address.parse(args.listen, "--listen"),
        http=Address.parse(args.http, "--http"),
        redis=None if args.redis is None else Address.parse(args.redis, "--redis"),
        auth_token=auth_token_from_env(args.auth_token),
        no_quic=args.no_quic,
        log_level=args.log_level,
        log_format=args.log_format,
        tls_cert=None if args.tls_cert is None else Path(args.tls_cert),
        tls_key=None if args.tls_key is None else Path(args.tls_key),
        max_queue_jobs=args.max_queue_jobs,
        max_queue_bytes=args.max_queue_bytes,
        max_jobs=args.max_jobs,
        max_bytes=args.max_bytes,
        max_payload=args.max_payload,
        max_queues=args.max_queues,
        heartbeat_interval=args.heartbeat_interval,
        shutdown_grace=args.shutdown_grace,
        snapshot_every=args.snapshot_every,
        retain_succeeded=parse_duration(args.retain_succeeded, "--retain-succeeded"),
        retain_dead=parse_duration(args.retain_dead, "--retain-dead"),
        retain_cancelled=parse_duration(args.retain_cancelled, "--retain-cancelled"),
        retain_max_per_queue=args.retain_max_per_queue,
        max_connections=args.max_connections,
        handshake_timeout=args.handshake_timeout,
        compat_http=None if args.compat_http is None else Address.parse(args.compat_http, "--compat-http"),
        otel=args.otel,
        trace_url_template=args.trace_url_template,
        cluster=cluster_config(
            args.node_id, args.cluster, args.election_timeout, args.join, args.raft_driver
        ),
    )


def _skip_target(value: str | None) -> tuple[str, int] | None:
    """``QUEUE:LSN`` of ``--skip-record`` as (queue, lsn); None when not given, ("", 0) when malformed."""
    if value is None:
        return None
    queue, _, lsn = value.rpartition(":")
    return (queue, int(lsn)) if queue and lsn.isdigit() else ("", 0)


def run_repair(argv: Sequence[str]) -> int:
    """`spitfire-server repair`: describe each queue's repair, ask, then carry it out.

    Exit status: 0 when no damage that stops start-up is left, 1 when some is (declined, dry run,
    not repairable), 2 for bad arguments or a data directory that does not exist (nothing created).
    """
    from spitfire.wal.repair import RepairError, repair, skip_record

    args = repair_parser().parse_args(argv)
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        print(
            f"spitfire-server repair: {data_dir} does not exist or is not a directory; give the "
            "--data-dir the server runs with",
            file=sys.stderr,
        )
        return 2
    target = _skip_target(args.skip_record)
    if target == ("", 0):
        print("spitfire-server repair: --skip-record takes QUEUE:LSN, e.g. emails:1234", file=sys.stderr)
        return 2

    def confirm(description: str) -> bool:
        print(description)
        if args.yes:
            return True
        if not sys.stdin.isatty():
            print("not repairing: no terminal to ask on; run again with --yes to repair without asking")
            return False
        return input("Repair this queue's log? [y/N] ").strip().lower() in ("y", "yes")

    lock = DataDirLock(data_dir)
    try:
        lock.acquire(create_dir=False)
    except (DataDirInUseError, FileNotFoundError) as exc:
        print(f"spitfire-server repair: {exc}", file=sys.stderr)
        return 1
    try:
        if target is not None:
            if args.dry_run:
                print(f"dry run: would drop record {target[1]} of queue {target[0]!r}")
                return 1
            print(skip_record(data_dir, *target, confirm=confirm))
            return 0
        result = repair(data_dir, confirm=confirm, dry_run=args.dry_run)
    except RepairError as exc:
        print(f"spitfire-server repair: {exc}", file=sys.stderr)
        return 1
    finally:
        lock.release()
    for line in result.lines:
        print(line)
    if result.nothing_to_do:
        print(f"{args.data_dir}: nothing to repair")
    elif result.damage_left:
        print("damage is left in place: the server will not start until it is repaired", file=sys.stderr)
    return 1 if result.damage_left else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the spitfire-server console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["repair"]:
        configure_logging("info", "text")
        return run_repair(argv[1:])
    if argv[:1] == ["cluster"]:
        from spitfire.server.cluster_cli import main as cluster_main

        return cluster_main(argv[1:])
    try:
        options = parse_options(argv)
    except OptionsError as exc:
        print(f"spitfire-server: {exc}", file=sys.stderr)
        return 2
    configure_logging(options.log_level, options.log_format)
    for warning in options.warnings():
        logging.getLogger("spitfire.server").warning("%s", warning)
    from spitfire.server.runtime import ListenError, serve

    try:
        return uvloop.run(serve(options))
    except (StorageError, DataDirInUseError, ListenError) as exc:  # CorruptLogError is a StorageError
        print(f"spitfire-server: cannot start: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
