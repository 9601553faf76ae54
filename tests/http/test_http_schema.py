"""Schemathesis against a live server: for every operation of /openapi.json, generated requests
(valid and invalid ones) get no 5xx, only documented status codes and content types, and bodies
that match the documented schemas. A few examples per operation here; the slow run does many."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import checks as c
from schemathesis.generation.modes import GenerationMode

sys.path.insert(0, str(Path(__file__).parent))
from httphelpers import HttpServer, http_server

CHECKS = [c.not_a_server_error, c.status_code_conformance, c.content_type_conformance]
CHECKS += [c.response_schema_conformance, c.unsupported_method]
#: Streams forever: checked by test_http_events.py instead.
SKIPPED = {"/api/events"}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    with http_server(tmp_path_factory.mktemp("fuzz") / "data", "--max-payload", "65536") as proc:
        # Some jobs in several states, so that generated ids and queues sometimes hit something.
        for i in range(3):
            proc.http.post("/api/queues/q/jobs", json={"name": "seed", "payload": i})
        proc.http.post("/api/queues/q/claim", json={"worker": "w"})
        yield proc


#: Longest long poll a fuzzed request may ask for: a valid wait_ms (up to 30,000) on a queue not
#: created yet, or a job not final, would wait it out (longer than the client's read timeout).
#: Long polls are tested for what they do in test_http_api.py and test_http_wait_progress.py.
MAX_FUZZED_WAIT_MS = 200


def _short_waits(case: Any) -> None:
    for where in (case.body, case.query):
        if isinstance(where, dict):
            wait = where.get("wait_ms")
            if isinstance(wait, int) and not isinstance(wait, bool) and MAX_FUZZED_WAIT_MS < wait <= 30_000:
                where["wait_ms"] = MAX_FUZZED_WAIT_MS


def run_schema(server: HttpServer, examples: int, url: str | None = None) -> list[tuple[str, str]]:
    """Fuzz every operation of the listener at ``url`` (default: the main HTTP port); returns
    (operation, failure) pairs."""
    base = url or server.url
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    failures: list[tuple[str, str]] = []
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path in SKIPPED:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                phases=[Phase.generate],
                database=None,
            )
            def call(case: Any) -> None:
                _short_waits(case)
                case.call_and_validate(base_url=base, checks=CHECKS)

            try:
                call()
            except Unsatisfiable:  # no invalid request exists (an operation without inputs)
                continue
            except Exception as exc:
                failures.append((f"{op.label} ({mode.value})", str(exc)[:3000]))
    return failures


def test_schemathesis_finds_nothing(fuzzed: HttpServer) -> None:
    failures = run_schema(fuzzed, examples=8)
    assert not failures, "\n\n".join(f"{op}: {text}" for op, text in failures)
    assert "Traceback" not in fuzzed.log()


@pytest.mark.slow
def test_schemathesis_long_run(fuzzed: HttpServer) -> None:
    failures = run_schema(fuzzed, examples=300)
    assert not failures, "\n\n".join(f"{op}: {text}" for op, text in failures)
    assert "Traceback" not in fuzzed.log()


@pytest.fixture(scope="module")
def fuzzed_compat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpServer]:
    """A server with the compatibility listener (--compat-http), with jobs in several states."""
    data = tmp_path_factory.mktemp("fuzz-compat") / "data"
    with http_server(data, "--compat-http", "127.0.0.1:0", "--max-payload", "65536") as proc:
        with httpx.Client(base_url=proc.compat_url, timeout=30) as compat:
            for i in range(3):
                compat.post("/topics/t/enqueue", json={"id": f"job-{i}", "payload": i})
                compat.post(
                    "/jobs", json={"type": "seed", "payload": i}, headers={"Idempotency-Key": f"k{i}"}
                )
            compat.post("/topics/t/claim", json={"worker_id": "w"})
        yield proc


def test_schemathesis_finds_nothing_on_the_compat_listener(fuzzed_compat: HttpServer) -> None:
    failures = run_schema(fuzzed_compat, examples=8, url=fuzzed_compat.compat_url)
    assert not failures, "\n\n".join(f"{op}: {text}" for op, text in failures)
    assert "Traceback" not in fuzzed_compat.log()


@pytest.mark.slow
def test_schemathesis_long_run_on_the_compat_listener(fuzzed_compat: HttpServer) -> None:
    failures = run_schema(fuzzed_compat, examples=300, url=fuzzed_compat.compat_url)
    assert not failures, "\n\n".join(f"{op}: {text}" for op, text in failures)
    assert "Traceback" not in fuzzed_compat.log()
