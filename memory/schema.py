"""The SQLite schema of a data directory: its migrations, kinds and sources."""

from __future__ import annotations

SCHEMA_VERSION = 6
KINDS = ("rule", "pair", "edit")
SOURCES = ("stated", "inferred", "onboarding")
DB_FILENAME = "persona.db"
TERMS_TABLE = "rule_terms"  # FTS5: see memory/lexical.py

# Memories a request can retrieve: valid rules and edit contexts. Pairs feed the reward model.
RETRIEVABLE_SQL = "(kind = 'rule' AND valid_to IS NULL) OR kind = 'edit'"

MIGRATIONS: dict[int, list[str]] = {
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
    5: ["ALTER TABLE users DROP COLUMN weights_version"],  # never read
    6: [
        # The global rule an exception overrides in its context (retrieval drops that rule
        # when the exception applies). Not exported: import re-derives it by template.
        "ALTER TABLE memories ADD COLUMN exception_of INTEGER",
        # Lexical retrieval beside the dense one: each rule's words and concepts, keyed by
        # memory id, with the user as one indexed token so a search sees one user only.
        # Existing rules are indexed by MemoryStore._migrate (terms are stemmed in Python).
        f"CREATE VIRTUAL TABLE {TERMS_TABLE} USING fts5(user_key, terms)",
    ],
}
