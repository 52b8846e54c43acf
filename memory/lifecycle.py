"""The rule-lifecycle policy for stated rules: what a new rule does to the valid ones.

Each new stated rule is compared (:func:`~persona_sdk.memory.relations.relate`) with the
user's valid rules most likely to be about the same thing, and the relations decide:

- an exact restatement (same topic, polarity and values) in the same scope reinforces the
  older rule (support + 1); the same topic and polarity with other values (a value
  added or dropped) supersedes it;
- a restatement in another scope is stored as its own scoped rule (never made global);
- a negation, changed value or changed fact, in the same or a broader scope, supersedes
  the older rule (closed, kept in history);
- an exception (opposite content, narrower context) is stored beside the older rule and
  remembers which rule it overrides, so retrieval can drop that rule in its context;
- unrelated rules are left alone.

See ARCHITECTURE.md, "Rule lifecycle", for the policy as a table.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from persona_sdk.memory.relations import Relation, RuleReading, relate
from persona_sdk.memory.store import StoredRule

SUPERSEDING = frozenset({"negation", "changed_value", "changed_fact"})
CANDIDATES = 8  # nearest valid rules (text cosine) the relation classifier looks at
_REASONS = {
    "negation": "negates",
    "changed_value": "changes the value of",
    "changed_fact": "changes the fact of",
    "restatement": "restates with other values",
}


@dataclass
class Decision:
    """What consolidation must do with one new stated rule."""

    reinforce: StoredRule | None = None  # the rule it restates in the same scope
    supersede: list[tuple[StoredRule, Relation]] = field(default_factory=list)
    exception_of: StoredRule | None = None
    reason: str = ""


def decide(
    reading: RuleReading,
    context: str | None,
    candidates: list[tuple[StoredRule, RuleReading, float]],
) -> Decision:
    """Apply the lifecycle policy to a new stated rule against ``candidates``: valid rules
    with their readings and text cosine, nearest first."""
    decision = Decision()
    related = [
        (old, relate(old_reading, old.memory.context, reading, context, cosine))
        for old, old_reading, cosine in candidates
    ]
    for old, relation in related:
        restates = relation.relation == "restatement" and _same_rule_scope(old, relation)
        if restates and _same_values(relation):
            decision.reinforce = old
            decision.reason = f"restates rule {old.memory.id}"
            return decision  # a restatement changes nothing else
    for old, relation in related:
        refines = relation.relation == "restatement" and _same_rule_scope(old, relation)
        if relation.relation in SUPERSEDING or refines:
            decision.supersede.append((old, relation))
        elif (
            relation.relation == "exception"
            and decision.exception_of is None
            and (
                # the opposite wish, or another value of the same measure, overrides the global
                # rule there; "under 100 words" for emails can hold beside "one sentence"
                relation.content == "opposite" or _values_conflict(relation)
            )
        ):
            decision.exception_of = old
    parts = [f"{_REASONS.get(rel.relation, rel.relation)} rule {old.memory.id}"
             for old, rel in decision.supersede]  # fmt: skip
    if decision.exception_of is not None:
        parts.append(f"exception to rule {decision.exception_of.memory.id} in its context")
    decision.reason = "; ".join(parts)
    return decision


def _measure(value: str) -> str:
    """What a value measures: the unit of a count ("100 word" -> "word"), else the value's
    kind alone (languages, unit systems)."""
    head, _, unit = value.partition(" ")
    return unit if head.replace(".", "").isdigit() else ""


def _values_conflict(relation: Relation) -> bool:
    """Both rules give a value of the same kind and measure, and they differ."""
    older, newer = relation.older.values, relation.newer.values
    return any(
        a.kind == b.kind and _measure(a.value) == _measure(b.value) and a.value != b.value
        for a in older
        for b in newer
    )


def _same_values(relation: Relation) -> bool:
    """An exact restatement states the same values ("Keep replies short" does not restate
    "Answer in one sentence": it drops the value, so it replaces the older rule)."""
    return relation.older.value_keys() == relation.newer.value_keys()


def _same_rule_scope(old: StoredRule, relation: Relation) -> bool:
    """A restatement reinforces only in the same scope; an inferred rule restated by the
    user is taken over whatever its context (the user's words and scope win)."""
    return relation.scope == "same" or old.memory.source != "stated"
