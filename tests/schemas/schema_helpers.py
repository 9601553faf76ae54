"""Helpers of the schema tests: paths, writing .proto files, and a `spitfire` package tree mypy can
read (the editable install's import hook is invisible to mypy)."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
EXAMPLE = SCHEMAS / "example.proto"
GOLDEN = Path(__file__).resolve().parent / "golden"
TS_FIXTURE = Path(__file__).resolve().parent / "ts"


def write_proto(directory: Path, name: str, body: str, *, package: str = "t") -> Path:
    """A proto3 file ``name`` in ``directory`` that imports spitfire/options.proto."""
    directory.mkdir(parents=True, exist_ok=True)
    head = f'syntax = "proto3";\npackage {package};\nimport "spitfire/options.proto";\n'
    path = directory / name
    path.write_text(head + textwrap.dedent(body))
    return path


def mypy_tree(directory: Path) -> Path:
    """``directory/spitfire``: links to the SDK's modules and the protocol package, as installed."""
    pkg = directory / "spitfire"
    pkg.mkdir(parents=True)
    for entry in (ROOT / "sdks" / "python").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    (pkg / "protocol").symlink_to(ROOT / "protocol")
    return directory


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)
