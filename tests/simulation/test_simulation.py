"""Simulated users: attributes, sparse taste, Bradley–Terry labels, the editor, splits,
the prompt set and the word-level edit distance."""

from __future__ import annotations

import numpy as np
import pytest

from persona_sdk.memory.edits import TEMPLATES, classify_rule, template_text
from persona_sdk.simulation.users import (
    ATTRIBUTE_NAMES,
    ATTRIBUTES,
    CATEGORIES,
    EDITABLE,
    EDITABLE_DIRECTIONS,
    PROMPTS,
    SimulatedUser,
    attribute_vector,
    edit_distance,
    edit_toward,
    make_population,
    make_prompts,
    split_prompts,
    split_seen_unseen,
)
from persona_sdk.text.style import STYLE_FEATURES

RICH = """Hey there! 😊

## Overview

I think you'll probably want to use a list here. However, note that it's kinda tricky! \
Maybe that's ok?

- First, install the package 🎉
- Then run `pip install foo` and check it works.
- Finally, you might test it.

```python
print("hi")
```

In short: it's easy. Does that help?

Best,
Sam"""
PLAIN = (
    "Sleep matters because the brain uses it to store memories and clear waste. It is a good "
    "idea to keep a regular schedule and do not drink coffee late in the day. For example, a warm "
    "bath can help you relax before bed. A dark, quiet room also helps, like a cave. Most adults "
    "need seven to nine hours."
)
EMAIL = """Dear Ms. Patel,

I wanted to let you know that the project will probably be delayed by two weeks. The supplier \
could not deliver the parts on time. However, we have a plan to catch up!

Please let me know if you have any questions.

Best regards,
Jordan"""
CODE = """Sure! You can reverse a list in Python with slicing:

```python
items = [1, 2, 3]
print(items[::-1])
```

This creates a new list. If you want to reverse it in place, use `items.reverse()` instead. \
Does that help? 😊"""
STEPS = """## Tips for better sleep

1. Keep a regular schedule.
2. Avoid screens an hour before bed.
3. Keep your bedroom cool and dark.

I think these will help. Good luck!"""
ADVICE = (
    "I'm sorry to hear you're stressed. That sounds hard. For example, try saving a little money "
    "each month: even $50 adds up to $600 a year, roughly 10% of a small budget. A walk among the "
    "trees by the river can also help you relax, and I hope you enjoy it."
)
STORY = (
    "Once upon a time, a lighthouse keeper lived alone by the sea. Every night she climbed the "
    "stairs and lit the lamp. Imagine her surprise when a ship finally answered with a light of "
    "its own! She waved, and the sailors waved back. From then on, she was never lonely again."
)
SAMPLES = [RICH, PLAIN, EMAIL, CODE, STEPS, ADVICE, STORY, "Yes.", ""]
PROMPT = "How can I sleep better?"


def one_hot(name: str, direction: int, **kwargs) -> SimulatedUser:
    weights = np.zeros(len(ATTRIBUTES))
    weights[ATTRIBUTE_NAMES.index(name)] = direction
    return SimulatedUser(f"{name}{direction:+d}", weights, **kwargs)


def value(text: str, name: str, prompt: str = PROMPT) -> float:
    return float(attribute_vector(text, prompt)[ATTRIBUTE_NAMES.index(name)])


# -- attributes ----------------------------------------------------------------------------


def test_attribute_catalogue():
    assert len(ATTRIBUTES) >= 12
    assert len(set(ATTRIBUTE_NAMES)) == len(ATTRIBUTES)
    hidden = [a for a in ATTRIBUTES if not a.in_style_features]
    assert len(hidden) * 3 >= len(ATTRIBUTES)  # at least a third only visible to an embedding
    for a in ATTRIBUTES:
        assert a.more_rule and a.less_rule and a.more_rule != a.less_rule
        if a.in_style_features:
            assert a.name in STYLE_FEATURES
            assert (a.more_rule, a.less_rule) == TEMPLATES[a.name]
        else:
            assert a.name not in STYLE_FEATURES
            # the rule classifier must not mistake them for style templates (contradictions)
            assert classify_rule(a.more_rule) is None and classify_rule(a.less_rule) is None
            assert {a.more_rule, a.less_rule}.isdisjoint(
                r for pair in TEMPLATES.values() for r in pair
            )


def test_measures_bounded_deterministic_and_informative():
    prompts = [PROMPT, "Write an email to my manager about a project delay.", ""]
    table = np.array([attribute_vector(t, p) for t in SAMPLES for p in prompts])
    assert table.shape == (len(SAMPLES) * len(prompts), len(ATTRIBUTES))
    assert np.all((table >= 0) & (table <= 1)) and np.all(np.isfinite(table))
    again = np.array([[a.measure(t, p) for a in ATTRIBUTES] for t in SAMPLES for p in prompts])
    np.testing.assert_allclose(again, table)
    spread = table.max(axis=0) - table.min(axis=0)
    assert all(spread > 0.2), [n for n, s in zip(ATTRIBUTE_NAMES, spread) if s <= 0.2]
    assert not attribute_vector("", "").any()


@pytest.mark.parametrize(
    ("name", "with_cue", "without_cue"),
    [
        ("analogies", "Think of it as a library: imagine shelves.", "It stores books."),
        ("second_person", "You should check your settings yourself.", "Check the settings."),
        ("caveats", "It works. However, keep in mind the limits.", "It works well."),
        ("examples", "Use fruit, for example apples, e.g. a Gala.", "Use fruit."),
        ("numbers", "It costs 12 euros, about 30% more than in 2019.", "It costs more now."),
        ("summary", "Lots of detail here. In short: it works.", "Lots of detail here."),
        ("empathy", "I'm sorry to hear that. That sounds hard.", "Here is the plan."),
        ("jargon", "Instantiate the asynchronous serialization infrastructure.", "Do it now."),
        ("nature", "Walk through the forest by the river under the trees.", "Walk to the shop."),
        ("money", "Set a budget and save money to cut the cost.", "Make a plan."),
        ("warmth", "Great question! I hope you enjoy it, good luck.", "Here it is."),
    ],
)
def test_hidden_attributes_respond_to_their_cues(name, with_cue, without_cue):
    assert value(with_cue, name) > value(without_cue, name) + 0.3


def test_echo_depends_on_the_prompt():
    text = "Compound interest grows savings because interest earns interest."
    assert value(text, "echo", "Explain how compound interest works.") == 1.0
    assert value(text, "echo", "Write a poem about a lighthouse keeper.") == 0.0


# -- populations ---------------------------------------------------------------------------


def test_dirichlet_weights_are_sparse_signed_and_reproducible():
    users = make_population(300, seed=1, alpha=0.3)
    weights = np.stack([u.weights for u in users])
    np.testing.assert_allclose(np.abs(weights).sum(axis=1), 1.0)
    assert (weights > 0).any() and (weights < 0).any()
    top3 = np.sort(np.abs(weights), axis=1)[:, -3:].sum(axis=1)
    assert np.median(top3) > 0.45  # most mass on a few attributes ...
    dense = np.stack([u.weights for u in make_population(300, seed=1, alpha=5.0)])
    assert np.median(np.sort(np.abs(dense), axis=1)[:, -3:].sum(axis=1)) < 0.3  # ... unlike α=5
    assert np.mean([len(u.preferences()) for u in users]) < 6
    same = make_population(300, seed=1, alpha=0.3)
    assert all(np.array_equal(a.weights, b.weights) for a, b in zip(users, same))
    assert [u.user_id for u in users] == [u.user_id for u in same]
    assert len({u.user_id for u in users}) == len(users)
    other = make_population(300, seed=2, alpha=0.3)
    assert not np.allclose(weights, np.stack([u.weights for u in other]))


def test_editable_only_population_can_always_be_acted_on():
    assert {"length", "emoji", "bullets", "greeting", "signoff", "questions"} <= EDITABLE
    assert EDITABLE - set(STYLE_FEATURES)  # some edits are invisible to style features
    for user in make_population(100, seed=3, editable_only=True):
        for name, w in zip(ATTRIBUTE_NAMES, user.weights):
            if w != 0:
                assert name in EDITABLE and (1 if w > 0 else -1) in EDITABLE_DIRECTIONS[name]


def test_population_rejects_bad_arguments():
    with pytest.raises(ValueError):
        make_population(3, alpha=0.0)
    with pytest.raises(ValueError):
        SimulatedUser("u", np.zeros(3))


def test_seen_and_unseen_users_are_disjoint():
    users = make_population(50, seed=0)
    seen, unseen = split_seen_unseen(users, 0.2, seed=4)
    assert len(unseen) == 10 and len(seen) == 40
    assert {u.user_id for u in seen}.isdisjoint(u.user_id for u in unseen)
    assert {u.user_id for u in seen} | {u.user_id for u in unseen} == {u.user_id for u in users}
    assert [u.user_id for u in split_seen_unseen(users, 0.2, seed=4)[1]] == [
        u.user_id for u in unseen
    ]
    with pytest.raises(ValueError):
        split_seen_unseen(users, 1.5)


# -- utility, labels and the oracle --------------------------------------------------------


def test_utility_and_top_attributes():
    user = one_hot("emoji", -1)
    assert user.utility(PROMPT, "Done.") > user.utility(PROMPT, "Done! 🎉🎉")
    weights = np.zeros(len(ATTRIBUTES))
    weights[[0, 4, 13]] = [0.2, -0.5, 0.3]
    top = SimulatedUser("u", weights).top_attributes(2)
    assert top == [(ATTRIBUTE_NAMES[4], -0.5), (ATTRIBUTE_NAMES[13], 0.3)]


def test_bradley_terry_labels_follow_utilities():
    rng = np.random.default_rng(0)
    users = make_population(40, seed=5)
    texts = SAMPLES[:-1]
    agree, total = 0, 0
    for user in users:
        sharp = SimulatedUser(user.user_id, user.weights, beta=1000.0)
        for i, a in enumerate(texts):
            for b in texts[i + 1 :]:
                gap = sharp.utility(PROMPT, a) - sharp.utility(PROMPT, b)
                if abs(gap) > 0.01:
                    agree += sharp.prefers(PROMPT, a, b, rng) == (gap > 0)
                    total += 1
                p = user.preference_probability(PROMPT, a, b)
                assert p == pytest.approx(1 - user.preference_probability(PROMPT, b, a))
    assert total > 200 and agree / total > 0.99
    coin = SimulatedUser("coin", users[0].weights, beta=0.0)
    picks = [coin.prefers(PROMPT, RICH, PLAIN, rng) for _ in range(4000)]
    assert 0.46 < np.mean(picks) < 0.54


def test_oracle_rules_use_the_template_wording():
    weights = np.zeros(len(ATTRIBUTES))
    for name, w in [("emoji", -0.4), ("analogies", 0.25), ("bullets", 0.2), ("money", 0.05)]:
        weights[ATTRIBUTE_NAMES.index(name)] = w
    user = SimulatedUser("u", weights, threshold=0.1)
    assert user.oracle_rules() == [
        template_text("emoji", -1),
        "Use analogies to explain ideas.",
        template_text("bullets", +1),
    ]
    templated = {r for pair in TEMPLATES.values() for r in pair}
    for u in make_population(50, seed=6):
        rules = u.oracle_rules()
        assert len(rules) == len(u.preferences()) >= 1
        for (name, _), rule in zip(u.preferences(), rules):
            assert (rule in templated) == (name in STYLE_FEATURES)


# -- the editor ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "direction"), [(n, d) for n in EDITABLE_DIRECTIONS
                                                 for d in EDITABLE_DIRECTIONS[n]])  # fmt: skip
def test_each_edit_moves_its_attribute_the_right_way(name, direction):
    moved = []
    for text in SAMPLES:
        before, after = value(text, name), value(edit_toward(text, name, direction), name)
        assert (after - before) * direction >= -1e-9, (text, after, before)
        moved.append((after - before) * direction > 1e-9)
    values = [value(text, name) for text in SAMPLES]
    most_room = int(np.argmax(values) if direction < 0 else np.argmin(values))
    assert moved[most_room]
    designated = SAMPLES[most_room]
    user = one_hot(name, direction)
    edited = user.edit(PROMPT, designated)
    assert (value(edited, name) - value(designated, name)) * direction > 0
    assert edited.split()


def test_edits_keep_code_and_content():
    bulleted = edit_toward(CODE, "bullets", +1)
    assert "```python\nitems = [1, 2, 3]\nprint(items[::-1])\n```" in bulleted
    assert "- This creates a new list." in bulleted
    assert edit_toward(EMAIL, "greeting", -1).startswith("I wanted to let you know")
    assert edit_toward(EMAIL, "signoff", -1).endswith("if you have any questions.")
    assert edit_toward(PLAIN, "greeting", +1).endswith(PLAIN)
    assert "going to" in edit_toward("I'm gonna try, it's ok.", "casual", -1)
    assert edit_toward("Maybe that's fine. It might work.", "hedging", -1) == (
        "That's fine. It will work."
    )
    assert edit_toward("", "summary", +1) == ""


def test_edit_raises_utility_for_random_users():
    gains, strict = [], 0
    users = make_population(60, seed=7, editable_only=True) + make_population(60, seed=8)
    for user in users:
        for text in SAMPLES:
            edited = user.edit(PROMPT, text)
            gain = user.utility(PROMPT, edited) - user.utility(PROMPT, text)
            assert gain >= 0
            if user.user_id.startswith("sim7") and len(text.split()) > 1:
                gains.append(gain)
                strict += gain > 1e-9 and edit_distance(text, edited) > 0
    assert strict / len(gains) > 0.7  # editable-only users usually find something to fix
    assert np.mean(gains) > 0.05


def test_edit_is_idempotent_and_leaves_satisfied_text_alone():
    for user in make_population(60, seed=9, editable_only=True):
        for text in SAMPLES:
            once = user.edit(PROMPT, text)
            assert user.edit(PROMPT, once) == once
    uninterested = one_hot("nature", +1)  # no edit for it: the editor does nothing
    assert all(uninterested.edit(PROMPT, t) == t for t in SAMPLES)


# -- prompts -------------------------------------------------------------------------------


def test_prompt_set_is_large_diverse_and_splits_cleanly():
    texts = [p.text for p in PROMPTS]
    assert len(set(texts)) == len(texts) >= 300
    counts = {c: sum(p.category == c for p in PROMPTS) for c in CATEGORIES}
    assert len(counts) >= 6 and min(counts.values()) >= 10
    sample = make_prompts(120, seed=3)
    assert len(set(sample)) == 120 and sample == make_prompts(120, seed=3)
    assert sample != make_prompts(120, seed=4)
    assert len({p.category for p in sample}) >= 6
    train, held_out = split_prompts(sample, 0.25, seed=1)
    assert len(held_out) == 30 and len(train) == 90
    assert {p.text for p in train}.isdisjoint(p.text for p in held_out)
    assert set(train) | set(held_out) == set(sample)
    with pytest.raises(ValueError):
        make_prompts(len(PROMPTS) + 1)


# -- edit distance -------------------------------------------------------------------------


def reference_distance(a: list[str], b: list[str]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def test_edit_distance_known_values():
    assert edit_distance("the cat sat", "the cat sat") == 0
    assert edit_distance("the cat sat", "the dog sat") == 1
    assert edit_distance("the cat sat", "the cat sat down") == 1
    assert edit_distance("the big cat sat", "the cat") == 2
    assert edit_distance("", "") == 0
    assert edit_distance("", "one two three") == 3
    assert edit_distance("one two three", "") == 3
    assert edit_distance("a  b\n c", "a b c") == 0  # words are whitespace tokens
    assert edit_distance("a b c d", "b c d a") == 2
    assert edit_distance("kitten sitting", "sitting kitten") == 2


def test_edit_distance_matches_reference_dp():
    rng = np.random.default_rng(0)
    vocab = ["a", "b", "c", "d"]
    for _ in range(200):
        a = list(rng.choice(vocab, size=rng.integers(0, 12)))
        b = list(rng.choice(vocab, size=rng.integers(0, 12)))
        expected = reference_distance(a, b)
        assert edit_distance(" ".join(a), " ".join(b)) == expected
        assert edit_distance(" ".join(b), " ".join(a)) == expected
