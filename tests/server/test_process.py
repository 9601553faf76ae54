"""A real spitfire-server process: starts on defaults, prints its banner, exits 0 on SIGTERM/SIGINT."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVER = [sys.executable, "-m", "spitfire.server.cli"]


@contextlib.contextmanager
def running_server(data_dir: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """Start a server; on exit make sure it is stopped (by its pid) and its pipes are closed."""
    # Port 0: the server binds a free port and prints it (never the shared default 7878).
    with subprocess.Popen(
        [*SERVER, "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", "--no-quic", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def wait_for_banner(proc: subprocess.Popen[str], timeout: float = 20.0) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "stop with" in line:
            return "".join(lines)
    proc.kill()
    pytest.fail(f"no banner; stdout={lines} stderr={proc.stderr.read() if proc.stderr else ''}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_starts_prints_what_it_serves_and_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    with running_server(tmp_path / "data") as proc:
        banner = wait_for_banner(proc)
        assert "spitfire-server ready" in banner
        assert str((tmp_path / "data").resolve()) in banner
        assert "tcp://127.0.0.1:" in banner and "127.0.0.1:7880" in banner
        os.kill(proc.pid, sig)
        assert proc.wait(timeout=20) == 0
        assert proc.stderr is not None
        assert "stopped cleanly" in proc.stderr.read()


def test_a_second_server_on_the_same_data_dir_refuses_to_start(tmp_path: Path) -> None:
    with running_server(tmp_path / "data") as first:
        wait_for_banner(first)
        second = subprocess.run(
            [*SERVER, "--data-dir", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert f"pid {first.pid}" in second.stderr and "in use" in second.stderr
        first.terminate()
        assert first.wait(timeout=20) == 0


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


def write_jobs(data_dir: Path, count: int) -> None:
    """Enqueue ``count`` jobs through a real engine on the file storage, then close it."""
    import asyncio

    from spitfire.server.engine import Engine
    from spitfire.wal import FileStorage, WalConfig

    async def go() -> None:
        engine = Engine(FileStorage(data_dir, WalConfig(segment_size=1 << 20)))
        await engine.open(now=time.time())
        for i in range(count):
            await engine.enqueue("emails", "send", b"\x81\xa1i" + bytes([i % 100]), now=time.time())
        await engine.close()

    asyncio.run(go())


def stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    assert proc.wait(timeout=20) == 0
    assert proc.stderr is not None
    return proc.stderr.read()


def test_recovers_jobs_written_before_it_started(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_jobs(data, 50)
    with running_server(data) as proc:
        wait_for_banner(proc)
        assert "recovered 50 jobs in 1 queues" in stop(proc)


def test_a_damaged_log_stops_start_up_until_repaired(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_jobs(data, 50)
    segment = sorted((data / "queues" / "emails" / "wal").glob("*.seg"))[0]
    raw = bytearray(segment.read_bytes())
    raw[64 + 12] ^= 0xFF  # a byte in the first record's body: valid records follow it
    segment.write_bytes(bytes(raw))

    refused = subprocess.run([*SERVER, "--data-dir", str(data)], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert str(segment.name) in refused.stderr and "offset 64" in refused.stderr
    assert "spitfire-server repair" in refused.stderr

    repaired = subprocess.run(
        [*SERVER, "repair", "--data-dir", str(data), "--yes"], capture_output=True, text=True, timeout=60
    )
    assert repaired.returncode == 0, repaired.stderr
    with running_server(data) as proc:
        wait_for_banner(proc)
        assert "recovered 49 jobs" in stop(proc)  # only the damaged record is dropped


def test_a_port_in_use_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [*SERVER, "--data-dir", str(tmp_path / "data"), "--listen", f"127.0.0.1:{port}", "--no-quic"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 1
    assert f"cannot listen on tcp://127.0.0.1:{port}" in out.stderr and "Traceback" not in out.stderr


def test_a_port_in_use_is_refused_before_the_data_dir_is_touched(tmp_path: Path) -> None:
    """The port is checked before recovery: nothing is created, no lock taken, no recovery logged."""
    import socket

    data = tmp_path / "never-created"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [*SERVER, "--data-dir", str(data), "--listen", f"127.0.0.1:{port}", "--no-quic"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert out.returncode == 1 and "another server" in out.stderr, out.stderr
    assert not data.exists() and "recovered" not in out.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [*SERVER, "--data-dir", str(data), "--listen", "127.0.0.1:0", "--http", f"127.0.0.1:{port}",
             "--no-quic"],
            capture_output=True,
            text=True,
            timeout=60,
        )  # fmt: skip
    assert out.returncode == 1 and "cannot serve HTTP" in out.stderr and "--http" in out.stderr
    assert not data.exists()


def test_json_log_format_prints_the_banner_as_one_json_line(tmp_path: Path) -> None:
    import json

    with running_server(tmp_path / "data", "--log-format", "json", "--http", "127.0.0.1:0") as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        banner = json.loads(line)
        assert banner["msg"] == "spitfire-server ready" and banner["level"] == "info"
        assert any(u.startswith("tcp://127.0.0.1:") for u in banner["listen"])
        assert banner["data_dir"] == str((tmp_path / "data").resolve())
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        assert proc.stderr is not None
        for err_line in proc.stderr.read().splitlines():
            json.loads(err_line)  # every log line is JSON too
