"""What :meth:`Persona.generate` returns: the text plus what shaped it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from persona_sdk.constraints.verify import ConstraintResult
from persona_sdk.memory.retrieval import RetrievedRule


@dataclass
class Reply:
    """A generated reply.

    Attributes:
        text: the reply.
        user_id: whose reply it is.
        used_rules: the rules put in the prompt, with their similarity to the request.
        strength: the guidance strength applied: the request's, else the user's default (0 with
            no pairs, or when the model has no basis adapters; 0 when the guard dropped a
            broken reply and the base model decoded it again).
        personalized: False when nothing of the user's shaped the reply.
        reward: the user's reward for the reply (the population default's for a new user).
        candidates: with ``best_of > 1``, every sampled candidate, best first (the reply
            is the first): its ``text``, ``reward``, ``fluency`` (the base model's mean
            log-probability per token), ``relevance`` (cosine to the request),
            ``degenerate`` and its ``reasons``, and the ranking ``score``.
        guard: for a guided reply with the guard on, what it did: ``kl_budget``,
            ``capped_tokens`` (tokens whose strength the KL budget cut), ``mean_alpha``
            (the strength applied, per token), ``tripped`` with its ``reasons`` and
            ``tripped_at_token`` (from then on the base model decoded), ``restarted``
            (the broken text was dropped and the base model's reply decoded instead), and
            the final text's check (``degenerate``, ``final_reasons``); ``None`` otherwise.
        constraints: each checkable rule's constraint the reply was held to (the user's
            global rules and the retrieved contextual ones, merged newest-wins), verified
            on the final text: ``passed`` and a ``detail``. One that could not be met (a
            start phrase with no token budget, say) is listed with ``passed=False``.
        finish_reason: ``"stop"`` (end of turn or stop string) or ``"length"``.
        tokens: generated tokens.
        timings: milliseconds for ``retrieve``, ``ttft``, ``generate`` and ``total``.
    """

    text: str
    user_id: str
    used_rules: list[RetrievedRule]
    strength: float
    personalized: bool
    model: str
    finish_reason: str = "stop"
    tokens: int = 0
    reward: float | None = None
    candidates: list[dict] = field(default_factory=list)
    guard: dict | None = None
    constraints: list[ConstraintResult] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.text

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {
            "user_id": self.user_id,
            "text": self.text,
            "used_rules": [rule.to_dict() for rule in self.used_rules],
            "strength": self.strength,
            "personalized": self.personalized,
            "reward": self.reward,
            "candidates": self.candidates,
            "guard": self.guard,
            "constraints": [c.to_dict() for c in self.constraints],
            "model": self.model,
            "finish_reason": self.finish_reason,
            "tokens": self.tokens,
            "timings": {k: round(v, 2) for k, v in self.timings.items()},
        }


class ReplyStream:
    """Iterate for text chunks as they are generated; ``reply`` is complete afterwards.

    ``used_rules`` is known before the first chunk, so an app can show it immediately.
    """

    def __init__(
        self, chunks: Iterator[str], used_rules: list[RetrievedRule], finish: Callable[[], Reply]
    ):
        self._chunks = chunks
        self.used_rules = used_rules
        self._finish = finish
        self._reply: Reply | None = None

    def __iter__(self) -> Iterator[str]:
        yield from self._chunks
        self._reply = self._finish()

    @property
    def reply(self) -> Reply:
        """The full reply; iterates to the end first if needed."""
        if self._reply is None:
            for _ in self:
                pass
        assert self._reply is not None
        return self._reply
