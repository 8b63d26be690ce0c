"""A throwaway PostgreSQL server for tests and benchmarks: Debian's binaries, its own data
directory, a free port on 127.0.0.1, stopped (and its files removed) on exit.

PostgreSQL refuses to run as root, and CI runs as root: then the server runs as the
``postgres`` user (``runuser``), in a folder that user owns. Each test gets a database of its
own (:meth:`PostgresServer.create_database`), so tests never see each other's rows; a database
is cheap (a copy of ``template0``: a few tens of milliseconds).
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: Set (to anything but "" or "0") where a missing PostgreSQL must fail the tests instead of
#: skipping them: .ci/run sets it.
REQUIRED_ENV = "IMAGEBOT_POSTGRES_REQUIRED"
#: Set to ``postgresql`` to run the tests that build a whole bot's settings (the harness,
#: the runner's tests) on PostgreSQL instead of a SQLite file: :func:`scratch_database_url`.
DATABASE_ENV = "IMAGEBOT_TEST_DATABASE"
#: The superuser the test server is created with; tests connect as it, without a password
#: (``trust`` on 127.0.0.1 only).
USER = "imagebot"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries on this machine (install Debian's ``postgresql`` package)."""


def find_bindir() -> Path:
    """The folder with ``initdb`` and ``pg_ctl``: ``$PG_BINDIR``, else the newest Debian one."""
    override = os.environ.get("PG_BINDIR")
    candidates = [override] if override else sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    for folder in reversed(candidates):
        if folder and (Path(folder) / "initdb").exists():
            return Path(folder)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise PostgresUnavailable(
        "no PostgreSQL binaries (initdb) found: apt-get install postgresql, or set PG_BINDIR"
    )


def required() -> bool:
    return os.environ.get(REQUIRED_ENV, "") not in ("", "0")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """``with PostgresServer() as server: url = server.create_database()``."""

    def __init__(self, bindir: Path | None = None) -> None:
        self.bindir = bindir or find_bindir()
        self.port = 0
        self._root: Path | None = None
        self._names = itertools.count(1)
        self._as_postgres = os.geteuid() == 0

    @property
    def data_dir(self) -> Path:
        assert self._root is not None, "the server is not started"
        return self._root / "data"

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL (asyncpg driver) of ``database`` on this server."""
        return f"postgresql+asyncpg://{USER}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        """The same, as a libpq/asyncpg DSN (``postgresql://…``)."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        self._root = Path(tempfile.mkdtemp(prefix="imagebot-pg-"))
        if self._as_postgres:
            shutil.chown(self._root, "postgres", "postgres")
        self.port = free_port()
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        # Durability off: a test server's data is thrown away, and fsync costs seconds.
        options = (
            f"-p {self.port} -k {self._root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run(
            "pg_ctl", "-D", str(self.data_dir), "-l", str(self._root / "log"), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip
        return self

    def stop(self) -> None:
        if self._root is None:
            return
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self._root, ignore_errors=True)
        self._root = None

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its SQLAlchemy URL."""
        name = name or f"test_{os.getpid()}_{next(self._names)}"
        self.psql(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with psql; its output (tuples only, unaligned)."""
        psql = shutil.which("psql") or str(self.bindir / "psql")
        done = subprocess.run(
            [psql, "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", self.dsn(database),
             "-c", sql],
            check=True, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return done.stdout

    def log_text(self) -> str:
        """The server's log so far (for a failing test's report)."""
        if self._root is None:
            return ""
        path = self._root / "log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)
        except subprocess.CalledProcessError as error:
            raise RuntimeError(
                f"{tool} failed ({error.returncode}): {error.stderr or error.stdout}"
            ) from None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A started server, stopped on exit (benchmarks)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


_shared: PostgresServer | None = None
#: The database each folder got, so settings made twice for one test (a restart) share it,
#: as they share the SQLite file in that folder.
_databases: dict[Path, str] = {}


def shared_server() -> PostgresServer:
    """This process's server, started on first use and stopped when the process exits (or
    when the test session ends: :func:`stop_shared_server`)."""
    global _shared
    if _shared is None:
        _shared = PostgresServer().start()
        atexit.register(stop_shared_server)
    return _shared


def stop_shared_server() -> None:
    global _shared
    if _shared is not None:
        _shared.stop()
        _shared = None
        _databases.clear()


def scratch_database_url(folder: Path) -> str:
    """The database of a test's bot whose files live in ``folder``: ``folder/bot.db``, or a
    new PostgreSQL database of its own when ``IMAGEBOT_TEST_DATABASE=postgresql``, so the
    whole suite can run on either engine without a test naming one."""
    engine = os.environ.get(DATABASE_ENV, "sqlite")
    if engine == "sqlite":
        return f"sqlite+aiosqlite:///{folder / 'bot.db'}"
    if engine != "postgresql":
        raise ValueError(f"{DATABASE_ENV}={engine!r}: use sqlite or postgresql")
    key = folder.resolve()
    if key not in _databases:
        _databases[key] = shared_server().create_database()
    return _databases[key]
