"""What :meth:`Persona.generate` returns: the text plus what shaped it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from persona_sdk.memory.retrieval import RetrievedRule


@dataclass
class Reply:
    """A generated reply.

    Attributes:
        text: the reply.
        user_id: whose reply it is.
        used_rules: the rules put in the prompt, with their similarity to the request.
        strength: the guidance strength actually applied (0 when the user has no adapter).
        personalized: False when nothing of the user's shaped the reply.
        reward: the user's reward for the reply (the population default's for a new user).
        candidates: with ``best_of > 1``, every sampled candidate's ``text`` and
            ``reward``, best first (the reply is the first).
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
