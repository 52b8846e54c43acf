"""Store backends: where :class:`~persona_sdk.memory.store.MemoryStore` keeps its rows.

Two implementations of one small interface (:class:`Backend`): SQLite, the embedded
default (``persona.db`` in the data dir), and PostgreSQL, chosen by a
``postgresql://…`` URL (the ``store`` argument, ``persona --store`` or
``$PERSONA_STORE``). The data dir stays the home of derived files on both.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from persona_sdk.errors import InvalidInputError
from persona_sdk.memory.backends.dialect import Dialect

STORE_ENV = "PERSONA_STORE"
PG_SCHEMES = ("postgresql://", "postgres://")


class Backend(Protocol):
    """What the store needs from a database."""

    dialect: Dialect
    migrations: dict[int, list[str]]
    location: str  # for messages: the file, or the URL without its password
    path: Path | None  # the database file, when there is one
    bug_errors: tuple[type[Exception], ...]

    def typed_errors(self) -> AbstractContextManager[None]: ...

    def transaction(self) -> AbstractContextManager[Any]: ...

    def query(self, sql: str, params: Sequence = ()) -> list[tuple]: ...

    def compact(self, tables: Sequence[str]) -> None: ...

    def integrity(self) -> tuple[str, str, str]: ...

    def check_on_open(self) -> None:
        """After migration: find damage early, so writes into a damaged store are refused."""

    def damage_advice(self) -> str: ...

    def close(self) -> None: ...


def store_url(url: str | None = None) -> str | None:
    """The store URL in effect: ``url``, else ``$PERSONA_STORE``; ``None`` for SQLite."""
    if url is None:
        url = os.environ.get(STORE_ENV, "")
    if not isinstance(url, str):
        raise InvalidInputError(f"store must be a URL string, not {type(url).__name__}")
    url = url.strip()
    if url in ("", "sqlite", "sqlite:"):
        return None
    if not url.startswith(PG_SCHEMES):
        raise InvalidInputError(
            f"unsupported store {url[:40]!r}: use postgresql://… or leave it unset for the "
            "embedded SQLite file"
        )
    return url


def open_backend(data_dir: Path, url: str | None = None) -> Backend:
    """The backend for ``url`` (see :func:`store_url`); SQLite lives in ``data_dir``."""
    resolved = store_url(url)
    if resolved is None:
        from persona_sdk.memory.backends.sqlite import SQLiteBackend

        return SQLiteBackend(data_dir)
    from persona_sdk.memory.backends.postgres import PostgresBackend  # psycopg only when asked

    return PostgresBackend(resolved)
