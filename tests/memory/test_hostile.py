"""Every reproducer of the memory hostile test (../shared/reports/memory-hostile-test.md)
through the Python API: A (rule lifecycle), B (bad input), D (corruption), E (forget).
Each test names its reproducer; the CLI ones are in tests/cli/test_hostile_cli.py."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random

import numpy as np
import psycopg
import pytest

from persona_sdk import Persona, PersonaError, RetrievalConfig
from persona_sdk.errors import InvalidInputError, MemoryNotFoundError, StoreError
from persona_sdk.memory.backends import STORE_ENV
from persona_sdk.memory.index import user_file_stem
from persona_sdk.reward.features import EmbeddingCache, text_key
from tests.postgres_server import ON_POSTGRES, sqlite_only

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def texts(rules) -> list[str]:
    return [r.text for r in rules]


# -- A: rule lifecycle ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Always use emojis", "Never use emojis"),
        ("Use bullet points", "Don't use bullet points"),
        ("Use headings", "Don't use headings"),
        ("Include code examples", "Never include code examples"),
        ("Use a sign-off", "Don't use a sign-off"),
    ],
)
def test_a1_a_negation_is_stored_and_wins(persona, first, second):
    user = persona.user("a1")
    old = user.add_rule(first)
    new = user.add_rule(second)
    assert (new.text, new.support) == (second, 1) and new.id != old.id
    assert texts(user.rules(include_superseded=True)) == [first, second]
    assert texts(user.rules()) == [second]
    assert texts(user.explain("Write a note to a friend").rules) == [second]


def test_a1_the_same_in_one_context(persona):
    user = persona.user("a1")
    user.add_rule("Use emojis", context="texts to friends")
    new = user.add_rule("Don't use emojis", context="texts to friends")
    assert texts(user.rules()) == ["Don't use emojis"] and new.context == "texts to friends"


def test_a2_a_changed_value_supersedes(persona):
    user = persona.user("a2")
    user.add_rule("Keep emails under 100 words")
    new = user.add_rule("Keep emails under 50 words")
    assert new.text == "Keep emails under 50 words" and texts(user.rules()) == [new.text]


def test_a3_a_contextual_exception_is_kept_beside_the_global_rule(persona):
    user = persona.user("a3")
    general = user.add_rule("Use emojis")
    exception = user.add_rule("Don't use emojis", context="emails to my manager")
    assert exception.id != general.id and exception.context == "emails to my manager"
    assert texts(user.rules()) == ["Use emojis", "Don't use emojis"]
    assert texts(user.explain("Write an email to my manager").rules) == ["Don't use emojis"]


def test_a4_one_rule_for_two_contexts_never_becomes_global(persona):
    user = persona.user("a4")
    user.add_rule("Keep it under 100 words", context="emails to my manager")
    user.add_rule("Keep it under 100 words", context="texts to my mom")
    rules = user.rules()
    assert [r.context for r in rules] == ["emails to my manager", "texts to my mom"]
    essay = user.explain("Write a detailed 2000-word essay on Roman history")
    assert "Keep it under 100 words" not in texts(essay.rules)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Reply in French", "Reply in English"),
        ("I'm vegetarian", "I eat meat now"),
        ("My name is Alice", "My name is Carol"),
        ("Use metric units", "Use imperial units"),
    ],
)
def test_a5_contradictions_without_a_template_supersede(persona, first, second):
    user = persona.user("a5")
    user.add_rule(first)
    user.add_rule(second)
    assert texts(user.rules()) == [second]
    assert texts(user.explain("Tell me about dinner plans").rules) == [second]


def test_a6_use_lists_not_prose_is_a_wish_for_lists(persona):
    user = persona.user("a6")
    lists = user.add_rule("Use lists, not prose")
    assert lists.template == "bullets:+"
    prose = user.add_rule("Write in prose, not bulleted lists")
    assert prose.template == "bullets:-"
    assert texts(user.rules()) == ["Write in prose, not bulleted lists"]
    assert texts(user.explain("Summarize this article").rules) == [prose.text]


def test_a7_deleting_a_history_entry_revives_nothing(persona):
    user = persona.user("a7")
    ids = [user.add_rule(t).id for t in ["Use emojis.", "Do not use emojis."] * 2]
    user.delete_memory(ids[1])
    assert texts(user.rules()) == ["Do not use emojis."]
    assert texts(user.explain("Write a birthday message").rules) == ["Do not use emojis."]


def test_a8_every_global_rule_applies(persona):
    user = persona.user("a8")
    rules = ["Answer in one sentence.", "Never mention competitors.", "Call me Dr. Smith.",
             "Use metric units.", "Reply in British English.", "I am allergic to peanuts.",
             "Do not use emojis."]  # fmt: skip
    user.add_rules(rules)
    assert sorted(texts(user.explain("Suggest a snack for my hike").rules)) == sorted(rules)


# -- B: bad input --------------------------------------------------------------------------

BAD_CALLS = {
    "b1 delete_memory(10**20)": lambda p, u: u.delete_memory(10**20),
    "b2 add_rules('abc')": lambda p, u: u.add_rules("abc"),
    "b2 add_rules(None)": lambda p, u: u.add_rules(None),
    "b2 add_rules([None])": lambda p, u: u.add_rules([None]),
    "b2 add_rules([(a, b, c)])": lambda p, u: u.add_rules([("a", "b", "c")]),
    "b2 add_pairs([(p, c)])": lambda p, u: u.add_pairs([("p", "c")]),
    "b2 next_question(replies='ab')": lambda p, u: u.next_question("p", "ab"),
    "b3 import_user(None)": lambda p, u: p.import_user(None),
    "b3 import_user([1, 2])": lambda p, u: p.import_user([1, 2]),
    "b3 import_user(nested)": lambda p, u: p.import_user(
        [
            '{"format": "persona-sdk/user", "version": 1, "user_id": "n", "memories": 1}',
            "[" * 100_000 + "]" * 100_000,
        ]
    ),
    "b5 add_rule(zero-width space)": lambda p, u: u.add_rule("\u200b"),
    "b5 add_rule(nbsp + zero-width joiner)": lambda p, u: u.add_rule("\xa0\u200d\ufeff"),
    "b6 Persona.open(5)": lambda p, u: Persona.open(5),
    "b6 Persona.open(NUL)": lambda p, u: Persona.open("a\x00b"),
}


@pytest.mark.parametrize("call", sorted(BAD_CALLS))
def test_b_bad_input_raises_a_typed_error_and_stores_nothing(persona, call):
    user = persona.user("bob")
    user.add_rule("Answer in one sentence.")
    before = persona.store.memory_version("bob"), persona.store.count_memories("bob")
    with pytest.raises(PersonaError) as caught:
        BAD_CALLS[call](persona, user)
    assert isinstance(caught.value, (InvalidInputError, MemoryNotFoundError)), caught.value
    after = persona.store.memory_version("bob"), persona.store.count_memories("bob")
    assert after == before and persona.users() == ["bob"]


@pytest.mark.parametrize(
    "config",
    [
        {"min_similarity": float("nan")},
        {"top_k": float("nan")},
        {"top_k": "5"},
        {"stated_bonus": float("inf")},
    ],
)
def test_b6_configs_are_validated(tmp_path, tiny_host, embedder, basis, config):
    with pytest.raises(InvalidInputError):
        Persona.open(tmp_path, model=tiny_host, embedder=embedder, basis=basis,
                     retrieval=RetrievalConfig(**config))  # fmt: skip


def test_b6_a_config_changed_live_is_validated_too(persona):
    persona.user("bob").add_rule("Keep it short.")
    persona.retrieval_config.min_similarity = float("nan")
    with pytest.raises(InvalidInputError, match="min_similarity"):
        persona.user("bob").explain("hi")


def _export(persona, user_id: str) -> list[str]:
    return list(persona.export_user(user_id))


def test_b7_import_is_as_strict_as_the_api(persona):
    user = persona.user("bob")
    user.add_pair("Say hi", "Hi.", "Hello there!!!")
    lines = _export(persona, "bob")
    record = json.loads(lines[1])
    same = json.dumps({**record, "rejected": record["chosen"]})
    with pytest.raises(InvalidInputError, match="same text"):
        persona.import_user([lines[0], same], user_id="copy")
    header = json.dumps({**json.loads(lines[0]), "version": True})
    with pytest.raises(InvalidInputError, match="version"):
        persona.import_user([header, lines[1]], user_id="copy")
    bad = json.dumps({**record, "kind": "nonsense"})
    with pytest.raises(InvalidInputError, match="import line 4"):  # blank lines count
        persona.import_user([lines[0], "", "  ", bad], user_id="copy")
    assert persona.users() == ["bob"]


# -- D: corruption -------------------------------------------------------------------------


def _stocked(tmp_path, tiny_host, embedder, basis, n: int = 60):
    data = tmp_path / "data"
    with Persona.open(data, model=tiny_host, embedder=embedder, basis=basis) as persona:
        for user_id in ("alice", "bob"):
            rng = random.Random(user_id)
            words = ["moss", "tide", "kiln", "fern", "loom", "quay", "sled", "wren", "yurt"]
            persona.user(user_id).add_rules(
                [f"Mention {rng.choice(words)} {user_id}mark{i}" for i in range(n)]
            )
    return data


def _open(data, tiny_host, embedder, basis):
    return Persona.open(data, model=tiny_host, embedder=embedder, basis=basis)


@sqlite_only("garbles the database file")
def test_d1_a_garbled_database_is_reported_not_a_traceback(tmp_path, tiny_host, embedder, basis):
    data = _stocked(tmp_path, tiny_host, embedder, basis)
    db = data / "persona.db"
    with open(db, "r+b") as handle:
        handle.seek(os.path.getsize(db) // 2)
        handle.write(random.Random(1).randbytes(8192))
    try:
        persona = _open(data, tiny_host, embedder, basis)
    except StoreError:
        return  # refusing to open a damaged store is a typed error too
    with persona:
        report = persona.doctor()
        checks = {c["check"]: c for c in report.checks}
        assert not report.ok and checks["sqlite"]["status"] == "corrupt"
        assert not any(c["repaired"] for c in report.checks)
        for call in (lambda: persona.user("alice").memories(),
                     lambda: list(persona.export_user("alice"))):  # fmt: skip
            with contextlib.suppress(PersonaError):
                call()
        with pytest.raises(StoreError, match="writes are refused"):
            persona.user("alice").add_rule("Mention tide tables.")  # nothing lands in it


def test_d2_an_emptied_database_keeps_the_index_files(tmp_path, tiny_host, embedder, basis):
    data = _stocked(tmp_path, tiny_host, embedder, basis, n=5)
    before = sorted(p.name for p in (data / "indexes").iterdir())
    assert before
    if ON_POSTGRES:  # every table dropped: the store reopens as a new, empty one
        with psycopg.connect(os.environ[STORE_ENV], autocommit=True) as conn:
            schema = conn.execute("SELECT current_schema()").fetchone()[0]
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            conn.execute(f'CREATE SCHEMA "{schema}"')
    else:
        (data / "persona.db").write_bytes(b"")
    with _open(data, tiny_host, embedder, basis) as persona:
        report = persona.doctor()
    assert not report.ok
    stray = next(c for c in report.checks if c["check"] == "stray files")
    assert stray["status"] == "suspicious" and not stray["repaired"]
    assert sorted(p.name for p in (data / "indexes").iterdir()) == before


@pytest.mark.parametrize("manifest", ["null", "[]", '"x"', "{"])
def test_d3_a_broken_manifest_neither_fails_nor_half_stores_a_write(
    tmp_path, tiny_host, embedder, basis, manifest
):
    data = _stocked(tmp_path, tiny_host, embedder, basis, n=5)
    (data / "indexes" / f"{user_file_stem('alice')}.json").write_text(manifest)
    with _open(data, tiny_host, embedder, basis) as persona:
        user = persona.user("alice")
        rule = user.add_rule("Mention tide tables")
        assert rule.text in texts(user.explain("Plan a beach walk").rules)
        user.add_pair("Say hi", "Hi.", "Hello!!")
        assert len(user.rules()) == 6
        report = persona.doctor()
        assert report.ok, report.to_dict()
    with _open(data, tiny_host, embedder, basis) as persona:
        assert persona.doctor(repair=False).ok


def test_d4_a_garbled_or_truncated_basis_fails_doctor(tmp_path, tiny_host, embedder, basis):
    data = _stocked(tmp_path, tiny_host, embedder, basis, n=2)
    basis.save(data / "basis.npz")
    with _open(data, tiny_host, embedder, None) as persona:
        assert {c["check"]: c for c in persona.doctor().checks}["basis"]["status"] == "ok"
    raw = bytearray((data / "basis.npz").read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 300] = random.Random(1).randbytes(300)
    (data / "basis.npz").write_bytes(bytes(raw))
    with _open(data, tiny_host, embedder, None) as persona:
        report = persona.doctor()
        assert not report.ok
        assert {c["check"]: c for c in report.checks}["basis"]["status"] == "corrupt"
        with pytest.raises(PersonaError):
            persona.user("alice").weights  # noqa: B018 - a typed error, not zlib.error
    (data / "basis.npz").write_bytes(bytes(raw[:1000]))
    with _open(data, tiny_host, embedder, None) as persona:
        assert not persona.doctor().ok
    (data / "basis.npz").unlink()
    (data / "basis.npz").mkdir()  # a directory is reported, not silently replaced
    with _open(data, tiny_host, embedder, None) as persona:
        assert not persona.doctor().ok
        with pytest.raises(PersonaError):
            persona.user("alice").weights  # noqa: B018


def test_d5_blocked_index_paths_are_reported(tmp_path, tiny_host, embedder, basis):
    data = _stocked(tmp_path, tiny_host, embedder, basis, n=3)
    index = data / "indexes" / f"{user_file_stem('alice')}.faiss"
    index.unlink()
    index.mkdir()
    with _open(data, tiny_host, embedder, basis) as persona:
        persona.user("alice").add_rule("Mention tide tables")  # the write still succeeds
        report = persona.doctor()
        alice = next(c for c in report.checks if c["check"] == "index:alice")
        assert not report.ok and not alice["repaired"] and "could not" in alice["detail"]
    index.rmdir()
    (data / "indexes").rename(data / "moved")
    (data / "indexes").write_text("x")
    with _open(data, tiny_host, embedder, basis) as persona:
        report = persona.doctor()
        assert not report.ok
        assert next(c for c in report.checks if c["check"] == "indexes")["status"] == "broken"
        assert persona.user("alice").explain("Plan a beach walk").rules is not None
    # closing (atexit included) never raises on a blocked index path


# -- E: forget -----------------------------------------------------------------------------


def test_e1_forget_removes_the_users_texts_from_every_embedding_cache(
    tmp_path, monkeypatch, persona
):
    monkeypatch.setenv("PERSONA_CACHE", str(tmp_path / "cache"))
    secret = "ZQX secret reply about my divorce. It was hard."
    user = persona.user("ecila")
    user.add_pair("ZQX prompt 1", secret, "ZQX other reply")
    user.score("ZQX prompt 1", secret)  # through the featurizer's in-memory cache
    cache = persona.rewards.featurizer.cache
    saved = tmp_path / "cache" / "embeddings" / "abc.npz"
    disk = EmbeddingCache(persona.embedder)
    disk.encode([secret, "ZQX prompt 1", "kept text of someone else"])
    disk.save(saved)
    assert text_key(secret) in cache._vectors
    user.forget()
    for key_text in (secret, "ZQX prompt 1", "It was hard."):
        assert text_key(key_text) not in cache._vectors
    with np.load(saved) as stored:
        keys = {k.tobytes() for k in stored["keys"]}
    assert text_key(secret) not in keys and text_key("ZQX prompt 1") not in keys
    assert text_key("kept text of someone else") in keys
    assert hashlib.blake2b(b"never stored", digest_size=16).digest() not in keys
