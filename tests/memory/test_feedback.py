"""Feedback on the public API: pairs, edits, the deterministic edit analyser, rule
consolidation (duplicates, contradictions, exceptions, generalisation) and CIPHER-style
retrieval of what edits taught. Real store, the fake embedder."""

from __future__ import annotations

import pytest

from persona_sdk import InvalidInputError, MemoryNotFoundError, RetrievalConfig
from persona_sdk.memory.edits import TEMPLATES, analyse_edit, classify_rule, template_text
from persona_sdk.memory.retrieval import Retriever
from persona_sdk.text.style import STYLE_FEATURES

pytestmark = pytest.mark.usefixtures("one_torch_thread")


EMOJI_RESPONSE = (
    "Congratulations on the new job 🎉 so happy for you and the team 😊 see you Friday 🍕"
)
EMOJI_EDITED = "Congratulations on the new job, so happy for you and the team, see you Friday"
BIRTHDAY = "Write a birthday message for my friend Sam"


def rule_ids(explanation) -> list[int]:
    return [r.id for r in explanation.rules]


def index_agrees(persona, user_id: str) -> None:
    assert persona.indexes.get(user_id).ids() == persona.store.retrievable_ids(user_id)


# -- add_edit ------------------------------------------------------------------------------


def test_add_edit_stores_edit_pair_and_contextual_rules(persona):
    user = persona.user("alice")
    result = user.add_edit(
        BIRTHDAY, response=f"  {EMOJI_RESPONSE}\n", edited=EMOJI_EDITED, context="birthday notes"
    )
    edit, pair = result.memory, result.pair
    assert (edit.kind, edit.prompt, edit.chosen, edit.rejected, edit.context) == (
        "edit",
        BIRTHDAY,
        EMOJI_EDITED,
        EMOJI_RESPONSE,  # stripped
        "birthday notes",
    )
    assert (pair.kind, pair.source, pair.origin_id) == ("pair", "inferred", edit.id)
    assert (pair.prompt, pair.chosen, pair.rejected, pair.context) == (
        BIRTHDAY,
        EMOJI_EDITED,
        EMOJI_RESPONSE,
        "birthday notes",
    )
    assert [r.text for r in result.inferred_rules] == ["Do not use emojis."]
    (rule,) = result.inferred_rules
    assert (rule.kind, rule.source, rule.origin_id, rule.context, rule.template) == (
        "rule",
        "inferred",
        edit.id,
        "birthday notes",
        "emoji:-",
    )
    assert 0.35 <= rule.confidence <= 1.0 and rule.support == 1
    assert [(o.action, o.rule_id) for o in result.outcomes] == [("added", rule.id)]
    as_dict = result.to_dict()
    assert as_dict["memory"]["id"] == edit.id and as_dict["pair"]["origin_id"] == edit.id
    assert as_dict["outcomes"][0]["action"] == "added"
    assert [m.id for m in user.memories(kind="edit")] == [edit.id]
    assert [m.id for m in user.memories(kind="pair")] == [pair.id]
    # The edit (its context) and the rule are searchable; the pair feeds the reward model.
    assert persona.store.retrievable_ids("alice") == sorted([edit.id, rule.id])
    index_agrees(persona, "alice")


def test_add_edit_without_context_uses_the_prompt_and_reports_each_action(persona):
    user = persona.user("bob")
    first = user.add_edit(
        "Write a note about the plan",
        response="This is a great plan! We start Monday! The team will love it!",
        edited="This is a great plan. We start Monday. The team will love it.",
    )
    assert first.memory.context == "Write a note about the plan"
    assert {r.context for r in first.inferred_rules} == {"Write a note about the plan"}
    second = user.add_edit(
        "Write a note about the plan for Tuesday",
        response="Great news! The plan for Tuesday is ready!",
        edited="The plan for Tuesday is ready.",
    )
    actions = {o.action for o in second.outcomes}
    assert "reinforced" in actions
    reinforced = next(o for o in second.outcomes if o.action == "reinforced")
    assert reinforced.rule_id == first.inferred_rules[0].id
    assert persona.store.get_memory("bob", reinforced.rule_id).support == 2
    assert second.memory.id != first.memory.id and second.pair.origin_id == second.memory.id


def test_an_edit_that_teaches_nothing_still_stores_the_edit_and_pair(persona):
    result = persona.user("carol").add_edit(
        "Name a fruit", response="A red apple.", edited="A green apple."
    )
    assert result.inferred_rules == [] and result.outcomes == []
    assert [m.kind for m in persona.user("carol").memories()] == ["edit", "pair"]


# -- the deterministic analyser -----------------------------------------------------------

EDITS = {
    "length:-": (
        "Sure! So basically, the thing you want to do is go into the settings menu, then "
        "find the network section, then look for the option called proxy, and after that "
        "you should turn it off and restart the application so it picks up the change.",
        "Open Settings, Network, turn off the proxy, restart.",
    ),
    "emoji:-": (EMOJI_RESPONSE, EMOJI_EDITED),
    "bullets:+": (
        "You will need flour, sugar, eggs, butter and milk for the cake batter.",
        "You will need:\n- flour\n- sugar\n- eggs\n- butter\n- milk",
    ),
    "numbered:+": (
        "First preheat the oven, then mix the batter, then bake it for thirty minutes.",
        "1. Preheat the oven.\n2. Mix the batter.\n3. Bake it for thirty minutes.",
    ),
    "greeting:+": (
        "The report is attached and covers the third quarter numbers in detail.",
        "Hello Maria,\nThe report is attached and covers the third quarter numbers in detail.",
    ),
    "signoff:+": (
        "The report is attached and covers the third quarter numbers in detail.",
        "The report is attached and covers the third quarter numbers in detail.\n"
        "Best regards,\nSam",
    ),
    "exclamations:-": (
        "This is a great plan! We should start on Monday! The team will love it!",
        "This is a great plan. We should start on Monday. The team will love it.",
    ),
    "questions:-": (
        "The meeting moved to Thursday at noon. Does that work for you? Should I book a room?",
        "The meeting moved to Thursday at noon. I will book a room.",
    ),
    "code:+": (
        "To list files in a folder in Python you can use the os module and its listdir function.",
        "To list files in a folder in Python:\n```python\nimport os\nprint(os.listdir('.'))\n```",
    ),
    "headings:+": (
        "The plan has three parts: research the market, build a prototype, and test it.",
        "# Research\nStudy the market.\n# Prototype\nBuild a first version.\n# Testing\nTest it.",
    ),
    "hedging:-": (
        "I think it might be better to maybe restart the server, it could possibly fix it.",
        "Restart the server, it will fix the issue now.",
    ),
    "casual:-": (
        "Yeah that's gonna be awesome, we'll totally get the stuff done by Friday lol.",
        "That will be excellent; we will complete the work by Friday.",
    ),
    "length:+": (
        "Use a VPN.",
        "Use a VPN when you are on public Wi-Fi, because open networks let anyone nearby "
        "read unencrypted traffic, and a VPN wraps it in an encrypted tunnel to a server.",
    ),
    "emoji:+": (
        "Congratulations on the new job, see you at dinner on Friday",
        "Congratulations on the new job 🎉 see you at dinner on Friday 🍕",
    ),
    "bullets:-": (
        "You will need:\n- flour\n- sugar\n- eggs",
        "You will need flour, sugar and eggs.",
    ),
}


@pytest.mark.parametrize("template", list(EDITS))
def test_analyser_finds_the_style_change(template):
    original, edited = EDITS[template]
    candidates = {c.template: c for c in analyse_edit(original, edited)}
    assert template in candidates, candidates
    found = candidates[template]
    assert found.text == template_text(found.feature, found.direction)
    assert 0.35 <= found.confidence <= 1.0
    # No candidate says both "more" and "less" of one feature.
    assert len({c.feature for c in candidates.values()}) == len(candidates)


def test_analyser_covers_at_least_ten_features_and_is_deterministic():
    features = {t.split(":")[0] for t in EDITS}
    assert len(features) >= 10 and features <= set(STYLE_FEATURES) == set(TEMPLATES)
    for original, edited in EDITS.values():
        assert analyse_edit(original, edited) == analyse_edit(original, edited)
    assert analyse_edit("A red apple.", "A green apple.") == []
    # The reverse edit teaches the opposite preference.
    original, edited = EDITS["emoji:-"]
    assert "emoji:+" in {c.template for c in analyse_edit(edited, original)}


@pytest.mark.parametrize(
    ("text", "template"),
    [
        ("Use emojis.", "emoji:+"),
        ("Never use emojis.", "emoji:-"),
        ("Don't use emoji in emails", "emoji:-"),
        ("Use numbered steps.", "numbered:+"),
        ("Do not use numbered lists.", "numbered:-"),
        ("Avoid bullet points.", "bullets:-"),
        ("Use a bulleted list.", "bullets:+"),
        ("Keep it brief.", "length:-"),
        ("be brief", "length:-"),
        ("Be thorough and detailed.", "length:+"),
        ("Don't ask me questions.", "questions:-"),
        ("Use a formal tone.", "casual:-"),
        ("Be casual.", "casual:+"),
        ("Include code snippets.", "code:+"),
        ("No headers, please.", "headings:-"),
        ("Start with a greeting.", "greeting:+"),
        ("Skip the sign-off.", "signoff:-"),
        ("Stop hedging.", "hedging:-"),
        ("Call me Bob.", None),
        ("Answer in French.", None),
    ],
)
def test_classify_rule(text, template):
    assert classify_rule(text) == template


# -- consolidation -------------------------------------------------------------------------


def test_a_duplicate_rule_reinforces(persona):
    user = persona.user("alice")
    first = user.add_rule("Be brief.")
    again = user.add_rule("be brief")
    assert again.id == first.id and again.text == "Be brief."
    assert (again.support, again.confidence) == (2, 1.0)
    assert [r.id for r in user.rules(include_superseded=True)] == [first.id]
    assert rule_ids(user.explain("Tell me about the moon")) == [first.id]
    index_agrees(persona, "alice")


def test_a_negation_supersedes_and_keeps_the_history(persona):
    user = persona.user("alice")
    old = user.add_rule("Use emojis.")
    new = user.add_rule("Never use emojis.")
    assert new.id != old.id and new.is_valid
    closed = persona.store.get_memory("alice", old.id)
    assert closed.valid_to is not None and closed.superseded_by == new.id
    assert closed.valid_to >= closed.valid_from
    assert [r.id for r in user.rules()] == [new.id]
    assert [r.id for r in user.rules(include_superseded=True)] == [old.id, new.id]
    assert rule_ids(user.explain("Write a birthday message")) == [new.id]
    assert old.id not in persona.indexes.get("alice").ids()
    index_agrees(persona, "alice")


def test_deleting_the_superseding_rule_restores_the_old_one(persona):
    user = persona.user("alice")
    old = user.add_rule("Use emojis.")
    new = user.add_rule("Never use emojis.")
    user.delete_memory(new.id)
    restored = persona.store.get_memory("alice", old.id)
    assert restored.is_valid and restored.superseded_by is None
    assert [r.id for r in user.rules(include_superseded=True)] == [old.id]
    assert rule_ids(user.explain("Write a birthday message")) == [old.id]
    index_agrees(persona, "alice")
    with pytest.raises(MemoryNotFoundError):
        user.delete_memory(new.id)


def test_an_inferred_contradiction_of_a_stated_rule_is_ignored(persona):
    user = persona.user("alice")
    stated = user.add_rule("Never use emojis.", context="birthday messages")
    original, edited = EDITS["emoji:+"]
    result = user.add_edit(BIRTHDAY, response=original, edited=edited, context="birthday messages")
    ignored = [o for o in result.outcomes if o.action == "ignored"]
    assert ignored and ignored[0].rule_id is None and str(stated.id) in ignored[0].reason
    assert all(r.template != "emoji:+" for r in user.rules(include_superseded=True))
    assert persona.store.get_memory("alice", stated.id).is_valid
    assert stated.id in rule_ids(user.explain("Write a birthday message for my friend Alex"))
    # The edit and its pair are still kept: the feedback itself is not lost.
    assert [m.kind for m in user.memories() if m.kind != "rule"] == ["edit", "pair"]


def test_add_rules_with_an_ignored_inferred_rule_does_not_crash(persona):
    user = persona.user("alice")
    stated = user.add_rule("Never use emojis.")
    returned = user.add_rules(["Use emojis.", "Call me Captain."], source="inferred")
    assert "Use emojis." not in [m.text for m in returned]
    assert [r.text for r in user.rules()] == ["Never use emojis.", "Call me Captain."]
    assert persona.store.get_memory("alice", stated.id).is_valid


def test_a_contextual_opposite_is_an_exception_not_a_contradiction(persona):
    user = persona.user("alice")
    general = user.add_rule("Use emojis.")
    exception = user.add_rule("Never use emojis.", context="emails to my manager")
    assert [r.id for r in user.rules()] == [general.id, exception.id]  # both valid
    at_work = rule_ids(user.explain("Write an email to my manager about the budget"))
    assert exception.id in at_work and general.id not in at_work
    elsewhere = rule_ids(user.explain("Plan a birthday party for my niece"))
    assert general.id in elsewhere and exception.id not in elsewhere


def test_one_preference_seen_in_two_unrelated_contexts_becomes_global(persona):
    user = persona.user("alice")
    first = user.add_edit(
        "Invite my niece's friends",
        EMOJI_RESPONSE,
        EMOJI_EDITED,
        context="birthday party invitation",
    )
    (rule,) = first.inferred_rules
    assert rule.context == "birthday party invitation"
    assert rule.id not in rule_ids(user.explain("How do I file my quarterly taxes?"))
    second = user.add_edit(
        "Summarise my tax situation",
        EMOJI_RESPONSE.replace("new job", "tax refund"),
        EMOJI_EDITED.replace("new job", "tax refund"),
        context="quarterly tax filing for my small business",
    )
    (outcome,) = second.outcomes
    assert (outcome.action, outcome.rule_id) == ("reinforced", rule.id)
    assert "everywhere" in outcome.reason
    general = persona.store.get_memory("alice", rule.id)
    assert (general.context, general.support, general.template) == (None, 2, "emoji:-")
    assert [r.id for r in user.rules()] == [rule.id]
    assert rule.id in rule_ids(user.explain("Explain how a CPU cache works"))
    index_agrees(persona, "alice")


def test_a_preference_seen_twice_in_a_similar_context_stays_contextual(persona):
    user = persona.user("alice")
    first = user.add_edit(BIRTHDAY, EMOJI_RESPONSE, EMOJI_EDITED, context="birthday messages")
    second = user.add_edit(
        "Write a birthday message for my friend Alex",
        EMOJI_RESPONSE,
        EMOJI_EDITED,
        context="birthday messages for friends",
    )
    (rule,) = first.inferred_rules
    assert [o.action for o in second.outcomes] == ["reinforced"]
    kept = persona.store.get_memory("alice", rule.id)
    assert (kept.context, kept.support) == ("birthday messages", 2)


# -- retrieval -----------------------------------------------------------------------------


def test_a_rule_taught_by_an_edit_comes_back_for_similar_requests_only(persona):
    user = persona.user("alice")
    result = user.add_edit(BIRTHDAY, response=EMOJI_RESPONSE, edited=EMOJI_EDITED)
    (rule,) = result.inferred_rules
    similar = user.explain("Write a birthday message for my friend Alex")
    assert rule_ids(similar) == [rule.id]
    assert similar.rules[0].source == "inferred" and similar.rules[0].similarity > 0.5
    assert rule_ids(user.explain("Explain how a CPU cache works")) == []
    assert rule_ids(user.explain("How do I file my quarterly taxes?")) == []


def test_stated_rules_outrank_inferred_ones_at_equal_similarity(persona):
    user = persona.user("alice")
    context = "birthday messages for friends"
    result = user.add_edit(BIRTHDAY, EMOJI_RESPONSE, EMOJI_EDITED, context=context)
    (inferred,) = result.inferred_rules
    stated = user.add_rule("Sign it from Uncle Bob.", context=context)
    explained = user.explain("Write a birthday message for my friend Alex")
    assert rule_ids(explained) == [stated.id, inferred.id]
    assert explained.rules[0].similarity == pytest.approx(explained.rules[1].similarity, abs=1e-5)
    top1 = Retriever(persona.store, persona.indexes, RetrievalConfig(top_k=1))
    vector = persona.embedder.encode_one("Write a birthday message for my friend Alex")
    assert [r.id for r in top1.retrieve("alice", vector)] == [stated.id]


def test_top_k_caps_contextual_rules_and_every_global_rule_applies(persona):
    user = persona.user("alice")
    texts = [
        "Call me Captain.",
        "Mention the weather.",
        "Use British spelling.",
        "Cite your sources.",
        "Write in Spanish.",
        "Include a haiku.",
        "Mention my cat Felix.",
        "Use metric units.",
    ]
    ask = "What should I cook tonight?"
    stored = user.add_rules([(t, ask) for t in texts])  # contextual: found by the request
    assert len({m.id for m in stored}) == len(texts)  # no two of these are duplicates
    assert len(user.explain(ask).rules) == 5  # the default top_k
    persona.retrieval_config.top_k = 3
    assert len(user.explain(ask).rules) == 3
    user.add_rules(["Answer in one sentence.", "Never mention competitors."])  # global
    assert len(user.explain(ask).rules) == 3 + 2  # global rules are never cut by top_k
    retriever = Retriever(persona.store, persona.indexes, persona.retrieval_config)
    vector = persona.embedder.encode_one(ask)
    assert len(retriever.retrieve("alice", vector, top_k=8)) == 8 + 2
    assert retriever.retrieve("alice", vector, top_k=0) == []  # asked for none at all
    persona.retrieval_config.top_k = 5


def test_deleting_an_edit_deletes_its_pair_and_unlinks_its_rules(persona):
    user = persona.user("alice")
    result = user.add_edit(BIRTHDAY, EMOJI_RESPONSE, EMOJI_EDITED)
    other = user.add_pair("Which?", chosen="This one.", rejected="That one.")
    (rule,) = result.inferred_rules
    user.delete_memory(result.memory.id)
    for gone in (result.memory.id, result.pair.id):
        with pytest.raises(MemoryNotFoundError):
            persona.store.get_memory("alice", gone)
    kept = persona.store.get_memory("alice", rule.id)
    assert kept.origin_id is None and kept.is_valid
    assert [m.id for m in user.memories(kind="pair")] == [other.id]
    assert user.memories(kind="edit") == []
    index_agrees(persona, "alice")
    assert result.memory.id not in persona.indexes.get("alice").ids()
    # Deleting a pair alone leaves everything else.
    user.delete_memory(other.id)
    assert [m.id for m in user.memories()] == [rule.id]
    with pytest.raises(InvalidInputError):
        user.delete_memory("1")
