"""The memory suite on either store backend.

By default every test runs on SQLite, as ever. With ``PERSONA_TEST_STORE=postgres`` a
throwaway PostgreSQL server starts for the session (``tests/postgres_server.py``) and each
test gets a fresh schema, named in ``$PERSONA_STORE``, so every ``MemoryStore(dir)``
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

import pytest

from persona_sdk.memory.backends import STORE_ENV, open_backend
from persona_sdk.memory.schema import DB_FILENAME
from tests.postgres_server import (
    MISSING,
    ON_POSTGRES,
    PostgresServer,
    find_bin_dir,
    start_server,
)

_names = itertools.count()


def pytest_terminal_summary(terminalreporter) -> None:
    if ON_POSTGRES and find_bin_dir() is None:
        terminalreporter.write_line(f"memory suite on PostgreSQL: every test skipped. {MISSING}")


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
def _store_backend(postgres_server, store_templates, monkeypatch, tmp_path) -> Iterator[None]:
    """A fresh PostgreSQL schema per test on the PostgreSQL run (and a check that no
    store of the test, in this process or a child, fell back to a SQLite file)."""
    if not ON_POSTGRES:
        monkeypatch.delenv(STORE_ENV, raising=False)  # SQLite run: whatever the shell says
        yield
        return
    if postgres_server is None:
        pytest.skip(MISSING)
    name = f"test_{next(_names)}"
    monkeypatch.setenv(STORE_ENV, postgres_server.create_schema(name))
    yield
    postgres_server.drop_schema(name)
    store_templates.drop_copies()
    assert not list(tmp_path.rglob(DB_FILENAME)), "a store of this test used SQLite"


class StoreTemplates:
    """Data dirs built once and copied into many tests. On PostgreSQL a data dir is only
    half of a store: its database is built beside it and cloned with it."""

    def __init__(self, server: PostgresServer | None):
        self.server = server
        self.databases: dict[Path, str] = {}
        self.copies: list[str] = []

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
        """``template`` (closed) as this test's store in ``data_dir``: on PostgreSQL a
        clone of its database, which ``$PERSONA_STORE`` names until the test ends."""
        shutil.copytree(template, data_dir)
        if self.server is not None:
            name = f"persona_copy_{next(_names)}"
            self.copies.append(name)
            self.server.admin(f'CREATE DATABASE "{name}" TEMPLATE "{self.databases[template]}"')
            os.environ[STORE_ENV] = self.server.url(name)  # the test's monkeypatch restores it

    def drop_copies(self) -> None:
        while self.copies:
            self.server.drop_database(self.copies.pop())


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
