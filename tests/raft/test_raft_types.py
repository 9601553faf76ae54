"""``mypy --strict`` of the raft layer, over a ``spitfire`` package tree mypy can read (the editable
install's import hook is invisible to mypy): raft with the one layer it imports, wal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_raft_layer_passes_mypy_strict(tmp_path: Path) -> None:
    pkg = tmp_path / "tree" / "spitfire"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for layer in ("raft", "wal"):
        (pkg / layer).symlink_to(ROOT / layer)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "cache"), "-p", "spitfire.raft"],
        cwd=pkg.parent, capture_output=True, text=True, timeout=300,
        env={**os.environ, "MYPYPATH": str(pkg.parent)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
