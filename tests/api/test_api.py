"""The public Persona / User API, on the tiny model and the fake embedder."""

from __future__ import annotations

import math

import pytest

from persona_sdk import (
    InvalidInputError,
    InvalidUserIdError,
    MemoryNotFoundError,
    Persona,
    Reply,
    ReplyStream,
    UnknownUserError,
)
from persona_sdk.decoding.prompting import build_messages, preference_block
from tests.helpers import snapshot

BAD_USER_IDS = ["../x", "..", ".", "a/b", "", "x" * 129, "bob smith", "ünï", "a\x00b", None, 7]


def test_rules_round_trip_and_delete(persona):
    alice = persona.user("alice")
    assert not alice.exists and persona.users() == []
    first = alice.add_rule("  Answer in one sentence.  ")
    second = alice.add_rule("Keep it under 100 words", context="emails to my manager")
    assert first.text == "Answer in one sentence." and first.source == "stated"
    assert second.context == "emails to my manager" and second.is_valid
    assert [r.id for r in alice.rules()] == [first.id, second.id]
    assert alice.memories(kind="pair") == []
    assert persona.users() == ["alice"]
    alice.delete_memory(first.id)
    assert [r.id for r in alice.rules()] == [second.id]
    with pytest.raises(MemoryNotFoundError):
        alice.delete_memory(first.id)
    with pytest.raises(MemoryNotFoundError):
        persona.user("bob").delete_memory(second.id)  # another user's memory is not yours


def test_global_rules_always_apply_contextual_ones_by_similarity(persona):
    user = persona.user("alice")
    user.add_rule("Answer in one sentence.")
    user.add_rule("Keep emails to my manager under 100 words", context="emails to my manager")
    user.add_rule("Use type hints", context="writing Python code")
    email = user.explain("Write an email to my boss asking for Friday off")
    texts = [r.text for r in email.rules]
    assert "Answer in one sentence." in texts
    assert "Keep emails to my manager under 100 words" in texts
    assert "Use type hints" not in texts
    unrelated = [r.text for r in user.explain("Why is the sky blue?").rules]
    assert unrelated == ["Answer in one sentence."]
    sims = [r.similarity for r in email.rules]
    assert sims == sorted(sims, reverse=True) and all(-1 <= s <= 1 for s in sims)


def test_retrieval_dedupes_and_applies_every_stated_global_rule(persona):
    user = persona.user("alice")
    for text in [
        "Be brief.",
        "be brief",
        "Use emoji.",
        "No jargon.",
        "Cite sources.",
        "Use metric units.",
        "Prefer examples.",
    ]:
        user.add_rule(text)
    rules = user.explain("Tell me about volcanoes").rules
    # "be brief" restates "Be brief."; the other six are global: all apply, past top_k
    assert len(rules) == 6 > persona.retrieval_config.top_k
    assert len({r.text.lower().rstrip(".") for r in rules}) == len(rules)


def test_users_are_isolated(persona):
    persona.user("alice").add_rule("alice only: speak like a pirate")
    persona.user("bob").add_rule("bob only: speak like a robot")
    for user_id in ("alice", "bob"):
        for prompt in ("speak like a pirate", "speak like a robot", "hello"):
            texts = [r.text for r in persona.user(user_id).explain(prompt).rules]
            assert texts and all(t.startswith(f"{user_id} only") for t in texts)
    assert persona.user("carol").explain("speak like a pirate").rules == []


def test_generate_reports_rules_and_timings(persona):
    persona.user("alice").add_rule("Answer in one sentence.")
    reply = persona.generate("alice", "How can I sleep better?", max_new_tokens=6)
    assert isinstance(reply, Reply)
    assert [r.text for r in reply.used_rules] == ["Answer in one sentence."]
    assert reply.personalized and reply.strength == 0.0 and 0 < reply.tokens <= 6
    assert set(reply.timings) == {"retrieve", "ttft", "generate", "reward", "total"}
    assert isinstance(reply.reward, float) and reply.candidates == []
    assert reply.to_dict()["used_rules"][0]["text"] == "Answer in one sentence."
    plain = persona.generate("nobody", "How can I sleep better?", max_new_tokens=6)
    assert plain.used_rules == [] and not plain.personalized


def test_the_rules_reach_the_system_prompt(persona):
    persona.user("alice").add_rule("Answer in one sentence.")
    messages = persona.prompt_for(
        "alice", [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}]
    )
    assert messages[0]["role"] == "system"
    assert messages[0]["content"].startswith("Be kind.")
    assert "- Answer in one sentence." in messages[0]["content"]
    assert build_messages([{"role": "user", "content": "Hi"}], [], "Sys") == [
        {"role": "system", "content": "Sys"},
        {"role": "user", "content": "Hi"},
    ]
    assert preference_block([]) == ""


def test_stream_matches_the_full_reply(persona):
    persona.user("alice").add_rule("Answer in one sentence.")
    kwargs = dict(max_new_tokens=12, temperature=0.0)
    full = persona.generate("alice", "Tell me about black holes", **kwargs)
    stream = persona.generate("alice", "Tell me about black holes", stream=True, **kwargs)
    assert isinstance(stream, ReplyStream)
    assert [r.text for r in stream.used_rules] == ["Answer in one sentence."]  # known up front
    text = "".join(stream)
    assert text.strip() == stream.reply.text == full.text


def test_generate_batch_serves_several_users(persona):
    persona.user("alice").add_rule("Answer in one sentence.")
    persona.user("bob").add_rule("Use a bulleted list.")
    replies = persona.generate_batch(
        [("alice", "Sleep tips?"), ("bob", "Sleep tips?"), ("carol", "Sleep tips?")],
        max_new_tokens=5,
    )
    assert [r.user_id for r in replies] == ["alice", "bob", "carol"]
    assert [len(r.used_rules) for r in replies] == [1, 1, 0]
    alone = persona.generate("bob", "Sleep tips?", max_new_tokens=5)
    assert replies[1].text == alone.text


@pytest.mark.parametrize("user_id", BAD_USER_IDS)
def test_bad_user_ids_are_rejected(persona, user_id):
    with pytest.raises(InvalidUserIdError):
        persona.user(user_id)
    with pytest.raises(InvalidUserIdError):
        persona.generate(user_id, "hi", max_new_tokens=2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strength": math.nan}, "strength must be finite"),
        ({"strength": -0.5}, "strength must be >= 0"),
        ({"strength": 1e6}, "strength must be <= 4"),
        ({"max_new_tokens": 0}, "max_new_tokens must be between 1"),
        ({"max_new_tokens": 10**6}, "max_new_tokens must be between 1"),
        ({"best_of": 0}, "best_of must be between 1 and 16"),
        ({"stop": [""]}, "stop strings must be non-empty"),
        ({"temperature": -1.0}, "temperature must be >= 0"),
        ({"top_p": 2.0}, "top_p must be <= 1"),
    ],
)
def test_bad_generation_arguments(persona, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        persona.generate("alice", "hi", **kwargs)


@pytest.mark.parametrize(
    "prompt",
    [
        "",
        "   ",
        b"\xff\xfe",
        [],
        [{"role": "user"}],
        [{"role": "robot", "content": "x"}],
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
        [
            {"role": "user", "content": "a"},
            {"role": "system", "content": "b"},
            {"role": "user", "content": "c"},
        ],
        "x" * 200_000,
        42,
    ],
)
def test_bad_prompts(persona, prompt):
    with pytest.raises(InvalidInputError):
        persona.generate("alice", prompt, max_new_tokens=2)


def test_prompt_too_long_for_the_model(persona):
    with pytest.raises(InvalidInputError, match="exceeds the model"):
        persona.generate("alice", "word " * 3000, max_new_tokens=10)


@pytest.mark.parametrize(
    ("text", "context"),
    [
        ("", None),
        ("   ", None),
        ("x" * 1_000_000, None),
        (b"\xff\xfe", None),
        ("ok", "y" * 1_000_000),
        ("nul\x00byte", None),
        ("lone \ud800 surrogate", None),
    ],
)
def test_bad_rules_change_nothing(persona, tiny_host, embedder, text, context):
    persona.user("alice").add_rule("Answer in one sentence.")
    persona.close()
    before = snapshot(persona.data_dir)
    reopened = Persona.open(persona.data_dir, model=tiny_host, embedder=embedder)
    with pytest.raises(InvalidInputError):
        reopened.user("alice").add_rule(text, context=context)
    with pytest.raises(InvalidInputError):
        reopened.user("newbie").add_rule(text, context=context)
    reopened.close()
    assert snapshot(persona.data_dir) == before
    with Persona.open(persona.data_dir) as again:
        assert again.users() == ["alice"]


def test_sql_metacharacters_are_stored_verbatim(persona):
    nasty = "Robert'); DROP TABLE memories;-- \" % _ \\ ;"
    memory = persona.user("obrien@x.io").add_rule(nasty, context=nasty)
    stored = persona.user("obrien@x.io").rules()[0]
    assert stored.text == stored.context == nasty == memory.text
    assert persona.users() == ["obrien@x.io"]
    reply = persona.generate("obrien@x.io", nasty, max_new_tokens=2)
    assert [r.text for r in reply.used_rules] == [nasty]


def test_forget_removes_the_user(persona):
    persona.user("alice").add_rule("Answer in one sentence.")
    persona.user("bob").add_rule("Use a bulleted list.")
    persona.indexes.flush()
    persona.user("alice").forget()
    assert persona.users() == ["bob"]
    assert persona.user("alice").rules() == []
    assert not persona.indexes.paths("alice")[0].exists()
    with pytest.raises(UnknownUserError):
        persona.user("alice").forget()
