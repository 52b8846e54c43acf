"""The store (SQLite, or PostgreSQL on the PostgreSQL run) and the per-user FAISS
indexes derived from it."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import psycopg
import pytest

from persona_sdk import DataDirError, MemoryNotFoundError, Persona, StoreError
from persona_sdk.memory.index import IndexManager, user_file_stem
from persona_sdk.memory.store import SCHEMA_VERSION, MemoryStore
from tests.postgres_server import ON_POSTGRES, sqlite_only

# a row this code should never write: raised as it is on both backends
BAD_ROW = (sqlite3.IntegrityError, psycopg.IntegrityError)


def unit(seed: int, dim: int = 8) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return vector / np.linalg.norm(vector)


def rule(text: str, seed: int) -> dict:
    return {"kind": "rule", "source": "stated", "text": text, "embedding": unit(seed)}


def test_schema_and_versioning(tmp_path):
    store = MemoryStore(tmp_path)
    assert store.dialect.name == ("postgres" if ON_POSTGRES else "sqlite")
    assert store.query("SELECT MAX(version) FROM schema_version")[0][0] == SCHEMA_VERSION
    columns = ("kind", "source", "confidence", "support", "context", "valid_from", "valid_to",
               "superseded_by", "embedding", "created_at")  # fmt: skip
    assert store.query(f"SELECT {', '.join(columns)} FROM memories") == []
    first = store.add_memories("u", [rule("a", 1), rule("b", 2)])
    second = store.add_memories("u", [rule("c", 3)])
    assert first.ids == [1, 2] and second.ids == [3]
    assert second.previous_version == first.version == store.memory_version("u") - 1
    store.close()
    again = MemoryStore(tmp_path)  # reopening migrates nothing and keeps everything
    assert [m.text for m in again.memories("u")] == ["a", "b", "c"]
    assert again.query("SELECT COUNT(*) FROM schema_version")[0][0] == SCHEMA_VERSION
    again.close()


@sqlite_only("the journal mode of the file")
def test_sqlite_runs_in_wal_mode(tmp_path):
    store = MemoryStore(tmp_path)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_both_backends_have_every_migration():
    from persona_sdk.memory.backends.pg_schema import PG_MIGRATIONS
    from persona_sdk.memory.schema import MIGRATIONS

    assert sorted(PG_MIGRATIONS) == sorted(MIGRATIONS) == list(range(1, SCHEMA_VERSION + 1))


def test_newer_schema_is_refused(tmp_path):
    store = MemoryStore(tmp_path)
    with store.transaction() as conn:
        conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    store.close()
    with pytest.raises(StoreError, match="Upgrade persona-sdk"):
        MemoryStore(tmp_path)


def test_data_dir_that_is_a_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("not a dir")
    with pytest.raises(DataDirError, match="is a file"):
        MemoryStore(target)
    assert target.read_text() == "not a dir"


@sqlite_only("garbles the database file")
def test_garbage_database_is_a_typed_error(tmp_path):
    (tmp_path / "persona.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        MemoryStore(tmp_path)


def test_failed_transaction_leaves_nothing(tmp_path):
    store = MemoryStore(tmp_path)
    store.add_memories("u", [rule("kept", 1)])
    with pytest.raises(BAD_ROW):
        store.add_memories("u", [rule("lost", 2), {"kind": "bogus", "text": "x"}])
    assert [m.text for m in store.memories("u")] == ["kept"]
    assert store.memory_version("u") == 1
    assert store.query("SELECT value FROM counters") == [(1,)]


def test_delete_memory_is_scoped_to_its_user(tmp_path):
    store = MemoryStore(tmp_path)
    [mine] = store.add_memories("me", [rule("mine", 1)]).ids
    store.add_memories("other", [rule("theirs", 2)])
    with pytest.raises(MemoryNotFoundError):
        store.delete_memory("other", mine)
    store.delete_memory("me", mine)
    assert store.memories("me") == []
    assert [m.text for m in store.memories("other")] == ["theirs"]


def test_index_follows_store_and_survives_file_damage(tmp_path):
    store = MemoryStore(tmp_path)
    store.add_memories("u", [rule(f"r{i}", i) for i in range(5)])
    store.add_memories(
        "u", [{"kind": "pair", "prompt": "p", "chosen": "a", "rejected": "b", "embedding": unit(9)}]
    )
    manager = IndexManager(store, dim=8)
    index = manager.get("u")
    assert index.ids() == [1, 2, 3, 4, 5]  # pairs are not retrievable
    assert index.search(unit(3), 1)[0].memory_id == 4
    manager.flush()
    index_path, manifest_path = manager.paths("u")
    assert index_path.name == f"{user_file_stem('u')}.faiss"
    assert json.loads(manifest_path.read_text())["count"] == 5

    fresh = IndexManager(store, dim=8)
    assert fresh.get("u").ids() == index.ids() and fresh.rebuilds == 0  # loaded from disk

    index_path.write_bytes(b"corrupt")
    damaged = IndexManager(store, dim=8)
    assert damaged.get("u").ids() == index.ids() and damaged.rebuilds == 1

    index_path.unlink()
    missing = IndexManager(store, dim=8)
    assert missing.get("u").ids() == index.ids() and missing.rebuilds == 1


def test_stale_index_from_another_writer_is_rebuilt(tmp_path):
    writer_a, writer_b = MemoryStore(tmp_path), MemoryStore(tmp_path)
    manager = IndexManager(writer_a, dim=8)
    writer_a.add_memories("u", [rule("one", 1)])
    assert manager.get("u").ids() == [1]
    writer_b.add_memories("u", [rule("two", 2)])  # a second process writes
    assert manager.get("u").ids() == [1, 2]
    manager.flush()
    writer_b.delete_memory("u", 1)
    assert IndexManager(writer_b, dim=8).get("u").ids() == [2]  # old file is stale: rebuilt


def test_persona_index_mirrors_writes_without_rebuilding(persona):
    user = persona.user("alice")
    user.add_rule("Answer in one sentence.")
    user.add_rule("Use British spelling.")
    before = persona.indexes.rebuilds  # a new user's index starts empty: nothing to rebuild
    third = user.add_rule("Keep emails short", context="emails to my manager")
    user.delete_memory(1)
    assert persona.indexes.get("alice").ids() == [2, third.id]
    assert persona.indexes.rebuilds == before


def test_recreated_user_never_sees_a_forgotten_index(persona, tmp_path):
    other = Persona.open(persona.data_dir, model=persona.host, embedder=persona.embedder)
    persona.user("eve").add_rule("secret rule")
    assert [r.text for r in other.user("eve").explain("anything").rules] == ["secret rule"]
    persona.user("eve").forget()
    persona.user("eve").add_rule("new rule")
    # ``other`` cached eve's old index; the store-wide version makes it stale, not reused.
    assert [r.text for r in other.user("eve").explain("anything").rules] == ["new rule"]
    other.close()


def test_a_version_1_store_is_migrated_and_backfilled(tmp_path, tiny_host, embedder, old_store):
    old_store(  # a store as version 1 wrote it
        tmp_path,
        1,
        [
            ("INSERT INTO users (id, created_at, memory_version) VALUES ('old', 't', 1)", ()),
            (
                "INSERT INTO memories (user_id, kind, source, text, valid_from, embedding, "
                "created_at) VALUES ('old', 'rule', 'stated', 'Use emojis.', "
                "'2026-01-01T00:00:00', ?, 't')",
                (embedder.encode_one("Use emojis.").tobytes(),),
            ),
        ],
    )
    with Persona.open(tmp_path, model=tiny_host, embedder=embedder) as persona:
        versions = persona.store.query("SELECT version FROM schema_version ORDER BY version")
        assert [v[0] for v in versions] == list(range(1, SCHEMA_VERSION + 1))
        assert persona.user("old").rules()[0].template is None  # new column, old row intact
        report = persona.doctor()
        assert report.ok and any(
            c["check"] == "embeddings" and c["repaired"] for c in report.checks
        )
        # the backfilled text embedding lets consolidation see the old rule
        assert persona.user("old").add_rule("Use emojis!").support == 2


def test_valid_rules_are_reused_between_writes_unless_someone_else_wrote(
    persona, tiny_host, embedder
):
    user = persona.user("alice")
    user.add_rule("Use emojis.")
    cached = persona.memory._rule_sets["alice"]
    assert cached.version == persona.store.memory_version("alice")
    user.add_rule("Cite your sources.")
    assert persona.memory._rule_sets["alice"] is cached  # resumed, not re-read
    other = Persona.open(persona.data_dir, model=tiny_host, embedder=embedder)
    other.user("alice").add_rule("Never use emojis.")  # another writer moves the version on
    other.close()
    reply = user.add_rule("Use emojis!")  # must see the other writer's rule: contradiction
    assert persona.memory._rule_sets["alice"] is not cached
    texts = {r.text for r in user.rules()}
    assert texts == {"Cite your sources.", "Use emojis!"}
    assert reply is not None and reply.text == "Use emojis!"


def test_a_store_refuses_another_embedder(persona, tiny_host, embedder):
    persona.user("alice").add_rule("Use emojis.")
    persona.store.set_meta("embedder", "some-other-model:768")  # as if built with another
    reopened = Persona.open(persona.data_dir, model=tiny_host, embedder=embedder)
    with pytest.raises(StoreError, match="built with embedder some-other-model:768"):
        reopened.user("alice").explain("hello")
    reopened.close()


def test_other_threads_never_read_an_uncommitted_write(persona, embedder):
    import threading

    user = persona.user("alice")
    user.add_rule("Always answer in French.")
    seen: dict[str, list[str]] = {}
    reader = threading.Thread(
        target=lambda: seen.setdefault("rules", [r.text for r in user.explain("hello").rules])
    )
    vector = embedder.encode_one("Sign every reply as Bob.")
    with pytest.raises(RuntimeError), persona.store.user_write("alice") as session:
        session.insert(
            {
                "kind": "rule",
                "text": "Sign every reply as Bob.",
                "embedding": vector,
                "text_embedding": vector,
            }
        )
        reader.start()  # it waits for the store lock instead of reading our open transaction
        raise RuntimeError("roll back")
    reader.join(timeout=30)
    assert seen["rules"] == ["Always answer in French."]
    assert [r.text for r in user.explain("hello").rules] == ["Always answer in French."]


def test_doctor_repairs_are_seen_by_other_processes_caches(persona, tiny_host, embedder):
    user = persona.user("alice")
    user.add_rule("Always answer in French.")
    user.add_rule("Never use emojis.")
    with persona.store.transaction() as conn:  # a rule loses its embeddings
        conn.execute("UPDATE memories SET embedding = NULL, text_embedding = NULL WHERE id = 2")
    other = Persona.open(persona.data_dir, model=tiny_host, embedder=embedder)
    assert len(other.user("alice").explain("hello").rules) == 1  # caches filled without it
    assert persona.doctor().ok
    assert len(other.user("alice").explain("hello").rules) == 2  # the repair bumped the version
    other.close()


def test_index_cache_is_bounded_and_saves_what_it_evicts(tmp_path):
    store = MemoryStore(tmp_path)
    manager = IndexManager(store, dim=8, max_cached_bytes=2 * 8 * 4)  # two one-vector indexes
    for n, user in enumerate(("a", "b", "c")):
        write = store.add_memories(user, [rule(f"{user} rule", n)])
        manager.apply(user, write, add=[(write.ids[0], unit(n))])
    assert list(manager._cache) == ["b", "c"]  # "a" was least recently used
    assert manager.inspect("a") == "ok"  # and was saved before it was dropped
    rebuilds = manager.rebuilds
    assert manager.get("a").ids() == [1] and manager.rebuilds == rebuilds  # loaded, not rebuilt
    assert list(manager._cache) == ["c", "a"]


def test_the_store_is_chosen_by_url_argument_option_or_environment(cli, monkeypatch):
    """``--store`` (and ``Persona.open(store=)``) pick the backend; ``$PERSONA_STORE`` is
    the default; unset or empty means SQLite in the data dir."""
    import os

    from persona_sdk.memory.backends import STORE_ENV

    url = os.environ.get(STORE_ENV, "")  # the run's backend: a PostgreSQL schema, or SQLite
    monkeypatch.delenv(STORE_ENV, raising=False)
    cli.ok("--store", url, "add-rule", "alice", "Use emojis.")
    assert [r["text"] for r in cli.json("--store", url, "rules", "alice")] == ["Use emojis."]
    with Persona.open(cli.data, store=url) as persona:
        assert persona.store.dialect.name == ("postgres" if url else "sqlite")
        assert [r.text for r in persona.user("alice").rules()] == ["Use emojis."]
    assert (cli.data / "persona.db").exists() == (not url)
    if url:  # the environment variable is the option's default
        monkeypatch.setenv(STORE_ENV, url)
        assert [r["text"] for r in cli.json("rules", "alice")] == ["Use emojis."]
    for bad in ("mysql://x", "persona.db"):
        result = cli("--store", bad, "users")
        assert result.exit_code == 2 and "unsupported store" in result.output


def test_an_unreachable_server_is_a_typed_error_without_the_password(tmp_path):
    url = "postgresql://me:s3cret@/persona?host=/nonexistent-socket-dir&connect_timeout=2"
    with pytest.raises(StoreError, match="cannot connect") as caught:
        MemoryStore(tmp_path, url=url)
    assert "s3cret" not in str(caught.value) and "me:***@" in str(caught.value)


@pytest.mark.skipif(not ON_POSTGRES, reason="PostgreSQL only: a server session can be lost")
def test_a_lost_server_session_is_reopened(tmp_path):
    import os

    from persona_sdk.memory.backends import STORE_ENV

    store = MemoryStore(tmp_path)
    store.add_memories("u", [rule("before", 1)])
    pid = store.query("SELECT pg_backend_pid()")[0][0]
    with psycopg.connect(os.environ[STORE_ENV], autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert store.users() == ["u"]  # a read is retried on a new session
    store.add_memories("u", [rule("after", 2)])
    assert [m.text for m in store.memories("u")] == ["before", "after"]
    store.close()
