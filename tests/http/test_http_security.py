"""Security of the HTTP listener against real server processes: Bearer-only auth, HTTPS with
--tls-cert/--tls-key (and only with them), and the start-up warning about a token crossing a
non-loopback bind in plain HTTP ("Security" and item 10)."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from httphelpers import SERVER, http_server

from spitfire.server.options import Address, ServerOptions
from spitfire.server.tls import ensure_certificate

TOKEN = "s3cret-token"
_URL = re.compile(r"http:\s+(https?)://127\.0\.0\.1:(\d+)/")
WARNING = "crosses the network unencrypted"


def test_a_token_must_come_as_bearer(tmp_path: Path) -> None:
    with http_server(tmp_path / "data", "--auth-token", TOKEN) as server:
        http = server.http

        def status(authorization: str | None, path: str = "/api/stats", **params: str) -> int:
            headers = {} if authorization is None else {"Authorization": authorization}
            return http.get(path, headers=headers, params=params).status_code

        assert status(TOKEN) == 401  # the bare token, as item 10 found it accepted
        assert status(f"Basic {TOKEN}") == 401
        assert status(f"Token {TOKEN}") == 401
        assert status(f"Bearer{TOKEN}") == 401
        assert status(f"Bearer {TOKEN}x") == 401
        assert status(f"Bearer {TOKEN[:-1]}") == 401
        assert status(None) == 401
        assert status(f"Bearer {TOKEN}") == 200
        assert status(f"bearer {TOKEN}") == 200  # the scheme is case-insensitive (RFC 9110)
        r = http.get("/api/stats", headers={"Authorization": TOKEN})
        assert r.json()["error"]["code"] == "UNAUTHORIZED" and "Bearer" in r.json()["error"]["message"]
        # ?access_token= is for EventSource on /api/events only, and only without the header.
        assert status(None, "/api/stats", access_token=TOKEN) == 401
        assert status(TOKEN, "/api/events", access_token=TOKEN) == 401
        with httpx.stream(
            "GET", f"{server.url}/api/events", params={"access_token": TOKEN}, timeout=10
        ) as events:
            assert events.status_code == 200


class Launched:
    """A spitfire-server process started with explicit flags; its banner, log and exit code."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"
        cmd = [*SERVER, "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", *args]
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        self.banner = ""

    def wait_banner(self) -> tuple[str, int]:
        """The scheme and port of --http from the banner. :raises AssertionError: no banner."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.banner += line
            if "stop with" in line:
                match = _URL.search(self.banner)
                assert match, self.banner
                return match.group(1), int(match.group(2))
        raise AssertionError(f"no banner: {self.banner!r}\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(15)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextmanager
def launched(data_dir: Path, *args: str) -> Iterator[Launched]:
    server = Launched(data_dir, *args)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cert(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for localhost/127.0.0.1 and its key (made as QUIC's own would be)."""
    return ensure_certificate(tmp_path / "certs")


def trusting(cert_path: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cert_path))
    return ctx


def test_https_with_tls_cert_and_key(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    cert_path, key_path = cert
    args = ("--http", "127.0.0.1:0", "--tls-cert", str(cert_path), "--tls-key", str(key_path))
    with launched(tmp_path / "data", *args, "--auth-token", TOKEN) as server:
        scheme, port = server.wait_banner()
        assert scheme == "https"
        url = f"https://127.0.0.1:{port}"
        auth = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=url, verify=trusting(cert_path), timeout=20) as client:
            assert client.get("/health").status_code == 200
            r = client.post("/api/queues/tls/jobs", json={"name": "j", "payload": [1]}, headers=auth)
            assert r.status_code == 201, r.text
            assert client.get(f"/api/jobs/{r.json()['id']}", headers=auth).json()["payload"] == [1]
        # Nothing is served in clear text on that port, and a client that does not trust the
        # certificate is refused by its own verification.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health", timeout=10)  # the system CAs do not know this certificate
    assert WARNING not in server.log()


def test_quic_self_signed_certificate_does_not_turn_https_on(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with launched(data, "--http", "127.0.0.1:0") as server:  # QUIC on: it makes data/tls/
        scheme, port = server.wait_banner()
        assert scheme == "http"
        assert (data / "tls" / "cert.pem").exists(), server.log()
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200


def test_an_unusable_certificate_stops_start_up_with_a_message(
    tmp_path: Path, cert: tuple[Path, Path]
) -> None:
    cert_path, _ = cert
    bad_key = tmp_path / "bad-key.pem"
    bad_key.write_text("not a key\n")
    args = ("--http", "127.0.0.1:0", "--no-quic", "--tls-cert", str(cert_path), "--tls-key", str(bad_key))
    with launched(tmp_path / "data", *args) as server:
        assert server.wait() == 1
        log = server.log()
    assert "cannot serve HTTP" in log or "cannot start" in log, log
    assert str(bad_key) in log and "--tls-key" in log, log


def test_warns_once_when_a_token_would_cross_a_non_loopback_plain_http_bind(tmp_path: Path) -> None:
    # 192.0.2.1 (TEST-NET-1) is not an address of this machine: the bind fails after the warning,
    # so nothing ever listens beyond loopback.
    args = ("--no-quic", "--auth-token", TOKEN, "--http", "192.0.2.1:0")
    with launched(tmp_path / "plain", *args) as server:
        assert server.wait() == 1
        log = server.log()
    assert log.count(WARNING) == 1, log
    assert "WARNING" in log and "--http 192.0.2.1:0" in log


def test_no_warning_with_tls_or_on_loopback(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    cert_path, key_path = cert
    tls = ("--tls-cert", str(cert_path), "--tls-key", str(key_path))
    with launched(tmp_path / "tls", "--no-quic", "--auth-token", TOKEN, "--http", "192.0.2.1:0", *tls) as s:
        assert s.wait() == 1
        assert WARNING not in s.log() and "192.0.2.1" in s.log()
    with launched(tmp_path / "loop", "--no-quic", "--auth-token", TOKEN, "--http", "127.0.0.1:0") as s:
        s.wait_banner()
        assert WARNING not in s.log()


def test_options_warnings() -> None:
    exposed = Address("10.1.2.3", 7880)
    assert ServerOptions(http=exposed, auth_token=TOKEN).warnings() != []
    assert ServerOptions(auth_token=TOKEN).warnings() == []
    assert ServerOptions().warnings() == []
    with_tls = ServerOptions(http=exposed, auth_token=TOKEN, tls_cert=Path("c"), tls_key=Path("k"))
    assert with_tls.warnings() == []
