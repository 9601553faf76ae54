"""A throwaway PostgreSQL server for the peer benchmarks (pgqueuer, procrastinate), stopped by PID.

`Postgres` runs ``initdb`` into a fresh temporary directory, starts ``postgres`` on a free loopback
port (its unix socket in that directory, never the system's), creates the database ``bench`` and
hands out ``.url``. Everything is PostgreSQL's defaults (``fsync=on``, ``full_page_writes=on``,
``wal_sync_method`` the platform's) except ``synchronous_commit``, which is the comparison's knob:
``on`` (default, a commit waits for its WAL flush) or ``off`` (commits return before the flush,
a crash may lose the last ~3x``wal_writer_delay`` = 600 ms of commits, like Redis's everysec).

PostgreSQL refuses to run as root. Run as root (as the harness is on a fresh Debian machine), the
server runs as an unprivileged system user, ``spitfirebench``, created with ``useradd`` if missing
(falling back to the ``postgres`` user the Debian package creates); the data directory is chowned
to it. When none of that is possible `PostgresUnavailable` says why, and callers turn it into a skip.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from perf.server_proc import free_port, stop_process

#: The unprivileged account the server runs as when the harness runs as root.
BENCH_USER = "spitfirebench"
#: Seconds the server gets to accept connections before the benchmark gives up.
START_TIMEOUT = 60.0
#: Seconds ``pg_ctl stop -m fast`` gets before the postmaster is killed.
STOP_TIMEOUT = 30.0
#: Where Debian's and the upstream packages put the server binaries.
BIN_DIRS = ("/usr/lib/postgresql/{v}/bin", "/usr/local/pgsql/bin")
SUPPORTED_VERSIONS = ("17", "16", "15", "14", "13")


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be started here (no binaries, no unprivileged user, initdb failed...)."""


def find_bin_dir() -> Path:
    """The directory holding ``initdb``, ``postgres`` and ``pg_ctl``."""
    candidates: list[Path] = []
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        candidates.append(Path(pg_ctl).resolve().parent)
    candidates += [Path(d.format(v=v)) for d in BIN_DIRS for v in SUPPORTED_VERSIONS]
    for d in candidates:
        if all((d / name).is_file() for name in ("initdb", "postgres", "pg_ctl")):
            return d
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, postgres, pg_ctl) not found on PATH or under "
        "/usr/lib/postgresql/*/bin (apt-get install postgresql)"
    )


def run_as_user() -> pwd.struct_passwd | None:
    """The account to run the server as: None when not root, else an unprivileged one (created)."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(BENCH_USER)
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    try:
        subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", BENCH_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(BENCH_USER)
    except (OSError, subprocess.CalledProcessError, KeyError) as e:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam("postgres")  # the Debian package's account
        detail = getattr(e, "stderr", b"") or b""
        raise PostgresUnavailable(
            f"running as root and could not create the unprivileged user {BENCH_USER!r} for "
            f"PostgreSQL ({e}; {detail.decode(errors='replace').strip()})"
        ) from e


class Postgres:
    """A PostgreSQL server in a temporary directory on a free loopback port (a context manager)."""

    def __init__(self, synchronous_commit: str = "on", database: str = "bench") -> None:
        if synchronous_commit not in ("on", "off", "local", "remote_write", "remote_apply"):
            raise ValueError(f"synchronous_commit={synchronous_commit!r}")
        self.synchronous_commit = synchronous_commit
        self.database = database
        self.port = 0
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.bin_dir: Path | None = None
        self.account: pwd.struct_passwd | None = None
        self.user = ""

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory (PGDATA)."""
        assert self.dir is not None
        return self.dir / "data"

    @property
    def log_path(self) -> Path:
        """The server's output (stdout and stderr)."""
        assert self.dir is not None
        return self.dir / "postgres.log"

    @property
    def url(self) -> str:
        """``postgresql://USER@127.0.0.1:PORT/bench`` (trust authentication on loopback)."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _as_account(self) -> dict[str, Any]:
        """Popen keywords that run a child as the server's account (none when not root)."""
        if self.account is None:
            return {}
        return {"user": self.account.pw_uid, "group": self.account.pw_gid, "extra_groups": []}

    def _run(self, cmd: list[str], what: str) -> None:
        """Run a PostgreSQL tool as the server's account; a failure is `PostgresUnavailable`."""
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=120, **self._as_account())
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PostgresUnavailable(f"{what} failed: {e}") from e
        if done.returncode != 0:
            out = (done.stdout + done.stderr).decode(errors="replace").strip()[-2000:]
            raise PostgresUnavailable(f"{what} failed ({done.returncode}): {out}")

    def _temp_root(self) -> str | None:
        """Where the data directory goes: the usual temp dir, unless the server's account could not
        reach it (a TMPDIR under /root, say), then /var/tmp or /tmp (both world-traversable)."""
        if self.account is None:
            return None
        for root in (tempfile.gettempdir(), "/var/tmp", "/tmp"):
            p = Path(root).resolve()
            if all(os.stat(d).st_mode & 0o001 for d in (p, *p.parents)):
                return str(p)
        raise PostgresUnavailable(f"no temporary directory the user {self.user!r} can reach")

    def start(self) -> Postgres:
        """initdb, start the server, wait until it accepts connections, create the database."""
        self.bin_dir = find_bin_dir()
        self.account = run_as_user()
        self.user = self.account.pw_name if self.account else pwd.getpwuid(os.geteuid()).pw_name
        self.dir = Path(tempfile.mkdtemp(prefix="spitfire-peers-pg-", dir=self._temp_root()))
        try:
            if self.account is not None:
                os.chown(self.dir, self.account.pw_uid, self.account.pw_gid)
            self._run(
                [
                    str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.user,
                    "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions",
                ],
                "initdb",
            )  # fmt: skip
            self._launch()
            self._run(
                [
                    str(self.bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
                    "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c", f"CREATE DATABASE {self.database}",
                ],
                "CREATE DATABASE",
            )  # fmt: skip
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self) -> None:
        """Start ``postgres`` on a free port and wait until it accepts connections."""
        assert self.bin_dir is not None and self.dir is not None
        self.port = free_port()
        cmd = [
            str(self.bin_dir / "postgres"), "-D", str(self.data_dir),
            "-h", "127.0.0.1", "-p", str(self.port), "-k", str(self.dir),
            "-c", f"synchronous_commit={self.synchronous_commit}",
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            if self.account is not None:
                os.fchown(log.fileno(), self.account.pw_uid, self.account.pw_gid)
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **self._as_account()
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PostgresUnavailable(f"postgres exited ({self.proc.returncode}):\n{self.log()}")
            # The postmaster listens before it is ready; the socket file appears with the listener.
            if (self.dir / f".s.PGSQL.{self.port}").exists() and self._accepts():
                return
            time.sleep(0.05)
        raise PostgresUnavailable(
            f"postgres did not accept connections within {START_TIMEOUT} s:\n{self.log()}"
        )

    def _accepts(self) -> bool:
        """Whether the server accepts connections yet (pg_isready, else a TCP connect)."""
        assert self.bin_dir is not None
        isready = self.bin_dir / "pg_isready"
        if not isready.is_file():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False
        cmd = [str(isready), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", "postgres"]
        return subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0

    def log(self) -> str:
        """The tail of the server's output, for error messages."""
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except (OSError, AssertionError):
            return ""

    def stop(self) -> None:
        """``pg_ctl stop -m fast`` (a SIGINT to our postmaster), then SIGTERM/SIGKILL by PID; rm the dir."""
        if self.proc is not None:
            if self.proc.poll() is None and self.bin_dir is not None:
                with contextlib.suppress(PostgresUnavailable):
                    self._run(
                        [str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w",
                         "-t", str(int(STOP_TIMEOUT))],
                        "pg_ctl stop",
                    )  # fmt: skip
            stop_process(self.proc, timeout=STOP_TIMEOUT)
            self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> Postgres:
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


if __name__ == "__main__":
    # Smoke test: start, query, stop.
    import sys

    with Postgres(sys.argv[1] if len(sys.argv) > 1 else "on") as pg:
        print(pg.url, flush=True)
        out = subprocess.run(
            [
                str(pg.bin_dir / "psql"),
                pg.url,
                "-Atc",
                "SHOW synchronous_commit; SHOW fsync; SELECT version()",
            ]
            if pg.bin_dir
            else [],
            capture_output=True,
            text=True,
        )
        print(out.stdout, out.stderr)
