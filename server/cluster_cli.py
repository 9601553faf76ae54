"""``spitfire-server cluster status|add|remove``: a cluster's members, and changing them online.

Each talks to one member's HTTP API (``--http``, default the server's default address): ``status``
reads ``GET /api/cluster`` and, when that member knows another leader, the leader's view (the one
with every member's commit index and lag); ``add`` and ``remove`` send ``POST /api/cluster/members``
and follow a ``NOT_LEADER`` answer to the leader once. Exit status: 0 done, 1 refused (the answer's
error is printed), 2 bad usage, 3 no member answered.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from spitfire.protocol import units

from .options import DEFAULT_HTTP, auth_token_from_env

__all__ = ["main"]

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class _Unreachable(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--http",
        default=f"http://{DEFAULT_HTTP}",
        metavar="URL",
        help="a member's HTTP address (any member: followers point to the leader) (default %(default)s)",
    )
    common.add_argument(
        "--auth-token",
        default=None,
        help="the members' --auth-token (default $SPITFIRE_AUTH_TOKEN, else none)",
    )
    common.add_argument(
        "--timeout",
        type=_duration,
        default=35.0,
        metavar="DURATION",
        help="per request (default %(default)ss)",
    )
    common.add_argument("--json", action="store_true", help="print the API's JSON answer (default: text)")
    p = argparse.ArgumentParser(
        prog="spitfire-server cluster",
        description="A Raft cluster's members (docs/ha.md). Exit status: 0 done, 1 refused, 2 bad usage, "
        "3 no member answered.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="status|add|remove")
    sub.add_parser(
        "status",
        parents=[common],
        help="each member's role, term, commit and applied index, lag and addresses",
        description="Each member's id, role, term, commit index, applied index, lag and addresses, as the "
        "leader sees them (as the member asked sees them while no leader is known).",
    )
    add = sub.add_parser(
        "add",
        parents=[common],
        help="add a member: ID=RAFT_HOST:PORT (start it with --join and an empty --data-dir)",
        description="Add one member through the Raft log; answered once the change is committed. Start "
        "the new member with --join, an empty --data-dir and a --cluster naming every member and itself.",
    )
    add.add_argument("member", metavar="ID=HOST:PORT", help="the new member's id and Raft address")
    remove = sub.add_parser(
        "remove",
        parents=[common],
        help="remove a member by id (the leader too: it steps down once the change commits)",
        description="Remove one member through the Raft log; answered once the change is committed. A "
        "removed member takes no part any more: stop it.",
    )
    remove.add_argument("id", help="the member's id")
    return p


def _duration(text: str) -> float:
    try:
        return float(units.parse_duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _base(url: str) -> str:
    url = url.strip().rstrip("/")
    return url if "://" in url else f"http://{url}"


def _request(
    url: str, token: str | None, timeout: float, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of one request. :raises _Unreachable: no answer (or not JSON)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        with exc:
            try:
                return exc.code, json.loads(exc.read() or b"{}")
            except ValueError:
                raise _Unreachable(
                    f"{url} answered {exc.code} without JSON: is it a spitfire-server?"
                ) from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Unreachable(f"no answer from {url}: {reason}") from None


def _refused(status: int, body: dict[str, Any]) -> int:
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        field = f" (field {error['field']})" if error.get("field") else ""
        print(
            f"spitfire-server cluster: {status} {error.get('code')}: {error.get('message')}{field}",
            file=sys.stderr,
        )
    else:
        print(f"spitfire-server cluster: the member answered {status}", file=sys.stderr)
    return EXIT_REFUSED


def _leader_url(status: int, body: dict[str, Any]) -> str | None:
    error = body.get("error") if isinstance(body, dict) else None
    if status == 503 and isinstance(error, dict) and error.get("code") == "NOT_LEADER":
        leader = error.get("leader")
        return leader if isinstance(leader, str) and leader else None
    return None


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def render_status(view: dict[str, Any], source: str) -> str:
    """``cluster status``'s text: a line about the leader and the configuration, then a table."""
    membership = view.get("membership") or {}
    leader = view.get("leader")
    lines = [
        f"leader: {leader or 'none elected'}   term: {view.get('term')}   configuration: entry "
        f"{membership.get('index', 0)}{' (not committed yet)' if membership.get('pending') else ''}   "
        f"(as {view.get('node')} at {source} sees it)"
    ]
    headers = ["ID", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG", "RAFT", "LISTEN", "HTTP"]
    rows = [headers]
    for node in view.get("nodes", []):
        term = view.get("term") if node.get("role") in ("leader", "follower", "candidate") else None
        rows.append(
            [
                _cell(node.get("id")),
                _cell(node.get("role")),
                _cell(term),
                _cell(node.get("commit_index")),
                _cell(node.get("applied_index")),
                _cell(node.get("lag")),
                _cell(node.get("raft")),
                _cell(node.get("listen")),
                _cell(node.get("http")),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(headers))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def _status(base: str, token: str | None, timeout: float, as_json: bool) -> int:
    status, view = _request(f"{base}/api/cluster", token, timeout)
    if status != 200:
        return _refused(status, view)
    source = base
    leader = view.get("leader")
    if leader is not None and leader != view.get("node"):  # the leader's view has every index
        row = next((n for n in view.get("nodes", []) if n.get("id") == leader), None)
        url = row.get("http") if row else None
        if url:
            try:
                status, other = _request(f"{_base(url)}/api/cluster", token, timeout)
            except _Unreachable:
                status = 0
            if status == 200 and other.get("leader") == other.get("node"):
                view, source = other, _base(url)
    print(json.dumps(view, indent=2) if as_json else render_status(view, source))
    return EXIT_OK


def _change(base: str, token: str | None, timeout: float, as_json: bool, body: dict[str, Any]) -> int:
    status, answer = _request(f"{base}/api/cluster/members", token, timeout, body)
    leader = _leader_url(status, answer)
    if leader is not None and _base(leader) != base:  # a follower: ask the leader, once
        status, answer = _request(f"{_base(leader)}/api/cluster/members", token, timeout, body)
    if status != 200:
        return _refused(status, answer)
    if as_json:
        print(json.dumps(answer, indent=2))
    else:
        done = "added" if body["op"] == "add" else "removed"
        members = ", ".join(
            n["id"] for n in answer.get("cluster", {}).get("nodes", []) if n.get("role") != "removed"
        )
        print(
            f"{done} {body['id']} ({answer['change'].get('raft')}): committed at entry "
            f"{answer.get('index')}; members: {members}"
        )
    return EXIT_OK


def main(argv: Sequence[str]) -> int:
    """``spitfire-server cluster ...``; returns the exit status."""
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exc:  # argparse: --help (0) or bad usage (2)
        return int(exc.code or 0)
    token = auth_token_from_env(args.auth_token)
    base = _base(args.http)
    try:
        if args.command == "status":
            return _status(base, token, args.timeout, args.json)
        if args.command == "add":
            node, sep, raft = args.member.partition("=")
            if not sep or not node or not raft:
                print(
                    f"spitfire-server cluster add: {args.member!r} is not ID=HOST:PORT "
                    "(e.g. d=127.0.0.1:7904)",
                    file=sys.stderr,
                )
                return EXIT_USAGE
            return _change(base, token, args.timeout, args.json, {"op": "add", "id": node, "raft": raft})
        return _change(base, token, args.timeout, args.json, {"op": "remove", "id": args.id})
    except _Unreachable as exc:
        print(f"spitfire-server cluster: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
