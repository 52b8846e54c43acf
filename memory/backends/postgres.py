"""The PostgreSQL backend, through psycopg 3: one store shared by many processes or hosts.

Same semantics as SQLite: each write is one transaction, and writers are serialized by a
transaction-scoped advisory lock taken first thing (SQLite's ``BEGIN IMMEDIATE``), so the
store-wide ``memory_version`` counter only ever grows and a write's reads see every write
committed before it. Reads run outside transactions (autocommit) and never block.
Forgetting ends with ``VACUUM FULL`` of the touched tables, which rewrites them into new
files and truncates the old ones (plain ``VACUUM`` only marks dead tuples reusable and
leaves their bytes in the pages). WAL retention is documented in ARCHITECTURE.md.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence

import psycopg

from persona_sdk.errors import StoreError
from persona_sdk.memory.backends.dialect import POSTGRES
from persona_sdk.memory.backends.pg_schema import PG_MIGRATIONS

WRITE_LOCK = 0x7065_7273_6F6E_6131  # advisory lock key of the store's writers ("persona1")
CONNECT_TIMEOUT_S = 30
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]*@")


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    return _PASSWORD.sub(r"\1***@", url)


class Connection:
    """A psycopg connection that takes SQLite-style SQL (see :mod:`.dialect`)."""

    dialect = POSTGRES

    def __init__(self, conn: psycopg.Connection):
        self.raw = conn

    def execute(self, sql: str, params: Sequence = ()) -> psycopg.Cursor:
        return self.raw.execute(POSTGRES.translate(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence]) -> None:
        with self.raw.cursor() as cursor:
            cursor.executemany(POSTGRES.translate(sql), [tuple(r) for r in rows])


class PostgresBackend:
    """A PostgreSQL database (``postgresql://…``) over one connection per store."""

    dialect = POSTGRES
    migrations = PG_MIGRATIONS
    path = None  # no file of its own in the data dir
    # a bad row or statement from this code, not an unusable server: raised as they are
    bug_errors: tuple[type[Exception], ...] = (psycopg.IntegrityError, psycopg.ProgrammingError)

    def __init__(self, url: str):
        self.location = redact(url)
        self._url = url
        self.conn = self._connect()

    def _connect(self) -> Connection:
        try:
            raw = psycopg.connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            raise StoreError(f"cannot connect to the store {self.location}: {exc}") from exc
        return Connection(raw)

    def _live(self) -> Connection:
        """The connection, opened afresh if the last one was lost (a server restart, a
        dropped network): a long-lived replica outlives its sessions."""
        if self.conn.raw.closed:
            self.conn = self._connect()
        return self.conn

    @contextlib.contextmanager
    def typed_errors(self) -> Iterator[None]:
        """Turn a lost connection or a server error into :class:`StoreError`."""
        try:
            yield
        except self.bug_errors:
            raise
        except psycopg.Error as exc:
            raise StoreError(f"{self.location}: {exc}".strip()) from exc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction, serialized with every other writer of the database."""
        with self.typed_errors():
            conn = self._live()
            with conn.raw.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
                yield conn

    def query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """A read; retried once on a new connection when the old one turns out lost
        (a read is safe to repeat; a write is not, and is never retried)."""
        with self.typed_errors():
            try:
                cursor = self._live().execute(sql, params)
            except psycopg.OperationalError:
                if not self.conn.raw.closed:
                    raise
                cursor = self._live().execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def compact(self, tables: Sequence[str]) -> None:
        """``VACUUM FULL``: new files for the tables (and their TOAST and indexes), the
        old ones truncated at once, so no deleted tuple's bytes stay in ``base/``."""
        try:
            self._live().raw.execute(f"VACUUM FULL {', '.join(tables)}")
        except psycopg.Error as exc:
            raise StoreError(str(exc).strip()) from exc

    def integrity(self) -> tuple[str, str, str]:
        """A sanity query; PostgreSQL's files are the server's to check, not ours."""
        count = self.query("SELECT COUNT(*) FROM memories")[0][0]
        version = self.conn.raw.info.server_version
        detail = (
            f"sanity query ok ({count} memories; server {version // 10000}.{version % 10000}); "
            "file-level checks do not apply to PostgreSQL (use the server's amcheck or "
            "pg_checksums)"
        )
        return "postgres", "ok", detail

    def check_on_open(self) -> None:
        """Nothing: the server checks its own pages (``amcheck``, ``pg_checksums``)."""

    def damage_advice(self) -> str:
        return f"check the server behind {self.location}"

    def close(self) -> None:
        self.conn.raw.close()
