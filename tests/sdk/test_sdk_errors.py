"""Every protocol error code maps to its own exception type with a useful message."""

from __future__ import annotations

import pytest

import spitfire
from spitfire.errors import error_from_frame
from spitfire.protocol.messages import Error, ErrorCode


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (ErrorCode.BAD_REQUEST, spitfire.BadRequest),
        (ErrorCode.NOT_FOUND, spitfire.NotFound),
        (ErrorCode.UNAUTHORIZED, spitfire.Unauthorized),
        (ErrorCode.BUSY, spitfire.Busy),
        (ErrorCode.NO_SPACE, spitfire.NoSpace),
        (ErrorCode.TOO_LARGE, spitfire.TooLarge),
        (ErrorCode.UNSUPPORTED_VERSION, spitfire.UnsupportedVersion),
        (ErrorCode.CONFLICT, spitfire.Conflict),
        (ErrorCode.INTERNAL, spitfire.ServerError),
    ],
)
def test_each_code_has_its_exception(code: ErrorCode, cls: type[spitfire.SpitfireError]) -> None:
    err = error_from_frame(Error(code.value, "it went wrong"))
    assert type(err) is cls
    assert isinstance(err, spitfire.SpitfireError)
    assert err.code == code.value
    assert "it went wrong" in str(err)


def test_every_error_code_is_covered() -> None:
    for code in ErrorCode:
        assert type(error_from_frame(Error(code.value, "x"))) is not spitfire.SpitfireError


def test_not_leader_carries_the_leaders_address() -> None:
    err = error_from_frame(Error("NOT_LEADER", "this cluster member (b) does not lead", "127.0.0.1:7878"))
    assert isinstance(err, spitfire.NotLeader) and err.leader == "127.0.0.1:7878"
    assert error_from_frame(Error("NOT_LEADER", "no leader is elected yet")).leader is None  # type: ignore[attr-defined]


def test_not_found_names_the_job_or_queue() -> None:
    job = error_from_frame(Error("NOT_FOUND", "no job with id 'j1'"), job_id="j1")
    assert isinstance(job, spitfire.JobNotFound) and isinstance(job, KeyError)
    assert job.job_id == "j1" and str(job) == "no job with id 'j1'"
    queue = error_from_frame(Error("NOT_FOUND", "no queue named 'q'"), queue="q")
    assert isinstance(queue, spitfire.QueueNotFound) and queue.queue == "q"


def test_busy_carries_retry_after_and_bad_request_the_field() -> None:
    busy = error_from_frame(Error("BUSY", "too many jobs", None, 2.5))
    assert isinstance(busy, spitfire.Busy) and busy.retry_after == 2.5
    assert "retry later" in str(busy)
    bad = error_from_frame(Error("BAD_REQUEST", "priority: must be 0..10", "priority"))
    assert isinstance(bad, spitfire.BadRequest) and isinstance(bad, ValueError)
    assert bad.field == "priority"
    big = error_from_frame(Error("TOO_LARGE", "payload too big", "payload"))
    assert isinstance(big, spitfire.TooLarge) and big.field == "payload"


def test_messages_tell_what_to_do() -> None:
    assert "SPITFIRE_AUTH_TOKEN" in str(error_from_frame(Error("UNAUTHORIZED", "no token")))
    assert "disk" in str(error_from_frame(Error("NO_SPACE", "disk full")))
    assert "report" in str(error_from_frame(Error("INTERNAL", "boom")))


def test_an_unknown_code_is_still_a_spitfire_error() -> None:
    err = error_from_frame(Error("SOMETHING_NEW", "from a newer server"))
    assert type(err) is spitfire.SpitfireError and err.code == "SOMETHING_NEW"
    assert "from a newer server" in str(err)


def test_connection_errors_are_connection_errors() -> None:
    assert issubclass(spitfire.ConnectionLost, ConnectionError)
    assert issubclass(spitfire.NotConnected, ConnectionError)
    assert issubclass(spitfire.RequestTimeout, TimeoutError)
    assert issubclass(spitfire.JobArgumentError, TypeError)
