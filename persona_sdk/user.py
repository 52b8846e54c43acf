"""One end-user's view of the store: their rules, memories and what retrieval picks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from persona_sdk.errors import InvalidInputError
from persona_sdk.memory.retrieval import RetrievedRule
from persona_sdk.memory.store import KINDS, SOURCES, Memory
from persona_sdk.validation import MAX_RULE_CHARS, validate_optional_text, validate_text

if TYPE_CHECKING:
    from persona_sdk.persona import Persona


@dataclass
class Explanation:
    """What a request would retrieve for the user, and why."""

    user_id: str
    prompt: str
    rules: list[RetrievedRule]

    def to_dict(self) -> dict:
        return {
            "user_id": self.user_id,
            "prompt": self.prompt,
            "rules": [rule.to_dict() for rule in self.rules],
        }


class User:
    """Handle on one user's memory. Get it from :meth:`Persona.user`; it is cheap."""

    def __init__(self, persona: Persona, user_id: str):
        self._persona = persona
        self.id = user_id

    def __repr__(self) -> str:
        return f"User({self.id!r})"

    @property
    def exists(self) -> bool:
        """True once anything was stored for this user."""
        return self._persona.store.user_exists(self.id)

    def add_rule(self, text: str, context: str | None = None, source: str = "stated") -> Memory:
        """Store a rule. Without ``context`` it applies to every request; with one, it is
        retrieved for requests similar to that context (e.g. ``"emails to my manager"``)."""
        text = validate_text(text, "rule", MAX_RULE_CHARS)
        context = validate_optional_text(context, "context", MAX_RULE_CHARS)
        if source not in SOURCES:
            raise InvalidInputError(f"source must be one of {SOURCES}, not {source!r}")
        vector = self._persona.embedder.encode_one(context or text)
        row = {
            "kind": "rule",
            "source": source,
            "text": text,
            "context": context,
            "embedding": vector,
        }
        return self._persona._add_memories(self.id, [row])[0]

    def rules(self, include_superseded: bool = False) -> list[Memory]:
        """The user's rules, oldest first; superseded ones only when asked."""
        return self._persona.store.memories(
            self.id, kind="rule", include_superseded=include_superseded
        )

    def memories(self, kind: str | None = None) -> list[Memory]:
        """Every memory of the user, or only one ``kind`` (rule, pair or edit)."""
        if kind is not None and kind not in KINDS:
            raise InvalidInputError(f"kind must be one of {KINDS}, not {kind!r}")
        return self._persona.store.memories(self.id, kind=kind)

    def delete_memory(self, memory_id: int) -> None:
        """Delete one memory of this user (raises ``MemoryNotFoundError`` otherwise)."""
        if isinstance(memory_id, bool) or not isinstance(memory_id, int):
            raise InvalidInputError(f"memory id must be an integer, not {memory_id!r}")
        store = self._persona.store
        write = store.delete_memory(self.id, memory_id)
        self._persona.indexes.apply(self.id, write, remove=[memory_id])

    def explain(self, prompt: str) -> Explanation:
        """The rules a request with ``prompt`` would put in the system prompt, with similarities."""
        prompt = validate_text(prompt, "prompt")
        return Explanation(self.id, prompt, self._persona._retrieve(self.id, prompt))

    def forget(self) -> None:
        """Delete every trace of the user: rows, vectors, index files and caches."""
        self._persona._forget(self.id)
