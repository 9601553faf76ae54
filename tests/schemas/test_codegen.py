"""`spitfire codegen`: the output is golden-tested (tests/schemas/golden), passes mypy --strict and
tsc --strict, and its payload Structs check what is enqueued. UPDATE_GOLDEN=1 rewrites the golden
files from the generator (review the diff)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import msgspec
import pytest
from schema_helpers import EXAMPLE, GOLDEN, ROOT, SCHEMAS, TS_FIXTURE, mypy_tree, write_proto

import spitfire
from spitfire.codegen import SchemaError, codegen, main
from spitfire.codegen.load import options_include_dir

LANGS = {"python": ".py", "typescript": ".ts"}


@pytest.mark.parametrize("lang", LANGS)
def test_output_matches_the_golden_files(lang: str, tmp_path: Path) -> None:
    written = codegen(lang, [EXAMPLE], tmp_path)
    golden = GOLDEN / lang
    if os.environ.get("UPDATE_GOLDEN"):
        for path in written:
            shutil.copy(path, golden / path.name)
    assert sorted(p.name for p in written) == sorted(
        p.name for p in golden.iterdir() if p.suffix == LANGS[lang]
    )
    for path in written:
        assert path.read_text() == (golden / path.name).read_text(), (
            f"{path.name} differs from its golden file"
        )


def test_the_packaged_options_proto_is_the_one_in_schemas() -> None:
    packaged = options_include_dir() / "spitfire" / "options.proto"
    assert packaged.read_bytes() == (SCHEMAS / "spitfire" / "options.proto").read_bytes()


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The generated Python of schemas/example.proto, imported as package ``sfgen_test``."""
    root = tmp_path_factory.mktemp("gen")
    codegen("python", [EXAMPLE], root / "sfgen_test")
    (root / "sfgen_test" / "__init__.py").write_text("")
    sys.path.insert(0, str(root))
    try:
        import sfgen_test.example as module

        yield module
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n.startswith("sfgen_test")]:
            del sys.modules[name]


def test_payloads_are_maps_keyed_by_field_name(generated: ModuleType) -> None:
    g = generated
    payload = g.SendEmail(to="a@b.c", cc=["x"], urgency=g.Urgency.URGENCY_HIGH, tags={"k": "v"})
    assert msgspec.msgpack.decode(g.SEND_EMAIL_JOB.encode(payload)) == {
        "to": "a@b.c", "subject": "", "body": "", "cc": ["x"], "urgency": 2, "in_reply_to": None,
        "tags": {"k": "v"},
    }  # fmt: skip
    assert g.SEND_EMAIL_JOB.name == "send_email" and g.SEND_EMAIL_JOB.queue == "emails"
    assert g.SEND_EMAIL_JOB.defaults == {
        "max_attempts": 5, "backoff": spitfire.Backoff.of_delays([1, 5, 30, 300]), "timeout": 30.0,
    }  # fmt: skip
    assert g.RESIZE_IMAGE_JOB.name == "resize-image"
    assert g.RESIZE_IMAGE_JOB.defaults["priority"] == 5


@pytest.mark.parametrize(
    ("make", "field", "text"),
    [
        (lambda g: g.SendEmail(to=3), "to", "Expected `str`, got `int`"),
        (lambda g: g.SendEmail(urgency=7), "urgency", "Invalid enum value 7"),
        (lambda g: g.ResizeImage(sizes=[g.ResizeImage_Size(width=-1)]), "sizes[0].width", ">= 0"),
        (lambda g: g.ResizeImage(rotate=2**31), "rotate", "<= 2147483647"),
        (lambda g: g.ResizeImage(crop="big"), "crop", "Expected `object | null`, got `str`"),
    ],
)
def test_a_payload_that_does_not_fit_names_the_field(
    generated: ModuleType, make, field: str, text: str
) -> None:  # type: ignore[no-untyped-def]
    payload = make(generated)
    job = generated.SEND_EMAIL_JOB if isinstance(payload, generated.SendEmail) else generated.RESIZE_IMAGE_JOB
    with pytest.raises(spitfire.JobArgumentError) as info:
        job.encode(payload)
    assert info.value.argument == field
    assert f"field {field!r}" in str(info.value) and text in str(info.value)


def test_a_payload_of_another_type_is_refused_before_sending(generated: ModuleType) -> None:
    client = spitfire.Client("tcp://127.0.0.1:1", connect_timeout=0.1)  # never reached
    with pytest.raises(spitfire.JobArgumentError, match="pass a SendEmail"):
        generated.enqueue_send_email(client, {"to": "a@b.c"})
    with pytest.raises(spitfire.JobArgumentError, match="field 'to'"):
        generated.enqueue_send_email(client, generated.SendEmail(to=1))
    with pytest.raises(TypeError, match="unexpected option"):
        generated.enqueue_send_email(client, generated.SendEmail(), prio=1)
    client.close()


class _Recorder:
    """Stands in for a Client: records what enqueue_raw was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bytes, dict[str, object]]] = []

    def enqueue_raw(self, queue: str, name: str, data: bytes, **options: object) -> str:
        self.calls.append((queue, name, data, options))
        return "job-1"


def test_enqueue_applies_the_schema_options_under_the_callers(generated: ModuleType) -> None:
    client = _Recorder()
    assert generated.enqueue_send_email(client, generated.SendEmail(to="a@b.c")) == "job-1"
    generated.enqueue_send_email(client, generated.SendEmail(), queue="eu", max_attempts=1, delay=5)
    (q1, n1, d1, o1), (q2, n2, _, o2) = client.calls
    assert (q1, n1, q2, n2) == ("emails", "send_email", "eu", "send_email")
    assert msgspec.msgpack.decode(d1)["to"] == "a@b.c"
    backoff = spitfire.Backoff.of_delays([1, 5, 30, 300])
    assert o1 == {"max_attempts": 5, "backoff": backoff, "timeout": 30.0}
    assert o2 == {"max_attempts": 1, "backoff": backoff, "timeout": 30.0, "delay": 5}


def test_a_handler_takes_the_struct(generated: ModuleType) -> None:
    app = spitfire.App("tcp://127.0.0.1:1")
    seen = []

    @generated.SEND_EMAIL_JOB.handler(app)
    def send_email(email: generated.SendEmail) -> None:  # type: ignore[name-defined]
        seen.append(email)

    assert app.jobs["send_email"] is send_email and send_email.queue == "emails"
    assert send_email.defaults["max_attempts"] == 5
    data = msgspec.msgpack.encode({"to": "a@b.c", "added_later": 1})  # unknown fields are ignored
    send_email.fn(**send_email.spec.decode(data))
    assert seen == [generated.SendEmail(to="a@b.c")]


def test_generated_python_and_the_generator_pass_mypy_strict(tmp_path: Path) -> None:
    tree = mypy_tree(tmp_path / "tree")
    codegen("python", [EXAMPLE], tree / "gen")
    (tree / "gen" / "__init__.py").write_text("")
    (tree / "use_gen.py").write_text(
        textwrap.dedent(
            """\
            import spitfire
            from gen.example import SEND_EMAIL_JOB, ResizeImage, SendEmail, Urgency, enqueue_resize_image

            app = spitfire.App()


            @SEND_EMAIL_JOB.handler(app)
            def send_email(email: SendEmail) -> str:
                return email.to


            def produce(client: spitfire.Client) -> str:
                enqueue_resize_image(client, ResizeImage(max_bytes=1), priority=9, queue="other")
                return SEND_EMAIL_JOB.enqueue(client, SendEmail(to="a@b.c", urgency=Urgency.URGENCY_LOW))
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "cache"), "gen", "use_gen.py",
         "spitfire/codegen", "spitfire/structs.py"],
        cwd=tree, capture_output=True, text=True, timeout=300, env={**os.environ, "MYPYPATH": str(tree)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def tsc() -> Path:
    """tsc from `npm ci` in tests/schemas/ts (skips without npm)."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: the generated TypeScript cannot be type-checked here")
    binary = TS_FIXTURE / "node_modules" / ".bin" / "tsc"
    if not binary.exists():
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=TS_FIXTURE, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.skip(f"npm ci in {TS_FIXTURE} failed (no registry?): {done.stderr.strip()[-500:]}")
    return binary


def test_generated_typescript_compiles_strict(tsc: Path, tmp_path: Path) -> None:
    codegen("typescript", [EXAMPLE], tmp_path)
    (tmp_path / "usage.ts").write_text((TS_FIXTURE / "usage.ts").read_text())
    done = subprocess.run(
        [str(tsc), "--strict", "--noEmit", "--target", "es2022", "--module", "es2022",
         "--moduleResolution", "bundler", "--lib", "es2022", "example.ts", "usage.ts"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_imports_between_generated_files(tmp_path: Path, tsc: Path) -> None:
    src = tmp_path / "src"
    write_proto(src, "common.proto", "message Address { string city = 1; }\nenum Kind { KIND_A = 0; }\n")
    write_proto(
        src,
        "orders.proto",
        """\
        import "common.proto";
        message ShipOrder {
          option (spitfire.queue) = "orders";
          Address to = 1;
          repeated Kind kinds = 2;
        }
        """,
    )
    py = codegen("python", [src / "common.proto", src / "orders.proto"], tmp_path / "py")
    assert sorted(p.name for p in py) == ["__init__.py", "common.py", "orders.py"]
    assert "from .common import Address, Kind" in (tmp_path / "py" / "orders.py").read_text()
    codegen("typescript", [src / "common.proto", src / "orders.proto"], tmp_path / "ts")
    assert 'import type { Address, Kind } from "./common.js";' in (tmp_path / "ts" / "orders.ts").read_text()
    done = subprocess.run(
        [str(tsc), "--strict", "--noEmit", "--target", "es2022", "--module", "es2022",
         "--moduleResolution", "bundler", "common.ts", "orders.ts"],
        cwd=tmp_path / "ts", capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    with pytest.raises(SchemaError, match="generate that file too"):
        codegen("python", [src / "orders.proto"], tmp_path / "alone")


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("message A { string from = 1; }", "'from' cannot be a Python keyword argument"),
        ("message A { option (spitfire.priority) = 11; }", r"\(spitfire.priority\) = 11: use 0..10"),
        ('message A { option (spitfire.backoff) = { kind: "soon" }; }', "kind 'soon': use one of"),
        ("message A { strin x = 1; }", "protoc could not parse"),
        ('import "google/protobuf/timestamp.proto";\nmessage A { google.protobuf.Timestamp at = 1; }',
         "not supported in job payloads"),
    ],
)  # fmt: skip
def test_schemas_it_cannot_generate_say_why(tmp_path: Path, body: str, error: str) -> None:
    path = write_proto(tmp_path, "bad.proto", body + "\n")
    with pytest.raises(SchemaError, match=error):
        codegen("python", [path], tmp_path / "out")


def test_proto2_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.proto"
    path.write_text('syntax = "proto2";\nmessage A { optional string a = 1; }\n')
    with pytest.raises(SchemaError, match='Spitfire schemas are proto3: add syntax = "proto3";'):
        codegen("python", [path], tmp_path / "out")


def test_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--lang", "typescript", str(SCHEMAS), "-o", str(tmp_path / "ts")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "ts" / "example.ts")
    assert main(["--lang", "python", str(tmp_path / "missing.proto"), "-o", str(tmp_path)]) == 2
    assert "missing.proto: no such file" in capsys.readouterr().err
    command = ["codegen", "--lang", "python", str(EXAMPLE), "-o", str(tmp_path / "cli")]
    done = subprocess.run(
        [sys.executable, "-m", "spitfire.cli", *command], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cli" / "example.py").read_text() == (GOLDEN / "python" / "example.py").read_text()


def test_oneof_members_and_message_fields_may_be_absent(tmp_path: Path) -> None:
    path = write_proto(
        tmp_path,
        "pay.proto",
        """\
        message Card { string number = 1; }
        message Pay {
          option (spitfire.queue) = "pay";
          oneof method {
            Card card = 1;
            string iban = 2;
          }
          Card backup = 3;
        }
        """,
    )
    py = codegen("python", [path, SCHEMAS / "spitfire" / "options.proto"], tmp_path / "py")
    assert [p.name for p in py] == ["pay.py"]  # options.proto among the files: nothing to generate
    text = py[0].read_text()
    assert (
        "    card: Card | None = None\n    iban: str | None = None\n    backup: Card | None = None\n" in text
    )
    ts = codegen("typescript", [path], tmp_path / "ts")[0].read_text()
    assert "  card?: Card | null;\n  iban?: string | null;\n  backup?: Card | null;\n" in ts
