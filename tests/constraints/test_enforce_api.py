"""Constraints through the public API: each request is held to its user's checkable
rules (global always, contextual when retrieved), verified, and reported on the reply."""

from __future__ import annotations

import json

from persona_sdk.constraints import Case, JsonOnly, MaxSentences, MaxWords, SignOff, StartPhrase
from persona_sdk.constraints.select import enforced_rules, request_constraints


def kinds(reply) -> list[str]:
    return [c.constraint.kind for c in reply.constraints]


def all_passed(reply) -> bool:
    return all(c.passed for c in reply.constraints)


def test_generate_keeps_and_reports_the_users_rules(persona):
    alice = persona.user("alice")
    alice.add_rule("Answer in one sentence.")
    alice.add_rule("Start every reply with the word 'Sure'.")
    reply = persona.generate("alice", "How can I sleep better?", max_new_tokens=40)
    assert kinds(reply) == ["max_sentences", "start_phrase"]
    assert all_passed(reply), reply.text
    assert reply.text.startswith("Sure")
    data = reply.to_dict()["constraints"]
    assert data[0]["constraint"] == {"kind": "max_sentences", "limit": 1}
    assert data[0]["passed"] is True


def test_generate_batch_mixes_users_with_their_own_constraints(persona):
    persona.user("lo").add_rule("Write only in lowercase letters.")
    persona.user("lo").add_rule("Sign every reply as Sam.")
    persona.user("js").add_rule("Reply in JSON only.")
    persona.user("free").add_rule("Be warm and friendly.")  # prompt-only
    replies = persona.generate_batch(
        [("lo", "Sleep tips?"), ("free", "Sleep tips?"), ("js", "Sleep tips?")],
        max_new_tokens=40,
    )
    assert kinds(replies[0]) == ["case", "sign_off"] and all_passed(replies[0])
    assert replies[0].text == replies[0].text.lower()
    assert replies[1].constraints == []
    assert kinds(replies[2]) == ["json"] and all_passed(replies[2])
    assert isinstance(json.loads(replies[2].text), dict)


def test_streaming_is_enforced_and_the_final_reply_verified(persona):
    persona.user("bob").add_rule("End every reply with 'Cheers'.")
    stream = persona.generate("bob", "Explain black holes", stream=True, max_new_tokens=30)
    chunks = list(stream)
    assert "".join(chunks).strip() == stream.reply.text
    assert kinds(stream.reply) == ["end_phrase"] and all_passed(stream.reply)


def test_best_of_ranks_satisfied_constraints_first_among_sound_replies(persona):
    persona.user("carol").add_rule("Use exactly 3 bullet points.")
    persona.user("carol").add_rule("Never more than 25 words.")
    reply = persona.generate("carol", "Sleep tips?", best_of=3, max_new_tokens=48, seed=1)
    sound = [c["degenerate"] for c in reply.candidates]
    assert sound == sorted(sound)  # sound replies first, whatever else
    for flag in (False, True):
        met = [c["constraints_met"] for c in reply.candidates if c["degenerate"] is flag]
        assert met == sorted(met, reverse=True)
    assert sum(c.passed for c in reply.constraints) == reply.candidates[0]["constraints_met"]


def test_a_look_alike_rule_stays_prompt_only(persona):
    dave = persona.user("dave")
    dave.add_rule("Keep it short-ish.")
    dave.add_rule("Try not to use too many emojis.")
    reply = persona.generate("dave", "Say hi", max_new_tokens=12)
    assert reply.constraints == []
    assert [r.text for r in reply.used_rules]  # still in the prompt


def test_an_unmeetable_constraint_is_reported_not_dropped(persona):
    persona.user("erin").add_rule(
        "Start every reply with 'Absolutely wonderful question my friend'."
    )
    reply = persona.generate("erin", "Say hi", max_new_tokens=3)
    assert kinds(reply) == ["start_phrase"]
    assert reply.constraints[0].passed is False


class Rule:
    def __init__(self, id: int, text: str, context: str | None = None):
        self.id, self.text, self.context = id, text, context


def test_global_rules_always_contextual_when_retrieved_newest_wins():
    globals_ = [Rule(1, "Keep every reply under 30 words."), Rule(3, "Never more than 50 words.")]
    email = Rule(2, "Answer in one sentence.", context="emails to my manager")
    assert request_constraints(enforced_rules(globals_, [])) == [MaxWords(50)]
    both = enforced_rules(globals_, [email])
    assert request_constraints(both) == [MaxWords(50), MaxSentences(1)]
    assert [r.rule_id for r in both] == [3, 2]  # rule 1 lost to the newer limit
    exception = Rule(0, "Keep it under 100 words.", context="emails")  # older, but specific
    assert request_constraints(enforced_rules(globals_, [exception])) == [MaxWords(100)]


def test_enforced_rules_report_their_parameters():
    rules = enforced_rules([Rule(1, "Lowercase only, and sign as Sam.")], [])
    assert rules[0].constraints == (Case("lower"), SignOff("Sam"))
    assert rules[0].to_dict()["constraints"][1] == {"kind": "sign_off", "name": "Sam"}
    assert JsonOnly() not in rules[0].constraints and StartPhrase("x") != rules[0].constraints[0]


def test_constraints_compose_with_guidance_and_the_guard(tp):
    from tests.helpers import add_pairs

    user = tp.user("gus")
    add_pairs(user)
    user.add_rule("Write only in lowercase letters.")
    user.add_rule("End every reply with a question to me.")
    reply = tp.generate("gus", "Tips for sleep?", strength=1.0, max_new_tokens=30)
    assert reply.strength == 1.0
    assert kinds(reply) == ["case", "end_question"] and all_passed(reply), reply.text
    best = tp.generate("gus", "Tips for sleep?", strength=1.0, best_of=2, max_new_tokens=24)
    assert all_passed(best), best.text
