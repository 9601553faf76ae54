"""First pages of the dashboard's listings over HTTP from a live server holding 1,000,000 jobs,
100,000 of them dead (the issue's scale), and one bulk retry of the dead ones meanwhile.

Run: .venv/bin/python tests/dashboard/bench_http_listing.py [JOBS]   (default 1,000,000)

The server is a real spitfire-server (async durability, to load fast) on a temporary data directory,
stopped by PID at the end. Jobs are enqueued in batches of 10,000 over 10 queues; a tenth of each
queue is enqueued with max_attempts=1 and a 1 ms timeout and claimed: their leases expire and they
go dead. Prints the median of 10 requests per listing (the whole HTTP round trip, JSON included).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent.parent / "http"))
from httphelpers import http_server

QUEUES = 10
BATCH = 10_000


def median_ms(client: httpx.Client, path: str, params: dict[str, str], runs: int = 10) -> tuple[float, int]:
    times = []
    count = 0
    for _ in range(runs):
        started = time.perf_counter()
        r = client.get(path, params=params)
        times.append(time.perf_counter() - started)
        assert r.status_code == 200, r.text
        count = len(r.json()["jobs"])
    return statistics.median(times) * 1000, count


def main(total: int) -> None:
    per_queue = total // QUEUES
    with (
        tempfile.TemporaryDirectory() as tmp,
        http_server(Path(tmp) / "data", "--durability", "async") as srv,
    ):
        c = srv.http
        started = time.perf_counter()
        for q in range(QUEUES):
            queue = f"queue-{q}"
            dead = per_queue // 10
            for _ in range(0, dead, BATCH):
                body = {"name": "doomed", "payloads": list(range(BATCH)), "max_attempts": 1, "timeout_ms": 1}
                assert c.post(f"/api/queues/{queue}/jobs:batch", json=body).status_code == 201
                claimed = c.post(f"/api/queues/{queue}/claim", json={"worker": "w", "limit": 1000})
                assert claimed.status_code == 200
                for _ in range(BATCH // 1000 - 1):
                    c.post(f"/api/queues/{queue}/claim", json={"worker": "w", "limit": 1000})
            for start in range(dead, per_queue, BATCH):
                body = {"name": f"handler_{start // BATCH % 5}", "payloads": list(range(BATCH))}
                assert c.post(f"/api/queues/{queue}/jobs:batch", json=body).status_code == 201
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            counts = c.get("/api/stats").json()["counts"]
            if counts["dead"] >= total // 10:
                break
            time.sleep(0.5)
        print(f"loaded {c.get('/api/stats').json()['total_jobs']:,} jobs ({counts['dead']:,} dead) in "
              f"{time.perf_counter() - started:.0f} s")  # fmt: skip
        cases = {
            "every job": {},
            "state=dead": {"state": "dead"},
            "queue": {"queue": "queue-3"},
            "queue + state=dead": {"queue": "queue-3", "state": "dead"},
            "state=dead,retrying": {"state": "dead,retrying"},
            "name": {"name": "handler_2"},
            "q=handler + state=enqueued": {"q": "handler_1", "state": "enqueued"},
        }
        print(f"{'GET /api/jobs, first page of 50':<34} {'ms':>8} {'jobs':>6}")
        for label, params in cases.items():
            ms, n = median_ms(c, "/api/jobs", {**params, "limit": "50"})
            print(f"{label:<34} {ms:>8.1f} {n:>6}")
        ms, n = median_ms(c, "/api/queues/queue-3/jobs", {"state": "dead", "limit": "50"})
        print(f"{'queue route, state=dead':<34} {ms:>8.1f} {n:>6}")
        started = time.perf_counter()
        r = c.post("/api/jobs:bulk", json={"action": "retry", "filter": {"state": "dead"}}, timeout=600)
        print(f"bulk retry over state=dead: {r.json()} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
