"""A throwaway PostgreSQL server for the tests (``PERSONA_TEST_STORE=postgres``).

``initdb`` into a fresh temp dir, ``pg_ctl start`` listening on a unix socket in that dir
only (no TCP), stopped and deleted at the end of the session. PostgreSQL refuses to run
as root, so under root the server runs as the ``postgres`` user (Debian's package creates
it) and the temp dir is handed to it. Each test gets its own schema in one database
(creating a database per test costs a third of a second; a schema, a millisecond).

Missing binaries skip the PostgreSQL run with a message, except under ``CI=true`` or
``PERSONA_REQUIRE_POSTGRES=1``, where they fail it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ON_POSTGRES = os.environ.get("PERSONA_TEST_STORE", "").lower() in ("postgres", "postgresql")
SERVER_USER = "postgres"  # the superuser initdb creates, and the OS user under root
TEST_DATABASE = "persona_tests"  # where the tests' schemas live
SETTINGS = {
    "listen_addresses": "''",  # the unix socket only
    "fsync": "off",  # a test server: client crashes are tested, not power loss
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "32MB",
}


def sqlite_only(reason: str) -> pytest.MarkDecorator:
    """Skip a test on the PostgreSQL run: it is about SQLite's own files."""
    return pytest.mark.skipif(ON_POSTGRES, reason=f"SQLite only: {reason}")


def postgres_required() -> bool:
    return os.environ.get("CI") == "true" or os.environ.get("PERSONA_REQUIRE_POSTGRES") == "1"


def find_bin_dir() -> Path | None:
    """The directory with ``initdb`` and ``pg_ctl``: ``$PERSONA_PG_BIN`` when set, else
    Debian's newest ``/usr/lib/postgresql/*/bin``, else ``PATH``."""
    if os.environ.get("PERSONA_PG_BIN"):
        candidates = [os.environ["PERSONA_PG_BIN"]]
    else:
        debian = glob.glob("/usr/lib/postgresql/*/bin")
        candidates = sorted(debian, key=lambda p: int(Path(p).parent.name), reverse=True)
        found = shutil.which("initdb")
        candidates += [str(Path(found).parent)] if found else []
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


class PostgresServer:
    """One cluster in a temp dir: :attr:`data` (its files) and :meth:`url` per database."""

    def __init__(self, bin_dir: Path, settings: dict[str, str] | None = None):
        self.bin_dir = bin_dir
        self.settings = {**SETTINGS, **(settings or {})}  # e.g. fsync on, for a benchmark
        self.root = Path(tempfile.mkdtemp(prefix="persona-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.as_root = os.geteuid() == 0
        self._admin = self._tests = None

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stderr or done.stdout}{log}")

    def start(self) -> PostgresServer:
        if self.as_root:  # the server's user must own its dir
            owner = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", SERVER_USER, "--auth=trust",
                  "--encoding=UTF8", "--locale=C", "--no-sync")  # fmt: skip
        options = " ".join(f"-c {k}={v}" for k, v in self.settings.items())
        options += f" -k {self.root}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                  "start")  # fmt: skip
        self.create_database(TEST_DATABASE)
        return self

    def stop(self) -> None:
        for conn in (self._admin, self._tests):
            if conn is not None:
                conn.close()
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SERVER_USER}@/{database}?host={self.root}"

    def admin(self, sql: str) -> list[tuple]:
        """Run one statement as the superuser, outside any transaction."""
        import psycopg

        if self._admin is None:
            self._admin = psycopg.connect(self.url(), autocommit=True)
        cursor = self._admin.execute(sql)
        return cursor.fetchall() if cursor.description else []

    def create_database(self, name: str) -> str:
        self.admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def create_schema(self, name: str) -> str:
        """A fresh schema in the tests' database; the URL whose tables land in it."""
        self.admin_in_tests(f'CREATE SCHEMA "{name}"')
        return f"{self.url(TEST_DATABASE)}&options=-csearch_path%3D{name}"

    def drop_schema(self, name: str) -> None:
        """Drop a test's schema, and end the connections its test left open (a store
        nobody closed) so they never pile up to ``max_connections``."""
        self.admin_in_tests(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{TEST_DATABASE}' AND pid <> pg_backend_pid()"
        )
        self.admin_in_tests(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

    def admin_in_tests(self, sql: str) -> None:
        import psycopg

        if self._tests is None:
            self._tests = psycopg.connect(self.url(TEST_DATABASE), autocommit=True)
        self._tests.execute(sql)

    def table_files(self) -> dict[Path, bytes]:
        """Every file of the cluster's databases (``base/``), after a checkpoint has
        written every dirty page. ``pg_wal`` is left out: see ARCHITECTURE.md."""
        self.admin("CHECKPOINT")
        files = sorted(p for p in (self.data / "base").rglob("*") if p.is_file())
        return {p: p.read_bytes() for p in files}


def start_server() -> PostgresServer | None:
    """A started server, or ``None`` (with the reason in :data:`MISSING`) when there are
    no PostgreSQL binaries and none is required."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        if postgres_required():
            pytest.fail(MISSING + " (required: CI=true or PERSONA_REQUIRE_POSTGRES=1)")
        return None
    return PostgresServer(bin_dir).start()


MISSING = (
    "PostgreSQL not found: no initdb and pg_ctl in $PERSONA_PG_BIN, "
    "/usr/lib/postgresql/*/bin or PATH (install Debian's postgresql package)"
)
