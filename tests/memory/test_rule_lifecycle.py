"""The rule-lifecycle policy (ARCHITECTURE.md, "Rule lifecycle") as a table: what a newly
stated rule does to an older one, through the public API on a real store."""

from __future__ import annotations

import pytest

from persona_sdk.memory.retrieval import GLOBAL_RULE_BUDGET

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MANAGER, MOM, FRIENDS = "emails to my manager", "texts to my mom", "texts to friends"

# (older rule, its context, newer rule, its context, what the policy does)
POLICY = [
    # an exact restatement, normalised, same polarity and scope: support grows
    ("Be brief.", None, "be brief", None, "reinforced"),
    ("Use emojis.", None, "Use emojis!", None, "reinforced"),
    ("Use emojis", FRIENDS, "use emojis", FRIENDS, "reinforced"),
    # a negation supersedes (A1), in any wording, in the same scope
    ("Always use emojis", None, "Never use emojis", None, "superseded"),
    ("Use bullet points", None, "Don't use bullet points", None, "superseded"),
    ("Use headings", None, "Don't use headings", None, "superseded"),
    ("Include code examples", None, "Never include code examples", None, "superseded"),
    ("Use a sign-off", None, "Don't use a sign-off", None, "superseded"),
    ("Use emojis", FRIENDS, "Don't use emojis", FRIENDS, "superseded"),
    ("Use lists, not prose", None, "Write in prose, not bulleted lists", None, "superseded"),
    # a changed value supersedes (A2, A5)
    ("Keep emails under 100 words", None, "Keep emails under 50 words", None, "superseded"),
    ("Reply in French", None, "Reply in English", None, "superseded"),
    ("Use metric units", None, "Use imperial units", None, "superseded"),
    # the same topic with a value dropped or added is not an exact restatement: it replaces
    ("Answer in one sentence.", None, "Keep replies short.", None, "superseded"),
    # a changed fact or preference supersedes (A5)
    ("I'm vegetarian", None, "I eat meat now", None, "superseded"),
    ("My name is Alice", None, "My name is Carol", None, "superseded"),
    # a broader negation replaces the narrower rule too: the latest wish wins
    ("Use emojis", FRIENDS, "Never use emojis", None, "superseded"),
    # an opposite rule in a narrower context is an exception beside the global one (A3)
    ("Use emojis", None, "Don't use emojis", MANAGER, "exception"),
    ("Reply in French", None, "Reply in English", MANAGER, "exception"),
    # the same rule in a new context is its own scoped rule, never a global one (A4)
    ("Keep it under 100 words", MANAGER, "Keep it under 100 words", MOM, "scoped"),
    ("Use emojis", FRIENDS, "Use emojis", MOM, "scoped"),
    # unrelated rules, and conflicts between disjoint contexts, both stand
    ("Answer in one sentence.", None, "Never mention competitors.", None, "unrelated"),
    ("Use emojis", MOM, "Don't use emojis", MANAGER, "unrelated"),
]


@pytest.mark.parametrize(("older", "older_ctx", "newer", "newer_ctx", "expected"), POLICY)
def test_the_lifecycle_policy(persona, older, older_ctx, newer, newer_ctx, expected):
    user = persona.user("alice")
    old = user.add_rule(older, context=older_ctx)
    new = user.add_rule(newer, context=newer_ctx)
    old_now = persona.store.get_memory("alice", old.id)
    history = user.rules(include_superseded=True)
    if expected == "reinforced":
        assert (new.id, new.support, new.text, new.context) == (old.id, 2, older, older_ctx)
        assert [r.id for r in history] == [old.id]
        return
    assert new.id != old.id and new.is_valid and new.text == newer
    assert new.context == newer_ctx  # a stated scope is kept as given, never widened
    assert [r.id for r in history] == [old.id, new.id]  # nothing is lost
    if expected == "superseded":
        assert not old_now.is_valid and old_now.superseded_by == new.id
        assert [r.id for r in user.rules()] == [new.id]
    else:
        assert old_now.is_valid and [r.id for r in user.rules()] == [old.id, new.id]
        assert new.exception_of == (old.id if expected == "exception" else None)
    assert persona.indexes.get("alice").ids() == persona.store.retrievable_ids("alice")


def test_a_superseded_rule_is_never_retrieved(persona):
    user = persona.user("alice")
    user.add_rule("My name is Alice")
    carol = user.add_rule("My name is Carol")
    assert [r.id for r in user.explain("Sign this letter with my name").rules] == [carol.id]


def test_deleting_a_history_entry_revives_nothing(persona):
    """A7: only deleting the current rule brings back the one it superseded."""
    user = persona.user("alice")
    texts = ["Use emojis.", "Do not use emojis.", "Use emojis.", "Do not use emojis."]
    ids = [user.add_rule(t).id for t in texts]
    assert [r.id for r in user.rules()] == [ids[3]]
    user.delete_memory(ids[1])  # a history entry
    assert [r.id for r in user.rules()] == [ids[3]]
    assert [r.id for r in user.explain("Write a birthday message").rules] == [ids[3]]
    assert persona.store.get_memory("alice", ids[0]).superseded_by == ids[2]  # handed on
    user.delete_memory(ids[3])  # the current rule: the one it superseded returns
    assert [r.id for r in user.rules()] == [ids[2]]
    user.delete_memory(ids[2])
    assert [r.id for r in user.rules()] == [ids[0]]
    assert persona.indexes.get("alice").ids() == persona.store.retrievable_ids("alice")


GLOBALS = [
    "Answer in one sentence.",
    "Never mention competitors.",
    "Call me Dr. Smith.",
    "Use metric units.",
    "Reply in British English.",
    "I am allergic to peanuts.",
    "Do not use emojis.",
]


def test_every_stated_global_rule_applies_beyond_top_k(persona):
    """A8: seven global rules, top_k 5: all seven reach the prompt, none is cut."""
    user = persona.user("alice")
    stored = user.add_rules(GLOBALS)
    explained = user.explain("Suggest a snack for my hike")
    assert sorted(r.id for r in explained.rules) == sorted(m.id for m in stored)
    assert explained.cut == []
    messages = persona.prompt_for("alice", "Suggest a snack for my hike")
    assert all(text in messages[0]["content"] for text in GLOBALS)


def test_global_rules_over_the_budget_are_cut_visibly(persona):
    user = persona.user("alice")
    animals = "otter heron lynx bison gecko walrus badger ibis yak tapir koala marmot ocelot "
    animals += "puffin quokka narwhal okapi dingo ferret"
    texts = [f"Mention a {a} fact." for a in animals.split()][: GLOBAL_RULE_BUDGET + 3]
    assert len(texts) == GLOBAL_RULE_BUDGET + 3
    stored = user.add_rules(texts)
    assert len(stored) == len(texts)
    explained = user.explain("Write a note")
    assert len(explained.rules) == GLOBAL_RULE_BUDGET and len(explained.cut) == 3
    assert all("prompt budget" in c.reason and c.text in texts for c in explained.cut)
    assert {r.id for r in explained.rules} | {c.id for c in explained.cut} == {m.id for m in stored}
    assert explained.to_dict()["cut"][0]["reason"].startswith("over the prompt budget")
    used = persona.memory.retrieve("alice", "Write a note")  # what generate puts in used_rules
    assert [c.id for c in used.cut] == [c.id for c in explained.cut]


def test_an_exception_overrides_its_global_rule_only_in_its_context(persona):
    user = persona.user("alice")
    general = user.add_rule("Use emojis")
    exception = user.add_rule("Don't use emojis", context="emails to my manager")
    at_work = user.explain("Write an email to my manager")
    assert [r.id for r in at_work.rules] == [exception.id]
    assert [c.id for c in at_work.cut] == [general.id]
    assert f"exception rule {exception.id}" in at_work.cut[0].reason
    elsewhere = user.explain("Plan a birthday party for my niece")
    assert [r.id for r in elsewhere.rules] == [general.id] and elsewhere.cut == []
