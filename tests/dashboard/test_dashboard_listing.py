"""GET /api/jobs across queues and GET /api/queues/{queue}/jobs without a state, on a live server:
every filter, their combinations, paging that new jobs do not shift, and bad parameters."""

from __future__ import annotations

from datetime import UTC, datetime

from dashhelpers import batch, error_of, kill_jobs, pages
from httphelpers import HttpServer, enqueue


def test_filters_combine_across_queues(server: HttpServer, queue: str) -> None:
    c = server.http
    qa, qb = f"{queue}-a", f"{queue}-b"
    a = batch(c, qa, list(range(6)), name=f"{queue}-ha")
    b = batch(c, qb, list(range(4)), name=f"{queue}-hb")
    dead_a = kill_jobs(c, qa, 2)
    everything = a + b
    assert pages(c, "/api/jobs", 3, queue=qa) == a[::-1]
    assert pages(c, "/api/jobs", 3, queue=qa, order="oldest") == a
    assert pages(c, "/api/jobs", 2, name=f"{queue}-hb") == b[::-1]
    assert pages(c, "/api/jobs", 2, queue=qa, state="dead") == dead_a[::-1]
    assert pages(c, "/api/jobs", 2, queue=qa, state="enqueued") == a[2:][::-1]
    # Several states: repeated or comma-separated.
    both = pages(c, "/api/jobs", 4, queue=qa, state=["dead", "enqueued"])
    assert both == a[::-1] == pages(c, "/api/jobs", 4, queue=qa, state="dead,enqueued")
    # q combines with the rest: a handler name, a job id, an idempotency key.
    assert pages(c, "/api/jobs", 5, q=f"{queue}-ha", state="dead") == dead_a[::-1]
    assert pages(c, "/api/jobs", 5, q=b[1]) == [b[1]]
    assert pages(c, "/api/jobs", 5, q=b[1], queue=qa) == []
    keyed = enqueue(c, qb, name=f"{queue}-hb", idempotency_key=f"{queue}-key")
    assert pages(c, "/api/jobs", 5, q=f"{queue}-key") == [keyed["id"]]
    # Creation bounds: job ids, epoch seconds, RFC 3339.
    assert pages(c, "/api/jobs", 3, after=a[2], before=b[2], q=None) == everything[3 : 6 + 2][::-1]
    created = c.get(f"/api/jobs/{b[0]}").json()["created_at"]
    rfc = datetime.fromtimestamp(created + 0.001, UTC).isoformat()
    mine = {qa, qb}
    newer = [j for j in c.get("/api/jobs", params={"after": rfc, "limit": 1000}).json()["jobs"]]
    assert keyed["id"] in [j["id"] for j in newer] and not set(a) & {j["id"] for j in newer}
    older = c.get("/api/jobs", params={"before": str(created - 0.001), "queue": qa}).json()["jobs"]
    assert [j["id"] for j in older if j["queue"] in mine] == a[::-1]


def test_a_queue_listing_without_state_answers_every_state(server: HttpServer, queue: str) -> None:
    c = server.http
    ids = batch(c, queue, [1, 2, 3])
    dead = kill_jobs(c, queue, 1)
    assert pages(c, f"/api/queues/{queue}/jobs", 2) == ids[::-1]
    assert pages(c, f"/api/queues/{queue}/jobs", 2, state="dead") == dead
    assert pages(c, f"/api/queues/{queue}/jobs", 2, state="dead,enqueued") == ids[::-1]
    error_of(c.get("/api/queues/no-such-queue-here/jobs"), 404)
    assert c.get("/api/jobs", params={"queue": "no-such-queue-here"}).json() == {
        "jobs": [],
        "next_cursor": None,
    }


def test_pages_stay_stable_while_jobs_arrive(server: HttpServer, queue: str) -> None:
    c = server.http
    ids = batch(c, queue, list(range(10)))
    r = c.get("/api/jobs", params={"queue": queue, "limit": 4}).json()
    seen = [j["id"] for j in r["jobs"]]
    cursor = r["next_cursor"]
    for _ in range(10):
        batch(c, queue, [0, 0])  # newer jobs: never on the pages after the first
        r = c.get("/api/jobs", params={"queue": queue, "limit": 4, "cursor": cursor}).json()
        seen += [j["id"] for j in r["jobs"]]
        cursor = r["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    # Oldest first: jobs created meanwhile come at the end, once each.
    first = c.get("/api/jobs", params={"queue": queue, "limit": 3, "order": "oldest"}).json()
    late = batch(c, queue, [9])
    rest = pages(c, "/api/jobs", 7, queue=queue, order="oldest", cursor=first["next_cursor"])
    listed = [j["id"] for j in first["jobs"]] + rest
    assert listed[:10] == ids and listed[-1] == late[0] and len(set(listed)) == len(listed)


def test_bad_parameters_are_422_naming_the_field(server: HttpServer) -> None:
    c = server.http
    for params, field in [
        ({"state": "exploded"}, "state"),
        ({"state": "dead,exploded"}, "state"),
        ({"after": "yesterday"}, "after"),
        ({"before": "2026-13-45"}, "before"),
        ({"before": "-5"}, "before"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ]:
        error_of(c.get("/api/jobs", params=params), 422, field)
    error_of(c.get("/api/queues/any/jobs", params={"state": "exploded"}), 422, "state")
