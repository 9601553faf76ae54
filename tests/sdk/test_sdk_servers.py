"""Several server addresses in one URL (or a list), and where a client goes next when a cluster member
answers NOT_LEADER (spitfire._servers, sans-I/O)."""

from __future__ import annotations

import pytest

from spitfire import InvalidURL
from spitfire._servers import TOKEN_BYTES, Servers, new_token
from spitfire._url import MAX_ADDRESSES, Endpoint, format_urls, parse_urls

A, B, C = Endpoint("tcp", "h1", 1), Endpoint("tcp", "h2", 2), Endpoint("tcp", "h3", 3)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("tcp://h1:1", (A,)),
        ("tcp://h1:1,h2:2,h3:3", (A, B, C)),
        ("tcp://h1:1, h2:2 ,h3:3/", (A, B, C)),
        ("TCP://h1:1,h1:1,h2:2", (A, B)),  # duplicates dropped, order kept
        ("quic://[::1]:9,localhost", (Endpoint("quic", "::1", 9), Endpoint("quic", "localhost", 7878))),
        (["tcp://h1:1", "tcp://h2:2,h3:3"], (A, B, C)),
        (("tcp://h3:3",), (C,)),
    ],
)
def test_parses_several_addresses(url: str | list[str], expected: tuple[Endpoint, ...]) -> None:
    assert parse_urls(url) == expected


def test_one_address_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPITFIRE_URL", "tcp://h1:1,h2:2")
    assert parse_urls(None) == (A, B)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("tcp://h1:1,,h2:2", "empty address"),
        ("tcp://h1:1,", "empty address"),
        ("tcp://h1:1,h2:0", "port must be"),
        ("tcp://h1:1,h2:2/path", "no path"),
        (["tcp://h1:1", "quic://h2:2"], "mixes schemes"),
        ([], "no server URL"),
        ("tcp://" + ",".join(f"h{i}:1" for i in range(MAX_ADDRESSES + 1)), f"at most {MAX_ADDRESSES}"),
        (["h1:1"], "no scheme"),
    ],
)
def test_refuses_bad_lists(url: str | list[str], says: str) -> None:
    with pytest.raises(InvalidURL, match=says):
        parse_urls(url)


def test_format_urls_names_every_address_once() -> None:
    assert format_urls([A]) == "tcp://h1:1"
    assert format_urls([A, B, Endpoint("tcp", "::1", 4)]) == "tcp://h1:1,h2:2,[::1]:4"


def test_one_address_is_not_a_cluster() -> None:
    s = Servers([A])
    assert not s.multi and s.current == A and s.order() == [A] and s.url == "tcp://h1:1"
    s.follow(None)
    assert s.current == A


def test_follows_the_named_leader_and_rotates_while_none_is_known() -> None:
    s = Servers([A, B, C])
    assert s.multi and s.order() == [A, B, C]
    s.follow("h3:3")
    assert s.current == C and s.order() == [C, A, B]
    s.follow(None)  # an election: the next address
    assert s.current == A
    s.follow("not a host:port:x")  # unparseable: like none known
    assert s.current == B


def test_a_leader_outside_the_list_is_tried_first_then_the_list() -> None:
    s = Servers([A, B])
    s.follow("10.0.0.9:7878")
    leader = Endpoint("tcp", "10.0.0.9", 7878)
    assert s.current == leader and s.order() == [leader, A, B]
    s.connected(B)
    assert s.current == B


def test_a_leader_on_every_interface_is_reached_at_the_member_host() -> None:
    s = Servers([Endpoint("tcp", "h1", 1), Endpoint("tcp", "h2", 2)])
    s.follow("0.0.0.0:2")
    assert s.current == Endpoint("tcp", "h1", 2)


def test_tokens_are_random_16_bytes() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000 and {len(t) for t in tokens} == {TOKEN_BYTES}
