"""The SDK over QUIC against a real server: the same jobs as over TCP, and certificate checks."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sdk_helpers import ServerProcess, run_burst

import spitfire


def _udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def quic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    pytest.importorskip("aioquic")
    for _ in range(5):  # the TCP port was free; the same UDP port must be too
        proc = ServerProcess(tmp_path_factory.mktemp("quic") / "data", quic=True)
        if _udp_port_free(proc.port):
            break
    proc.start()
    try:
        yield proc
    finally:
        proc.kill()


def test_enqueue_work_ack_over_quic(quic_server: ServerProcess) -> None:
    app = spitfire.App(quic_server.quic_url)

    @app.job(queue="over-quic")
    def double(x: int) -> int:
        return 2 * x

    @app.job(queue="over-quic", max_attempts=2, backoff=spitfire.Backoff("fixed", 0.1))
    async def broken() -> None:
        raise RuntimeError("nope")

    ids = [double.enqueue(i) for i in range(20)]
    bad = broken.enqueue()
    worker = run_burst(app)
    assert worker.processed == 20
    with spitfire.Client(quic_server.quic_url) as client:
        assert [client.get(i).result for i in ids] == [2 * i for i in range(20)]
        dead = client.get(bad)
        assert dead.state == "dead" and dead.attempts == 2 and dead.last_error == "RuntimeError: nope"
    app.close()


def test_async_client_pipelines_over_quic(quic_server: ServerProcess) -> None:
    async def main() -> list[str]:
        async with spitfire.AsyncClient(quic_server.quic_url) as client:
            return await asyncio.gather(*(client.enqueue("quic-pipe", "n", i) for i in range(200)))

    ids = asyncio.run(main())
    assert len(set(ids)) == 200


def test_the_servers_certificate_verifies_with_its_ca_file(quic_server: ServerProcess) -> None:
    cert = quic_server.data_dir / "tls" / "cert.pem"
    with spitfire.Client(quic_server.quic_url, tls_ca=str(cert)) as client:
        assert client.ping() >= 0


def test_a_certificate_that_does_not_verify_fails_fast(quic_server: ServerProcess, tmp_path: Path) -> None:
    system_ca = next(
        (p for p in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/cert.pem") if Path(p).exists()), None
    )
    if system_ca is None:
        pytest.skip("no system CA bundle here")
    client = spitfire.Client(quic_server.quic_url, tls_ca=system_ca, connect_timeout=20)
    with client, pytest.raises(spitfire.TLSVerificationFailed, match="tls_ca="):
        client.ping()


def test_schedules_over_quic_through_the_sync_client(quic_server: ServerProcess) -> None:
    """The sync Client drives the AsyncClient's schedules on its loop thread for quic:// URLs."""
    with spitfire.Client(quic_server.quic_url) as client:
        made = client.schedules.add("quic-nightly", "0 3 * * *", "quic-sched", "noop", {"n": 1})
        assert client.schedules.add("quic-nightly", "0 3 * * *", "quic-sched", "noop", {"n": 1}) == made
        assert client.schedules.put("quic-nightly", "@daily", "quic-sched", "noop").cron == "@daily"
        assert [s.name for s in client.schedules.list()] == ["quic-nightly"]
        assert client.schedules.pause("quic-nightly").paused
        assert not client.schedules.resume("quic-nightly").paused
        job_id = client.schedules.trigger("quic-nightly")
        assert client.get(job_id).headers["spitfire-schedule"] == "quic-nightly"
        assert client.schedules.remove("quic-nightly").last_job_id == job_id
        with pytest.raises(spitfire.ScheduleNotFound):
            client.schedules.get("quic-nightly")
