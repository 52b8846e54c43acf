"""Turns retrieved rules into the preference block of the system prompt."""

from __future__ import annotations

from collections.abc import Sequence

from persona_sdk.decoding.models import Message
from persona_sdk.errors import InvalidInputError
from persona_sdk.memory.retrieval import RetrievedRule
from persona_sdk.validation import MAX_TEXT_CHARS, validate_text

ROLES = ("system", "user", "assistant")


def normalise_messages(prompt: str | Sequence[Message]) -> list[Message]:
    """Accept a prompt string or chat messages; check the shape and return messages."""
    if isinstance(prompt, (str, bytes)):
        return [{"role": "user", "content": validate_text(prompt, "prompt", MAX_TEXT_CHARS)}]
    if not isinstance(prompt, Sequence) or not prompt:
        raise InvalidInputError("messages must be a non-empty list of {'role', 'content'} dicts")
    messages: list[Message] = []
    for i, message in enumerate(prompt):
        if not isinstance(message, dict) or set(message) - {"role", "content", "name"}:
            raise InvalidInputError(f"message {i} must be a dict with 'role' and 'content'")
        role = message.get("role")
        if role not in ROLES:
            raise InvalidInputError(f"message {i} has role {role!r}; expected one of {ROLES}")
        content = validate_text(message.get("content"), f"message {i} content", MAX_TEXT_CHARS)
        messages.append({"role": role, "content": content})
    if messages[-1]["role"] != "user":
        raise InvalidInputError("the last message must come from the user")
    if any(m["role"] == "system" for m in messages[1:]):
        raise InvalidInputError("a system message may only come first")
    return messages


def preference_block(rules: Sequence[RetrievedRule]) -> str:
    """A short imperative list: small models follow plain bullet instructions best."""
    if not rules:
        return ""
    lines = "\n".join(f"- {rule.text}" for rule in rules)
    return f"Follow these preferences of the user in your reply:\n{lines}"


def build_messages(
    messages: list[Message], rules: Sequence[RetrievedRule], system_prompt: str
) -> list[Message]:
    """Put the preference block into the system message (the caller's, or ours)."""
    block = preference_block(rules)
    if messages[0]["role"] == "system":
        system, rest = messages[0]["content"], messages[1:]
    else:
        system, rest = system_prompt, messages
    content = f"{system}\n\n{block}" if block else system
    return [{"role": "system", "content": content}, *rest]


def retrieval_query(messages: list[Message]) -> str:
    """The request context used for retrieval: the latest user turn."""
    return next(m["content"] for m in reversed(messages) if m["role"] == "user")
