"""The rule-relation classifier against the hand-written pair corpus (issue 19, item 1).

``rule_pairs.jsonl`` is the gating corpus. ``rule_pairs_holdout.jsonl`` was written after
the classifier and scored once before any change: it guards against a classifier fitted
to the corpus, so it has an overall floor rather than per-pair cases.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from persona_sdk.memory.relations import RELATIONS, classify_relation, read_rule

DATA = Path(__file__).parent / "data"
TARGETS = {
    "restatement": 1.0,
    "negation": 1.0,
    "changed_value": 1.0,
    "exception": 1.0,
    "unrelated": 1.0,
    "changed_fact": 0.9,
}
HOLDOUT_FLOOR = 0.9


def _load(name: str) -> list[dict]:
    with open(DATA / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


PAIRS = _load("rule_pairs.jsonl")
HOLDOUT = _load("rule_pairs_holdout.jsonl")


def _relation(pair: dict) -> str:
    return classify_relation(
        pair["older"], pair["older_context"], pair["newer"], pair["newer_context"]
    ).relation


def _per_class(pairs: list[dict]) -> dict[str, tuple[int, int]]:
    right, total = Counter(), Counter()
    for pair in pairs:
        total[pair["expected"]] += 1
        right[pair["expected"]] += _relation(pair) == pair["expected"]
    return {c: (right[c], total[c]) for c in RELATIONS if total[c]}


def _report(title: str, table: dict[str, tuple[int, int]]) -> None:
    print(f"\n{title}")
    for name, (right, total) in table.items():
        print(f"  {name:14s} {right:3d}/{total:<3d} {right / total:6.1%}")


def test_corpus_shape() -> None:
    assert len(PAIRS) >= 100
    counts = Counter(p["expected"] for p in PAIRS)
    assert set(counts) == set(RELATIONS)
    assert min(counts.values()) >= 14
    for pair in PAIRS + HOLDOUT:
        assert set(pair) == {"older", "older_context", "newer", "newer_context", "expected"}
        assert pair["expected"] in RELATIONS
        assert pair["older_context"] is None or isinstance(pair["older_context"], str)
        assert pair["newer_context"] is None or isinstance(pair["newer_context"], str)
    pairs = [(p["older"], p["older_context"], p["newer"], p["newer_context"]) for p in PAIRS]
    assert len(set(pairs)) == len(pairs), "duplicate pairs"


@pytest.mark.parametrize(
    "pair", PAIRS, ids=[f"{i}-{p['expected']}-{p['newer'][:24]}" for i, p in enumerate(PAIRS)]
)
def test_pair(pair: dict) -> None:
    if pair["expected"] == "changed_fact" and TARGETS["changed_fact"] < 1.0:
        got = _relation(pair)
        if got != pair["expected"]:
            pytest.xfail(f"changed_fact is gated at {TARGETS['changed_fact']:.0%}: got {got}")
    relation = classify_relation(
        pair["older"], pair["older_context"], pair["newer"], pair["newer_context"]
    )
    assert relation.relation == pair["expected"], relation.reason


def test_per_class_accuracy() -> None:
    table = _per_class(PAIRS)
    _report("rule_pairs.jsonl", table)
    for name, (right, total) in table.items():
        assert right / total >= TARGETS[name], f"{name}: {right}/{total}"


def test_holdout_accuracy() -> None:
    table = _per_class(HOLDOUT)
    _report("rule_pairs_holdout.jsonl", table)
    right = sum(r for r, _ in table.values())
    total = sum(t for _, t in table.values())
    assert right / total >= HOLDOUT_FLOOR, f"{right}/{total}"


def test_reading_explains_the_decision() -> None:
    lists = read_rule("Use lists, not prose")
    assert lists.template == "bullets:+" and lists.polarity == 1
    prose = read_rule("Write in prose, not bulleted lists")
    assert prose.template == "bullets:-" and prose.polarity == -1
    limit = read_rule("Keep it under fifty words")
    assert [(v.kind, v.value, v.comparator) for v in limit.values] == [("length", "50 word", "<=")]
    assert limit.template == "length:-"
    changed = classify_relation("Reply in French", None, "Reply in English", None)
    assert changed.relation == "changed_value" and changed.topic == ("do:language",)
    assert "french" in changed.reason and "english" in changed.reason
    assert read_rule("My name is Alice").topic_key == "name:self"


def test_scope_of_a_restatement_is_reported() -> None:
    """The same rule for two contexts is a restatement in a disjoint scope: consolidation
    must keep it scoped, never widen it to a global rule (hostile test A4)."""
    relation = classify_relation(
        "Keep it under 100 words", "emails to my manager", "Keep it under 100 words", "texts"
    )
    assert (relation.relation, relation.scope) == ("restatement", "disjoint")
    wider = classify_relation("Use emojis", "texts to friends", "Never use emojis", None)
    assert (wider.relation, wider.scope) == ("negation", "broader")


def test_template_texts_read_as_their_templates() -> None:
    edits = pytest.importorskip("persona_sdk.memory.edits")
    for feature in edits.TEMPLATES:
        for direction, sign in ((1, "+"), (-1, "-")):
            text = edits.template_text(feature, direction)
            assert read_rule(text).template == f"{feature}:{sign}", text


def test_cosine_bands_move_only_borderline_overlaps() -> None:
    older, newer = "Skip the small talk greeting", "Don't greet me"
    assert classify_relation(older, None, newer, None).relation == "unrelated"
    assert classify_relation(older, None, newer, None, cosine=0.9).relation == "restatement"
    older, newer = "Never mention my ex", "Never mention my ex boss"
    assert classify_relation(older, None, newer, None).relation == "restatement"
    assert classify_relation(older, None, newer, None, cosine=0.1).relation == "unrelated"
    # a lexicon topic is not overruled by a low cosine: the negation stays a negation
    low = classify_relation("Always use emojis", None, "Never use emojis", None, cosine=0.1)
    assert low.relation == "negation"


@pytest.mark.parametrize("text", ["", "\u200b", "[/]", "a" * 5000, "!!!", "123", "no no no"])
def test_odd_input_reads_without_error(text: str) -> None:
    reading = read_rule(text)
    assert reading.polarity in (1, -1)
    assert classify_relation(text, None, text, None).relation in RELATIONS


def test_deterministic() -> None:
    first = [_relation(p) for p in PAIRS]
    assert first == [_relation(p) for p in PAIRS]
