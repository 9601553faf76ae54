"""The --compat-http flag: off by default, its port checked before recovery, a non-loopback bind needs
a token, and before recovery /health and /healthz answer while the rest is 503."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import uvloop
from httphelpers import SERVER, http_server

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))
from protoclient import ServerProcess

from spitfire.dashboard import HttpServer
from spitfire.server.cli import parse_options
from spitfire.server.options import Address, OptionsError
from spitfire.server.tls import ensure_certificate


def test_the_flag_is_parsed_and_off_by_default() -> None:
    assert parse_options([]).compat_http is None
    assert parse_options(["--compat-http", "127.0.0.1:8080"]).compat_http == Address("127.0.0.1", 8080)
    with pytest.raises(OptionsError, match="--compat-http"):
        parse_options(["--compat-http", "8080"])


def test_the_listener_needs_a_port_of_its_own() -> None:
    for flag in ("--http", "--listen"):
        with pytest.raises(OptionsError, match=f"also {flag}'s address"):
            parse_options([flag, "127.0.0.1:9000", "--compat-http", "127.0.0.1:9000"])
    assert parse_options(["--http", "127.0.0.1:0", "--compat-http", "127.0.0.1:0"]).compat_http is not None


def test_a_non_loopback_bind_needs_a_token() -> None:
    with pytest.raises(OptionsError, match=r"--compat-http 0\.0\.0\.0:8080"):
        parse_options(["--compat-http", "0.0.0.0:8080"])
    assert parse_options(["--compat-http", "0.0.0.0:8080", "--auth-token", "t"]).compat_http is not None


def test_without_the_flag_there_is_no_compat_listener(tmp_path: Path) -> None:
    with http_server(tmp_path / "data") as proc:
        assert proc.compat_url == ""
        assert proc.http.post("/jobs", json={"type": "t"}).status_code == 404  # no Vesper route there


def test_a_taken_port_is_refused_before_the_data_dir_is_touched(tmp_path: Path) -> None:
    data = tmp_path / "never-created"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [*SERVER, "--data-dir", str(data), "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
             "--no-quic", "--compat-http", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert out.returncode == 1 and "--compat-http" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and not data.exists()


def test_before_recovery_health_and_healthz_answer() -> None:
    """The listener as the runtime starts it for --compat-http, before it is given the app."""

    async def body() -> None:
        compat = HttpServer(None, "127.0.0.1", 0, grace=1, health_paths=frozenset({"/health", "/healthz"}))
        main = HttpServer(None, "127.0.0.1", 0, grace=1)  # the main port: /healthz is not its
        await compat.start()
        await main.start()
        try:
            async with httpx.AsyncClient(base_url=compat.url, timeout=10) as client:
                for path in ("/health", "/healthz"):
                    assert (await client.get(path)).status_code == 200, path
                assert (await client.get("/ready")).status_code == 503
                assert (await client.post("/jobs", json={"type": "t"})).status_code == 503
            async with httpx.AsyncClient(base_url=main.url, timeout=10) as client:
                assert (await client.get("/healthz")).status_code == 503
        finally:
            await compat.stop()
            await main.stop()
        await asyncio.sleep(0)

    uvloop.run(body())


def test_the_banner_names_the_listener(tmp_path: Path) -> None:
    with http_server(tmp_path / "data", "--compat-http", "127.0.0.1:0") as proc:
        assert proc.compat_url.startswith("http://127.0.0.1:")
        assert httpx.get(proc.compat_url + "/healthz", timeout=10).status_code == 200


def test_https_with_tls_cert_and_key(tmp_path: Path) -> None:
    """The same certificate files as --http's: the compatibility listener serves HTTPS too."""
    cert, key = ensure_certificate(tmp_path / "certs")
    args = ("--compat-http", "127.0.0.1:0", "--tls-cert", str(cert), "--tls-key", str(key))
    server = ServerProcess(tmp_path / "data", *args).start()
    try:
        match = re.search(r"compat http:\s+(https://127\.0\.0\.1:\d+)", server.banner)
        assert match, server.banner
        trusted = ssl.create_default_context(cafile=str(cert))
        with httpx.Client(base_url=match.group(1), verify=trusted, timeout=20) as compat:
            assert compat.get("/healthz").status_code == 200
            assert compat.post("/jobs", json={"type": "t"}).status_code == 201
        with pytest.raises(httpx.HTTPError):  # nothing in clear text on that port
            httpx.get(match.group(1).replace("https", "http") + "/healthz", timeout=10)
        assert server.terminate() == 0
    finally:
        server.kill()


def test_a_token_over_plain_http_on_a_non_loopback_listener_is_warned_of() -> None:
    options = parse_options(["--compat-http", "0.0.0.0:8080", "--auth-token", "t"])
    assert any("--compat-http 0.0.0.0:8080" in w for w in options.warnings())
    assert not parse_options(["--compat-http", "127.0.0.1:8080", "--auth-token", "t"]).warnings()
