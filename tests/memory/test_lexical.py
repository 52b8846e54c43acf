"""Lexical rule retrieval (memory/lexical.py): the full-text table (FTS5, or tsvector on
the PostgreSQL run), its per-user isolation, concept expansion, fusion, and its upkeep
through writes, deletes, forget and migration."""

from __future__ import annotations

import pytest

from persona_sdk.memory import lexical
from persona_sdk.memory.schema import TERMS_TABLE

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def search(persona, user_id: str, query: str, limit: int = 10) -> list[int]:
    return list(lexical.search(persona.store.query, user_id, query, limit))


def rows(persona) -> int:
    return persona.store.query(f"SELECT COUNT(*) FROM {TERMS_TABLE}")[0][0]


def test_terms_are_stemmed_words_and_concepts():
    found = lexical.terms("Never use smileys in emails to my manager")
    assert "emoji" in found and "manager" in found and "email" in found
    assert "use" not in found and "my" not in found  # filler carries no topic


def test_concepts_meet_across_wordings(persona):
    user = persona.user("alice")
    emoji = user.add_rule("Don't put emoticons in anything")
    user.add_rule("I live in Lisbon")
    assert search(persona, "alice", "are smileys ok?") == [emoji.id]


def test_a_search_sees_one_user_only(persona):
    a = persona.user("alice").add_rule("Mention the tide tables")
    b = persona.user("alice.b").add_rule("Mention the tide tables")
    persona.user("b").add_rule("Mention the tide tables")
    assert search(persona, "alice", "tide") == [a.id]
    assert search(persona, "alice.b", "tide") == [b.id]
    assert search(persona, "nobody", "tide") == []


def test_fts_syntax_in_a_request_is_just_words(persona):
    persona.user("alice").add_rule("Mention the tide tables")
    queries = ('tide" OR "x', "NOT tide", "tide*", "user_key : u", "(((", "tide AND", "tide & !x",
               "tide:*", "'tide' | x", "50% off?")  # fmt: skip
    for query in queries:
        search(persona, "alice", query)  # never an FTS or tsquery syntax error


def test_rarer_terms_weigh_more_and_common_ones_are_skipped(persona):
    user = persona.user("alice")
    rare = user.add_rule("Mention otters when talking about rivers")
    user.add_rules([f"Mention rivers of region {i} and {w}" for i, w in
                    enumerate(["moss", "kiln", "fern", "loom"])])  # fmt: skip
    assert search(persona, "alice", "otters by the rivers")[0] == rare.id
    user.add_rules([f"Mention the harbour and q{i}" for i in range(2 * lexical.COMMON)])
    harbour = [r for r in user.rules() if "harbour" in r.text]
    assert len(harbour) > lexical.COMMON
    assert search(persona, "alice", "harbour") == []  # in more than COMMON rules


def test_rows_follow_writes_deletes_and_forget(persona):
    user = persona.user("alice")
    rule = user.add_rule("Mention the tide tables")
    pair = user.add_pair("Say hi", "Hi.", "Hello!!")
    assert rows(persona) == 1  # rules only
    user.delete_memory(pair.id)
    user.delete_memory(rule.id)
    assert rows(persona) == 0
    user.add_rule("Mention the tide tables")
    persona.user("bob").add_rule("Mention the tide tables")
    user.forget()
    assert rows(persona) == 1 and search(persona, "alice", "tide") == []


def test_fusion_rewards_agreement():
    fused = lexical.fuse([[1, 2, 3], [2, 3]])
    assert sorted(fused, key=lambda i: -fused[i]) == [2, 3, 1]


def test_migration_6_indexes_existing_rules(tmp_path, tiny_host, embedder, old_store):
    from persona_sdk import Persona

    old_store(  # a store as version 5 left it
        tmp_path,
        5,
        [
            ("INSERT INTO users (id, created_at, memory_version) VALUES ('old', 't', 1)", ()),
            (
                "INSERT INTO memories (user_id, kind, source, text, valid_from, created_at) "
                "VALUES ('old', 'rule', 'stated', 'Mention the tide tables', 't', 't')",
                (),
            ),
        ],
    )
    with Persona.open(tmp_path, model=tiny_host, embedder=embedder) as persona:
        assert search(persona, "old", "tide tables") == [1]
        assert persona.store.memories("old")[0].exception_of is None
