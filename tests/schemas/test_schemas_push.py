"""`spitfire schemas push`: the job definitions derived from .proto files (golden-tested, and their
schemas checked against what the generated Python accepts), the errors of files it cannot push,
and a live server that enforces a pushed schema at enqueue (Python and TypeScript producers), after
a SIGKILL and restart too.

UPDATE_GOLDEN=1 rewrites tests/schemas/golden/definitions/ from the code (review the diff).
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema_rs
import msgspec
import pytest
from schema_helpers import EXAMPLE, GOLDEN, ROOT, write_proto

import spitfire
from spitfire.codegen import codegen, schemas_main
from spitfire.codegen.load import load
from spitfire.codegen.push import MAX_SCHEMA_BYTES, definitions, payload_schema

pytest.importorskip("grpc_tools", reason="spitfire schemas push needs grpcio-tools (spitfire[codegen])")

sys.path.append(str(ROOT / "tests" / "sdk"))
from sdk_helpers import ServerProcess

DEFINITIONS = GOLDEN / "definitions" / "example.json"
CLI = [sys.executable, "-m", "spitfire.cli"]


def _validator(schema_text: str) -> jsonschema_rs.Validator:
    """The schema as the server compiles it (Draft 2020-12, offline)."""
    return jsonschema_rs.Draft202012Validator(json.loads(schema_text), offline=True)


def _server_view(payload: bytes) -> Any:
    """A msgpack payload as the server checks it: JSON's view (bytes as base64, keys as strings)."""
    return msgspec.to_builtins(msgspec.msgpack.decode(payload), str_keys=True)


# -- the derived definitions --------------------------------------------------------------------------


def test_dry_run_prints_the_golden_definitions(capsys: pytest.CaptureFixture[str]) -> None:
    assert schemas_main(["push", "--dry-run", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    if os.environ.get("UPDATE_GOLDEN"):
        DEFINITIONS.parent.mkdir(exist_ok=True)
        DEFINITIONS.write_text(out)
    assert out == DEFINITIONS.read_text(), "the definitions differ from golden/definitions/example.json"
    pushed = json.loads(out)
    assert [(d["name"], d["queue"], d["validate"]) for d in pushed] == [
        ("send_email", "emails", True),
        ("resize-image", "images", True),
    ]
    send = pushed[0]
    assert (send["max_attempts"], send["timeout"], send["backoff"]["delays"]) == (5, 30.0, [1, 5, 30, 300])
    assert pushed[1]["priority"] == 5 and pushed[1]["backoff"]["kind"] == "exponential"


@pytest.fixture
def example(tmp_path: Path) -> Iterator[ModuleType]:
    """The generated Python of schemas/example.proto, imported as ``sfgen_push.example``."""
    codegen("python", [EXAMPLE], tmp_path / "sfgen_push")
    (tmp_path / "sfgen_push" / "__init__.py").write_text("")
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("sfgen_push.example")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n.startswith("sfgen_push")]:
            del sys.modules[name]


def test_the_schemas_accept_what_the_generated_structs_send(example: ModuleType) -> None:
    e = example
    by_name = {d.name: d for _, d in definitions(load([EXAMPLE]))}
    send = _validator(by_name["send_email"].schema or "")
    resize = _validator(by_name["resize-image"].schema or "")
    size = e.ResizeImage_Size(width=2**32 - 1, height=0)
    payloads = [
        (send, e.SEND_EMAIL_JOB.encode(e.SendEmail())),  # every field at its default
        (
            send,
            e.SEND_EMAIL_JOB.encode(
                e.SendEmail(
                    to="a@b.c", cc=["x"], urgency=e.Urgency.URGENCY_HIGH, in_reply_to="m-1", tags={"k": "v"}
                )
            ),
        ),
        (
            resize,
            e.RESIZE_IMAGE_JOB.encode(
                e.ResizeImage(
                    source_url="s3://a",
                    sizes=[size],
                    format=e.ResizeImage_Format.FORMAT_WEBP,
                    max_bytes=-(2**63),
                    request_id=2**64 - 1,
                    rotate=-90,
                    checksum=7,
                    quality=0.5,
                    scale=2,
                    strip_metadata=True,
                    watermark=b"\x00\xff",
                    crop=size,
                    presets={-3: size},
                    deadline_ms=2**63 - 1,
                )
            ),
        ),
        (send, msgspec.msgpack.encode({"to": "a@b.c", "added_later": [1, 2]})),  # unknown fields: allowed
    ]
    for validator, payload in payloads:
        assert validator.is_valid(_server_view(payload)), _server_view(payload)


@pytest.mark.parametrize(
    ("job", "payload", "path"),
    [
        ("send_email", {"to": 42}, ["to"]),
        ("send_email", {"cc": "x"}, ["cc"]),
        ("send_email", {"cc": ["x", None]}, ["cc", 1]),
        ("send_email", {"urgency": 3}, ["urgency"]),
        ("send_email", {"tags": {"k": 1}}, ["tags", "k"]),
        ("send_email", {"to": None}, ["to"]),
        ("resize-image", {"sizes": [{"width": -1}]}, ["sizes", 0, "width"]),
        ("resize-image", {"sizes": [{"width": 2**32}]}, ["sizes", 0, "width"]),
        ("resize-image", {"rotate": 2**31}, ["rotate"]),
        ("resize-image", {"request_id": -1}, ["request_id"]),
        ("resize-image", {"quality": "high"}, ["quality"]),
        ("resize-image", {"presets": {"a": {}}}, ["presets"]),
        ("resize-image", {"crop": {"height": "tall"}}, ["crop", "height"]),
        ("resize-image", {"crop": []}, ["crop"]),
        ("resize-image", {"deadline_ms": "soon"}, ["deadline_ms"]),
        ("resize-image", {"watermark": "not bytes", "strip_metadata": 1}, ["strip_metadata"]),
    ],
)
def test_the_schemas_refuse_what_the_generated_structs_refuse(
    example: ModuleType, job: str, payload: dict[str, Any], path: list[str | int]
) -> None:
    e = example
    by_name = {d.name: d for _, d in definitions(load([EXAMPLE]))}
    data = msgspec.msgpack.encode(payload)
    errors = list(_validator(by_name[job].schema or "").iter_errors(_server_view(data)))
    assert errors, f"{payload} passed"
    assert any(list(err.instance_path) == path for err in errors), [list(err.instance_path) for err in errors]
    struct = e.SendEmail if job == "send_email" else e.ResizeImage
    if payload != {"watermark": "not bytes", "strip_metadata": 1}:
        with pytest.raises(msgspec.ValidationError):
            msgspec.msgpack.decode(data, type=struct)  # the Python worker refuses it too


# -- files it cannot push -------------------------------------------------------------------------------


def _push(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "schemas", "push", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_a_file_without_job_messages_is_refused(tmp_path: Path) -> None:
    path = write_proto(tmp_path, "types.proto", "message Point { int32 x = 1; }\n")
    done = _push("--dry-run", path)
    assert done.returncode == 2
    assert "types.proto: no job message to push" in done.stderr and "(spitfire.queue)" in done.stderr
    assert done.stdout == ""


def test_a_bad_option_is_refused_naming_the_message(tmp_path: Path) -> None:
    path = write_proto(tmp_path, "bad.proto", "message Job { option (spitfire.priority) = 11; }\n")
    done = _push("--dry-run", path)
    assert done.returncode == 2
    assert "t.Job: (spitfire.priority) = 11: use 0..10" in done.stderr


def test_two_messages_of_one_job_name_are_refused(tmp_path: Path) -> None:
    body = """\
    message SendEmail { option (spitfire.queue) = "a"; }
    message Other { option (spitfire.job) = "send_email"; }
    """
    done = _push("--dry-run", write_proto(tmp_path, "dup.proto", body))
    assert done.returncode == 2
    assert "t.Other: job name 'send_email' is also t.SendEmail's" in done.stderr


def test_a_huge_message_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    fields = "\n".join(f"  string field_number_{i} = {i};" for i in range(1, 4001))
    path = write_proto(
        tmp_path, "huge.proto", f'message Huge {{\n  option (spitfire.queue) = "q";\n{fields}\n}}\n'
    )
    done = _push(path, "--url", "tcp://127.0.0.1:1")  # nothing listens there: it must not get that far
    assert done.returncode == 2, done.stderr
    assert "t.Huge: the JSON Schema of its payload takes" in done.stderr
    assert f"at most {MAX_SCHEMA_BYTES}" in done.stderr


def _nested(depth: int) -> str:
    """Messages declared inside each other ``depth`` deep, the innermost a job."""
    opened = "".join(f"message N{i} {{\n" for i in range(depth))
    return opened + 'option (spitfire.queue) = "q";\nstring leaf = 1;\n' + "}\n" * depth


def test_deeply_nested_messages_are_bounded(tmp_path: Path) -> None:
    [(message, spec)] = definitions(load([write_proto(tmp_path, "deep.proto", _nested(31))]))
    assert message.full_name == "t." + ".".join(f"N{i}" for i in range(31))
    assert list(json.loads(spec.schema or "")["$defs"]) == [message.full_name]

    done = _push("--dry-run", write_proto(tmp_path, "far.proto", _nested(2000)))  # protoc stops at 32
    assert done.returncode == 2
    assert done.stderr.startswith("spitfire schemas push: protoc could not parse the .proto files:")
    assert "Reached maximum recursion limit for nested messages" in done.stderr
    assert len(done.stderr.splitlines()) <= 25 and "Traceback" not in done.stderr


def test_a_long_chain_of_messages_is_one_flat_schema(tmp_path: Path) -> None:
    """Messages that hold each other by fields, 300 deep: each is one $defs entry, and the server's
    validator follows them (a payload 100 deep fails naming the field at the bottom)."""
    chain = "".join(f"message C{i} {{ C{i + 1} next = 1; }}\n" for i in range(1, 300))
    head = 'message C0 { option (spitfire.queue) = "q"; C1 next = 1; }\n'
    body = f"{head}{chain}message C300 {{ int32 n = 1; }}\n"
    [(_, spec)] = definitions(load([write_proto(tmp_path, "chain.proto", body)]))
    tree = json.loads(spec.schema or "")
    assert len(tree["$defs"]) == 301
    payload: Any = "not a message"
    for _ in range(100):
        payload = {"next": payload}
    [error] = _validator(spec.schema or "").iter_errors(payload)
    assert list(error.instance_path) == ["next"] * 100


def test_a_recursive_message_is_one_definition_that_refers_to_itself(tmp_path: Path) -> None:
    body = """\
    message Tree {
      option (spitfire.queue) = "q";
      string name = 1;
      repeated Tree children = 2;
      Tree parent = 3;
    }
    """
    schema = load([write_proto(tmp_path, "tree.proto", body)])
    [(message, spec)] = definitions(schema)
    assert payload_schema(message, schema)["$defs"]["t.Tree"]["properties"]["children"] == {
        "type": "array", "items": {"$ref": "#/$defs/t.Tree"},
    }  # fmt: skip
    validator = _validator(spec.schema or "")
    assert validator.is_valid({"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]})
    [error] = validator.iter_errors({"children": [{"children": [{"name": 3}]}]})
    assert list(error.instance_path) == ["children", 0, "children", 0, "name"]


# -- a live server ---------------------------------------------------------------------------------------


PROTO = """\
syntax = "proto3";
package shop;
import "spitfire/options.proto";

// Send one email.
message SendEmail {
  option (spitfire.queue) = "QUEUE";
  option (spitfire.max_attempts) = 4;
  string to = 1;
  repeated string cc = 2;
}

message Tree {
  option (spitfire.queue) = "QUEUE";
  string name = 1;
  repeated Tree children = 2;
}
"""

TS_PRODUCER = """\
import { Client } from "SDK";

const client = new Client(process.argv[2]);
try {
  await client.enqueue(process.argv[3], "send_email", { to: 42 });
  console.log("accepted");
} catch (err) {
  console.log(JSON.stringify({ code: err.code, field: err.field, message: err.message }));
} finally {
  await client.close();
}
"""


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "data").start()
    try:
        yield proc
    finally:
        proc.kill()


def _typescript_refusal(url: str, queue: str, tmp_path: Path) -> dict[str, Any]:
    """What the TypeScript SDK's client gets for a bad payload (skips where it is not built)."""
    sdk = Path(os.environ.get("SPITFIRE_TS_SDK") or ROOT / "sdks" / "typescript")
    if shutil.which("node") is None or not (sdk / "dist" / "index.js").exists():
        pytest.skip(f"no node, or no built TypeScript SDK at {sdk} (npm ci && npm run build there)")
    script = tmp_path / "ts" / "produce.mjs"
    script.parent.mkdir()
    script.write_text(TS_PRODUCER.replace("SDK", (sdk / "dist" / "index.js").as_uri()))
    done = subprocess.run(["node", str(script), url, queue], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_a_pushed_schema_is_enforced_at_enqueue_and_after_a_restart(
    own_server: ServerProcess, tmp_path: Path
) -> None:
    queue = "push-live"
    proto = tmp_path / "shop.proto"
    proto.write_text(PROTO.replace("QUEUE", queue))
    done = _push(proto, "--url", own_server.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"send_email: shop.SendEmail on queue {queue}, payloads checked at enqueue",
        f"tree: shop.Tree on queue {queue}, payloads checked at enqueue",
    ]
    with spitfire.Client(own_server.url) as client:
        ok = client.enqueue(queue, "send_email", {"to": "a@b.c", "cc": ["d@e.f"]})
        assert client.get(ok).max_attempts == 4  # the definition's option
        with pytest.raises(spitfire.BadRequest) as bad:
            client.enqueue(queue, "send_email", {"to": 42})
        assert bad.value.field == "payload.to"
        assert "the schema of job 'send_email'" in bad.value.message
        with pytest.raises(spitfire.BadRequest) as deep:
            client.enqueue(queue, "tree", {"children": [{"children": [{"name": ["x"]}]}]})
        assert deep.value.field == "payload.children[0].children[0].name"
        # {"children": [{"children": [...]}]} 3000 deep, as msgpack bytes (no encoder nests so
        # deep): refused, naming the payload, and the server goes on.
        hostile = b"\x81\xa8children\x91" * 3000 + b"\x80"
        with pytest.raises(spitfire.BadRequest) as deepest:
            client.enqueue_raw(queue, "tree", hostile)
        assert deepest.value.field == "payload" and "the schema can check" in deepest.value.message
        assert client.stats(queue).queues[queue].total == 1  # only the good one
        defs = {d.name: d for d in client.job_definitions()}
        assert defs["send_email"].validate and defs["tree"].validate

    again = _push(proto, "--url", own_server.url)  # identical: nothing is written
    assert again.returncode == 0, again.stderr

    own_server.kill()  # SIGKILL: the definitions were durable before push returned
    own_server.start()
    with spitfire.Client(own_server.url) as client:
        with pytest.raises(spitfire.BadRequest) as after:
            client.enqueue(queue, "send_email", {"cc": [1]})
        assert after.value.field == "payload.cc[0]"
        client.enqueue(queue, "send_email", {"to": "g@h.i"})


def test_a_typescript_producer_is_refused_too(own_server: ServerProcess, tmp_path: Path) -> None:
    proto = tmp_path / "shop.proto"
    proto.write_text(PROTO.replace("QUEUE", "push-ts"))
    assert _push(proto, "--url", own_server.url).returncode == 0
    refusal = _typescript_refusal(own_server.url, "push-ts", tmp_path)
    assert refusal["code"] == "BAD_REQUEST" and refusal["field"] == "payload.to", refusal
    assert "the schema of job 'send_email'" in refusal["message"]


def test_push_names_the_job_the_server_refuses(own_server: ServerProcess, tmp_path: Path) -> None:
    path = write_proto(
        tmp_path, "long.proto", f'message Job {{ option (spitfire.queue) = "{"q" * 300}"; }}\n'
    )
    done = _push(path, "--url", own_server.url)
    assert done.returncode == 1
    assert "job 'job' (t.Job)" in done.stderr and "queue" in done.stderr


def test_push_to_no_server_says_so(tmp_path: Path) -> None:
    done = _push(EXAMPLE, "--url", "tcp://127.0.0.1:1", "--connect-timeout", "2s")
    assert done.returncode == 3, done.stderr
