"""Server URL parsing: tcp:// and quic://, defaults, SPITFIRE_URL, and clear errors."""

from __future__ import annotations

import pytest

from spitfire import InvalidURL
from spitfire._connection import quic_verify
from spitfire._url import DEFAULT_URL, Endpoint, parse_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("tcp://127.0.0.1:7878", Endpoint("tcp", "127.0.0.1", 7878)),
        ("quic://example.com:9000", Endpoint("quic", "example.com", 9000)),
        ("TCP://localhost", Endpoint("tcp", "localhost", 7878)),
        ("tcp://[::1]:7000", Endpoint("tcp", "::1", 7000)),
        ("tcp://[::1]", Endpoint("tcp", "::1", 7878)),
        ("tcp://host:1/", Endpoint("tcp", "host", 1)),
    ],
)
def test_parses_valid_urls(url: str, expected: Endpoint) -> None:
    assert parse_url(url) == expected


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("127.0.0.1:7878", "no scheme"),
        ("http://127.0.0.1:7878", "tcp:// or quic://"),
        ("tcp://:7878", "no host"),
        ("tcp://host:0", "port must be"),
        ("tcp://host:70000", "port must be"),
        ("tcp://host:abc", "port must be"),
        ("tcp://::1:7878", "brackets"),
        ("tcp://host:1/path", "no path"),
        ("tcp://user@host:1", "no path or user"),
    ],
)
def test_rejects_invalid_urls_with_a_hint(url: str, says: str) -> None:
    with pytest.raises(InvalidURL, match=says):
        parse_url(url)


def test_defaults_to_env_then_localhost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPITFIRE_URL", raising=False)
    assert parse_url(None) == parse_url(DEFAULT_URL) == Endpoint("tcp", "127.0.0.1", 7878)
    monkeypatch.setenv("SPITFIRE_URL", "quic://10.0.0.5:1234")
    assert parse_url(None) == Endpoint("quic", "10.0.0.5", 1234)
    assert parse_url("tcp://a:1") == Endpoint("tcp", "a", 1)  # an explicit URL wins


def test_url_round_trips() -> None:
    assert parse_url("tcp://[::1]:7000").url == "tcp://[::1]:7000"
    assert parse_url("quic://h").url == "quic://h:7878"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.5.5.5", True), ("::1", True), ("localhost", True),
     ("10.0.0.1", False), ("example.com", False), ("::", False)],
)  # fmt: skip
def test_self_signed_certificates_are_accepted_only_on_loopback(host: str, loopback: bool) -> None:
    endpoint = Endpoint("quic", host, 7878)
    assert endpoint.is_loopback is loopback
    assert quic_verify(endpoint, None) == (not loopback, None)
    assert quic_verify(endpoint, "/ca.pem") == (True, "/ca.pem")
