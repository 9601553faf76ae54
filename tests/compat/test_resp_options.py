"""``spitfire-server --redis``: the flag, its checks before anything starts, the banner, and a clean
SIGTERM with a client blocked in a pop."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from resp_support import WAIT, RawClient, command, redis_port, resp_server

from spitfire.server.cli import parse_options
from spitfire.server.options import Address, OptionsError

SERVER = [sys.executable, "-m", "spitfire.server.cli"]


def test_the_flag_is_off_by_default_and_parsed_as_an_address() -> None:
    assert parse_options([]).redis is None
    assert parse_options(["--redis", "127.0.0.1:6380"]).redis == Address("127.0.0.1", 6380)
    with pytest.raises(OptionsError, match="--redis 'nowhere': expected HOST:PORT"):
        parse_options(["--redis", "nowhere"])


def test_a_non_loopback_redis_address_needs_a_token_and_is_warned_about() -> None:
    with pytest.raises(OptionsError, match=r"--redis 0\.0\.0\.0:6380"):
        parse_options(["--redis", "0.0.0.0:6380"])
    options = parse_options(["--redis", "0.0.0.0:6380", "--auth-token", "t"])
    assert any("--redis 0.0.0.0:6380" in w and "unencrypted" in w for w in options.warnings())
    assert parse_options(["--redis", "127.0.0.1:6380", "--auth-token", "t"]).warnings() == []


def test_a_taken_port_fails_before_the_data_directory_is_made(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data = tmp_path / "data"
        args = ["--data-dir", str(data), "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0", "--no-quic"]
        done = subprocess.run(
            [*SERVER, *args, "--redis", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=WAIT
        )
    assert done.returncode == 1
    assert f"cannot serve RESP on 127.0.0.1:{port}" in done.stderr and "Pick another --redis" in done.stderr
    assert not data.exists()


def test_the_banner_names_the_redis_address(tmp_path: Path) -> None:
    with resp_server(tmp_path / "data") as server:
        assert f"redis:       redis://127.0.0.1:{redis_port(server)}" in server.banner


def test_sigterm_answers_a_blocked_pop_and_exits_cleanly(tmp_path: Path) -> None:
    with resp_server(tmp_path / "data") as server, RawClient(redis_port(server)) as raw:
        assert raw.call("LPUSH", "kept", "x") == 1
        raw.send(command("BRPOP", "nothing-here", "0"))
        assert server.terminate(timeout=WAIT) == 0  # shutdown does not wait for the blocked pop
        server.kill()  # (it has exited: this only closes its pipes)
        assert "Traceback" not in server.log() and "still busy" not in server.log()
        with contextlib.suppress(EOFError):  # a pop already waiting is answered nil; one not read
            assert raw.reply() is None  # yet is dropped unserved
        assert raw.closed_by_server()
        server.start()
        with RawClient(redis_port(server)) as again:
            assert again.call("RPOP", "kept") == b"x"
