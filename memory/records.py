"""Rows of the memory store and the writes inside one user's transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from persona_sdk.memory import lexical


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
    exception_of: int | None = None  # the global rule this contextual exception overrides

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


MEMORY_COLUMNS = ", ".join(Memory.__dataclass_fields__)
INSERT_COLUMNS = (
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
    "exception_of",
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

    def __init__(self, conn: Any, user_id: str, now: str):
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
        placeholders = ", ".join("?" * (len(INSERT_COLUMNS) + 1))
        memory_id = int(
            self.conn.execute(
                f"INSERT INTO memories (user_id, {', '.join(INSERT_COLUMNS)}) "
                f"VALUES ({placeholders}) RETURNING id",
                (self.user_id, *(values.get(c) for c in INSERT_COLUMNS)),
            ).fetchone()[0]
        )
        if values.get("kind") == "rule":
            lexical.index_rule(
                self.conn, self.user_id, memory_id, values.get("text"), values.get("context")
            )
        return memory_id

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
        if "text" in fields or "context" in fields:
            text, context = self.conn.execute(
                "SELECT text, context FROM memories WHERE id = ?", (memory_id,)
            ).fetchone()
            lexical.index_rule(self.conn, self.user_id, memory_id, text, context)

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
            f"SELECT {MEMORY_COLUMNS}, embedding, text_embedding FROM memories "
            f"WHERE user_id = ? {where} ORDER BY id",
            (self.user_id, *params),
        ).fetchall()
        return [
            StoredRule(Memory(*row[:-2]), from_blob(row[-2]), from_blob(row[-1])) for row in rows
        ]
