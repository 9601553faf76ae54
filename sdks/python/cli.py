"""The ``spitfire`` command: run a worker, enqueue a job, look at a job or at the server.

    spitfire worker MODULE:APP [--queues a,b] [--concurrency N] [--prefetch N] [--burst] [--grace S]
                    [--url URL]
    spitfire enqueue QUEUE NAME '{"json": "payload"}' [--priority N] [--delay 5s] [--idempotency-key K]
    spitfire get JOB_ID
    spitfire stats [--queue Q]
    spitfire schedules list | get NAME | add NAME CRON QUEUE JOB ['{"json": "payload"}'] [--timezone TZ]
                       [--misfire skip|once|all] [--priority N] [--max-attempts N] [--job-timeout 30s]
                       [--replace] | rm NAME | pause NAME | resume NAME | trigger NAME

Every command takes ``--url`` (default ``$SPITFIRE_URL``, else tcp://127.0.0.1:7878) and
``--auth-token`` (default ``$SPITFIRE_AUTH_TOKEN``).

Exit codes: 0 success; 1 the server refused the request (unknown job, bad argument, ...) or a worker
failed to start; 2 bad command-line usage; 3 the server could not be reached.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from spitfire.protocol.jsonvalue import msgpack_to_json

from . import __version__
from .app import App
from .errors import (
    BadRequest,
    Conflict,
    ConnectionLost,
    InvalidURL,
    NotConnected,
    RequestTimeout,
    SpitfireError,
)
from .models import Schedule
from .schedules import Schedules
from .sync import Client

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class UsageError(Exception):
    """A command-line argument is wrong (exit code 2)."""


def parse_duration(text: str) -> float:
    """Seconds in ``5``, ``2.5s``, ``500ms``, ``10m``, ``1h`` or ``1d``.

    :raises UsageError: anything else.
    """
    match = _DURATION.match(text)
    if match is None:
        raise UsageError(f"{text!r} is not a duration: write e.g. 30, 30s, 500ms, 10m, 2h or 1d")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _duration_arg(text: str) -> float:
    try:
        return parse_duration(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=None, help="server URL (default $SPITFIRE_URL or tcp://127.0.0.1:7878)")
    p.add_argument(
        "--auth-token", default=None, help="the server's auth token (default $SPITFIRE_AUTH_TOKEN)"
    )
    p.add_argument(
        "--timeout", type=_duration_arg, default=10.0, help="seconds to wait for the server (default 10)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="spitfire",
        description="Spitfire job queue: run workers, enqueue and inspect jobs, manage recurring schedules.",
        epilog="exit codes: 0 ok, 1 refused by the server, 2 usage error, 3 server unreachable",
    )
    parser.add_argument("--version", action="version", version=f"spitfire {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    w = sub.add_parser(
        "worker",
        help="run the jobs of an App",
        description="Run the jobs of MODULE:APP. At start, the app's @app.cron schedules are upserted "
        "by name on the server (one it refuses stops the worker with exit code 1).",
    )
    w.add_argument("app", metavar="MODULE:APP", help="e.g. tasks:app (the module is imported from cwd)")
    w.add_argument("--queues", default=None, help="comma-separated queues (default: all of the app's)")
    w.add_argument("--concurrency", type=int, default=10, help="jobs run at once (default 10)")
    w.add_argument(
        "--prefetch",
        type=int,
        default=None,
        help="jobs held delivered but not started, beyond --concurrency (default: enough to hold 100 "
        "jobs, and at least --concurrency; 0: none, e.g. for long jobs shared by several workers)",
    )
    w.add_argument("--burst", action="store_true", help="exit once the queues are empty")
    w.add_argument(
        "--grace", type=_duration_arg, default=25.0, help="seconds to finish jobs on SIGTERM (default 25)"
    )
    w.add_argument("--log-level", default="info", help="debug, info, warning or error (default info)")
    w.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="text, or one JSON object a line"
    )
    w.add_argument(
        "--connect-timeout",
        type=_duration_arg,
        default=None,
        help="seconds each attempt to reach the server may take (default 10; the worker retries with "
        "backoff until it is stopped)",
    )
    _common(w)

    e = sub.add_parser("enqueue", help="add a job; prints its id")
    e.add_argument("queue")
    e.add_argument("name", help="the job (handler) name")
    e.add_argument("payload", nargs="?", default="null", help="JSON payload (default null)")
    e.add_argument("--priority", type=int, default=0, help="0..10, higher first (default 0)")
    e.add_argument("--delay", type=_duration_arg, default=None, help="run after this long, e.g. 5s, 10m")
    e.add_argument("--max-attempts", type=int, default=None, help="attempts before dead (server default)")
    e.add_argument("--idempotency-key", default=None, help="the same key again returns the same job")
    _common(e)

    g = sub.add_parser("get", help="print a job as JSON")
    g.add_argument("job_id")
    _common(g)

    s = sub.add_parser("stats", help="print the server's queues and job counts as JSON")
    s.add_argument("--queue", default=None, help="only this queue")
    _common(s)

    _schedules_parser(sub)
    return parser


def _schedules_parser(sub: Any) -> None:
    sp = sub.add_parser(
        "schedules",
        help="list, add, remove, pause, resume or trigger recurring (cron) schedules",
        description="Recurring schedules kept by the server: at each time a cron expression names, "
        "the server enqueues one job. Schedules print as JSON.",
    )
    ssub = sp.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = ssub.add_parser("list", help="print every schedule as JSON (next and last run, last job's state)")
    _common(ls)
    get = ssub.add_parser("get", help="print one schedule as JSON")
    get.add_argument("name")
    _common(get)
    add = ssub.add_parser(
        "add",
        help="create a schedule (an identical one is left as it is; a different one is refused "
        "unless --replace); prints it",
        epilog='example: spitfire schedules add nightly "0 3 * * *" reports build_report '
        '\'{"kind": "daily"}\' --timezone Europe/Berlin',
    )
    add.add_argument("name", help="the schedule's name (letters, digits, _ . : -)")
    add.add_argument(
        "cron", help='5 fields "m h dom mon dow", 6 with seconds last, or @hourly, @daily, ... (quote it)'
    )
    add.add_argument("queue", help="the queue of each tick's job")
    add.add_argument("job", help="the job (handler) name of each tick's job")
    add.add_argument("payload", nargs="?", default=None, help="JSON payload of each job (default: none)")
    add.add_argument(
        "--timezone", default="UTC", help="IANA timezone the expression is read in (default UTC)"
    )
    add.add_argument(
        "--misfire",
        choices=("skip", "once", "all"),
        default="skip",
        help="ticks missed while the server was down: skip them (default), run one catch-up job, or "
        "run each (at most 100)",
    )
    add.add_argument("--priority", type=int, default=0, help="0..10, higher first (default 0)")
    add.add_argument("--max-attempts", type=int, default=None, help="attempts before dead (server default)")
    add.add_argument(
        "--job-timeout", type=_duration_arg, default=None, help="each job's lease, e.g. 30s, 10m"
    )
    add.add_argument("--replace", action="store_true", help="replace a schedule of that name (upsert)")
    _common(add)
    for action, text in (
        ("rm", "delete a schedule (jobs it enqueued stay); prints it as it was"),
        ("pause", "stop a schedule's ticks until resumed; prints it"),
        ("resume", "tick again from now on (missed ticks are not caught up); prints it"),
        ("trigger", "enqueue the schedule's job now; prints the job id"),
    ):
        p = ssub.add_parser(action, help=text)
        p.add_argument("name")
        _common(p)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return value.hex()
    return str(value)


def _client(args: argparse.Namespace) -> Client:
    return Client(args.url, auth_token=args.auth_token, timeout=args.timeout, connect_timeout=args.timeout)


def cmd_enqueue(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f'the payload is not valid JSON ({exc}); quote it, e.g. \'{{"to": "a@b.c"}}\''
        ) from None
    with _client(args) as client:
        job_id = client.enqueue(
            args.queue,
            args.name,
            payload,
            priority=args.priority,
            delay=args.delay,
            max_attempts=args.max_attempts,
            idempotency_key=args.idempotency_key,
        )
    print(job_id)
    return EXIT_OK


def cmd_get(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.get(args.job_id)
    out = job.to_dict()
    # Payload and result as the HTTP API shows them: JSON, or {"$msgpack": base64} for a value
    # JSON cannot carry or one nested more than MAX_JSON_DEPTH deep (printing must not recurse).
    out["payload"] = json.loads(msgpack_to_json(job.raw_payload))
    out["result"] = None if job.raw_result is None else json.loads(msgpack_to_json(job.raw_result))
    _print_json(out)
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    with _client(args) as client:
        stats = client.stats(args.queue)
    _print_json(stats.to_dict())
    return EXIT_OK


def cmd_schedules(args: argparse.Namespace) -> int:
    with _client(args) as client:
        schedules = client.schedules
        if args.action == "list":
            _print_json({"schedules": [_schedule_json(s) for s in schedules.list()]})
            return EXIT_OK
        if args.action == "trigger":
            print(schedules.trigger(args.name))
            return EXIT_OK
        if args.action == "add":
            schedule = _add_schedule(schedules, args)
        else:
            ops = {"get": schedules.get, "rm": schedules.remove, "pause": schedules.pause}
            schedule = ops.get(args.action, schedules.resume)(args.name)
    _print_json(_schedule_json(schedule))
    return EXIT_OK


def _add_schedule(schedules: Schedules, args: argparse.Namespace) -> Schedule:
    payload = None
    if args.payload is not None:
        try:
            payload = json.loads(args.payload)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f'the payload is not valid JSON ({exc}); quote it, e.g. \'{{"kind": "daily"}}\''
            ) from None
    add = schedules.put if args.replace else schedules.add
    return add(
        args.name, args.cron, args.queue, args.job, payload, timezone=args.timezone, misfire=args.misfire,
        priority=args.priority, max_attempts=args.max_attempts, timeout=args.job_timeout,
    )  # fmt: skip


def _schedule_json(s: Schedule) -> dict[str, Any]:
    out = s.to_dict()
    out["payload"] = json.loads(msgpack_to_json(s.raw_payload))
    return out


def load_app(spec: str) -> App:
    """Import ``module:attribute`` (from the current directory too) and return the App it names.

    :raises UsageError: not MODULE:APP, the module cannot be imported, or the attribute is not an App.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"{spec!r}: name the app as MODULE:APP, e.g. tasks:app")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` would: the user's modules live in cwd
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UsageError(
                f"cannot import {module_name!r}: {exc} (run from the directory holding it)"
            ) from None
        raise
    try:
        app = getattr(module, attr)
    except AttributeError:
        raise UsageError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(app, App):
        raise UsageError(f"{spec} is a {type(app).__name__}, not a spitfire.App")
    return app


def cmd_worker(args: argparse.Namespace) -> int:
    from .worker import Worker, configure_logging

    try:
        configure_logging(args.log_level, args.log_format)
    except ValueError as exc:
        raise UsageError(f"--log-level: {exc}") from None
    app = load_app(args.app)
    if args.connect_timeout is not None:
        app.connect_timeout = args.connect_timeout
    elif args.timeout != 10.0:
        # The worker's --timeout always meant this (its default is 10): the old name still works.
        logging.getLogger("spitfire.worker").warning(
            "--timeout is deprecated for the worker: use --connect-timeout"
        )
        app.connect_timeout = args.timeout
    if args.url is not None:
        app.url = args.url
    if args.auth_token is not None:
        app.auth_token = args.auth_token
    queues = [q.strip() for q in args.queues.split(",") if q.strip()] if args.queues else None
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    if args.prefetch is not None and args.prefetch < 0:
        raise UsageError("--prefetch must be 0 or more")
    try:
        worker = Worker(
            app,
            queues,
            concurrency=args.concurrency,
            prefetch=args.prefetch,
            burst=args.burst,
            grace=args.grace,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return worker.run()


COMMANDS = {
    "worker": cmd_worker,
    "enqueue": cmd_enqueue,
    "get": cmd_get,
    "stats": cmd_stats,
    "schedules": cmd_schedules,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spitfire`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"spitfire {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InvalidURL as exc:
        print(f"spitfire {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (NotConnected, ConnectionLost, RequestTimeout) as exc:
        print(f"spitfire {args.command}: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except SpitfireError as exc:
        print(f"spitfire {_command(args)}: {_explained(exc, args)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _command(args: argparse.Namespace) -> str:
    action = getattr(args, "action", None)
    return args.command if action is None else f"{args.command} {action}"


def _explained(exc: SpitfireError, args: argparse.Namespace) -> str:
    """The error, with what to do on the command line where the server's text speaks of the API."""
    if args.command != "schedules":
        return str(exc)
    if isinstance(exc, Conflict) and args.action == "add" and "different definition" in exc.message:
        return f"{exc.message.split('; ')[0]}; pass --replace to replace it, or pick another name"
    if isinstance(exc, BadRequest) and exc.field:
        return f"{exc} (field {exc.field})"
    return str(exc)


if __name__ == "__main__":
    sys.exit(main())
