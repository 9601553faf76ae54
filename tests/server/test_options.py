"""spitfire-server flags: defaults, validation, and the non-loopback guard."""

from __future__ import annotations

import pytest

from spitfire.server.cli import main, parse_options
from spitfire.server.options import Address, OptionsError
from spitfire.wal.api import Durability


def test_defaults_match_design() -> None:
    options = parse_options([])
    assert str(options.data_dir) == "spitfire-data"
    assert options.durability is Durability.GROUP
    assert str(options.listen) == "127.0.0.1:7878"
    assert str(options.http) == "127.0.0.1:7880"
    assert options.auth_token is None


def test_every_flag_is_parsed() -> None:
    options = parse_options(
        ["--data-dir", "/tmp/d", "--durability", "sync", "--listen", "[::1]:9000", "--http", "localhost:9001",
         "--auth-token", "s3cret", "--no-quic", "--log-level", "debug", "--log-format", "json"]
    )  # fmt: skip
    assert options.durability is Durability.SYNC
    assert options.listen == Address("::1", 9000)
    assert options.http == Address("localhost", 9001)
    assert options.auth_token == "s3cret"
    assert options.no_quic
    assert options.log_format == "json"


@pytest.mark.parametrize("text", ["7878", "host:", ":7878", "h:port", "h:70000"])
def test_bad_addresses_name_the_flag(text: str) -> None:
    with pytest.raises(OptionsError, match="--listen"):
        Address.parse(text, "--listen")


def test_non_loopback_without_token_refuses_to_start(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--listen", "0.0.0.0:7878"]) == 2
    err = capsys.readouterr().err
    assert "non-loopback" in err and "--auth-token" in err


def test_non_loopback_with_token_from_env_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPITFIRE_AUTH_TOKEN", "from-env")
    options = parse_options(["--http", "0.0.0.0:7880"])
    assert options.auth_token == "from-env"


def test_bad_log_format_is_refused() -> None:
    with pytest.raises(SystemExit):
        parse_options(["--log-format", "xml"])


def test_max_queues_flag() -> None:
    assert parse_options(["--max-queues", "7"]).max_queues == 7


def test_limits_and_tls_flags() -> None:
    options = parse_options(
        ["--max-queue-jobs", "10", "--max-queue-bytes", "1000", "--max-jobs", "20", "--max-bytes", "2000",
         "--max-payload", "512", "--tls-cert", "c.pem", "--tls-key", "k.pem", "--shutdown-grace", "1.5",
         "--heartbeat-interval", "2"]
    )  # fmt: skip
    assert (options.max_queue_jobs, options.max_queue_bytes, options.max_jobs, options.max_bytes) == (
        10,
        1000,
        20,
        2000,
    )
    assert options.max_payload == 512 and options.shutdown_grace == 1.5 and options.heartbeat_interval == 2
    assert str(options.tls_cert) == "c.pem" and str(options.tls_key) == "k.pem"


def test_limit_defaults() -> None:
    options = parse_options([])
    assert options.max_queue_jobs == 1_000_000 and options.max_jobs == 4_000_000
    assert options.max_bytes == 2 * 2**30 and options.max_payload == 2**20
    assert options.max_queues == 10_000


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--tls-cert", "c.pem"], "--tls-key"),
        (["--max-jobs", "0"], "--max-jobs"),
        (["--max-payload", "-1"], "--max-payload"),
        (["--max-queues", "0"], "--max-queues"),
        (["--shutdown-grace", "-1"], "--shutdown-grace"),
        (["--heartbeat-interval", "0"], "--heartbeat-interval"),
    ],
)
def test_bad_limits_name_the_flag(argv: list[str], flag: str) -> None:
    with pytest.raises(OptionsError, match=flag):
        parse_options(argv)


def test_retention_flags_parse_durations_and_reach_the_engine_config() -> None:
    from spitfire.server.config import EngineConfig
    from spitfire.server.options import parse_duration

    defaults = parse_options([])
    assert (defaults.retain_succeeded, defaults.retain_dead, defaults.retain_cancelled) == (
        86400.0, 7 * 86400.0, 7 * 86400.0
    )  # fmt: skip
    assert defaults.retain_max_per_queue == 100_000
    config = EngineConfig()
    assert (config.retain_succeeded, config.retain_dead, config.retain_max_per_queue) == (
        defaults.retain_succeeded, defaults.retain_dead, defaults.retain_max_per_queue
    )  # fmt: skip
    options = parse_options(
        ["--retain-succeeded", "90m", "--retain-dead", "2d", "--retain-cancelled", "30",
         "--retain-max-per-queue", "0"]
    )  # fmt: skip
    assert (options.retain_succeeded, options.retain_dead, options.retain_cancelled) == (
        5400.0,
        172800.0,
        30.0,
    )
    assert options.retain_max_per_queue == 0
    durations = ("500ms", "1.5s", ".5", "7d", "1h30m", "1w")
    assert [parse_duration(t, "--f") for t in durations] == [0.5, 1.5, 0.5, 604800.0, 5400.0, 604800.0]
    for bad in ("", "7y", "1h-30m", "inf"):
        with pytest.raises(OptionsError, match=r"--f .*not a duration"):
            parse_duration(bad, "--f")
    with pytest.raises(OptionsError, match=r"--f '-1' is negative"):
        parse_duration("-1", "--f")
