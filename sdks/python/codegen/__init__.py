"""Schema-first jobs: job payloads declared as proto3 messages, with Spitfire's job options
(``spitfire/options.proto``) on them.

- ``spitfire codegen --lang python|typescript FILES... -o DIR`` (`main`) writes typed code: msgspec
  Structs or TypeScript interfaces, and a typed enqueue per job.
- ``spitfire schemas check OLD NEW`` (`schemas_main`) refuses a breaking change.
- ``spitfire schemas push FILES...`` registers each job message as the server's definition of its
  job (options, and the JSON Schema of its payload with ``validate`` on: `spitfire.codegen.push`).

protoc (from ``grpcio-tools``, the ``spitfire[codegen]`` extra) parses the files; it is imported
only when a command runs, so ``spitfire`` works without it. The generated Python needs msgspec and
the spitfire SDK only; the generated TypeScript needs nothing.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import _cli_args
from .model import SchemaError

__all__ = ["COMMANDS", "SchemaError", "add_parsers", "codegen", "main", "schemas_main"]

EXIT_OK, EXIT_BREAKING, EXIT_USAGE = 0, 1, 2
LANGUAGES = ("python", "typescript")
_MISSING = (
    "spitfire codegen needs protoc from grpcio-tools: pip install 'spitfire[codegen]' "
    "(or pip install grpcio-tools)"
)


def codegen(
    lang: str, files: Sequence[str | Path], out_dir: str | Path, include: Sequence[str | Path] = ()
) -> list[Path]:
    """Generate ``lang`` code of the ``.proto`` ``files`` into ``out_dir`` (made if missing);
    returns the paths written.

    :raises SchemaError: a file protoc refuses, or one outside what Spitfire supports.
    :raises ValueError: an unknown ``lang``.
    """
    if lang not in LANGUAGES:
        raise ValueError(f"--lang {lang!r}: use one of {', '.join(LANGUAGES)}")
    schema = _load(files, include)
    if lang == "python":
        from .python import generate_python

        sources = generate_python(schema)
    else:
        from .typescript import generate_typescript

        sources = generate_typescript(schema)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in sources.items():
        path = out / name
        if name == "__init__.py" and path.exists():
            continue  # the directory is already a package: leave its __init__ alone
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _load(files: Sequence[str | Path], include: Sequence[str | Path]) -> Any:
    try:
        from .load import load
    except ImportError as exc:
        raise SchemaError(f"{_MISSING} ({exc})") from None
    return load(_expand(files), include)


def _expand(files: Sequence[str | Path]) -> list[Path]:
    """Files as given; a directory stands for the ``.proto`` files in it (not in subdirectories)."""
    out: list[Path] = []
    for f in map(Path, files):
        out += sorted(f.glob("*.proto")) if f.is_dir() else [f]
    return out


def add_parsers(sub: Any) -> None:
    """Add the ``codegen`` and ``schemas`` subcommands to the ``spitfire`` command's subparsers."""
    g = sub.add_parser(
        "codegen",
        help="generate typed Python or TypeScript from .proto job schemas",
        description="Generate code from proto3 job schemas: msgspec Structs (python) or interfaces "
        "(typescript), and a typed enqueue per job message (a message with (spitfire.*) options).",
        epilog="example: spitfire codegen --lang python schemas/*.proto -o myapp/jobs",
    )
    g.add_argument("--lang", required=True, choices=LANGUAGES, help="the language to generate")
    g.add_argument("files", nargs="+", metavar="FILE", help=".proto files (a directory: its .proto files)")
    g.add_argument("-o", "--out", required=True, metavar="DIR", help="where to write (made if missing)")
    g.add_argument(
        "-I",
        "--include",
        action="append",
        default=[],
        metavar="DIR",
        help="where imports are looked up, repeatable (default: the files' own folders)",
    )
    s = sub.add_parser(
        "schemas",
        help="check .proto job schemas for breaking changes, or push them to the server",
        description="Job schemas in .proto files. `check OLD NEW` exits 1 with one line per breaking "
        "change (renamed, retyped, reused or unreserved fields; removed messages; changed job names "
        "or queues), 0 when NEW is compatible. `push FILES` registers their jobs with the server, "
        "which then checks every payload of those jobs at enqueue.",
    )
    ssub = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = ssub.add_parser("check", help="exit 1 if NEW breaks payloads of OLD (one line per change)")
    c.add_argument("old", metavar="OLD", help="the schema in use: a .proto file or a directory of them")
    c.add_argument("new", metavar="NEW", help="the changed schema: a .proto file or a directory of them")
    c.add_argument(
        "-I",
        "--include",
        action="append",
        default=[],
        metavar="DIR",
        help="where imports are looked up, repeatable (default: the files' own folders)",
    )
    _push_parser(ssub)


def _push_parser(ssub: Any) -> None:
    p = ssub.add_parser(
        "push",
        help="register the job messages of .proto files with the server, which then checks their payloads",
        description="Register each job message (a message with (spitfire.*) options) as the server's "
        "definition of its job, in one request: its queue and options, and the JSON Schema of its "
        "payload derived from the message, with validation on. The server then applies the options "
        "to every enqueue of the job that leaves them unset, and refuses a payload that does not fit, "
        "naming the field. The latest registration of a job name wins (a worker's too). Exit 0 once "
        "durable; 1 refused by the server; 2 a file that cannot be pushed; 3 no server.",
        epilog="example: spitfire schemas push schemas/*.proto --url tcp://queue.internal:7878",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help=".proto files (a directory: its .proto files)")
    p.add_argument(
        "-I",
        "--include",
        action="append",
        default=[],
        metavar="DIR",
        help="where imports are looked up, repeatable (default: the files' own folders)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the definitions as JSON and register nothing (no server needed; default: register)",
    )
    _cli_args.common(p, old_timeout=False)


def cmd_codegen(args: argparse.Namespace) -> int:
    """``spitfire codegen``: prints the files written."""
    try:
        written = codegen(args.lang, args.files, args.out, args.include)
    except SchemaError as exc:
        print(f"spitfire codegen: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for path in written:
        print(path)
    return EXIT_OK


def cmd_schemas(args: argparse.Namespace) -> int:
    """``spitfire schemas check``: one line per breaking change on stdout, exit 1 if any.
    ``spitfire schemas push``: `cmd_push`."""
    if args.action == "push":
        return cmd_push(args)
    from .check import breaking_changes

    try:
        old = _load([args.old], args.include)
        new = _load([args.new], args.include)
    except SchemaError as exc:
        print(f"spitfire schemas check: {exc}", file=sys.stderr)
        return EXIT_USAGE
    changes = breaking_changes(old, new)
    for line in changes:
        print(line)
    if changes:
        print(
            f"spitfire schemas check: {len(changes)} breaking change(s) from {args.old} to {args.new}",
            file=sys.stderr,
        )
        return EXIT_BREAKING
    print(f"compatible: {len(new.messages)} message(s) checked", file=sys.stderr)
    return EXIT_OK


def cmd_push(args: argparse.Namespace) -> int:
    """``spitfire schemas push``: one line per job registered (or, with ``--dry-run``, the
    definitions as JSON). A server's refusal is raised (``spitfire``'s handler prints it, exit 1)
    as a `BadRequest` naming the job and the message it comes from."""
    from .push import definitions, render

    try:
        pushed = definitions(_load(args.files, args.include))
    except SchemaError as exc:
        print(f"spitfire schemas push: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.dry_run:
        sys.stdout.write(render(pushed))
        return EXIT_OK
    from ..errors import BadRequest
    from ..sync import Client

    timeout = args.connect_timeout
    with Client(args.url, auth_token=args.auth_token, timeout=timeout, connect_timeout=timeout) as client:
        try:
            client.register_job_definitions([d for _, d in pushed])
        except BadRequest as exc:
            raise _refused(exc, [m.full_name for m, _ in pushed], [d.name for _, d in pushed]) from None
    for m, d in pushed:
        print(f"{d.name}: {m.full_name} on queue {d.queue}, payloads checked at enqueue")
    return EXIT_OK


def _refused(exc: Any, sources: list[str], names: list[str]) -> Any:
    """The server's refusal of ``definitions[i].<field>`` naming job ``names[i]`` and its message."""
    field = exc.field or ""
    index = field.removeprefix("definitions[").partition("]")[0]
    if field.startswith("definitions[") and index.isdigit() and int(index) < len(names):
        i = int(index)
        return type(exc)(f"job {names[i]!r} ({sources[i]}): {exc.message}", exc.field)
    if exc.message.startswith("unknown message type"):
        return type(exc)(
            f"the server does not keep job definitions (a version older than them): {exc.message}", exc.field
        )
    return exc


#: The subcommands `add_parsers` adds, by name, for ``spitfire``'s dispatch.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"codegen": cmd_codegen, "schemas": cmd_schemas}


def _run(argv: Sequence[str] | None, command: str) -> int:
    parser = argparse.ArgumentParser(prog="spitfire")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([command, *(sys.argv[1:] if argv is None else argv)])
    return COMMANDS[command](args)


def main(argv: Sequence[str] | None = None) -> int:
    """``spitfire codegen`` with ``argv`` (``["--lang", "python", "a.proto", "-o", "gen"]``): exit code."""
    return _run(argv, "codegen")


def schemas_main(argv: Sequence[str] | None = None) -> int:
    """``spitfire schemas`` with ``argv`` (``["check", "old.proto", "new.proto"]``); the exit code."""
    return _run(argv, "schemas")
