"""Rule consolidation: a new rule reinforces a restatement, supersedes what it changes,
or is added. Runs inside the user's write transaction, so concurrent writers cannot both
add the same rule or both miss a contradiction.

Stated rules follow the lifecycle policy of :mod:`persona_sdk.memory.lifecycle` (the
relation classifier decides restatement, negation, changed value or fact, exception).
Rules inferred from edits are canonical template texts: the same template reinforces,
the opposite template in the same scope supersedes, and one seen in two unrelated
contexts generalises (evidence, not a statement); a stated rule always wins over them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from persona_sdk.config import MemoryConfig
from persona_sdk.memory.edits import normalise_rule_text, opposite
from persona_sdk.memory.lifecycle import CANDIDATES, decide
from persona_sdk.memory.relations import RuleReading, read_rule
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
        self._readings: dict[int, RuleReading] = {}  # per user: forgotten with the RuleSet
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

    def reading(self, rule: StoredRule) -> RuleReading:
        """The classifier's reading of a stored rule, read once per text."""
        cached = self._readings.get(rule.memory.id)
        if cached is None or cached.text != rule.memory.text:
            cached = self._readings[rule.memory.id] = read_rule(rule.memory.text or "")
        return cached

    def candidates(self, rule: NewRule) -> list[tuple[StoredRule, RuleReading, float]]:
        """The valid rules a new stated rule may relate to, nearest first: the closest by
        text cosine, those of its template or the opposite one, and old rows without a
        text embedding."""
        found: dict[int, float] = dict(self.nearest(rule.text_vector, CANDIDATES))
        for template in (rule.template, rule.template and opposite(rule.template)):
            for old in self.with_template(template):
                found.setdefault(old.memory.id, _cosine(old.text_vector, rule.text_vector))
        for old in self.without_text_vector():
            found.setdefault(old.memory.id, 0.0)
        ranked = sorted(found.items(), key=lambda item: -item[1])
        return [(self.rules[i], self.reading(self.rules[i]), c) for i, c in ranked]

    def remember_reading(self, memory_id: int, reading: RuleReading) -> None:
        """Keep the reading of a rule this transaction wrote (no second read)."""
        self._readings[memory_id] = reading

    def remove(self, memory_id: int) -> None:
        self._readings.pop(memory_id, None)
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

    def nearest(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Up to ``k`` (memory id, cosine) of the rules whose text is closest to ``vector``."""
        if not self._row:
            return []
        sims = self._matrix[: len(self._row_ids)] @ vector
        top = np.argsort(-sims)[: k + len(self._row_ids) - len(self._row)]
        return [(self._row_ids[i], float(sims[i])) for i in top if self._row_ids[i] >= 0][:k]

    def most_similar(self, vector: np.ndarray) -> tuple[StoredRule, float] | None:
        """The rule whose text is closest to ``vector`` (cosine), if any."""
        best = self.nearest(vector, 1)
        return (self.rules[best[0][0]], best[0][1]) if best else None


def _cosine(a: np.ndarray | None, b: np.ndarray) -> float:
    return 0.0 if a is None else float(a @ b)


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
    nearest = rules.most_similar(rule.text_vector)  # similar wording, unless it is opposite
    if nearest is None or nearest[1] < config.duplicate_similarity:
        return None
    template = nearest[0].memory.template
    return None if template and rule.template == opposite(template) else nearest[0]


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
    outcome = Outcome("reinforced", memory.id, f"duplicate of rule {memory.id}")
    if (
        memory.source != "stated"
        and memory.context is not None
        and not _same_scope(rule, old, config)
    ):  # inferred evidence from two unrelated contexts: it applies everywhere now
        fields |= {"context": None, "embedding": text_vector}
        outcome.reason += "; seen in another context, now applies everywhere"
        outcome.index_remove.append(memory.id)
        outcome.index_add.append((memory.id, text_vector))
        rivals = [
            r
            for r in rules.with_template(memory.template and opposite(memory.template))
            if r.memory.context is None and r.memory.source != "stated"
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
    if rule.source == "stated":
        return _consolidate_stated(session, rule, rules)
    duplicate = _find_duplicate(rule, rules, config)
    if duplicate is not None:
        return _reinforce(session, rule, duplicate, rules, config)
    conflicts = [
        old
        for old in rules.with_template(rule.template and opposite(rule.template))
        if _same_scope(rule, old, config)
    ]
    stated = next((old.memory for old in conflicts if old.memory.source == "stated"), None)
    if stated is not None:
        return Outcome("ignored", None, f"contradicts stated rule {stated.id}, which wins")
    outcome = _insert(session, rule, rules, rule.template)
    if conflicts:
        _close(session, rules, outcome, conflicts, outcome.rule_id)
        outcome.action = "superseded"
        outcome.reason = "contradicts rule " + ", ".join(str(o.memory.id) for o in conflicts)
    return outcome


def _insert(
    session: UserWrite, rule: NewRule, rules: RuleSet, template: str | None,
    exception_of: int | None = None,
) -> Outcome:  # fmt: skip
    new_id = session.insert(
        {
            "kind": "rule",
            "source": rule.source,
            "text": rule.text,
            "context": rule.context,
            "confidence": rule.confidence,
            "template": template,
            "origin_id": rule.origin_id,
            "exception_of": exception_of,
            "embedding": rule.retrieval_vector,
            "text_embedding": rule.text_vector,
        }
    )
    rules.refresh(new_id)
    return Outcome("added", new_id, index_add=[(new_id, rule.retrieval_vector)])


def _consolidate_stated(session: UserWrite, rule: NewRule, rules: RuleSet) -> Outcome:
    """The lifecycle policy (see :mod:`persona_sdk.memory.lifecycle`)."""
    reading = read_rule(rule.text)
    decision = decide(reading, rule.context, rules.candidates(rule))
    if decision.reinforce is not None:
        return _restate(session, rule, decision.reinforce, rules, decision.reason)
    exception_of = decision.exception_of.memory.id if decision.exception_of else None
    outcome = _insert(session, rule, rules, reading.template or rule.template, exception_of)
    rules.remember_reading(outcome.rule_id, reading)
    outcome.reason = decision.reason
    if decision.supersede:
        _close(session, rules, outcome, [old for old, _ in decision.supersede], outcome.rule_id)
        outcome.action = "superseded"
    return outcome


def _restate(
    session: UserWrite, rule: NewRule, old: StoredRule, rules: RuleSet, reason: str
) -> Outcome:
    """A stated restatement: support grows; an inferred rule takes the user's words and
    scope (stated rules win)."""
    memory = old.memory
    fields: dict = {
        "support": memory.support + 1,
        "confidence": round(1 - (1 - memory.confidence) * (1 - rule.confidence), 4),
    }
    outcome = Outcome("reinforced", memory.id, reason)
    if memory.source != "stated":
        fields |= {"source": "stated", "text": rule.text, "text_embedding": rule.text_vector,
                   "confidence": 1.0, "context": rule.context,
                   "embedding": rule.retrieval_vector}  # fmt: skip
        outcome.index_remove.append(memory.id)
        outcome.index_add.append((memory.id, rule.retrieval_vector))
    session.update(memory.id, **fields)
    rules.refresh(memory.id)
    return outcome
