"""Rule consolidation: a new rule reinforces a duplicate, supersedes a contradiction, or
is added. Runs inside the user's write transaction, so concurrent writers cannot both
add the same rule or both miss a contradiction.

Scope matters: a rule with a context is an exception for that context, not a
contradiction of a global rule. Two rules contradict when they state opposite templates
("emoji:+" vs "emoji:-") in the same scope (both global, or similar contexts).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from persona_sdk.config import MemoryConfig
from persona_sdk.memory.edits import opposite
from persona_sdk.memory.store import StoredRule, UserWrite


@dataclass
class NewRule:
    """A rule to consolidate, with its embeddings."""

    text: str
    source: str
    confidence: float
    template: str | None
    context: str | None
    text_vector: np.ndarray
    context_vector: np.ndarray | None = None
    origin_id: int | None = None

    @property
    def retrieval_vector(self) -> np.ndarray:
        """Contextual rules are found by their context (CIPHER); global ones by their text."""
        return self.context_vector if self.context is not None else self.text_vector


@dataclass
class Outcome:
    """What consolidation did with one rule, and how the user's index must change."""

    action: str  # "added", "reinforced", "superseded" (added, closing older) or "ignored"
    rule_id: int | None
    reason: str = ""
    superseded: list[int] = field(default_factory=list)
    index_add: list[tuple[int, np.ndarray]] = field(default_factory=list)
    index_remove: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "action": self.action,
            "rule_id": self.rule_id,
            "reason": self.reason,
            "superseded": self.superseded,
        }


def _same_scope(rule: NewRule, old: StoredRule, config: MemoryConfig) -> bool:
    if rule.context is None or old.memory.context is None:
        return rule.context is None and old.memory.context is None
    if old.vector is None or rule.context_vector is None:
        return rule.context == old.memory.context
    return float(old.vector @ rule.context_vector) >= config.generalize_below


def _is_duplicate(rule: NewRule, old: StoredRule, config: MemoryConfig) -> bool:
    memory = old.memory
    # Canonical inferred texts match by template; stated wording must match by meaning.
    inferred = rule.source != "stated" and memory.source != "stated"
    if inferred and rule.template is not None and memory.template == rule.template:
        return True
    if old.text_vector is None:
        return _normalise(memory.text) == _normalise(rule.text)
    return float(old.text_vector @ rule.text_vector) >= config.duplicate_similarity


def _normalise(text: str | None) -> str:
    return " ".join((text or "").lower().split()).rstrip(".!")


def _close(session: UserWrite, outcome: Outcome, olds: list[StoredRule], by: int) -> None:
    for old in olds:
        session.update(old.memory.id, valid_to=session.now, superseded_by=by)
        outcome.superseded.append(old.memory.id)
        outcome.index_remove.append(old.memory.id)


def _reinforce(
    session: UserWrite,
    rule: NewRule,
    old: StoredRule,
    existing: list[StoredRule],
    config: MemoryConfig,
) -> Outcome:
    memory = old.memory
    fields: dict = {
        "support": memory.support + 1,
        "confidence": round(1 - (1 - memory.confidence) * (1 - rule.confidence), 4),
    }
    text_vector = old.text_vector if old.text_vector is not None else rule.text_vector
    if rule.source == "stated" and memory.source != "stated":  # the user's own words win
        text_vector = rule.text_vector
        fields |= {
            "source": "stated",
            "text": rule.text,
            "text_embedding": text_vector,
            "confidence": 1.0,
        }
    outcome = Outcome("reinforced", memory.id, f"duplicate of rule {memory.id}")
    if memory.context is not None and not _same_scope(rule, old, config):
        # Confirmed in a different context (or stated globally): it applies everywhere now.
        fields |= {"context": None, "embedding": text_vector}
        outcome.reason += "; seen in another context, now applies everywhere"
        outcome.index_remove.append(memory.id)
        outcome.index_add.append((memory.id, text_vector))
        rivals = [
            r
            for r in existing
            if r.memory.context is None
            and memory.template is not None
            and r.memory.template == opposite(memory.template)
            and not (r.memory.source == "stated" and memory.source != "stated")
        ]
        _close(session, outcome, rivals, memory.id)
    session.update(memory.id, **fields)
    return outcome


def consolidate(session: UserWrite, rule: NewRule, config: MemoryConfig) -> Outcome:
    """Store ``rule`` consistently with the user's valid rules."""
    existing = session.valid_rules()
    duplicate = next((old for old in existing if _is_duplicate(rule, old, config)), None)
    if duplicate is not None:
        return _reinforce(session, rule, duplicate, existing, config)
    conflicts = [
        old
        for old in existing
        if rule.template is not None
        and old.memory.template == opposite(rule.template)
        and _same_scope(rule, old, config)
    ]
    stated = next((old.memory for old in conflicts if old.memory.source == "stated"), None)
    if rule.source != "stated" and stated is not None:
        return Outcome("ignored", None, f"contradicts stated rule {stated.id}, which wins")
    new_id = session.insert(
        {
            "kind": "rule",
            "source": rule.source,
            "text": rule.text,
            "context": rule.context,
            "confidence": rule.confidence,
            "template": rule.template,
            "origin_id": rule.origin_id,
            "embedding": rule.retrieval_vector,
            "text_embedding": rule.text_vector,
        }
    )
    outcome = Outcome("added", new_id, index_add=[(new_id, rule.retrieval_vector)])
    if conflicts:
        _close(session, outcome, conflicts, new_id)
        outcome.action = "superseded"
        outcome.reason = "contradicts rule " + ", ".join(str(o.memory.id) for o in conflicts)
    return outcome
