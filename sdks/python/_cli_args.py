"""Argument types and shared flags of the ``spitfire`` command."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from spitfire.protocol.units import parse_duration, parse_size

#: Seconds to wait for the server to answer, by default (``--connect-timeout``).
DEFAULT_CONNECT_TIMEOUT = 10.0
STATES = ("scheduled", "enqueued", "reserved", "running", "succeeded", "retrying", "dead", "cancelled")


class UsageError(Exception):
    """A command-line argument is wrong (exit code 2)."""


def duration(text: str) -> float:
    """An argparse type: seconds in ``30``, ``500ms``, ``1h30m``...; negative ones are refused."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def size(text: str) -> int:
    """An argparse type: bytes in ``4096``, ``1k``, ``64MiB``..."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def states(text: str) -> list[str]:
    """An argparse type: one or more comma-separated job state labels."""
    labels = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in labels if s not in STATES]
    if bad or not labels:
        raise argparse.ArgumentTypeError(
            f"{(bad or [text])[0]!r} is not a job state: one of {', '.join(STATES)} (comma-separated)"
        )
    return labels


def flat(groups: list[list[str]] | None) -> list[str] | None:
    """The labels of a repeated ``--state`` (each maybe comma-separated), in order, once each."""
    if not groups:
        return None
    return list(dict.fromkeys(s for g in groups for s in g))


class _DeprecatedTimeout(argparse.Action):
    """``--timeout`` where it used to mean ``--connect-timeout``: still works, with a warning."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        print(
            f"{parser.prog}: warning: --timeout is deprecated here, use --connect-timeout "
            "(--timeout will only mean how long `spitfire wait` waits)",
            file=sys.stderr,
        )
        namespace.connect_timeout = values


def common(p: argparse.ArgumentParser, *, old_timeout: bool = True, output: bool = False) -> None:
    """The flags of every command that talks to a server (and ``--json``/``--human`` if ``output``)."""
    g = p.add_argument_group("server")
    g.add_argument(
        "--url", default=None, help="server URL (default $SPITFIRE_URL, else tcp://127.0.0.1:7878)"
    )
    g.add_argument(
        "--auth-token", default=None, help="the server's auth token (default $SPITFIRE_AUTH_TOKEN)"
    )
    g.add_argument(
        "--connect-timeout",
        type=duration,
        default=DEFAULT_CONNECT_TIMEOUT,
        metavar="DURATION",
        help="how long to wait for the server to connect and answer (default 10s)",
    )
    if old_timeout:
        g.add_argument(
            "--timeout",
            type=duration,
            action=_DeprecatedTimeout,
            metavar="DURATION",
            help="deprecated alias of --connect-timeout (default: not given)",
        )
    if output:
        o = p.add_mutually_exclusive_group()
        o.add_argument(
            "--json",
            dest="json",
            action="store_const",
            const=True,
            default=None,
            help="print JSON (default when stdout is not a terminal)",
        )
        o.add_argument(
            "--human",
            dest="json",
            action="store_const",
            const=False,
            help="print tables, even to a pipe (default when stdout is a terminal)",
        )
