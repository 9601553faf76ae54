"""--node-id, --cluster and --election-timeout: every mistake is refused with a message that says
what to fix, and nothing starts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from spitfire.raft import ClusterConfig, parse_members
from spitfire.server.cli import parse_options
from spitfire.server.options import OptionsError


def test_a_well_formed_cluster_is_parsed() -> None:
    opts = parse_options(
        ["--node-id", "b", "--cluster", "a=127.0.0.1:7901, b=127.0.0.1:7902,c=127.0.0.1:7903",
         "--election-timeout", "200ms"]
    )  # fmt: skip
    assert opts.cluster == ClusterConfig(
        "b",
        {"a": "127.0.0.1:7901", "b": "127.0.0.1:7902", "c": "127.0.0.1:7903"},
        (0.2, 0.4),
    )
    assert opts.cluster.raft_address == "127.0.0.1:7902"
    assert parse_options([]).cluster is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cluster", "a=127.0.0.1:7901"], "--node-id and --cluster go together"),
        (["--node-id", "a"], "--node-id and --cluster go together"),
        (["--node-id", "z", "--cluster", "a=127.0.0.1:7901"], "'z' is not in --cluster"),
        (["--node-id", "a", "--cluster", "a127.0.0.1:7901"], "is not ID=HOST:PORT"),
        (["--node-id", "a", "--cluster", "a=127.0.0.1:99999"], "is not ID=HOST:PORT"),
        (["--node-id", "a", "--cluster", "a=h:1,a=h:2"], "given twice"),
        (["--node-id", "a", "--cluster", "a=h:1,b=h:1"], "given twice"),
        (["--node-id", "a", "--cluster", "a=h:1", "--election-timeout", "1ms"], "between 10ms and 60s"),
    ],
)
def test_mistakes_are_refused_naming_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(OptionsError, match=message):
        parse_options(argv)


def test_parse_members_rejects_an_empty_item() -> None:
    with pytest.raises(ValueError, match="ID=HOST:PORT"):
        parse_members("a=127.0.0.1:1,,b=127.0.0.1:2")


def test_the_command_exits_2_and_says_why() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "spitfire.server.cli", "--node-id", "a", "--cluster", "nonsense"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--cluster" in proc.stderr and "ID=HOST:PORT" in proc.stderr


def test_the_raft_driver_is_parsed_and_a_wrong_one_refused(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--node-id", "a", "--cluster", "a=127.0.0.1:7901"]
    assert parse_options(base).cluster.driver == "loop"  # type: ignore[union-attr]
    assert parse_options([*base, "--raft-driver", "thread"]).cluster.driver == "thread"  # type: ignore[union-attr]
    with pytest.raises(SystemExit) as exited:
        parse_options([*base, "--raft-driver", "fibers"])
    assert exited.value.code == 2
    assert "--raft-driver" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--raft-driver 'fibers'"):
        ClusterConfig("a", {"a": "127.0.0.1:7901"}, driver="fibers")
