"""Pydantic (v2) models as job arguments and results: validated at enqueue (JobArgumentError naming
the field), dumped as JSON data, validated into the model in the worker; a returned model is dumped
the same way. msgspec Structs and dataclasses keep working, and the SDK imports without pydantic."""

from __future__ import annotations

import dataclasses
import datetime
import subprocess
import sys
import textwrap

import msgspec
import pytest
from sdk_helpers import ServerProcess, run_burst

import spitfire
from spitfire.app import ArgSpec

pydantic = pytest.importorskip("pydantic")


class Address(pydantic.BaseModel):
    street: str
    zip_code: int = pydantic.Field(alias="zipCode")


class User(pydantic.BaseModel):
    name: str
    age: int = pydantic.Field(ge=0)
    address: Address | None = None
    joined: datetime.datetime | None = None


class Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(strict=True)
    at: datetime.datetime


class Greeting(pydantic.BaseModel):
    text: str
    at: datetime.datetime


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Box(msgspec.Struct):
    w: int


def welcome(
    user: User, tags: list[User] | None = None, point: Point | None = None, box: Box | None = None
) -> None:
    """A job function's signature: a model, a list of them, a dataclass, a Struct."""


def stamp(value: Strict) -> None:
    """A strict model."""


spec = ArgSpec(welcome, "welcome")
WHEN = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)


def test_a_model_is_sent_as_json_data_and_comes_back_as_the_model() -> None:
    user = User(name="ada", age=36, address=Address(street="Main", zipCode=1234), joined=WHEN)
    data = spec.encode((user,), {"point": Point(1, 2), "box": Box(3)})
    assert msgspec.msgpack.decode(data) == {
        "user": {"name": "ada", "age": 36, "address": {"street": "Main", "zipCode": 1234},
                 "joined": "2026-01-02T03:04:05Z"},
        "point": {"x": 1, "y": 2},
        "box": {"w": 3},
    }  # fmt: skip
    kwargs = spec.decode(data)
    assert kwargs == {"user": user, "point": Point(1, 2), "box": Box(3)}
    assert type(kwargs["user"]) is User and kwargs["user"].joined == WHEN


def test_a_dict_is_validated_into_the_model_at_enqueue() -> None:
    data = spec.encode((), {"user": {"name": "bo", "age": "7"}, "tags": [{"name": "cy", "age": 1}]})
    assert msgspec.msgpack.decode(data) == {
        "user": {"name": "bo", "age": 7, "address": None, "joined": None},
        "tags": [{"name": "cy", "age": 1, "address": None, "joined": None}],
    }


@pytest.mark.parametrize(
    ("kwargs", "argument", "says"),
    [
        ({"user": {"name": "x", "age": -1}}, "user",
         "argument 'user' (at user.age): Input should be greater"),
        ({"user": {"name": "x", "age": 1, "address": {"street": "s", "zipCode": "z"}}}, "user",
         "(at user.address.zipCode): Input should be a valid integer"),
        ({"user": {"name": "x", "age": 1}, "tags": [{"name": "ok", "age": 1}, {"age": 2}]}, "tags",
         "argument 'tags' (at tags[1].name): Field required"),
        ({"user": {"age": "x"}}, "user", "(and 1 more error)"),
        ({"user": "not a user"}, "user",
         "argument 'user': Input should be a valid dictionary or instance of User"),
        ({"user": Address(street="s", zipCode=1)}, "user", "argument 'user'"),
    ],
)  # fmt: skip
def test_a_value_that_does_not_fit_the_model_names_the_field(
    kwargs: dict[str, object], argument: str, says: str
) -> None:
    with pytest.raises(spitfire.JobArgumentError) as info:
        spec.encode((), kwargs)
    assert info.value.argument == argument
    assert says in str(info.value), str(info.value)
    assert str(info.value).startswith("welcome.enqueue(): ")


class Blob(pydantic.BaseModel):
    data: bytes


def upload(blob: Blob) -> None:
    """A model pydantic dumps as JSON only when its bytes are UTF-8."""


def test_a_model_that_cannot_be_dumped_as_json_is_an_argument_error() -> None:
    with pytest.raises(spitfire.JobArgumentError, match=r"cannot be encoded.*Blob model cannot be dumped"):
        ArgSpec(upload, "upload").encode((Blob(data=b"\xff\xfe"),), {})


def test_the_worker_validates_json_data_so_strict_models_round_trip() -> None:
    strict = ArgSpec(stamp, "stamp")
    data = strict.encode((Strict(at=WHEN),), {})
    assert msgspec.msgpack.decode(data) == {"value": {"at": "2026-01-02T03:04:05Z"}}
    assert strict.decode(data) == {"value": Strict(at=WHEN)}


def test_a_payload_that_does_not_fit_the_model_fails_decoding_with_the_field() -> None:
    bad = msgspec.msgpack.encode({"user": {"name": "x", "age": "old"}})
    with pytest.raises(msgspec.ValidationError, match=r"valid integer, .* \(User.age\) - at `\$.user`"):
        spec.decode(bad)
    # Binary values (a producer in another language) are not JSON data: validated as Python objects,
    # never as their base64 text.
    assert spec.decode(msgspec.msgpack.encode({"user": {"name": b"bo", "age": 1}})) == {
        "user": User(name="bo", age=1)
    }
    with pytest.raises(msgspec.ValidationError, match=r"\(User.name\) - at `\$.user`"):
        spec.decode(msgspec.msgpack.encode({"user": {"name": b"\xff", "age": 1}}))
    # Hostile nesting inside a model's field is an error of the payload, not a crash.
    deep = b"\x81\xa4user\x82\xa4name\xa1x\xa3age" + b"\x91" * 300 + b"\x01"
    with pytest.raises(msgspec.ValidationError, match="User"):
        spec.decode(deep)
    blob = ArgSpec(upload, "upload")
    raw = msgspec.msgpack.encode({"blob": {"data": b"\x00\xff"}})
    assert blob.decode(raw) == {"blob": Blob(data=b"\x00\xff")}


def test_client_payloads_and_results_encode_models() -> None:
    from spitfire.models import enc_hook

    assert enc_hook(Greeting(text="hi", at=WHEN)) == {"text": "hi", "at": "2026-01-02T03:04:05Z"}
    with pytest.raises(TypeError, match="unsupported"):
        enc_hook(object())


def test_a_model_job_end_to_end(server: ServerProcess, client: spitfire.Client, queue: str) -> None:
    app = spitfire.App(server.url)
    seen: list[object] = []

    @app.job(queue=queue, max_attempts=3)
    def greet(user: User, times: int = 1) -> Greeting:
        seen.append(user)
        return Greeting(text=f"hello {user.name}" * times, at=WHEN)

    ok = greet.enqueue(User(name="ada", age=36, joined=WHEN))
    from_dict = greet.enqueue({"name": "bo", "age": 7}, times=2)
    raw = client.enqueue(queue, "greet", {"user": {"name": "cy", "age": 1}})  # a plain producer
    unfit = client.enqueue(queue, "greet", {"user": {"name": "dee", "age": -5}})  # never validated
    with pytest.raises(spitfire.JobArgumentError, match=r"user\.age"):
        greet.enqueue({"name": "x", "age": -1})  # refused here: nothing sent
    worker = run_burst(app)
    assert worker.processed == 3 and worker.failed == 1
    assert [type(u) for u in seen] == [User, User, User]
    assert seen[0] == User(name="ada", age=36, joined=WHEN)
    assert client.get(ok).result == {"text": "hello ada", "at": "2026-01-02T03:04:05Z"}
    assert Greeting.model_validate(client.get(from_dict).result).text == "hello bohello bo"
    assert client.get(raw).result["text"] == "hello cy"
    dead = client.get(unfit)
    assert dead.state == "dead" and dead.attempts == 1  # not retried: a retry cannot fix the payload
    assert "JobArgumentError" in dead.errors[-1].error and "User.age" in dead.errors[-1].error


def test_the_sdk_imports_and_works_without_pydantic() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["pydantic"] = None  # as if it were not installed: importing it fails
        import dataclasses, msgspec, spitfire
        from spitfire.app import ArgSpec
        from spitfire.models import enc_hook

        @dataclasses.dataclass
        class Point:
            x: int

        def job(p: Point, n: int = 0) -> None: ...

        spec = ArgSpec(job, "job")
        data = spec.encode((Point(1),), {})
        assert spec.decode(data) == {"p": Point(1)}, spec.decode(data)
        try:
            spec.encode(({"x": "no"},), {})
        except spitfire.JobArgumentError as exc:
            assert exc.argument == "p", exc
        else:
            raise AssertionError("not refused")
        try:
            enc_hook(object())
        except TypeError:
            pass
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_importing_the_sdk_does_not_import_pydantic() -> None:
    code = "import sys, spitfire, spitfire.worker, spitfire.cli; print('pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
