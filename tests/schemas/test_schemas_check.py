"""`spitfire schemas check OLD NEW`: compatible evolutions pass; each kind of breaking change exits 1
with a line naming the message and the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from schema_helpers import EXAMPLE, write_proto

from spitfire.codegen import schemas_main

OLD = """\
enum Color {
  COLOR_UNSPECIFIED = 0;
  COLOR_RED = 1;
}
message Paint {
  option (spitfire.queue) = "paint";
  string wall = 1;
  int32 coats = 2;
  Color color = 3;
  repeated string tags = 4;
  reserved 9;
  reserved "old";
}
message Other { string x = 1; }
"""


def check(tmp_path: Path, new: str, old: str = OLD) -> tuple[int, list[str]]:
    """Exit code and stdout lines of ``schemas check`` from ``old`` to ``new`` (message bodies)."""
    a = write_proto(tmp_path / "old", "paint.proto", old)
    b = write_proto(tmp_path / "new", "paint.proto", new)
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from spitfire.codegen import schemas_main; "
         "sys.exit(schemas_main(sys.argv[1:]))", "check", str(a), str(b)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return done.returncode, done.stdout.splitlines()


def test_the_same_schema_is_compatible(capsys: pytest.CaptureFixture[str]) -> None:
    assert schemas_main(["check", str(EXAMPLE), str(EXAMPLE)]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "compatible" in captured.err


def test_compatible_changes(tmp_path: Path) -> None:
    new = (
        OLD.replace("  reserved 9;", "  reserved 4, 9;\n  int64 added = 5;\n  optional string note = 6;")
        .replace('  reserved "old";', '  reserved "old", "tags";')
        .replace("  repeated string tags = 4;\n", "")
        .replace("  COLOR_RED = 1;", "  COLOR_RED = 1;\n  COLOR_BLUE = 2;")
        .replace('option (spitfire.queue) = "paint";', 'option (spitfire.queue) = "paint";\n'
                 "  option (spitfire.max_attempts) = 3;")
        + "message Added { string y = 1; }\n"
    )  # fmt: skip
    assert check(tmp_path, new) == (0, [])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("string wall = 1;", "string room = 1;"),
         "t.Paint: field 'wall' (1) renamed to 'room'; field names are on the wire"),
        (("int32 coats = 2;", "string coats = 2;"),
         "t.Paint: field 'coats' (2) changed type from int32 to string"),
        (("int32 coats = 2;", "int64 coats = 2;"), "changed type from int32 to int64"),
        (("repeated string tags = 4;", "string tags = 4;"), "changed type from repeated string to string"),
        (("int32 coats = 2;", "optional int32 coats = 2;"), "changed type from int32 to optional int32"),
        (("Color color = 3;", "Other color = 3;"), "changed type from t.Color to t.Other"),
        (("int32 coats = 2;", "int32 coats = 7;"), "t.Paint: field 'coats' moved from number 2 to 7"),
        (("int32 coats = 2;", ""), "field 'coats' (2) removed without reserving it: add `reserved 2;`"),
        (("int32 coats = 2;", ""), "t.Paint: field 'coats' (2) removed without reserving its name"),
        (("int32 coats = 2;", "reserved 2;"), "without reserving its name: add `reserved \"coats\";`"),
        (("  reserved 9;", "  string extra = 9;"),
         "t.Paint: field 'extra' reuses reserved number 9"),
        (('  reserved "old";', "  string old = 10;"),
         "t.Paint: field 'old' reuses a reserved name"),
        (('option (spitfire.queue) = "paint";', 'option (spitfire.queue) = "walls";'),
         "t.Paint: queue changed from 'paint' to 'walls'"),
        (('option (spitfire.queue) = "paint";', 'option (spitfire.queue) = "paint";\n'
          '  option (spitfire.job) = "paint_v2";'), "t.Paint: job name changed from 'paint' to 'paint_v2'"),
        (('option (spitfire.queue) = "paint";', ""), "t.Paint: no longer declares job 'paint'"),
        (("message Other { string x = 1; }", ""), "t.Other: message removed"),
        (("  COLOR_RED = 1;\n", ""), "t.Color: value COLOR_RED (1) removed without reserving it"),
    ],
)  # fmt: skip
def test_breaking_changes(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    before, after = change
    assert before in OLD
    code, lines = check(tmp_path, OLD.replace(before, after))
    assert code == 1
    assert any(expected in line for line in lines), lines


def test_a_reused_field_number_is_refused(tmp_path: Path) -> None:
    """Field 2 dropped and its number given to a new field: the number names the new field now."""
    code, lines = check(tmp_path, OLD.replace("int32 coats = 2;", "string color_name = 2;"))
    assert code == 1
    assert any("field 'coats' (2) renamed to 'color_name'" in line for line in lines), lines
    assert any("field 'coats' (2) changed type from int32 to string" in line for line in lines), lines


def test_every_change_gets_its_line(tmp_path: Path) -> None:
    new = OLD.replace("string wall = 1;", "bytes room = 1;").replace("message Other { string x = 1; }", "")
    code, lines = check(tmp_path, new)
    assert code == 1 and len(lines) == 3, lines


def test_a_schema_protoc_refuses_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = write_proto(tmp_path, "bad.proto", "message A { int32 = 1; }\n")
    assert schemas_main(["check", str(EXAMPLE), str(bad)]) == 2
    assert "protoc could not parse" in capsys.readouterr().err
