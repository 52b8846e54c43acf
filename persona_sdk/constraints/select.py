"""Which of a user's rules a request enforces, as one merged list of constraints.

A user expects a rule stated for every request ("answer in one sentence") to hold on every
request, whether or not it made the prompt's top-k; a rule stated for a context ("under
100 words for emails to my manager") to hold when that context is retrieved. So a request
enforces every valid global rule plus the contextual rules retrieved for it. Stated and
inferred rules count alike. Rules are merged oldest first, contextual after global (an
exception for a context overrides the general rule there), and the newest wins a conflict.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from persona_sdk.constraints.merge import merge
from persona_sdk.constraints.parse import parse_rule
from persona_sdk.constraints.types import Constraint


class RuleLike(Protocol):
    id: int
    text: str | None
    context: str | None


@dataclass(frozen=True)
class EnforcedRule:
    """A rule and the constraints it contributes to a request (after merging)."""

    rule_id: int
    text: str
    constraints: tuple[Constraint, ...]

    def to_dict(self) -> dict:
        return {
            "rule_id": self.rule_id,
            "text": self.text,
            "constraints": [c.to_dict() for c in self.constraints],
        }


@lru_cache(maxsize=4096)
def rule_constraints(text: str) -> tuple[Constraint, ...]:
    """:func:`parse_rule`, cached by text (rules are re-read on every request)."""
    return tuple(parse_rule(text))


def enforced_rules(
    global_rules: Iterable[RuleLike], retrieved: Iterable[RuleLike]
) -> list[EnforcedRule]:
    """Each rule that contributes a constraint, with the constraints that survive the merge
    (see the module docstring); rules that parse to none stay prompt-only and are left out."""
    contextual = sorted((r for r in retrieved if r.context is not None), key=lambda r: r.id)
    ordered = [*sorted(global_rules, key=lambda r: r.id), *contextual]
    ordered = list({r.id: r for r in ordered}.values())
    tagged = [(r, c) for r in ordered for c in rule_constraints(r.text or "")]
    kept = merge([c for _, c in tagged])
    out: list[EnforcedRule] = []
    for rule in ordered:
        mine = tuple(c for c in kept if any(_from(c, x) for r, x in tagged if r.id == rule.id))
        if mine:
            out.append(EnforcedRule(rule.id, rule.text or "", mine))
    return out


def _from(kept: Constraint, parsed: Constraint) -> bool:
    """Whether ``kept`` is ``parsed``, or what the merge left of its word list."""
    if kept == parsed:
        return True
    words = getattr(kept, "words", None)
    return type(kept) is type(parsed) and bool(words) and set(words) <= set(parsed.words)


def request_constraints(rules: Iterable[EnforcedRule]) -> list[Constraint]:
    """The merged constraints of ``rules``, in order, without duplicates."""
    out: list[Constraint] = []
    for rule in rules:
        out.extend(c for c in rule.constraints if c not in out)
    return out
