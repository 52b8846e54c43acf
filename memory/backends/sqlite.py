"""The embedded SQLite backend: one file in the data dir, WAL mode, ``BEGIN IMMEDIATE``.

Every write runs in one ``BEGIN IMMEDIATE`` transaction in WAL mode, so concurrent
writers (threads or processes) queue instead of failing, readers never block, and a
crash loses nothing that was acknowledged. ``secure_delete`` zeroes deleted rows, and
forgetting a user ends with ``VACUUM`` plus a WAL checkpoint so no freed page keeps text.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import sqlite_utils

from persona_sdk.errors import DataDirError, StoreError
from persona_sdk.memory.backends.dialect import SQLITE
from persona_sdk.memory.schema import DB_FILENAME, MIGRATIONS

CHECK_ON_OPEN_MAX_BYTES = 64 << 20  # quick_check reads the whole file: tens of ms below this
_DAMAGE_SIGNS = ("malformed", "not a database", "corrupt")


class Connection(sqlite3.Connection):
    """A sqlite3 connection that names its dialect (lexical SQL differs per backend)."""

    dialect = SQLITE


class SQLiteBackend:
    """``persona.db`` in the data dir, over one connection shared by the store's threads."""

    dialect = SQLITE
    migrations = MIGRATIONS
    # a bad row or statement from this code, not a damaged database: raised as they are
    bug_errors: tuple[type[Exception], ...] = (sqlite3.IntegrityError, sqlite3.ProgrammingError)

    def __init__(self, data_dir: Path):
        self.path = data_dir / DB_FILENAME
        self.location = str(self.path)
        if self.path.exists() and not self.path.is_file():
            raise DataDirError(f"{self.path} exists but is not a file")
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=60,
                isolation_level=None,
                check_same_thread=False,
                factory=Connection,
            )
            conn.execute("PRAGMA busy_timeout = 60000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA secure_delete = ON")  # deleted text is zeroed, not left in pages
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable persona database: {exc}") from exc
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self.damage: str | None = None  # once found, writes are refused (nothing lands in it)

    @contextlib.contextmanager
    def typed_errors(self) -> Iterator[None]:
        """Turn a damaged or locked database into :class:`StoreError`."""
        try:
            yield
        except self.bug_errors:
            raise
        except sqlite3.DatabaseError as exc:
            if any(sign in str(exc).lower() for sign in _DAMAGE_SIGNS):
                self.damage = str(exc)
            raise StoreError(
                f"{self.path}: {exc} (the database may be damaged; run `persona doctor`)"
            ) from exc

    def check_on_open(self) -> None:
        """``PRAGMA quick_check`` of a file up to :data:`CHECK_ON_OPEN_MAX_BYTES` (a bigger
        one is marked damaged when a read first meets a bad page)."""
        if self.path.stat().st_size > CHECK_ON_OPEN_MAX_BYTES:
            return
        with contextlib.suppress(StoreError):  # a read that fails marks the damage itself
            _check, status, detail = self.integrity()
            if status != "ok":
                self.damage = detail

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction; the caller holds the store lock. A damaged file takes
        no writes: they could land beside broken pages and be lost with them."""
        if self.damage is not None:
            raise StoreError(
                f"{self.path} is damaged ({self.damage}); writes are refused until it is "
                "restored from a backup (`persona doctor` shows the damage)"
            )
        conn = self.conn
        with self.typed_errors():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # a failed COMMIT already ended it
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self.typed_errors():
            return self.conn.execute(sql, params).fetchall()

    def compact(self, tables: Sequence[str]) -> None:
        """Rewrite the file so no deleted row survives in a free page (or in the WAL)."""
        try:
            self.conn.execute("VACUUM")
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:  # e.g. another process held a lock too long
            raise StoreError(str(exc)) from exc

    def integrity(self) -> tuple[str, str, str]:
        """SQLite's own page-level check: ``("sqlite", status, detail)``."""
        result = self.query("PRAGMA quick_check")[0][0]
        return "sqlite", "ok" if result == "ok" else "corrupt", result

    def damage_advice(self) -> str:
        return "restore persona.db from a backup"

    def close(self) -> None:
        """Close the connection (checkpoints the WAL when this is the last one)."""
        self.conn.close()
