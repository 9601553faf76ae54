"""``spitfire jobs``, ``queues``, ``workers`` and ``wait``: parsers and commands."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from . import _cli_args as a
from .errors import SpitfireError
from .models import Job

if TYPE_CHECKING:  # rich is imported only by commands that print tables (`spitfire enqueue` stays quick)
    from ._cli_output import Output
    from .sync import Client

EXIT_OK, EXIT_ERROR, EXIT_TIMEOUT = 0, 1, 4
#: States a job does not leave on its own.
FINISHED = frozenset({"succeeded", "dead", "cancelled"})


def add_parsers(sub: Any) -> None:
    """Add ``jobs``, ``queues``, ``workers`` and ``wait`` to the subcommands ``sub``."""
    jp = sub.add_parser("jobs", help="list, show, cancel, retry or delete jobs",
                        description="Jobs across queues.")  # fmt: skip
    jsub = jp.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = jsub.add_parser("list", help="list jobs, newest first (a table, or JSON with --json)")
    ls.add_argument("--queue", default=None, help="only this queue's jobs (default: every queue)")
    ls.add_argument(
        "--state", type=a.states, action="append", metavar="STATE",
        help=f"only jobs in this state; repeat or comma-separate for several ({', '.join(a.STATES)}; "
        "default: every state)",
    )  # fmt: skip
    ls.add_argument("--limit", type=int, default=20, help="jobs to list, 1 to 1000 (default 20)")
    ls.add_argument("--oldest", action="store_true", help="oldest first (default: newest first)")
    ls.add_argument(
        "--cursor", default=None, help="the next page, as printed by the previous one (default: first)"
    )
    a.common(ls, output=True)
    dp = jsub.add_parser(
        "defs", help="the job definitions the server knows (registered by workers from @app.job)",
        description="Each job name's definition: the defaults every enqueue of it gets for the options "
        "it leaves unset (from the CLI, HTTP or any SDK), and whether the server validates its payloads "
        "against the schema of its arguments. With NAME, one definition and its schema.",
    )  # fmt: skip
    dp.add_argument(
        "name", nargs="?", default=None, metavar="NAME", help="one job's definition (default: all)"
    )
    a.common(dp, output=True)
    g = jsub.add_parser("get", help="show one job (same as `spitfire get`)")
    g.add_argument("job_id", metavar="ID", help="the job's id")
    a.common(g, output=True)
    for action, text in (
        ("cancel", "cancel jobs that have not finished (a running one's worker is told to stop)"),
        ("retry", "run dead or cancelled jobs again now"),
        ("delete", "delete jobs (a running one is cancelled first)"),
    ):
        p = jsub.add_parser(action, help=text, description=f"{text[0].upper()}{text[1:]}. Prints each "
                            "job's id and new state; exit code 1 if any could not be done.")  # fmt: skip
        p.add_argument("job_ids", nargs="+", metavar="ID", help="one or more job ids")
        a.common(p, output=True)

    qp = sub.add_parser("queues", help="list queues; pause, resume, purge, delete one or set its durability")
    qsub = qp.add_subparsers(dest="action", metavar="ACTION")
    a.common(qp, output=True)  # `spitfire queues` alone lists them
    ql = qsub.add_parser("list", help="every queue with its jobs per state (the default action)")
    a.common(ql, output=True)
    for action, text in (
        ("pause", "stop delivering the queue's jobs (enqueues are still accepted)"),
        ("resume", "deliver the queue's jobs again"),
    ):
        p = qsub.add_parser(action, help=text)
        p.add_argument("queue", help="the queue's name")
        a.common(p, output=True)
    pp = qsub.add_parser(
        "purge", help="delete every job of a queue in the given states",
        description="Delete every job of QUEUE in one of the --state states, durably, in chunks; "
        "workers running a deleted job are told to stop it. Prints what was deleted.",
        epilog="example: spitfire queues purge emails --state succeeded,dead",
    )  # fmt: skip
    pp.add_argument("queue", help="the queue's name")
    pp.add_argument(
        "--state", type=a.states, action="append", metavar="STATE", required=True,
        help=f"delete jobs in this state; repeat or comma-separate ({', '.join(a.STATES)}; required)",
    )  # fmt: skip
    a.common(pp, output=True)
    dp = qsub.add_parser("delete", help="delete a queue with its jobs, history and files")
    dp.add_argument("queue", help="the queue's name")
    dp.add_argument("--force", action="store_true", help="also drop pending jobs (default: refuse if any)")
    a.common(dp, output=True)
    sp = qsub.add_parser(
        "set-durability", help="set a queue's durability mode (creates the queue if needed)",
        description="sync: fsync before each answer; group: fsyncs shared by concurrent writes (the "
        "server's default unless --durability); async: answer before the fsync (fastest, a crash "
        "may lose the last writes).",
    )  # fmt: skip
    sp.add_argument("queue", help="the queue's name")
    sp.add_argument("mode", choices=("sync", "group", "async"), help="the mode")
    a.common(sp, output=True)

    wp = sub.add_parser("workers", help="list the workers connected over the binary protocol")
    a.common(wp, output=True)

    w = sub.add_parser(
        "wait", help="wait until a job finishes; prints its result",
        description="Wait until job ID succeeds, goes dead or is cancelled. Prints the result (JSON) "
        "when it succeeded. Exit code 0 succeeded, 1 dead or cancelled (its last error on stderr), "
        "4 still not finished after --timeout.",
    )  # fmt: skip
    w.add_argument("job_id", metavar="ID", help="the job's id")
    w.add_argument(
        "--timeout", type=a.duration, default=None, metavar="DURATION",
        help="give up after this long, e.g. 30s, 5m (default: wait for ever)",
    )  # fmt: skip
    a.common(w, old_timeout=False, output=True)


def cmd_jobs(args: argparse.Namespace, client: Client, out: Output) -> int:
    if args.action == "list":
        if not 1 <= args.limit <= 1000:
            raise a.UsageError("--limit must be 1 to 1000")
        page = client.list_jobs(args.queue, states=a.flat(args.state), limit=args.limit,
                                cursor=args.cursor, newest_first=not args.oldest)  # fmt: skip
        out.jobs(page.jobs, page.cursor)
        return EXIT_OK
    if args.action == "get":
        out.job(client.get(args.job_id))
        return EXIT_OK
    if args.action == "defs":
        return _definitions(args, client, out)
    op = {"cancel": client.cancel, "retry": client.retry, "delete": client.delete}[args.action]
    done: list[dict[str, Any]] = []
    failed = 0
    for job_id in dict.fromkeys(args.job_ids):
        try:
            job = op(job_id)
        except SpitfireError as exc:
            failed += 1
            out.note(f"spitfire jobs {args.action}: {job_id}: {exc}")
            continue
        state = "deleted" if args.action == "delete" else job.state
        done.append({"id": job.id, "state": state})
        if not out.json:
            out.state_line(f"{job.id} ", state)
    if out.json:
        out.print_json({"jobs": done, "failed": failed})
    return EXIT_ERROR if failed else EXIT_OK


def _definitions(args: argparse.Namespace, client: Client, out: Output) -> int:
    definitions = client.job_definitions()
    if args.name is None:
        out.definitions(definitions)
        return EXIT_OK
    found = [d for d in definitions if d.name == args.name]
    if not found:
        out.note(f"spitfire jobs defs: no job definition named {args.name!r}")
        return EXIT_ERROR
    out.definition(found[0])
    return EXIT_OK


def cmd_queues(args: argparse.Namespace, client: Client, out: Output) -> int:
    action = args.action or "list"
    if action == "list":
        out.queues(client.stats())
        return EXIT_OK
    q = args.queue
    if action == "purge":
        result = client.purge(q, states=a.flat(args.state) or [])
        if out.json:
            out.print_json({"queue": q, **result.to_dict()})
        else:
            extra = f" ({result.failed} gone meanwhile)" if result.failed else ""
            out.line(f"{q}: deleted {result.deleted} of {result.matched} jobs{extra}")
        return EXIT_OK
    if action == "delete":
        client.delete_queue(q, force=args.force)
        _done(out, q, "deleted")
        return EXIT_OK
    if action == "set-durability":
        client.set_durability(q, args.mode)
        _done(out, q, f"durability {args.mode}")
        return EXIT_OK
    (client.pause if action == "pause" else client.resume)(q)
    _done(out, q, "paused" if action == "pause" else "resumed")
    return EXIT_OK


def _done(out: Output, queue: str, what: str) -> None:
    if out.json:
        out.print_json({"queue": queue, "done": what})
    else:
        out.line(f"{queue}: {what}")


def cmd_workers(args: argparse.Namespace, client: Client, out: Output) -> int:
    out.workers(client.workers())
    return EXIT_OK


def cmd_wait(args: argparse.Namespace, client: Client, out: Output) -> int:
    """Wait on the server (``WAIT``: it answers when the job is final), not by polling."""
    job = client.wait_job(args.job_id, args.timeout)
    if job.state in FINISHED:
        return _finished(job, out)
    out.note(f"spitfire wait: job {job.id} is still {job.state} after --timeout {args.timeout:g}s")
    return EXIT_TIMEOUT


def _finished(job: Job, out: Output) -> int:
    if job.state == "succeeded":
        if out.json:
            out.print_json(job_result(job))
        else:
            out.state_line("", "succeeded")
            result = job_result(job)
            if result is not None:
                out.print_json(result)
        return EXIT_OK
    last = job.errors[-1].error if job.errors else "no error recorded"
    out.note(f"spitfire wait: job {job.id} is {job.state}: {last}")
    if out.json:
        out.print_json({"id": job.id, "state": job.state, "error": last})
    return EXIT_ERROR


def job_result(job: Job) -> Any:
    from ._cli_output import job_json

    return job_json(job)["result"]
