"""SQLite store: the source of truth for users and their memories.

Every write runs in one ``BEGIN IMMEDIATE`` transaction in WAL mode, so concurrent
writers queue instead of failing, readers never block, and a crash loses nothing that
was acknowledged. Each user row carries ``memory_version``, bumped by every write that
changes what can be retrieved; the derived FAISS indexes compare against it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import sqlite_utils

from persona_sdk.errors import DataDirError, MemoryNotFoundError, StoreError, UnknownUserError

SCHEMA_VERSION = 4
KINDS = ("rule", "pair", "edit")
SOURCES = ("stated", "inferred", "onboarding")
DB_FILENAME = "persona.db"

# Memories a request can retrieve: valid rules and edit contexts. Pairs feed the reward model.
RETRIEVABLE_SQL = "(kind = 'rule' AND valid_to IS NULL) OR kind = 'edit'"

_MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
        """CREATE TABLE users (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            memory_version INTEGER NOT NULL DEFAULT 0,
            weights_version INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE memories (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('rule', 'pair', 'edit')),
            source TEXT NOT NULL CHECK (source IN ('stated', 'inferred', 'onboarding')),
            text TEXT,
            prompt TEXT,
            chosen TEXT,
            rejected TEXT,
            context TEXT,
            confidence REAL NOT NULL DEFAULT 1.0,
            support INTEGER NOT NULL DEFAULT 1,
            valid_from TEXT NOT NULL,
            valid_to TEXT,
            superseded_by INTEGER,
            origin_id INTEGER,
            embedding BLOB,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX idx_memories_user_kind ON memories (user_id, kind)",
        # One store-wide counter, so a forgotten and re-created user never reuses a version.
        "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
        "INSERT INTO counters VALUES ('memory_version', 0)",
    ],
    2: [
        # The (feature, direction) a rule expresses, e.g. "emoji:-": exact duplicate and
        # contradiction checks. The text's own embedding is kept for near-duplicate checks
        # (``embedding`` is what retrieval searches: the context, when there is one).
        "ALTER TABLE memories ADD COLUMN template TEXT",
        "ALTER TABLE memories ADD COLUMN text_embedding BLOB",
        "CREATE INDEX idx_memories_origin ON memories (origin_id)",
    ],
    3: [
        # Retrieval reloads a user's global rules after each write: read only those rows.
        "CREATE INDEX idx_memories_global_rules ON memories (user_id) "
        "WHERE kind = 'rule' AND valid_to IS NULL AND context IS NULL",
    ],
    4: [
        # Derived and rebuildable: each pair's feature difference φ(chosen) − φ(rejected)
        # under one featurizer, so refitting a user's reward weights never re-embeds.
        """CREATE TABLE pair_features (
            memory_id INTEGER PRIMARY KEY REFERENCES memories(id) ON DELETE CASCADE,
            user_id TEXT NOT NULL,
            featurizer TEXT NOT NULL,
            z BLOB NOT NULL
        )""",
        "CREATE INDEX idx_pair_features_user ON pair_features (user_id)",
    ],
}


def utc_now() -> str:
    """An ISO-8601 UTC timestamp with microseconds, sortable as text."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Memory:
    """One stored memory. ``text`` is the rule; pairs and edits use prompt/chosen/rejected."""

    id: int
    user_id: str
    kind: str
    source: str
    text: str | None
    prompt: str | None
    chosen: str | None
    rejected: str | None
    context: str | None
    confidence: float
    support: int
    valid_from: str
    valid_to: str | None
    superseded_by: int | None
    origin_id: int | None
    created_at: str
    template: str | None = None

    @property
    def is_valid(self) -> bool:
        """False once a newer memory superseded this one."""
        return self.valid_to is None

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class Write:
    """What a committed write touched, and the user's ``memory_version`` around it."""

    ids: list[int]
    previous_version: int
    version: int
    restored: list[int] = field(default_factory=list)


_MEMORY_COLUMNS = ", ".join(Memory.__dataclass_fields__)
_INSERT_COLUMNS = (
    "kind",
    "source",
    "text",
    "prompt",
    "chosen",
    "rejected",
    "context",
    "confidence",
    "support",
    "valid_from",
    "valid_to",
    "superseded_by",
    "origin_id",
    "template",
    "embedding",
    "text_embedding",
    "created_at",
)


def to_blob(vector: np.ndarray | None) -> bytes | None:
    return None if vector is None else np.asarray(vector, np.float32).tobytes()


def from_blob(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(blob, dtype=np.float32)


@dataclass(frozen=True)
class StoredRule:
    """A valid rule and its two embeddings (retrieval: context or text; and text)."""

    memory: Memory
    vector: np.ndarray | None
    text_vector: np.ndarray | None


class UserWrite:
    """Writes inside one user's transaction (see :meth:`MemoryStore.user_write`)."""

    def __init__(self, conn: sqlite3.Connection, user_id: str, now: str):
        self.conn, self.user_id, self.now = conn, user_id, now
        self.previous_version = self.version = 0

    def insert(self, row: dict) -> int:
        """Insert one memory; missing fields take their defaults."""
        defaults = {
            "source": "stated",
            "confidence": 1.0,
            "support": 1,
            "valid_from": self.now,
            "created_at": self.now,
        }
        values = {**defaults, **row}
        for key in ("embedding", "text_embedding"):
            values[key] = to_blob(values.get(key))
        placeholders = ", ".join("?" * (len(_INSERT_COLUMNS) + 1))
        cursor = self.conn.execute(
            f"INSERT INTO memories (user_id, {', '.join(_INSERT_COLUMNS)}) VALUES ({placeholders})",
            (self.user_id, *(values.get(c) for c in _INSERT_COLUMNS)),
        )
        return int(cursor.lastrowid)

    def update(self, memory_id: int, **fields) -> None:
        """Change fields of one of this user's memories."""
        for key in ("embedding", "text_embedding"):
            if key in fields:
                fields[key] = to_blob(fields[key])
        assignments = ", ".join(f"{key} = ?" for key in fields)
        self.conn.execute(
            f"UPDATE memories SET {assignments} WHERE id = ? AND user_id = ?",
            (*fields.values(), memory_id, self.user_id),
        )

    def starting_version(self) -> int:
        """The user's ``memory_version`` before this transaction's own writes."""
        row = self.conn.execute(
            "SELECT memory_version FROM users WHERE id = ?", (self.user_id,)
        ).fetchone()
        return row[0] if row else 0

    def valid_rules(self) -> list[StoredRule]:
        """The user's valid rules with their embeddings, inside this transaction."""
        return self._stored_rules("AND kind = 'rule' AND valid_to IS NULL", ())

    def stored_rule(self, memory_id: int) -> StoredRule:
        """One rule with its embeddings, as this transaction sees it."""
        return self._stored_rules("AND id = ?", (memory_id,))[0]

    def _stored_rules(self, where: str, params: tuple) -> list[StoredRule]:
        rows = self.conn.execute(
            f"SELECT {_MEMORY_COLUMNS}, embedding, text_embedding FROM memories "
            f"WHERE user_id = ? {where} ORDER BY id",
            (self.user_id, *params),
        ).fetchall()
        return [
            StoredRule(Memory(*row[:-2]), from_blob(row[-2]), from_blob(row[-1])) for row in rows
        ]


class MemoryStore:
    """The SQLite database of one data directory. Thread-safe; safe across processes."""

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir).expanduser()
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise DataDirError(f"data dir {self.data_dir} is a file, not a directory")
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataDirError(f"cannot create data dir {self.data_dir}: {exc.strerror}") from exc
        self.path = self.data_dir / DB_FILENAME
        if self.path.exists() and not self.path.is_file():
            raise DataDirError(f"{self.path} exists but is not a file")
        self._lock = threading.RLock()
        self.closed = False
        try:
            conn = sqlite3.connect(
                self.path, timeout=60, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout = 60000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA secure_delete = ON")  # deleted text is zeroed, not left in pages
            self.db = sqlite_utils.Database(conn)
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a usable persona database: {exc}") from exc

    # -- transactions and schema ---------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; nested calls join the outer one."""
        with self._lock:
            conn = self.db.conn
            if conn.in_transaction:
                yield conn
                return
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        """Run a read under the store lock: on this shared connection, a read that ran
        while another thread's write transaction is open would see uncommitted rows."""
        with self._lock:
            return self.db.execute(sql, params).fetchall()

    def _migrate(self) -> None:
        with self.transaction() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {current}; this persona-sdk knows "
                    f"{SCHEMA_VERSION}. Upgrade persona-sdk."
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    def close(self) -> None:
        """Close the connection (checkpoints the WAL when this is the last one)."""
        with self._lock:
            self.db.conn.close()
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

    def bump_version(self, conn: sqlite3.Connection, user_id: str) -> tuple[int, int]:
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
        """Delete the user's rows, then VACUUM so no deleted text survives in free pages."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM pair_features WHERE user_id = ?", (user_id,))
            conn.execute("DELETE FROM memories WHERE user_id = ?", (user_id,))
            conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
        try:
            with self._lock:
                self.db.conn.execute("VACUUM")
                self.db.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:  # e.g. another process held a lock too long
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
                "INSERT OR IGNORE INTO users (id, created_at) VALUES (?, ?)",
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
        found = self.memories(user_id, ids=[memory_id])
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
        # the user's whole (user_id, kind) index range (2.4x faster retrieval at 100k).
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
        sql = f"SELECT {_MEMORY_COLUMNS} FROM memories WHERE {' AND '.join(where)} ORDER BY id"
        return [Memory(*row) for row in self.query(sql, params)]

    def count_memories(self, user_id: str) -> dict[str, int]:
        counts = dict.fromkeys(KINDS, 0)
        for kind, count in self.query(
            "SELECT kind, COUNT(*) FROM memories WHERE user_id = ? GROUP BY kind", (user_id,)
        ):
            counts[kind] = count
        return counts

    def delete_memory(self, user_id: str, memory_id: int) -> Write:
        """Delete one memory. An edit takes its pair along (the same texts); rules it had
        superseded become valid again, and come back in ``Write.restored``."""
        with self.user_write(user_id) as session:
            conn = session.conn
            kind = conn.execute(
                "SELECT kind FROM memories WHERE id = ? AND user_id = ?", (memory_id, user_id)
            ).fetchone()
            if kind is None:
                raise MemoryNotFoundError(f"user {user_id!r} has no memory {memory_id}")
            deleted = [memory_id]
            if kind[0] == "edit":
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
            conn.execute(
                "UPDATE memories SET origin_id = NULL WHERE user_id = ? AND origin_id = ?",
                (user_id, memory_id),
            )
            restored = [
                r[0]
                for r in conn.execute(
                    "UPDATE memories SET valid_to = NULL, superseded_by = NULL "
                    "WHERE user_id = ? AND superseded_by = ? RETURNING id",
                    (user_id, memory_id),
                )
            ]
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
