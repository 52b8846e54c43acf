"""The memory suite on either store backend.

By default every test runs on SQLite, as ever. With ``PERSONA_TEST_STORE=postgres`` a
throwaway PostgreSQL server starts for the session (``tests/postgres_server.py``) and each
test gets a fresh database, named in ``$PERSONA_STORE``, so every ``MemoryStore(dir)``
and ``Persona.open(dir)`` of the test (and of the writer processes it starts) lands on
PostgreSQL. Tests about SQLite's own files are marked :func:`sqlite_only`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from persona_sdk.memory.backends import STORE_ENV, open_backend
from tests.postgres_server import MISSING, ON_POSTGRES, PostgresServer, start_server

_names = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | None]:
    """The session's PostgreSQL server on the PostgreSQL run; ``None`` on SQLite."""
    if not ON_POSTGRES:
        yield None
        return
    server = start_server()
    try:
        yield server
    finally:
        if server is not None:
            server.stop()


@pytest.fixture(autouse=True)
def _store_backend(postgres_server, monkeypatch) -> Iterator[None]:
    """A fresh PostgreSQL database per test on the PostgreSQL run."""
    if not ON_POSTGRES:
        monkeypatch.delenv(STORE_ENV, raising=False)  # SQLite run: whatever the shell says
        yield
        return
    if postgres_server is None:
        pytest.skip(MISSING)
    name = f"persona_test_{next(_names)}"
    monkeypatch.setenv(STORE_ENV, postgres_server.create_database(name))
    yield
    postgres_server.drop_database(name)


class StoreTemplates:
    """Data dirs built once and copied into many tests. On PostgreSQL a data dir is only
    half of a store: its database is built beside it and cloned with it."""

    def __init__(self, server: PostgresServer | None):
        self.server = server
        self.databases: dict[Path, str] = {}

    @contextlib.contextmanager
    def building(self, data_dir: Path) -> Iterator[None]:
        """While open, new stores of ``data_dir`` land in its own template database."""
        if self.server is None:
            yield
            return
        name = f"persona_template_{next(_names)}"
        self.databases[data_dir] = name
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(STORE_ENV, self.server.create_database(name))
            yield

    def copy(self, template: Path, data_dir: Path) -> None:
        """``template`` (closed) as this test's store in ``data_dir``."""
        shutil.copytree(template, data_dir)
        if self.server is not None:
            name = urlsplit(os.environ[STORE_ENV]).path.lstrip("/")  # this test's database
            self.server.drop_database(name)
            self.server.admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.databases[template]}"')


@pytest.fixture(scope="session")
def store_templates(postgres_server) -> StoreTemplates:
    return StoreTemplates(postgres_server)


@pytest.fixture
def store_files(postgres_server) -> Callable[[Path], dict[Path, bytes]]:
    """``files(data_dir)``: every file that may hold the store's bytes, with its content:
    the data dir (SQLite's file, its WAL, the indexes), plus on PostgreSQL the cluster's
    table files (``base/``, after a checkpoint; ``pg_wal`` excluded, see ARCHITECTURE.md)."""

    def files(data_dir: Path) -> dict[Path, bytes]:
        found = {p: p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file()}
        if postgres_server is not None:
            found.update(postgres_server.table_files())
        return found

    return files


@pytest.fixture
def old_store() -> Callable[[Path, int, list[tuple[str, tuple]]], None]:
    """``old_store(data_dir, version, rows)``: a store as schema ``version`` left it, on
    the backend in effect, holding ``rows`` (``(sql, params)`` in SQLite's syntax)."""
    return _build_old_store


def _build_old_store(data_dir: Path, version: int, rows: list[tuple[str, tuple]]) -> None:
    backend = open_backend(data_dir)
    try:
        with backend.transaction() as conn:
            conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            for step in range(1, version + 1):
                for statement in backend.migrations[step]:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?)", (step,))
            for sql, params in rows:
                conn.execute(sql, params)
    finally:
        backend.close()
