"""How a newly stated rule relates to an older one, decided without a model.

A rule is read into topic concepts with a polarity each ("Use lists, not prose" →
bullets +), typed values ("under 50 words" → length 50 word <=, "Reply in French" →
language french) and whether it states a fact about the user ("I'm vegetarian") or an
instruction about replies. Two readings are then compared:

- ``restatement``: same topic, same values, same polarity (raise support);
- ``negation``: same topic, opposite polarity;
- ``changed_value``: an instruction's value changed (100 → 50 words, French → English);
- ``changed_fact``: a fact about the user changed (vegetarian → eats meat, Alice → Carol);
- ``exception``: a negation or changed value in a strictly narrower context than the older
  rule's (global "Use emojis", then "No emojis" for emails to my manager);
- ``unrelated``: different topics, or a conflict between disjoint contexts (both stand).

A restatement is reported whatever the contexts; :attr:`Relation.scope` says whether it
is the same scope or a new one (which should become a scoped rule, never a global one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from persona_sdk.memory.rule_lexicon import (
    AUXILIARIES,
    CHANGE_MARKERS,
    CONCEPTS,
    FILLER,
    FIRST_PERSON_START,
    NEGATORS,
    PREFERENCE_START,
    REPLY_WORDS,
    TEMPLATE_CONCEPTS,
    lower_aligned,
    normalise,
    stem,
)
from persona_sdk.memory.rule_values import Span, Value, extract_values

RELATIONS = ("restatement", "negation", "changed_value", "changed_fact", "exception", "unrelated")
SCOPES = ("same", "narrower", "broader", "disjoint")
# topic-word overlap (Jaccard) from which two rules are on the same topic
SAME_TOPIC = 0.5
# cosine bands between the rules' text embeddings, used only when one is given: a weak
# lexical overlap above HIGH_COSINE is the same topic; a lexical match below LOW_COSINE
# on plain words (no lexicon concept) is not
HIGH_COSINE = 0.8
LOW_COSINE = 0.3
CROSS_MODE_KINDS = frozenset({"name:self"})  # "My name is Alice" and "Call me Alice" agree

_CLAUSES = re.compile(r"[,;:!?()]+|\.(?=\s|$)|\s+-\s+|\s+(?:but|though|although|yet)\s+")
_CONTRAST = re.compile(r"\s+(?:rather than|instead of|and not|but not)\s+")
_PREFER_OVER = re.compile(r"\s+over\s+")
_X_NOT_Y = re.compile(r"^(.*?\b(\w+))\s+not\s+(.+)$")
_TOKENS = re.compile(r"[a-z0-9+#]+")
_FEEL_FREE = re.compile(r"\bfeel free(?: to)?\b")
# "short, simple sentences": a comma between adjectives does not end the clause
_ADJECTIVE_COMMA = re.compile(r"\b(\w+), (\w+ (?:sentences?|paragraphs?|lists?|replies|answers))\b")


@dataclass(frozen=True)
class RuleReading:
    """What the classifier read in one rule."""

    text: str
    is_fact: bool
    concepts: dict[str, int]  # topic concept → +1 / -1
    values: tuple[Value, ...]
    changed: bool  # carries a change marker: "now", "anymore", "switched to"
    derived: frozenset[str] = field(default_factory=frozenset)  # concepts read from values

    @property
    def topic_key(self) -> str:
        """The rule's topic: its concepts and value kinds, sorted ("emoji", "language")."""
        return "+".join(sorted(set(self.concepts) | {v.kind for v in self.values}))

    @property
    def template(self) -> str | None:
        """The edit template this rule states ("emoji:-"), if any."""
        for concept, sign in self.concepts.items():
            if concept in TEMPLATE_CONCEPTS:
                return f"{concept}:{'+' if sign > 0 else '-'}"
        return None

    @property
    def polarity(self) -> int:
        """+1 unless the rule's first topic is negated."""
        return next(iter(self.concepts.values()), 1)

    def value_keys(self) -> dict[str, frozenset[tuple[str, str]]]:
        """Values by kind; kinds other than the user's name are split by fact/instruction."""
        keys: dict[str, set[tuple[str, str]]] = {}
        for v in self.values:
            mode = "" if v.kind in CROSS_MODE_KINDS else ("fact:" if self.is_fact else "do:")
            keys.setdefault(mode + v.kind, set()).add((v.value, v.comparator))
        return {k: frozenset(v) for k, v in keys.items()}


@dataclass(frozen=True)
class Relation:
    """How ``newer`` relates to ``older``, with what was used to decide it."""

    relation: str
    content: str  # "same", "opposite", "changed" or "unrelated", contexts aside
    scope: str  # the newer rule's context against the older's: see SCOPES
    topic: tuple[str, ...]  # the shared concepts or value kinds
    similarity: float  # lexical overlap of the two readings (Jaccard)
    reason: str
    older: RuleReading
    newer: RuleReading


def read_rule(text: str) -> RuleReading:
    """Read one rule's concepts, polarity, values and mode."""
    norm = normalise(text)
    span = Span(norm, lower_aligned(norm))
    for m in list(_FEEL_FREE.finditer(span.low)):
        span.take(m.start(), m.end())
    is_fact = _is_fact(span.low)
    changed = bool(CHANGE_MARKERS.search(span.low))
    values = tuple(extract_values(span, is_fact))
    concepts = _read_concepts(span.low)
    derived = set()
    for v in values:
        sign = _length_sign(v)
        if sign and "length" not in concepts:
            concepts["length"] = sign
            derived.add("length")
    return RuleReading(text, is_fact, concepts, values, changed, frozenset(derived))


def _is_fact(low: str) -> bool:
    """A first-person statement about the user, not a wish about replies."""
    if not FIRST_PERSON_START.match(low) or PREFERENCE_START.match(low):
        return False
    if REPLY_WORDS.search(low):
        return False
    return not any(p.search(low) for p, c, _ in CONCEPTS if c in TEMPLATE_CONCEPTS)


def _length_sign(value: Value) -> int:
    """A length limit is a wish for short replies, a minimum one for long replies."""
    if value.kind != "length":
        return 0
    if value.comparator == "<=" or value.value == "1 sentenc":
        return -1
    return 1 if value.comparator == ">=" else 0


def _clauses(low: str) -> list[str]:
    """Clauses, with contrasted parts ("X, not Y", "X rather than Y") as "not Y"."""
    out: list[str] = []
    for piece in _CLAUSES.split(_ADJECTIVE_COMMA.sub(r"\1 \2", low)):
        parts = _CONTRAST.split(piece)
        if "prefer" in piece:
            parts = [q for p in parts for q in _PREFER_OVER.split(p)]
        for i, part in enumerate(parts):
            part = part.strip()
            if not part:
                continue
            m = _X_NOT_Y.match(part)
            if m and m.group(2) not in AUXILIARIES and not NEGATORS.fullmatch(m.group(2)):
                out += [m.group(1), "not " + m.group(3)]
            else:
                out.append(part if i == 0 else "not " + part)
    return out


def _read_concepts(low: str) -> dict[str, int]:
    """Topic concepts with their polarity; the first clause to name a concept decides."""
    concepts: dict[str, int] = {}
    for clause in _clauses(low):
        sign = -1 if len(NEGATORS.findall(clause)) % 2 else 1
        clause = NEGATORS.sub(" ", clause)
        for pattern, concept, pole in CONCEPTS:
            for m in list(pattern.finditer(clause)):
                name = concept or stem(m.group(1))
                concepts.setdefault(name, pole * sign)
                clause = clause[: m.start()] + " " * (m.end() - m.start()) + clause[m.end() :]
        for token in _TOKENS.findall(clause):
            word = stem(token)
            if len(word) >= 2 and word not in FILLER and not CHANGE_MARKERS.fullmatch(token):
                concepts.setdefault(word, sign)
    return concepts


def _context_words(context: str | None) -> frozenset[str] | None:
    if context is None:
        return None
    words = frozenset(stem(t) for t in _TOKENS.findall(lower_aligned(normalise(context))))
    return (words - FILLER) or None


def compare_scope(older_context: str | None, newer_context: str | None) -> str:
    """The newer rule's scope against the older's: same, narrower, broader or disjoint.

    No context is the widest scope; a context whose words include all of another's and
    more ("emails to my manager" against "emails") is narrower."""
    a, b = _context_words(older_context), _context_words(newer_context)
    if a == b:
        return "same"
    if a is None:
        return "narrower"
    if b is None:
        return "broader"
    if a < b:
        return "narrower"
    return "broader" if b < a else "disjoint"


def _jaccard(a: set[str] | frozenset[str], b: set[str] | frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _opposed(a: RuleReading, b: RuleReading) -> list[str]:
    return [c for c in a.concepts if c in b.concepts and a.concepts[c] != b.concepts[c]]


def _values_differ(x: frozenset[tuple[str, str]], y: frozenset[tuple[str, str]]) -> bool:
    if {v for v, _ in x} != {v for v, _ in y}:
        return True
    bounds = {c for _, c in x | y if c in ("<=", ">=")}
    return len(bounds) > 1


def compare_content(
    a: RuleReading, b: RuleReading, cosine: float | None = None
) -> tuple[str, tuple[str, ...], str]:
    """ "same", "opposite", "changed" or "unrelated", the shared topic, and why."""
    keys_a, keys_b = a.value_keys(), b.value_keys()
    shared_kinds = sorted(keys_a.keys() & keys_b.keys())
    subject_a, subject_b = set(a.concepts) - a.derived, set(b.concepts) - b.derived
    if shared_kinds:
        if subject_a and subject_b and _jaccard(subject_a, subject_b) < SAME_TOPIC:
            return "unrelated", (), f"same kind of value but about {subject_a} vs {subject_b}"
        differing = [k for k in shared_kinds if _values_differ(keys_a[k], keys_b[k])]
        if differing:
            old = {k: sorted(v for v, _ in keys_a[k]) for k in differing}
            new = {k: sorted(v for v, _ in keys_b[k]) for k in differing}
            return "changed", tuple(differing), f"values changed: {old} → {new}"
        opposed = _opposed(a, b)
        if opposed:
            return "opposite", tuple(shared_kinds), f"polarity of {opposed} flipped"
        return "same", tuple(shared_kinds), "same values"
    shared = sorted(set(a.concepts) & set(b.concepts))
    if not shared:
        return "unrelated", (), "no shared topic"
    overlap = _jaccard(set(a.concepts), set(b.concepts))
    strong = overlap >= SAME_TOPIC or (cosine is not None and cosine >= HIGH_COSINE)
    lexicon_backed = any(_in_lexicon(c) for c in shared)
    if cosine is not None and cosine < LOW_COSINE and not lexicon_backed:
        strong = False
    if strong:
        opposed = _opposed(a, b)
        if opposed:
            return "opposite", tuple(shared), f"polarity of {opposed} flipped"
        return "same", tuple(shared), f"same topic {shared}, same polarity"
    if (a.is_fact or b.is_fact) and b.changed:
        return "changed", tuple(shared), f"fact about {shared} restated with a change"
    return "unrelated", (), f"weak overlap {overlap:.2f} on {shared}"


def _in_lexicon(concept: str) -> bool:
    return any(c == concept for _, c, _ in CONCEPTS)


def classify_relation(
    older: str,
    older_context: str | None,
    newer: str,
    newer_context: str | None,
    cosine: float | None = None,
) -> Relation:
    """How the rule ``newer`` (stated after ``older``) relates to it; see the module doc.

    ``cosine`` (between the two rule texts' embeddings) is optional and only moves
    borderline lexical overlaps."""
    return relate(read_rule(older), older_context, read_rule(newer), newer_context, cosine)


def relate(
    a: RuleReading,
    older_context: str | None,
    b: RuleReading,
    newer_context: str | None,
    cosine: float | None = None,
) -> Relation:
    """:func:`classify_relation` on rules already read (callers cache readings)."""
    scope = compare_scope(older_context, newer_context)
    content, topic, reason = compare_content(a, b, cosine)
    fact = a.is_fact or b.is_fact
    if content == "unrelated":
        relation = "unrelated"
    elif content == "same":
        relation = "restatement"
    elif scope == "narrower":
        relation, reason = "exception", f"{reason}, in a narrower context"
    elif scope == "disjoint":
        relation, reason = "unrelated", f"{reason}, but in a disjoint context"
    elif content == "opposite":
        relation = "changed_fact" if fact else "negation"
    else:
        relation = "changed_fact" if fact else "changed_value"
    keys = set(a.concepts) | {v.kind for v in a.values}
    similarity = _jaccard(keys, set(b.concepts) | {v.kind for v in b.values})
    return Relation(relation, content, scope, topic, round(similarity, 3), reason, a, b)
