"""The ``spitfire`` command line without a server: every command and flag has help text that
states its default, durations and sizes parse as people write them, and the SDK's wording is
turned into flags."""

from __future__ import annotations

import argparse

import pytest

from spitfire import cli
from spitfire.protocol.units import parse_duration, parse_size


def _parsers(
    parser: argparse.ArgumentParser, path: str = "spitfire"
) -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _parsers(sub, f"{path} {name}")
    return out


def optional(action: argparse.Action) -> bool:
    """A flag that may be left out, or an operand with a default."""
    return bool(action.option_strings and not action.required) or action.nargs == "?"


def test_every_command_and_flag_has_help_with_its_default() -> None:
    missing: list[str] = []
    for path, parser in _parsers(cli.build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    if not choice.help:
                        missing.append(f"{path} {choice.dest}: no help")
                continue
            what = f"{path} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                missing.append(f"{what}: no help")
            elif optional(action) and "default" not in action.help:
                missing.append(f"{what}: help does not give the default")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("2.5", 2.5), ("500ms", 0.5), ("30s", 30.0), ("10m", 600.0), ("1h30m", 5400.0),
     ("1d12h", 129600.0), ("1w", 604800.0), (" 5s ", 5.0), ("1H", 3600.0), ("0", 0.0)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [("-5s", "is negative"), ("-1", "is negative"), ("soon", "not a duration"), ("5x", "not a duration"),
     ("", "not a duration"), ("1h-3m", "not a duration"), ("inf", "not a duration"),
     ("nan", "not a duration"), ("s", "not a duration"), ("1e400", "not a duration"),
     ("9" * 400 + "d", "too long")],
)  # fmt: skip
def test_bad_durations_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_duration(text)
    assert "1h30m" in str(info.value) or "too long" in str(info.value)


@pytest.mark.parametrize(
    ("text", "size"),
    [("4096", 4096), ("1k", 1024), ("1K", 1024), ("512KiB", 512 * 1024), ("64MiB", 64 * 2**20),
     ("10MB", 10_000_000), ("1G", 2**30), ("1.5k", 1536), ("2 GiB", 2 * 2**30), ("0", 0), ("7b", 7)],
)  # fmt: skip
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "message"),
    [("-1k", "is negative"), ("1kk", "not a size"), ("x", "not a size"), ("0.3", "whole number"),
     ("", "not a size"), ("1 PB", "not a size")],
)  # fmt: skip
def test_bad_sizes_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_size(text)


def test_sdk_wording_becomes_flags() -> None:
    assert "--url" in cli._flags("cannot connect (set the address with url=... or SPITFIRE_URL)")
    assert "--connect-timeout" in cli._flags("no answer within 10 s (raise timeout=...)")
    assert cli._flags("priority: must be 0..10") == "--priority: must be 0..10"
    assert cli._flags("max_attempts: must be 1 or more") == "--max-attempts: must be 1 or more"
    assert cli._flags("something else: as it is") == "something else: as it is"


def test_a_negative_value_reaches_the_flag_type() -> None:
    assert cli._negatives(["enqueue", "q", "n", "--delay", "-5s"]) == ["enqueue", "q", "n", "--delay=-5s"]
    assert cli._negatives(["enqueue", "q", "-x"]) == ["enqueue", "q", "-x"]  # not after a value flag


def test_every_server_flag_has_help_with_its_default() -> None:
    from spitfire.server.cli import repair_parser, serve_parser

    missing = []
    for parser in (serve_parser(), repair_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            if not action.help or (optional(action) and "default" not in action.help):
                missing.append(f"{parser.prog} {'/'.join(action.option_strings)}: {action.help!r}")
    assert not missing, "\n".join(missing)
