"""The memory store: the source of truth for users and their memories.

Rows live in a backend (:mod:`persona_sdk.memory.backends`): the embedded SQLite file, or
a PostgreSQL server. Either way every write is one transaction, serialized with every
other writer, so a crash loses nothing that was acknowledged. Each user row carries
``memory_version``, taken from one store-wide counter by every write that changes what
can be retrieved; the derived FAISS indexes compare against it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from persona_sdk.errors import DataDirError, MemoryNotFoundError, StoreError, UnknownUserError
from persona_sdk.memory import lexical
from persona_sdk.memory.backends import Backend, open_backend
from persona_sdk.memory.records import (
    MEMORY_COLUMNS,
    Memory,
    StoredRule,
    UserWrite,
    Write,
    from_blob,
    to_blob,
    utc_now,
)
from persona_sdk.memory.schema import KINDS, RETRIEVABLE_SQL, SCHEMA_VERSION, SOURCES, TERMS_TABLE

__all__ = [
    "KINDS", "SCHEMA_VERSION", "SOURCES", "Memory", "MemoryStore", "StoredRule", "UserWrite",
    "Write", "from_blob", "to_blob", "utc_now",
]  # fmt: skip


MAX_ROWID = 2**63 - 1  # the largest 64-bit id (SQLite integer, PostgreSQL BIGINT)
USER_TABLES = ("pair_features", "memories", TERMS_TABLE, "users")  # what forget rewrites


def _unlink_superseded(
    conn: Any, user_id: str, memory_id: int, valid_to: str | None, successor: int | None
) -> list[int]:
    """After deleting ``memory_id``: the rules it superseded come back only if it was
    current; under a history entry they are handed on to its successor."""
    if valid_to is None:
        return [
            r[0]
            for r in conn.execute(
                "UPDATE memories SET valid_to = NULL, superseded_by = NULL "
                "WHERE user_id = ? AND superseded_by = ? RETURNING id",
                (user_id, memory_id),
            )
        ]
    conn.execute(
        "UPDATE memories SET superseded_by = ? WHERE user_id = ? AND superseded_by = ?",
        (successor, user_id, memory_id),
    )
    return []


class MemoryStore:
    """The memory database of one data directory. Thread-safe; safe across processes.

    ``url`` picks the backend: ``postgresql://…`` for a PostgreSQL server; ``None`` reads
    ``$PERSONA_STORE``, and when that is unset or empty the store is ``persona.db`` (SQLite)
    in ``data_dir``. The data dir holds the derived files (indexes, adapters) either way.
    """

    def __init__(self, data_dir: str | Path, url: str | None = None):
        self.data_dir = Path(data_dir).expanduser()
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise DataDirError(f"data dir {self.data_dir} is a file, not a directory")
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataDirError(f"cannot create data dir {self.data_dir}: {exc.strerror}") from exc
        self.backend: Backend = open_backend(self.data_dir, url)
        self.dialect = self.backend.dialect
        self.location = self.backend.location
        self._lock = threading.RLock()
        self._open: Any = None  # the connection of the transaction in progress, if any
        self.closed = False
        try:
            self._migrate()
            self.backend.check_on_open()
        except BaseException:
            self.backend.close()
            raise

    @property
    def path(self) -> Path | None:
        """The SQLite file (``None`` on PostgreSQL)."""
        return self.backend.path

    @property
    def db(self) -> Any:
        """The sqlite-utils ``Database`` (SQLite only: tools, benchmarks, tests)."""
        db = getattr(self.backend, "db", None)
        if db is None:
            raise StoreError(f"{self.location} is not a SQLite store")
        return db

    # -- transactions and schema ---------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """One write transaction; nested calls join the outer one. A damaged database
        or a lost server raises :class:`StoreError` with nothing written."""
        with self._lock:
            if self._open is not None:
                yield self._open
                return
            with self.backend.transaction() as conn:
                self._open = conn
                try:
                    yield conn
                finally:
                    self._open = None

    def query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """Run a read (SQL in SQLite's syntax, see :mod:`.backends.dialect`) under the
        store lock: on this shared connection, a read that ran while another thread's
        write transaction is open would see uncommitted rows."""
        with self._lock:
            return self.backend.query(sql, params)

    # -- reward features of pairs (derived; see persona_sdk.reward.rewards) -------------

    def pair_features(
        self, user_id: str, featurizer: str
    ) -> list[tuple[int, str, str, str, np.ndarray | None]]:
        """Every pair of the user, oldest first: ``(id, prompt, chosen, rejected, z)`` with
        ``z = φ(chosen) − φ(rejected)`` under ``featurizer`` when stored, else ``None``."""
        rows = self.query(
            "SELECT m.id, m.prompt, m.chosen, m.rejected, f.z FROM memories m "
            "LEFT JOIN pair_features f ON f.memory_id = m.id AND f.featurizer = ? "
            "WHERE m.user_id = ? AND m.kind = 'pair' ORDER BY m.id",
            (featurizer, user_id),
        )
        return [(i, p, c, r, from_blob(z)) for i, p, c, r, z in rows]

    def save_pair_features(
        self, user_id: str, featurizer: str, features: dict[int, np.ndarray]
    ) -> None:
        """Store computed pair features, skipping pairs deleted meanwhile."""
        with self.transaction() as conn:
            live = {
                row[0]
                for row in conn.execute(
                    "SELECT id FROM memories WHERE user_id = ? AND kind = 'pair'", (user_id,)
                )
            }
            conn.executemany(
                "INSERT INTO pair_features (memory_id, user_id, featurizer, z) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (memory_id) DO UPDATE SET "
                "user_id = excluded.user_id, featurizer = excluded.featurizer, z = excluded.z",
                [(i, user_id, featurizer, to_blob(z)) for i, z in features.items() if i in live],
            )

    def _migrate(self) -> None:
        migrations = self.backend.migrations
        with self.transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.location} has schema version {current}; this persona-sdk knows "
                    f"{SCHEMA_VERSION}. Upgrade persona-sdk."
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in migrations[version]:
                    conn.execute(statement)
                if version == 6:  # the lexical index of the rules stored so far
                    for memory_id, user_id, text, context in conn.execute(
                        "SELECT id, user_id, text, context FROM memories WHERE kind = 'rule'"
                    ).fetchall():
                        lexical.index_rule(conn, user_id, memory_id, text, context)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    def close(self) -> None:
        """Close the connection (SQLite checkpoints the WAL when this is the last one)."""
        with self._lock:
            self.backend.close()
            self.closed = True

    # -- meta ----------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- users ---------------------------------------------------------------------------

    def user_exists(self, user_id: str) -> bool:
        return bool(self.query("SELECT 1 FROM users WHERE id = ?", (user_id,)))

    def require_user(self, user_id: str) -> None:
        if not self.user_exists(user_id):
            raise UnknownUserError(f"unknown user {user_id!r}")

    def users(self) -> list[str]:
        return [row[0] for row in self.query("SELECT id FROM users ORDER BY id")]

    def memory_version(self, user_id: str) -> int:
        rows = self.query("SELECT memory_version FROM users WHERE id = ?", (user_id,))
        return rows[0][0] if rows else 0

    def bump_version(self, conn: Any, user_id: str) -> tuple[int, int]:
        """Give the user a fresh version inside the caller's transaction: (before, after)."""
        before = conn.execute(
            "SELECT memory_version FROM users WHERE id = ?", (user_id,)
        ).fetchone()[0]
        after = conn.execute(
            "UPDATE counters SET value = value + 1 WHERE name = 'memory_version' RETURNING value"
        ).fetchone()[0]
        conn.execute("UPDATE users SET memory_version = ? WHERE id = ?", (after, user_id))
        return before, after

    def delete_user(self, user_id: str) -> None:
        """Delete the user's rows, then compact the touched tables (SQLite: ``VACUUM``;
        PostgreSQL: ``VACUUM FULL``) so no deleted text survives in free pages."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM pair_features WHERE user_id = ?", (user_id,))
            conn.execute("DELETE FROM memories WHERE user_id = ?", (user_id,))
            lexical.drop_user(conn, user_id)
            conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
        try:
            with self._lock:
                self.backend.compact(USER_TABLES)
        except StoreError as exc:
            raise StoreError(
                f"{user_id!r} was deleted, but compacting the database failed ({exc}); "
                "run `persona doctor` or forget again to finish wiping freed pages"
            ) from exc

    # -- memories ------------------------------------------------------------------------

    @contextlib.contextmanager
    def user_write(self, user_id: str) -> Iterator[UserWrite]:
        """One transaction of writes to one user; the version bump comes with the commit."""
        with self.transaction() as conn:
            session = UserWrite(conn, user_id, utc_now())
            conn.execute(
                "INSERT INTO users (id, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (user_id, session.now),
            )
            yield session
            session.previous_version, session.version = self.bump_version(conn, user_id)

    def add_memories(self, user_id: str, rows: Sequence[dict]) -> Write:
        """Insert memories for one user atomically; returns their ids in order.

        Each row holds Memory fields plus optional ``embedding`` / ``text_embedding``.
        """
        with self.user_write(user_id) as session:
            ids = [session.insert(row) for row in rows]
        return Write(ids, session.previous_version, session.version)

    def get_memory(self, user_id: str, memory_id: int) -> Memory:
        """One memory of the user (``MemoryNotFoundError`` otherwise)."""
        found = self.memories(user_id, ids=[memory_id]) if 0 < memory_id <= MAX_ROWID else []
        if not found:
            raise MemoryNotFoundError(f"user {user_id!r} has no memory {memory_id}")
        return found[0]

    def memories(
        self,
        user_id: str,
        kind: str | None = None,
        include_superseded: bool = True,
        ids: Sequence[int] | None = None,
        origins: Sequence[int] | None = None,
    ) -> list[Memory]:
        """The user's memories, oldest first, optionally filtered (``origins``: derived
        from these memories, e.g. the rules an edit taught)."""
        # With explicit ids, "+user_id" keeps SQLite on rowid lookups instead of scanning
        # the user's whole (user_id, kind) index range (2.4x faster retrieval at 100k);
        # PostgreSQL's dialect drops the hint.
        where, params = ["+user_id = ?" if ids is not None else "user_id = ?"], [user_id]
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if not include_superseded:
            where.append("valid_to IS NULL")
        if ids is not None:
            where.append(f"id IN ({', '.join('?' * len(ids))})")
            params.extend(int(i) for i in ids)
        if origins is not None:
            where.append(f"origin_id IN ({', '.join('?' * len(origins))})")
            params.extend(int(i) for i in origins)
        sql = f"SELECT {MEMORY_COLUMNS} FROM memories WHERE {' AND '.join(where)} ORDER BY id"
        return [Memory(*row) for row in self.query(sql, params)]

    def count_memories(self, user_id: str) -> dict[str, int]:
        counts = dict.fromkeys(KINDS, 0)
        for kind, count in self.query(
            "SELECT kind, COUNT(*) FROM memories WHERE user_id = ? GROUP BY kind", (user_id,)
        ):
            counts[kind] = count
        return counts

    def delete_memory(self, user_id: str, memory_id: int) -> Write:
        """Delete one memory. An edit takes its pair along (the same texts). Deleting the
        current rule makes the rules it had superseded valid again (``Write.restored``);
        deleting a history entry revives nothing: what it had superseded stays closed,
        now superseded by the deleted entry's own successor."""
        if not 0 < memory_id <= MAX_ROWID:
            raise MemoryNotFoundError(f"user {user_id!r} has no memory {memory_id}")
        with self.user_write(user_id) as session:
            conn = session.conn
            row = conn.execute(
                "SELECT kind, valid_to, superseded_by FROM memories WHERE id = ? AND user_id = ?",
                (memory_id, user_id),
            ).fetchone()
            if row is None:
                raise MemoryNotFoundError(f"user {user_id!r} has no memory {memory_id}")
            kind, valid_to, successor = row
            deleted = [memory_id]
            if kind == "edit":
                deleted += [
                    r[0]
                    for r in conn.execute(
                        "SELECT id FROM memories WHERE user_id = ? AND origin_id = ? "
                        "AND kind = 'pair'",
                        (user_id, memory_id),
                    )
                ]
            marks = ", ".join("?" * len(deleted))
            conn.execute(
                f"DELETE FROM memories WHERE user_id = ? AND id IN ({marks})", (user_id, *deleted)
            )
            lexical.drop_rules(conn, deleted)
            for column in ("origin_id", "exception_of"):
                conn.execute(
                    f"UPDATE memories SET {column} = NULL WHERE user_id = ? AND {column} = ?",
                    (user_id, memory_id),
                )
            restored = _unlink_superseded(conn, user_id, memory_id, valid_to, successor)
        return Write(deleted, session.previous_version, session.version, restored)

    def embeddings(
        self, user_id: str, ids: Sequence[int], retrievable_only: bool = False
    ) -> dict[int, np.ndarray]:
        """Retrieval embeddings of some of the user's memories (only the retrievable ones
        when asked: what the user's index should hold for those ids)."""
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        scope = f"AND ({RETRIEVABLE_SQL})" if retrievable_only else ""
        rows = self.query(
            f"SELECT id, embedding FROM memories WHERE user_id = ? AND id IN ({marks}) "
            f"AND embedding IS NOT NULL {scope}",
            (user_id, *ids),
        )
        return {r[0]: from_blob(r[1]) for r in rows}

    def retrievable_embeddings(self, user_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of every retrievable memory of the user, to (re)build its index."""
        rows = self._retrievable(user_id, "id, embedding")
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        if not rows:
            return ids, np.zeros((0, 0), dtype=np.float32)
        return ids, np.stack([from_blob(r[1]) for r in rows])

    def retrievable_ids(self, user_id: str) -> list[int]:
        return [row[0] for row in self._retrievable(user_id, "id")]

    def _retrievable(self, user_id: str, columns: str) -> list[tuple]:
        return self.query(
            f"SELECT {columns} FROM memories WHERE user_id = ? AND ({RETRIEVABLE_SQL}) "
            "AND embedding IS NOT NULL ORDER BY id",
            (user_id,),
        )
