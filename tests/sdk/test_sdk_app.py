"""@app.job: arguments are bound to the signature and checked against the type hints at enqueue
time; payloads are msgpack maps of keyword arguments that decode back into typed arguments."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import msgspec
import pytest

import spitfire
from spitfire.app import ArgSpec


@dataclasses.dataclass
class Address:
    street: str
    number: int


app = spitfire.App("tcp://127.0.0.1:1")


@app.job(queue="emails", max_attempts=5, priority=3)
def send_email(to: str, subject: str = "hi", cc: list[str] | None = None) -> None:
    """Send one email."""


@app.job
async def ship(address: Address, when: datetime.datetime, ctx: spitfire.JobContext) -> str:
    return address.street


@app.job(name="custom-name", queue="other")
def untyped(a, b=2):  # type: ignore[no-untyped-def]
    return a


def test_the_wrapper_still_calls_the_function() -> None:
    assert untyped(5) == 5
    assert send_email.__doc__ == "Send one email."
    assert send_email.__name__ == "send_email"
    assert send_email.name == "send_email" and send_email.queue == "emails"
    assert not send_email.is_async and ship.is_async


def test_app_knows_its_jobs_and_queues() -> None:
    assert set(app.jobs) == {"send_email", "ship", "custom-name"}
    assert app.queues == ["default", "emails", "other"]
    assert send_email.defaults["max_attempts"] == 5 and send_email.defaults["priority"] == 3


def test_payload_is_a_map_of_given_keyword_arguments() -> None:
    data = send_email.spec.encode(("a@b.c",), {})
    assert msgspec.msgpack.decode(data) == {"to": "a@b.c"}  # defaults stay with the worker
    data = send_email.spec.encode((), {"to": "x", "cc": ["y"]})
    assert msgspec.msgpack.decode(data) == {"to": "x", "cc": ["y"]}
    assert send_email.spec.decode(data) == {"to": "x", "cc": ["y"]}


def test_rich_types_round_trip_through_the_payload() -> None:
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    data = ship.spec.encode((Address("Main", 1), when), {})
    kwargs = ship.spec.decode(data)
    assert kwargs == {"address": Address("Main", 1), "when": when}
    assert ship.spec.ctx_param == "ctx"
    assert "ctx" not in str(ship.spec.signature)


@pytest.mark.parametrize(
    ("args", "kwargs", "argument", "says"),
    [
        ((5,), {}, "to", "Expected `str`, got `int`"),
        ((), {"to": "a", "cc": ["ok", 3]}, "cc", "at cc[1]"),
        ((), {"to": "a", "cc": "not-a-list"}, "cc", "Expected `array | null`"),
    ],
)
def test_a_wrong_argument_is_named(
    args: tuple[Any, ...], kwargs: dict[str, Any], argument: str, says: str
) -> None:
    with pytest.raises(spitfire.JobArgumentError) as info:
        send_email.spec.encode(args, kwargs)
    assert info.value.argument == argument
    assert f"argument {argument!r}" in str(info.value) and says in str(info.value)
    assert "send_email.enqueue()" in str(info.value)
    assert isinstance(info.value, TypeError)


def test_signature_mismatches_are_clear() -> None:
    with pytest.raises(spitfire.JobArgumentError, match="missing a required argument: 'to'"):
        send_email.spec.encode((), {})
    with pytest.raises(spitfire.JobArgumentError, match="unexpected keyword argument 'bcc'"):
        send_email.spec.encode(("a",), {"bcc": "x"})
    with pytest.raises(spitfire.JobArgumentError, match="too many positional"):
        send_email.spec.encode(("a", "b", None, 4), {})


def test_nested_types_are_checked() -> None:
    when = datetime.datetime.now(datetime.UTC)
    with pytest.raises(spitfire.JobArgumentError, match="argument 'address'"):
        ship.spec.encode(({"street": "x", "number": "1"}, when), {})
    with pytest.raises(spitfire.JobArgumentError, match="argument 'when'"):
        ship.spec.encode((Address("a", 1), "yesterday"), {})


def test_unannotated_parameters_accept_anything_msgpack_can_carry() -> None:
    assert untyped.spec.decode(untyped.spec.encode(({"k": [1, 2]},), {})) == {"a": {"k": [1, 2]}}
    with pytest.raises(spitfire.JobArgumentError, match="msgpack"):
        untyped.spec.encode((object(),), {})


def test_a_payload_from_another_producer_decodes_or_fails_clearly() -> None:
    assert send_email.spec.decode(msgspec.msgpack.encode({"to": "a", "extra": 1})) == {"to": "a"}
    with pytest.raises(msgspec.ValidationError):
        send_email.spec.decode(msgspec.msgpack.encode({"subject": "no to"}))
    no_args = ArgSpec(lambda: None, "noop")
    assert no_args.decode(b"\xc0") == {}  # client.enqueue(queue, name) with no payload


def test_signatures_that_cannot_be_sent_by_name_are_refused() -> None:
    other = spitfire.App()
    with pytest.raises(TypeError, match=r"\*args and \*\*kwargs"):

        @other.job
        def star(*args: int) -> None: ...

    with pytest.raises(TypeError, match="positional-only"):

        @other.job
        def posonly(a: int, /) -> None: ...


def test_duplicate_names_are_refused() -> None:
    other = spitfire.App()

    @other.job
    def twice() -> None: ...

    with pytest.raises(ValueError, match="already has a job named 'twice'"):
        other.job(name="twice")(lambda: None)


def test_options_override_defaults_per_call() -> None:
    call = send_email.options(delay=5, idempotency_key="k")
    assert call.opts["delay"] == 5 and call.opts["idempotency_key"] == "k"
    assert call.queue == "emails" and call.opts["max_attempts"] == 5 and call.opts["priority"] == 3
    assert send_email.options(priority=0).opts["priority"] == 0
    assert send_email.options(queue="elsewhere").queue == "elsewhere"
    assert "idempotency_key" not in send_email.defaults


def test_unknown_options_are_refused() -> None:
    with pytest.raises(TypeError, match="unexpected option"):
        send_email.options(prioriy=5)  # type: ignore[call-arg]


def test_permanent_and_retry_after() -> None:
    assert str(spitfire.Permanent("bad input")) == "bad input"
    assert spitfire.RetryAfter(datetime.timedelta(seconds=3)).seconds == 3.0
    with pytest.raises(ValueError, match=">= 0"):
        spitfire.RetryAfter(-1)


def test_context_outside_a_job_says_so() -> None:
    with pytest.raises(RuntimeError, match="outside a running job"):
        spitfire.context()
