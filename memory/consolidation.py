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
from persona_sdk.memory.edits import normalise_rule_text, opposite
from persona_sdk.memory.store import StoredRule, UserWrite


@dataclass(kw_only=True)
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


class RuleSet:
    """The user's valid rules as one write transaction sees them, kept current while a
    batch consolidates: the rules are read once (or reused from the previous write of
    this process, see :meth:`resume`), and the text-vector matrix is updated in place,
    so consolidating one rule does not cost a pass over every stored rule."""

    def __init__(self, session: UserWrite, rules: list[StoredRule] | None = None):
        self.session = session
        self.version = session.starting_version()
        self.rules: dict[int, StoredRule] = {}
        self._row: dict[int, int] = {}  # memory id -> row of _matrix
        self._row_ids: list[int] = []  # row -> memory id (-1: removed)
        self._matrix = np.zeros((0, 0), dtype=np.float32)
        for rule in session.valid_rules() if rules is None else rules:
            self._put(rule)

    @classmethod
    def resume(cls, session: UserWrite, previous: RuleSet | None) -> RuleSet:
        """Reuse ``previous`` when nobody wrote to the user since it was committed."""
        if previous is not None and previous.version == session.starting_version():
            previous.session = session
            return previous
        return cls(session)

    def with_template(self, template: str | None) -> list[StoredRule]:
        if template is None:
            return []
        return [r for r in self.rules.values() if r.memory.template == template]

    def without_text_vector(self) -> list[StoredRule]:
        return [r for r in self.rules.values() if r.text_vector is None]

    def refresh(self, memory_id: int) -> None:
        """Re-read one rule after it was inserted or updated in this transaction."""
        self._put(self.session.stored_rule(memory_id))

    def remove(self, memory_id: int) -> None:
        self.rules.pop(memory_id, None)
        row = self._row.pop(memory_id, None)
        if row is not None:
            self._matrix[row] = 0.0
            self._row_ids[row] = -1
            if len(self._row_ids) > 64 and len(self._row) < len(self._row_ids) // 2:
                self._compact()

    def _compact(self) -> None:
        """Drop the rows of removed rules once they are the majority."""
        live = [i for i in self._row_ids if i >= 0]
        self._matrix = self._matrix[[self._row[i] for i in live]]
        self._row_ids = live
        self._row = {memory_id: row for row, memory_id in enumerate(live)}

    def _put(self, rule: StoredRule) -> None:
        memory_id = rule.memory.id
        self.rules[memory_id] = rule
        if rule.text_vector is None:
            return
        row = self._row.get(memory_id)
        if row is None:
            row = len(self._row_ids)
            if row == len(self._matrix):  # grow by doubling: amortised O(1) appends
                grown = np.zeros((max(16, 2 * row), len(rule.text_vector)), dtype=np.float32)
                if row:
                    grown[:row] = self._matrix[:row]
                self._matrix = grown
            self._row[memory_id] = row
            self._row_ids.append(memory_id)
        self._matrix[row] = rule.text_vector

    def most_similar(self, vector: np.ndarray) -> tuple[StoredRule, float] | None:
        """The rule whose text is closest to ``vector`` (cosine), if any."""
        if not self._row:
            return None
        sims = self._matrix[: len(self._row_ids)] @ vector
        best = int(sims.argmax())
        if self._row_ids[best] < 0:
            return None  # every remaining row scores below a removed (zero) one
        return self.rules[self._row_ids[best]], float(sims[best])


def _same_scope(rule: NewRule, old: StoredRule, config: MemoryConfig) -> bool:
    if rule.context is None or old.memory.context is None:
        return rule.context is None and old.memory.context is None
    if old.vector is None or rule.context_vector is None:
        return rule.context == old.memory.context
    return float(old.vector @ rule.context_vector) >= config.generalize_below


def _find_duplicate(rule: NewRule, rules: RuleSet, config: MemoryConfig) -> StoredRule | None:
    if rule.source != "stated":  # canonical inferred texts match by template
        same = [r for r in rules.with_template(rule.template) if r.memory.source != "stated"]
        if same:
            return same[0]
    for old in rules.without_text_vector():  # stored before text embeddings existed
        if normalise_rule_text(old.memory.text) == normalise_rule_text(rule.text):
            return old
    nearest = rules.most_similar(rule.text_vector)  # stated wording matches by meaning
    return nearest[0] if nearest and nearest[1] >= config.duplicate_similarity else None


def _close(
    session: UserWrite, rules: RuleSet, outcome: Outcome, olds: list[StoredRule], by: int
) -> None:
    for old in olds:
        session.update(old.memory.id, valid_to=session.now, superseded_by=by)
        rules.remove(old.memory.id)
        outcome.superseded.append(old.memory.id)
        outcome.index_remove.append(old.memory.id)


def _reinforce(
    session: UserWrite, rule: NewRule, old: StoredRule, rules: RuleSet, config: MemoryConfig
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
            for r in rules.with_template(memory.template and opposite(memory.template))
            if r.memory.context is None
            and not (r.memory.source == "stated" and memory.source != "stated")
        ]
        _close(session, rules, outcome, rivals, memory.id)
    session.update(memory.id, **fields)
    rules.refresh(memory.id)
    return outcome


def consolidate(
    session: UserWrite, rule: NewRule, config: MemoryConfig, rules: RuleSet | None = None
) -> Outcome:
    """Store ``rule`` consistently with the user's valid rules. Pass one :class:`RuleSet`
    for a whole batch so the valid rules are read once."""
    rules = RuleSet(session) if rules is None else rules
    rules.session = session
    duplicate = _find_duplicate(rule, rules, config)
    if duplicate is not None:
        return _reinforce(session, rule, duplicate, rules, config)
    conflicts = [
        old
        for old in rules.with_template(rule.template and opposite(rule.template))
        if _same_scope(rule, old, config)
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
    rules.refresh(new_id)
    outcome = Outcome("added", new_id, index_add=[(new_id, rule.retrieval_vector)])
    if conflicts:
        _close(session, rules, outcome, conflicts, new_id)
        outcome.action = "superseded"
        outcome.reason = "contradicts rule " + ", ".join(str(o.memory.id) for o in conflicts)
    return outcome
