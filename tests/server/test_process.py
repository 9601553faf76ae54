"""A real spitfire-server process: starts on defaults, prints its banner, exits 0 on SIGTERM/SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SERVER = [sys.executable, "-m", "spitfire.server.cli"]


def start_server(data_dir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*SERVER, "--data-dir", str(data_dir), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_banner(proc: subprocess.Popen[str], timeout: float = 20.0) -> list[str]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "stop with" in line:
            return lines
    proc.kill()
    pytest.fail(f"no banner; stdout={lines} stderr={proc.stderr.read() if proc.stderr else ''}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_starts_prints_what_it_serves_and_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    proc = start_server(tmp_path / "data")
    try:
        banner = "".join(wait_for_banner(proc))
        assert "spitfire-server ready" in banner
        assert str((tmp_path / "data").resolve()) in banner
        assert "127.0.0.1:7878" in banner and "127.0.0.1:7880" in banner
        os.kill(proc.pid, sig)
        assert proc.wait(timeout=20) == 0
        assert proc.stderr is not None
        assert "stopped cleanly" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_repair_on_a_healthy_data_dir_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    out = subprocess.run(
        [*SERVER, "repair", "--data-dir", str(tmp_path / "data"), "--yes"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "nothing to repair" in out.stdout


def test_a_second_server_on_the_same_data_dir_refuses_to_start(tmp_path: Path) -> None:
    first = start_server(tmp_path / "data")
    try:
        wait_for_banner(first)
        second = subprocess.run(
            [
                *SERVER,
                "--data-dir",
                str(tmp_path / "data"),
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert f"pid {first.pid}" in second.stderr and "in use" in second.stderr
    finally:
        first.terminate()
        assert first.wait(timeout=20) == 0
