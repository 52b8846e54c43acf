"""One end-user's view of the store: rules, pairs, edits, and what retrieval picks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from persona_sdk.constraints.select import EnforcedRule, enforced_rules
from persona_sdk.errors import InvalidInputError
from persona_sdk.memory.retrieval import CutRule, RetrievedRule
from persona_sdk.memory.service import EditResult, MemoryService
from persona_sdk.memory.store import KINDS, SOURCES, Memory
from persona_sdk.reward.profile import Profile
from persona_sdk.reward.rewards import Question, RewardProfile, Rewards
from persona_sdk.validation import (
    MAX_RULE_CHARS,
    MAX_TEXT_CHARS,
    validate_optional_text,
    validate_text,
)

RuleSpec = str | tuple[str, str | None]


@dataclass
class Explanation:
    """What a request would retrieve for the user, and why."""

    user_id: str
    prompt: str
    rules: list[RetrievedRule]
    cut: list[CutRule] = field(default_factory=list)  # applying rules left out, and why
    # the rules the request enforces while decoding, with their merged constraints
    enforced: list[EnforcedRule] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "user_id": self.user_id,
            "prompt": self.prompt,
            "rules": [rule.to_dict() for rule in self.rules],
            "cut": [rule.to_dict() for rule in self.cut],
            "enforced": [rule.to_dict() for rule in self.enforced],
        }


__all__ = ["EditResult", "Explanation", "User"]


def _items(value: object, field: str) -> list:
    """A list or tuple argument as a list; a lone string, None or anything else is refused."""
    if not isinstance(value, (list, tuple)):
        raise InvalidInputError(f"{field} must be a list, not {type(value).__name__}")
    return list(value)


def _source(source: object) -> str:
    if source not in SOURCES:
        raise InvalidInputError(f"source must be one of {SOURCES}, not {source!r}")
    return source


def _rule_spec(spec: RuleSpec) -> tuple[str, str | None]:
    if isinstance(spec, (str, bytes)):
        text, context = spec, None
    elif isinstance(spec, (list, tuple)) and len(spec) in (1, 2):
        text, context = spec[0], spec[1] if len(spec) == 2 else None
    else:
        raise InvalidInputError(f"a rule is a text or a (text, context) pair, not {spec!r:.60}")
    return (
        validate_text(text, "rule", MAX_RULE_CHARS),
        validate_optional_text(context, "context", MAX_RULE_CHARS),
    )


def _pair(pair: object) -> list:
    if not isinstance(pair, (list, tuple)) or len(pair) != 3:
        raise InvalidInputError(f"a pair is (prompt, chosen, rejected), not {pair!r:.60}")
    return list(pair)


def _pair_texts(prompt: object, chosen: object, rejected: object) -> tuple[str, str, str]:
    prompt = validate_text(prompt, "prompt")
    chosen, rejected = validate_text(chosen, "chosen"), validate_text(rejected, "rejected")
    if chosen == rejected:
        raise InvalidInputError("chosen and rejected are the same text")
    return prompt, chosen, rejected


class User:
    """Handle on one user's memory. Get it from :meth:`Persona.user`; it is cheap."""

    def __init__(self, user_id: str, memory: MemoryService, rewards: Rewards):
        self.id = user_id
        self._memory = memory
        self._rewards = rewards

    def __repr__(self) -> str:
        return f"User({self.id!r})"

    @property
    def exists(self) -> bool:
        """True once anything was stored for this user."""
        return self._memory.store.user_exists(self.id)

    # -- rules ---------------------------------------------------------------------------

    def add_rule(
        self, text: str, context: str | None = None, source: str = "stated"
    ) -> Memory | None:
        """Store a rule. Without ``context`` it applies to every request; with one, it is
        retrieved for requests similar to that context (e.g. ``"emails to my manager"``).

        The user's latest wish wins (ARCHITECTURE.md, "Rule lifecycle"): a restatement in
        the same scope reinforces the existing rule (its support grows), which is returned
        instead; a contradiction (a negation, a changed value or a changed fact: "never use
        emojis" after "use emojis", "under 50 words" after "under 100 words") closes the
        older rule's validity, which stays in the history; an opposite rule for a
        narrower context is an exception stored beside the global rule; the same rule for
        a new context is its own scoped rule. Returns the rule now in effect, or ``None``
        when a non-stated rule was ignored because a stated rule says the opposite.
        """
        stored = self.add_rules([(text, context)], source=source)
        return stored[0] if stored else None

    def add_rules(self, rules: Sequence[RuleSpec], source: str = "stated") -> list[Memory]:
        """Add many rules in one transaction (texts, or ``(text, context)`` tuples).

        Returns the stored or reinforced rules in order; ignored ones are left out."""
        source = _source(source)
        specs = [_rule_spec(spec) for spec in _items(rules, "rules")]
        if not specs:
            return []
        return self._memory.add_rules(self.id, specs, source)

    def rules(self, include_superseded: bool = False) -> list[Memory]:
        """The user's rules, oldest first; superseded ones only when asked."""
        return self._memory.store.memories(
            self.id, kind="rule", include_superseded=include_superseded
        )

    # -- pairs and edits -----------------------------------------------------------------

    def add_pair(self, prompt: str, chosen: str, rejected: str, source: str = "stated") -> Memory:
        """Store that the user preferred ``chosen`` over ``rejected`` for ``prompt``."""
        return self.add_pairs([(prompt, chosen, rejected)], source=source)[0]

    def add_pairs(
        self, pairs: Sequence[tuple[str, str, str]], source: str = "stated"
    ) -> list[Memory]:
        """Store many ``(prompt, chosen, rejected)`` pairs in one transaction."""
        source = _source(source)
        checked = [_pair_texts(*_pair(pair)) for pair in _items(pairs, "pairs")]
        if not checked:
            return []
        self._rewards.check()  # a basis that cannot be used fails before any write
        stored = self._memory.add_pairs(self.id, checked, source)
        self._rewards.refit(self.id)
        return stored

    def add_edit(
        self, prompt: str, response: str, edited: str, context: str | None = None
    ) -> EditResult:
        """Learn from the user rewriting ``response`` into ``edited``.

        Stores the edit, the pair edited ≻ response, and the rules the edit implies
        (deterministic style analysis, plus one LLM-written phrase when enabled), each
        consolidated with the user's existing rules and tied to the request context.
        """
        prompt, edited, response = _pair_texts(prompt, edited, response)
        context = validate_optional_text(context, "context", MAX_TEXT_CHARS) or prompt
        self._rewards.check()
        result = self._memory.add_edit(self.id, prompt, response, edited, context)
        self._rewards.refit(self.id)
        return result

    # -- reward model --------------------------------------------------------------------

    def score(self, prompt: str, response: str) -> float:
        """The user's reward for ``response`` to ``prompt`` (higher: more to their taste)."""
        prompt, response = validate_text(prompt, "prompt"), validate_text(response, "response")
        return float(self._rewards.scores(self.id, prompt, [response])[0])

    def prefer(self, prompt: str, a: str, b: str) -> float:
        """P(the user prefers ``a`` over ``b`` as a reply to ``prompt``), in [0, 1]."""
        prompt, a, b = validate_text(prompt, "prompt"), validate_text(a, "a"), validate_text(b, "b")
        return self._rewards.prefer(self.id, prompt, a, b)

    @property
    def weights(self) -> dict[str, float]:
        """The user's weight on each named reward axis (the population mean until the user
        has pairs); refit after every :meth:`add_pair` and :meth:`add_edit`."""
        return self._rewards.profile(self.id).as_dict()

    def reward_profile(self) -> RewardProfile:
        """Axis weights with their uncertainty, the pair count and whether it is personal."""
        return self._rewards.profile(self.id)

    def profile(self) -> Profile:
        """A profile the user can check: their rules, the contrasts their pairs and edits
        revealed (with counts and a sign test), what their reward model prefers on minimal
        pairs, and the revealed contrasts it contradicts (``profile().contradictions``)."""
        return self._rewards.preference_profile(self.id)

    def next_question(
        self, prompt: str | None = None, replies: Sequence[str] | None = None
    ) -> Question:
        """The most informative A/B question to ask next (active onboarding): the pair whose
        outcome the user's posterior is least sure of. Answer it with :meth:`add_pair`
        (``source="onboarding"``). Candidates: pairs of ``replies`` to ``prompt`` when given,
        else the shipped response pool."""
        if prompt is not None:
            prompt = validate_text(prompt, "prompt")
        if replies is not None:
            replies = [validate_text(r, "reply") for r in _items(replies, "replies")]
        return self._rewards.next_question(self.id, prompt, replies)

    # -- reading and deleting ------------------------------------------------------------

    def memories(self, kind: str | None = None) -> list[Memory]:
        """Every memory of the user, or only one ``kind`` (rule, pair or edit)."""
        if kind is not None and kind not in KINDS:
            raise InvalidInputError(f"kind must be one of {KINDS}, not {kind!r}")
        return self._memory.store.memories(self.id, kind=kind)

    def delete_memory(self, memory_id: int) -> None:
        """Delete one memory of this user (raises ``MemoryNotFoundError`` otherwise).

        Deleting an edit deletes its pair too; deleting a rule that superseded another
        makes the older rule valid again.
        """
        if isinstance(memory_id, bool) or not isinstance(memory_id, int):
            raise InvalidInputError(f"memory id must be an integer, not {memory_id!r}")
        self._memory.delete_memory(self.id, memory_id)

    def explain(self, prompt: str) -> Explanation:
        """The rules a request with ``prompt`` would put in the system prompt, with their
        similarities, and the applying rules that were cut (``cut``: a global rule over the
        prompt budget, or overridden by an exception), with why; and the rules it would
        enforce as constraints while decoding (``enforced``, with their parameters)."""
        prompt = validate_text(prompt, "prompt")
        rules = self._memory.retrieve(self.id, prompt)
        return Explanation(self.id, prompt, list(rules), rules.cut, self.enforced_rules(rules))

    def enforced_rules(self, retrieved: Sequence[RetrievedRule]) -> list[EnforcedRule]:
        """The rules a request enforces as constraints: every valid global rule (stated or
        inferred) and the contextual rules ``retrieved`` for it, merged newest-wins."""
        return enforced_rules([r for r in self.rules() if r.context is None], retrieved)

    def forget(self) -> None:
        """Delete every trace of the user: rows, vectors, index files and caches."""
        self._memory.forget(self.id)
