"""Membership changes of real spitfire-server processes on loopback, through the HTTP API and
``spitfire-server cluster``: growing a cluster to five members under producer load and shrinking it
back loses no acknowledged job, a member added with an empty data directory catches up, a removed
leader hands over, hostile bodies change nothing, a leader SIGKILLed in the middle of a change
leaves it everywhere or nowhere, and the stored configuration wins over ``--cluster`` on restart.
Followers send browsers, compatibility HTTP clients and Redis clients to the leader."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clusterhelpers import WAIT, Cluster, Member, ProtoClient, ServerError, free_ports, journal_job_ids

from spitfire.protocol.messages import ErrorCode

pytestmark = pytest.mark.timeout(300)

CLI = [sys.executable, "-m", "spitfire.server.cli", "cluster"]
SHIM = str(Path(__file__).parents[1] / "server" / "fsync_shim.py")
#: Every member's flags: a longer election timeout than the LAN default, so that a loaded machine
#: (a stalled process misses heartbeats) does not keep electing leaders while membership is tested.
SLOW_LAN = ["--election-timeout", "1s"]


def _post(member: Member, body: bytes, *, token: str | None = None, method: str = "POST",
          path: str = "/api/cluster/members") -> tuple[int, Any]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", member.http, timeout=WAIT)
    try:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, path, body=body, headers=headers)
        answer = conn.getresponse()
        data = answer.read()
        return answer.status, json.loads(data) if data else None
    finally:
        conn.close()


def _change(
    member: Member, op: str, node: str, raft: str | None = None, token: str | None = None
) -> tuple[int, Any]:
    body: dict[str, Any] = {"op": op, "id": node}
    if raft is not None:
        body["raft"] = raft
    return _post(member, json.dumps(body).encode(), token=token)


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def _operator(c: Cluster, *args: str, first: Member | None = None) -> subprocess.CompletedProcess[str]:
    """``spitfire-server cluster add|remove ...`` as an operator runs it: at ``first`` (else the
    leader), again at the leader when no member answered or the leadership changed meanwhile (a
    loaded machine); a change an earlier attempt made counts as done."""
    done = _cli(*args, "--http", f"127.0.0.1:{(first or c.leader()).http}")
    for _ in range(5):
        if done.returncode == 0 or not (done.returncode == 3 or "NOT_LEADER" in done.stderr
                                        or "NOT_COMMITTED" in done.stderr):  # fmt: skip
            return done
        again = _cli(*args, "--http", f"127.0.0.1:{c.leader().http}")
        if again.returncode == 1 and (
            "already a member" in again.stderr or "is not a member" in again.stderr
        ):
            return done  # the first attempt took effect
        done = again
    return done


def _new_member(c: Cluster, root: Path, node_id: str, existing: list[Member]) -> Member:
    """A new member (not started): ``--join``, an empty data directory, every member and itself in
    its ``--cluster``."""
    raft, listen, http_port = free_ports(3)
    members = f"{_members_arg(existing)},{node_id}=127.0.0.1:{raft}"
    m = Member(
        node_id,
        root / node_id / "data",
        raft,
        listen,
        http_port,
        members,
        root / f"{node_id}.log",
        ["--join", *SLOW_LAN],
    )
    m.data_dir.parent.mkdir(parents=True, exist_ok=True)
    c.members.append(m)
    return m


def _caught_up(m: Member, leader: Member) -> bool:
    """Whether ``m`` applied every entry the leader had committed when asked."""
    mine, leading = m.me() or {}, leader.me() or {}
    return (mine.get("applied_index") or 0) >= leading.get("commit_index", 1 << 62)


def _raft(m: Member) -> str:
    return f"127.0.0.1:{m.raft}"


def _members_arg(members: list[Member]) -> str:
    return ",".join(f"{m.node_id}={_raft(m)}" for m in members)


def _config(m: Member) -> tuple[frozenset[str], int, bool] | None:
    """(member ids, configuration entry, pending) as ``m`` sees them; None when it does not answer."""
    view = m.cluster()
    if view is None:
        return None
    ids = frozenset(n["id"] for n in view["nodes"] if n["role"] != "removed")
    return ids, view["membership"]["index"], view["membership"]["pending"]


class Producer:
    """Enqueues on whichever member leads, in a thread, until stopped; keeps every acknowledged id."""

    def __init__(self, c: Cluster) -> None:
        self.c = c
        self.acked: list[str] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        deadline = time.monotonic() + 240
        while not self._stop.is_set() and time.monotonic() < deadline:
            leader = await asyncio.to_thread(self.c.leader)
            try:
                client = await ProtoClient.connect(leader.listen)
            except OSError:
                self.errors += 1
                continue
            try:
                while not self._stop.is_set() and time.monotonic() < deadline:
                    self.acked.append((await client.enqueue("load", "job", b"\x91\x01")).job_id)
            except (TimeoutError, ServerError, OSError, ConnectionError):
                self.errors += 1
            finally:
                client.close()

    def __enter__(self) -> Producer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(WAIT)

    def wait_for(self, more: int) -> None:
        target = len(self.acked) + more
        self.c.wait(f"{more} more enqueues acknowledged", lambda: len(self.acked) >= target)


@contextlib.contextmanager
def _cluster(root: Path, size: int = 3, extra: list[str] | None = None) -> Iterator[Cluster]:
    c = Cluster(root, size, [*SLOW_LAN, *(extra or [])])
    try:
        c.start()
        yield c
    finally:
        c.close()


async def _missing(member: Member, ids: list[str]) -> list[str]:
    """The jobs of ``ids`` that ``member`` does not hold (any other error is raised)."""
    client = await ProtoClient.connect(member.listen)
    try:
        missing = []
        for job_id in ids:
            try:
                await client.get(job_id)
            except ServerError as exc:
                if exc.code != ErrorCode.NOT_FOUND:
                    raise
                missing.append(job_id)
        return missing
    finally:
        client.close()


def _missing_on_leader(c: Cluster, among: list[Member], ids: list[str]) -> list[str]:
    """`_missing` on the leader among ``among``, asked again while the leadership still moves (a
    member restarted just now: the one found leading may step down while it answers)."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            return asyncio.run(_missing(c.leader(among=among), ids))
        except (ConnectionError, OSError, ServerError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_grow_to_five_under_load_and_shrink_back_losing_no_acknowledged_job(tmp_path: Path) -> None:
    with _cluster(tmp_path) as c:
        with Producer(c) as producer:
            a, b, cc = c.members
            leader = c.leader()
            producer.wait_for(50)
            d = _new_member(c, tmp_path, "d", [a, b, cc])
            d_addr = _raft(d)
            d.start()
            before_d = list(producer.acked)
            done = _operator(c, "add", f"d={d_addr}")
            assert done.returncode == 0, done.stderr + c.logs()
            c.wait("d catches up from an empty data directory", lambda: _caught_up(d, leader))
            producer.wait_for(50)

            e = _new_member(c, tmp_path, "e", [a, b, cc, d])
            e_addr = _raft(e)
            e.start()
            follower = next(m for m in (a, b, cc) if m is not c.leader())
            done = _operator(c, "add", f"e={e_addr}", "--json", first=follower)  # follows it once
            assert done.returncode == 0, done.stderr + c.logs()
            if done.stdout:
                assert json.loads(done.stdout)["change"] == {"op": "add", "id": "e", "raft": e_addr}
            c.wait("every member sees five", lambda: all(
                (_config(m) or (frozenset(),))[0] == frozenset("abcde") for m in c.members))  # fmt: skip
            producer.wait_for(50)

            status = _cli("status", "--http", f"127.0.0.1:{d.http}", "--json")
            assert status.returncode == 0, status.stderr
            view = json.loads(status.stdout)
            assert view["leader"] == view["node"]  # followed to the leader's view
            assert {n["id"] for n in view["nodes"]} == set("abcde") and view["membership"]["pending"] is False
            text = _cli("status", "--http", f"127.0.0.1:{e.http}")
            assert text.returncode == 0 and "ROLE" in text.stdout and "LAG" in text.stdout
            assert all(f"127.0.0.1:{m.raft}" in text.stdout for m in c.members)

            for gone in ("e", "d"):
                done = _operator(c, "remove", gone)
                assert done.returncode == 0, done.stderr + c.logs()
                producer.wait_for(30)
            c.wait("three members again", lambda: all(
                (_config(m) or (frozenset(),))[0] == frozenset("abc") for m in (a, b, cc)))  # fmt: skip
            c.wait("d learnt it was removed", lambda: (d.me() or {}).get("role") == "removed")
            producer.wait_for(30)
        acked = producer.acked
        assert len(acked) >= 300, producer.errors
        leader = c.leader(among=[a, b, cc])
        assert asyncio.run(_missing(leader, acked)) == []
    for m in (a, b, cc):  # stopped: each journal holds every acknowledged job
        assert set(acked) <= journal_job_ids(m.data_dir), m.node_id
    assert set(before_d) <= journal_job_ids(d.data_dir)  # what it copied from the leader's log


def test_removing_the_leader_hands_over_and_the_stored_configuration_wins_on_restart(tmp_path: Path) -> None:
    with _cluster(tmp_path) as c:
        leader = c.leader()
        status, body = _change(leader, "remove", leader.node_id)
        assert status == 200, body
        assert body["change"] == {"op": "remove", "id": leader.node_id, "raft": _raft(leader)}
        rest = [m for m in c.members if m is not leader]
        new = c.leader(among=rest)
        assert asyncio.run(_missing(new, [])) == []
        ids = asyncio.run(_enqueue(new, 10))
        c.wait("the old leader knows it was removed", lambda: (leader.me() or {}).get("role") == "removed")
        for m in rest:
            c.wait(
                f"{m.node_id} drops it",
                lambda m=m: (_config(m) or (frozenset(),))[0] == {r.node_id for r in rest},
            )
        # Restarted with the same --cluster (all three): the configuration in the journal wins.
        term = (new.cluster() or {})["term"]
        leader.stop()
        leader.start()
        c.wait("the removed member stays out", lambda: (leader.me() or {}).get("role") == "removed")
        time.sleep(1.0)  # several election timeouts: the removed member never stands for election
        assert (c.leader(among=rest).cluster() or {})["term"] == term
        rest[0].stop()
        rest[0].start()
        c.wait("the restarted follower keeps two members", lambda: (
            _config(rest[0]) or (frozenset(),))[0] == {r.node_id for r in rest})  # fmt: skip
        assert _missing_on_leader(c, rest, ids) == []


async def _enqueue(member: Member, count: int) -> list[str]:
    client = await ProtoClient.connect(member.listen)
    try:
        return [(await client.enqueue("q", "job", b"\x91\x01")).job_id for _ in range(count)]
    finally:
        client.close()


def test_hostile_bodies_change_nothing_and_followers_point_to_the_leader(tmp_path: Path) -> None:
    token = "s3cret"
    with _cluster(tmp_path, extra=["--auth-token", token]) as c:
        leader = c.wait("a leader", lambda: _leader_with_token(c, token))
        follower = next(m for m in c.members if m is not leader)
        d_raft = free_ports(1)[0]
        cases: list[tuple[bytes, int, str, str | None]] = [
            (b"", 400, "BAD_JSON", None),
            (b"{not json", 400, "BAD_JSON", None),
            (b"[1, 2]", 422, "INVALID_ARGUMENT", None),
            (b'{"id": "d"}', 422, "INVALID_ARGUMENT", "op"),
            (b'{"op": 1, "id": "d"}', 422, "INVALID_ARGUMENT", "op"),
            (
                b'{"op": "add", "id": "d", "raft": "127.0.0.1:1", "extra": 1}',
                422,
                "INVALID_ARGUMENT",
                "extra",
            ),
            (b'{"op": "grow", "id": "d"}', 422, "INVALID_ARGUMENT", "op"),
            (b'{"op": "add", "id": "d"}', 422, "INVALID_ARGUMENT", "raft"),
            (b'{"op": "add", "id": "d", "raft": "nowhere"}', 422, "INVALID_ARGUMENT", "raft"),
            (b'{"op": "add", "id": "d", "raft": "127.0.0.1:99999"}', 422, "INVALID_ARGUMENT", "raft"),
            (b'{"op": "add", "id": "d\\u0000", "raft": "127.0.0.1:1"}', 422, "INVALID_ARGUMENT", "id"),
            (
                json.dumps({"op": "add", "id": "x" * 100, "raft": "127.0.0.1:1"}).encode(),
                422,
                "INVALID_ARGUMENT",
                "id",
            ),
            (
                json.dumps({"op": "add", "id": "a", "raft": f"127.0.0.1:{d_raft}"}).encode(),
                409,
                "CONFLICT",
                "id",
            ),
            (
                json.dumps({"op": "add", "id": "d", "raft": _raft(c.members[1])}).encode(),
                409,
                "CONFLICT",
                "raft",
            ),
            (b'{"op": "remove", "id": "zz"}', 404, "NOT_FOUND", "id"),
            (b"[" * 100_000, 413, "TOO_LARGE", None),
            (b'{"op": "add", "id": "d", "raft": "' + b"9" * 70_000 + b'"}', 413, "TOO_LARGE", None),
        ]
        for body, status, code, field in cases:
            got, answer = _post(leader, body, token=token)
            assert (got, answer["error"]["code"]) == (status, code), (body[:80], answer)
            if field is not None:
                assert answer["error"].get("field") == field, (body[:80], answer)
        assert _post(leader, b'{"op": "remove", "id": "b"}')[0] == 401  # no token
        assert _post(leader, b'{"op": "remove", "id": "b"}', token="wrong")[0] == 401
        assert _post(leader, b"", token=token, method="GET")[0] == 405
        status, answer = _post(follower, b'{"op": "remove", "id": "b"}', token=token)
        assert status == 503 and answer["error"]["code"] == "NOT_LEADER"
        assert answer["error"]["leader"] == f"http://127.0.0.1:{leader.http}"
        for m in c.members:  # nothing changed anywhere
            assert leader.http_get("/health")[0] == 200
            view = _view(m, token)
            assert {n["id"] for n in view["nodes"]} == {"a", "b", "c"} and view["membership"] == {
                "index": 0,
                "pending": False,
            }
        # The CLI: refused by the leader after following the follower (exit 1), nobody there (exit 3).
        refused = _cli("remove", "zz", "--http", f"127.0.0.1:{follower.http}", "--auth-token", token)
        assert refused.returncode == 1 and "NOT_FOUND" in refused.stderr, refused
        nobody = _cli("status", "--http", f"127.0.0.1:{free_ports(1)[0]}", "--timeout", "2s")
        assert nobody.returncode == 3 and "no answer" in nobody.stderr
        unauthorized = _cli("status", "--http", f"127.0.0.1:{leader.http}")
        assert unauthorized.returncode == 1 and "UNAUTHORIZED" in unauthorized.stderr
        usage = _cli("add", "d", "--http", f"127.0.0.1:{leader.http}")
        assert usage.returncode == 2


def _leader_with_token(c: Cluster, token: str) -> Member | None:
    for m in c.members:
        try:
            status, view = _post(m, b"", token=token, method="GET", path="/api/cluster")
            served = _post(m, b"", token=token, method="GET", path="/api/queues")[0] == 200
        except OSError:
            continue
        if status == 200 and view["leader"] == view["node"] == m.node_id and served:
            return m
    return None


def _view(m: Member, token: str) -> dict[str, Any]:
    status, body = _post(m, b"", token=token, method="GET", path="/api/cluster")
    assert status == 200, body
    return body  # type: ignore[no-any-return]


class ShimMember(Member):
    """A member whose fdatasync a test can slow down (tests/server/fsync_shim.py)."""

    control: Path

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        argv = [
            sys.executable, SHIM,
            "--node-id", self.node_id, "--cluster", self.members, "--data-dir", str(self.data_dir),
            "--listen", f"127.0.0.1:{self.listen}", "--http", f"127.0.0.1:{self.http}", "--no-quic",
            *self.extra,
        ]  # fmt: skip
        out = self.log_path.open("ab")
        env = {**os.environ, "SPITFIRE_FSYNC_CONTROL": str(self.control)}
        self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        out.close()


def test_a_leader_killed_in_the_middle_of_a_change_leaves_it_everywhere_or_nowhere(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3, SLOW_LAN)
    for i, m in enumerate(c.members):
        fields = ("node_id", "data_dir", "raft", "listen", "http", "members", "log_path", "extra")
        shim = ShimMember(**{f: getattr(m, f) for f in fields})
        shim.control = tmp_path / f"fsync-{m.node_id}"
        shim.control.mkdir()
        c.members[i] = shim
    try:
        c.start()
        # First as soon as the leader holds the change (most likely no follower has it on disk
        # yet: nowhere), then once a follower holds it (its acknowledgement still waits for its
        # disk: most likely everywhere). Either outcome must be the same on every member.
        outcomes = [_kill_mid_change(c, f"n{attempt}", followers_hold=attempt == 1) for attempt in range(2)]
    finally:
        c.close()
    assert len(outcomes) == 2


def _kill_mid_change(c: Cluster, node: str, *, followers_hold: bool) -> bool:
    """Slow the followers' disks, ask the leader to add ``node``, SIGKILL the leader while the change
    is uncommitted, restart it; returns whether the change took effect (on every member)."""
    leader = c.leader()
    followers = [m for m in c.members if m is not leader]
    for f in followers:  # their acknowledgements now wait 0.4 s for the disk
        (f.control / "slow").write_text("0.4")  # type: ignore[attr-defined]
    raft = f"127.0.0.1:{free_ports(1)[0]}"
    answer: list[tuple[int, Any]] = []
    sender = threading.Thread(target=lambda: answer.append(_safe_change(leader, node, raft)), daemon=True)
    sender.start()
    three = frozenset("abc")
    if followers_hold:
        c.wait(
            "a follower holds the change",
            lambda: any((_config(f) or (three,))[0] != three for f in followers),
        )
    else:
        c.wait("the leader holds the change", lambda: (_config(leader) or (three, 0, False))[2])
    leader.kill()
    for f in followers:
        (f.control / "slow").unlink()  # type: ignore[attr-defined]
    sender.join(WAIT)
    # Restarted at once: a follower holding the change counts four members, of which only two are up
    # without the killed one (the fourth was never started), and elects no one until it is back.
    leader.start()
    c.leader()
    c.wait("every member agrees and nothing is pending", lambda: _agreed(c.members))
    ids, _index, _pending = _config(leader)  # type: ignore[misc]
    assert ids in (three, three | {node}), ids
    assert not answer or answer[0][0] in (0, 200), answer  # cut, or answered once committed
    if node in ids:  # it took effect: undo it, so that the next attempt starts from three
        status, body = _change(c.leader(), "remove", node)
        assert status == 200, body
        c.wait("three again everywhere", lambda: _agreed(c.members, three))
    return node in ids


def _safe_change(member: Member, node: str, raft: str) -> tuple[int, Any]:
    try:
        return _change(member, "add", node, raft)
    except (OSError, http.client.HTTPException):
        return 0, None  # the leader was killed while the request waited


def _agreed(members: list[Member], expect: frozenset[str] | None = None) -> bool:
    views = [_config(m) for m in members]
    if any(v is None or v[2] for v in views):
        return False
    first = views[0]
    return all(v == first for v in views) and (expect is None or first[0] == expect)  # type: ignore[index]


def test_followers_send_browsers_compat_and_redis_clients_to_the_leader(tmp_path: Path) -> None:
    redis = pytest.importorskip("redis")
    c = Cluster(tmp_path, 3, SLOW_LAN)
    ports = free_ports(6)
    for i, m in enumerate(c.members):
        m.extra += ["--compat-http", f"127.0.0.1:{ports[i]}", "--redis", f"127.0.0.1:{ports[3 + i]}"]
    try:
        c.start()
        leader = c.leader()
        i = c.members.index(leader)
        follower_i = (i + 1) % 3
        follower = c.members[follower_i]
        c.wait("the follower learnt where the leader serves", lambda: _location(follower, "/") is not None)
        assert _location(follower, "/") == f"http://127.0.0.1:{leader.http}/"
        assert _location(follower, "/jobs?state=dead") == f"http://127.0.0.1:{leader.http}/jobs?state=dead"
        assert _location(follower, "/queues/a%20b") == f"http://127.0.0.1:{leader.http}/queues/a%20b"
        assert follower.http_get("/api/queues")[0] == 503  # the API keeps its JSON answer
        assert _location(leader, "/") is None  # the leader serves its dashboard
        # --compat-http: 503 NOT_LEADER naming the leader's compatibility URL; /healthz still 200.
        conn = http.client.HTTPConnection("127.0.0.1", ports[follower_i], timeout=WAIT)
        try:
            conn.request("POST", "/jobs", body=b'{"type": "t", "payload": {}}')
            answer = conn.getresponse()
            body = json.loads(answer.read())
            assert answer.status == 503 and body["error"]["code"] == "NOT_LEADER", body
            assert body["error"]["leader"] == f"http://127.0.0.1:{ports[i]}"
            conn.request("GET", "/healthz")
            health = conn.getresponse()
            health.read()
            assert health.status == 200
        finally:
            conn.close()
        # --redis: the follower listens, answers PING, and refuses the rest with NOTLEADER host:port.
        client = redis.Redis(host="127.0.0.1", port=ports[3 + follower_i], protocol=2, socket_timeout=WAIT)
        try:
            assert client.ping() is True
            with pytest.raises(redis.ResponseError) as info:
                client.lpush("orders", "x")
            assert str(info.value).startswith(f"NOTLEADER 127.0.0.1:{ports[3 + i]} "), str(info.value)
        finally:
            client.close()
        served = redis.Redis(host="127.0.0.1", port=ports[3 + i], protocol=2, socket_timeout=WAIT)
        try:
            assert served.lpush("orders", "x") == 1
        finally:
            served.close()
    finally:
        c.close()


def _location(m: Member, path: str) -> str | None:
    conn = http.client.HTTPConnection("127.0.0.1", m.http, timeout=WAIT)
    try:
        conn.request("GET", path, headers={"Accept": "text/html"})
        answer = conn.getresponse()
        answer.read()
        return answer.getheader("Location") if answer.status == 307 else None
    finally:
        conn.close()
