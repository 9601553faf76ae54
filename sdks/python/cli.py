"""The ``spitfire`` command: run a worker, enqueue and manage jobs, queues and schedules.

    spitfire worker MODULE:APP [--queues a,b] [--concurrency N] [--prefetch N] [--burst] [--grace 25s]
    spitfire enqueue QUEUE NAME ['{"json": "payload"}'] [--priority N] [--delay 5s] [--idempotency-key K]
    spitfire get ID | wait ID [--timeout 30s] | stats [--queue Q] | workers
    spitfire jobs list [--queue Q] [--state S] [--limit N] | get ID | cancel|retry|delete ID...
    spitfire queues [list | pause Q | resume Q | purge Q --state S | delete Q [--force]
                    | set-durability Q sync|group|async]
    spitfire schedules list | get NAME | add NAME CRON QUEUE JOB [PAYLOAD] ... | rm|pause|resume|trigger NAME

Every command that talks to a server takes ``--url`` (default ``$SPITFIRE_URL``, else
tcp://127.0.0.1:7878), ``--auth-token`` (default ``$SPITFIRE_AUTH_TOKEN``) and ``--connect-timeout``
(default 10s; ``--timeout`` is its deprecated alias, except in ``wait``). Commands that print take
``--json`` / ``--human``: JSON is the default when stdout is not a terminal. ``enqueue`` always
prints the bare id. Durations: ``90``, ``500ms``, ``1h30m``; sizes: ``1k``, ``64MiB``.

Exit codes: 0 success; 1 the server refused the request (unknown job, bad argument, ...), a job
waited for failed, or a worker failed to start; 2 bad command-line usage; 3 the server could not be
reached; 4 ``wait`` timed out.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from spitfire.protocol.units import parse_duration as _parse

from . import __version__, codegen
from . import _cli_admin as admin
from . import _cli_args as a
from ._cli_args import UsageError
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

if TYPE_CHECKING:
    from ._cli_output import Output

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_TIMEOUT", "EXIT_UNREACHABLE", "EXIT_USAGE", "UsageError", "main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_TIMEOUT = 0, 1, 2, 3, 4
#: What the server or the SDK calls an argument -> the flag or operand of the command line.
FLAGS = {
    "priority": "--priority", "delay": "--delay", "run_at": "--delay", "max_attempts": "--max-attempts",
    "idempotency_key": "--idempotency-key", "timeout": "--job-timeout", "queue": "QUEUE", "name": "NAME",
    "payload": "PAYLOAD", "cron": "CRON", "timezone": "--timezone", "misfire": "--misfire",
    "job": "JOB", "states": "--state", "state": "--state", "durability": "MODE", "limit": "--limit",
    "cursor": "--cursor",
}  # fmt: skip
#: SDK wording that names Python keywords, and what the command line calls them.
_KEYWORDS = (("url=...", "--url"), ("timeout=...", "--connect-timeout"), ("auth_token=...", "--auth-token"))


def parse_duration(text: str) -> float:
    """Seconds in ``5``, ``2.5s``, ``500ms``, ``10m``, ``1h30m`` or ``1d``.

    :raises UsageError: anything else, negative durations included.
    """
    try:
        return _parse(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="spitfire",
        description="Spitfire job queue: run workers, enqueue and inspect jobs, manage queues and "
        "recurring schedules. `spitfire COMMAND --help` tells more.",
        epilog="exit codes: 0 ok, 1 refused by the server (or the job waited for failed), 2 usage "
        "error, 3 server unreachable, 4 wait timed out",
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
    w.add_argument("--burst", action="store_true", help="exit once the queues are empty (default: run on)")
    w.add_argument(
        "--grace", type=a.duration, default=25.0, metavar="DURATION",
        help="how long jobs get to finish on SIGTERM (default 25s)",
    )  # fmt: skip
    w.add_argument("--log-level", default="info", help="debug, info, warning or error (default info)")
    w.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text, or one JSON object a line (default text)",
    )
    a.common(w)

    e = sub.add_parser(
        "enqueue", help="add a job; prints its id",
        description="Add a job and print its bare id (ID=$(spitfire enqueue ...) works). When "
        "--idempotency-key names an existing job, nothing is enqueued: its id is printed, and a note "
        "on stderr says so.",
    )  # fmt: skip
    e.add_argument("queue", help="the queue (created on first use)")
    e.add_argument("name", help="the job (handler) name")
    e.add_argument("payload", nargs="?", default="null", help="JSON payload (default null)")
    e.add_argument("--priority", type=int, default=0, help="0..10, higher first (default 0)")
    e.add_argument(
        "--delay", type=a.duration, default=None, metavar="DURATION",
        help="run after this long, e.g. 5s, 10m, 1h30m (default: now)",
    )  # fmt: skip
    e.add_argument(
        "--max-attempts", type=int, default=None, help="attempts before dead (default: the server's, 25)"
    )
    e.add_argument(
        "--job-timeout", type=a.duration, default=None, metavar="DURATION",
        help="the job's lease: how long a worker may run it without a heartbeat (default: the server's)",
    )  # fmt: skip
    e.add_argument(
        "--idempotency-key", default=None, help="the same key again returns the same job (default: none)"
    )
    a.common(e)

    g = sub.add_parser("get", help="show a job (a table, or JSON with --json)")
    g.add_argument("job_id", metavar="ID", help="the job's id")
    a.common(g, output=True)

    s = sub.add_parser("stats", help="the server's queues and job counts")
    s.add_argument("--queue", default=None, help="only this queue (default: every queue)")
    a.common(s, output=True)

    admin.add_parsers(sub)
    _schedules_parser(sub)
    codegen.add_parsers(sub)  # codegen, schemas
    return parser


def _schedules_parser(sub: Any) -> None:
    sp = sub.add_parser(
        "schedules",
        help="list, add, remove, pause, resume or trigger recurring (cron) schedules",
        description="Recurring schedules kept by the server: at each time a cron expression names, "
        "the server enqueues one job.",
    )
    ssub = sp.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = ssub.add_parser("list", help="every schedule (next and last run, last job's state)")
    a.common(ls, output=True)
    get = ssub.add_parser("get", help="show one schedule")
    get.add_argument("name", help="the schedule's name")
    a.common(get, output=True)
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
        "--job-timeout",
        type=a.duration,
        default=None,
        metavar="DURATION",
        help="each job's lease, e.g. 30s, 10m (default: the server's)",
    )
    add.add_argument(
        "--replace",
        action="store_true",
        help="replace a schedule of that name (upsert; default: refuse a different one)",
    )
    a.common(add, output=True)
    for action, text in (
        ("rm", "delete a schedule (jobs it enqueued stay); prints it as it was"),
        ("pause", "stop a schedule's ticks until resumed; prints it"),
        ("resume", "tick again from now on (missed ticks are not caught up); prints it"),
        ("trigger", "enqueue the schedule's job now; prints the job id"),
    ):
        p = ssub.add_parser(action, help=text)
        p.add_argument("name", help="the schedule's name")
        a.common(p, output=action != "trigger")


def _client(args: argparse.Namespace) -> Client:
    timeout = args.connect_timeout
    return Client(args.url, auth_token=args.auth_token, timeout=timeout, connect_timeout=timeout)


def _output(args: argparse.Namespace) -> Output:
    from ._cli_output import Output  # rich: only for the commands that print

    return Output(getattr(args, "json", None))


def _payload(text: str, example: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"the payload is not valid JSON ({exc}); quote it, e.g. '{example}'") from None


def cmd_enqueue(args: argparse.Namespace) -> int:
    payload = _payload(args.payload, '{"to": "a@b.c"}')
    options: dict[str, Any] = {
        "priority": args.priority,
        "delay": args.delay,
        "max_attempts": args.max_attempts,
        "idempotency_key": args.idempotency_key,
        "timeout": args.job_timeout,
    }
    with _client(args) as client:
        job_id, created, state = _enqueue(client, args.queue, args.name, payload, options)
    print(job_id)
    if not created:
        print(f"spitfire enqueue: nothing enqueued: idempotency key {args.idempotency_key!r} names "
              f"existing job {job_id} ({state})", file=sys.stderr)  # fmt: skip
    return EXIT_OK


def _enqueue(
    client: Client, queue: str, name: str, payload: Any, options: dict[str, Any]
) -> tuple[str, bool, str]:
    """The job's id, whether it was created, and (when its idempotency key named an existing job)
    that job's state label."""
    job_id = client.enqueue(queue, name, payload, **{k: v for k, v in options.items() if v is not None})
    created = bool(getattr(job_id, "created", True))
    return str(job_id), created, "enqueued" if created else client.get(job_id).state


def cmd_get(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _output(args).job(client.get(args.job_id))
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _output(args).stats(client.stats(args.queue))
    return EXIT_OK


def cmd_schedules(args: argparse.Namespace) -> int:
    out = _output(args)
    with _client(args) as client:
        schedules = client.schedules
        if args.action == "list":
            out.schedules(schedules.list())
            return EXIT_OK
        if args.action == "trigger":
            print(schedules.trigger(args.name))
            return EXIT_OK
        if args.action == "add":
            schedule = _add_schedule(schedules, args)
        else:
            ops = {"get": schedules.get, "rm": schedules.remove, "pause": schedules.pause}
            schedule = ops.get(args.action, schedules.resume)(args.name)
    out.schedule(schedule)
    return EXIT_OK


def _add_schedule(schedules: Schedules, args: argparse.Namespace) -> Schedule:
    payload = None if args.payload is None else _payload(args.payload, '{"kind": "daily"}')
    add = schedules.put if args.replace else schedules.add
    return add(
        args.name, args.cron, args.queue, args.job, payload, timezone=args.timezone, misfire=args.misfire,
        priority=args.priority, max_attempts=args.max_attempts, timeout=args.job_timeout,
    )  # fmt: skip


Command = Callable[[argparse.Namespace], int]


def _admin(command: Callable[[argparse.Namespace, Client, Output], int]) -> Command:
    """An admin command run with a connected client and the output of its flags."""

    def run(args: argparse.Namespace) -> int:
        with _client(args) as client:
            return command(args, client, _output(args))

    return run


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


COMMANDS: dict[str, Command] = {
    "worker": cmd_worker,
    "enqueue": cmd_enqueue,
    "get": cmd_get,
    "stats": cmd_stats,
    "schedules": cmd_schedules,
    "jobs": _admin(admin.cmd_jobs),
    "queues": _admin(admin.cmd_queues),
    "workers": _admin(admin.cmd_workers),
    "wait": _admin(admin.cmd_wait),
    **codegen.COMMANDS,
}


def _negatives(argv: Sequence[str]) -> list[str]:
    """``--delay -5s`` as ``--delay=-5s``: argparse would take ``-5s`` for a flag and say only
    "expected one argument"; this way the duration type says that it is negative."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in _VALUE_FLAGS and re.match(r"^-[\d.]", arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


_VALUE_FLAGS = frozenset(
    {"--delay", "--job-timeout", "--grace", "--connect-timeout", "--timeout", "--priority", "--max-attempts",
     "--limit", "--concurrency", "--prefetch"}
)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``spitfire`` console script; returns the exit code."""
    args = build_parser().parse_args(_negatives(sys.argv[1:] if argv is None else argv))
    try:
        return COMMANDS[args.command](args)
    except (UsageError, InvalidURL) as exc:
        print(f"spitfire {_command(args)}: {_flags(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        if isinstance(exc, SpitfireError):  # BadRequest is a ValueError too: refused by the server
            print(f"spitfire {_command(args)}: {_explained(exc, args)}", file=sys.stderr)
            return EXIT_ERROR
        print(f"spitfire {_command(args)}: {_flags(str(exc))}", file=sys.stderr)  # the SDK refused it
        return EXIT_USAGE
    except (NotConnected, ConnectionLost, RequestTimeout) as exc:
        print(f"spitfire {_command(args)}: {_flags(str(exc))}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except SpitfireError as exc:
        print(f"spitfire {_command(args)}: {_explained(exc, args)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _command(args: argparse.Namespace) -> str:
    action = getattr(args, "action", None)
    return args.command if action is None else f"{args.command} {action}"


def _flags(text: str) -> str:
    """SDK wording (``url=...``, ``priority:``) in the command line's terms (``--url``, ``--priority``)."""
    for keyword, flag in _KEYWORDS:
        text = text.replace(keyword, flag)
    head, sep, rest = text.partition(": ")
    if sep and head in FLAGS:
        return f"{FLAGS[head]}: {rest}"
    return text


def _explained(exc: SpitfireError, args: argparse.Namespace) -> str:
    """The error, with what to do on the command line where the server's text speaks of the API."""
    if (
        isinstance(exc, Conflict)
        and args.command == "schedules"
        and args.action == "add"
        and "different definition" in exc.message
    ):
        return f"{exc.message.split('; ')[0]}; pass --replace to replace it, or pick another name"
    if isinstance(exc, BadRequest) and exc.field:
        flag = FLAGS.get(exc.field.split(".")[0], exc.field)
        text = _flags(str(exc))
        return text if text.startswith(flag) else f"{text} ({flag})"
    return _flags(str(exc))


if __name__ == "__main__":
    sys.exit(main())
