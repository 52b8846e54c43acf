"""Request bodies. Unknown fields are ignored (clients send many); NaN and infinities are
rejected; a wrong type is a 400 through ``errors.from_validation``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

_CONFIG = ConfigDict(extra="ignore", allow_inf_nan=False)
Number = StrictInt | StrictFloat


class Body(BaseModel):
    model_config = _CONFIG


class ContentPart(Body):
    type: str = "text"
    text: str = ""


class ChatMessage(Body):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # OpenAI's content parts: keep the text ones
            return "".join(p.text for p in self.content if p.type == "text")
        return self.content or ""


class StreamOptions(Body):
    include_usage: StrictBool = False


class PersonaOptions(Body):
    user_id: str | None = None
    strength: Number | None = Field(None, ge=0)
    best_of: StrictInt = Field(1, ge=1)
    use_memory: StrictBool = True


class ChatRequest(Body):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    n: StrictInt = Field(1, ge=1)
    max_tokens: StrictInt | None = Field(None, ge=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    temperature: Number | None = Field(None, ge=0, le=2)
    top_p: Number | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: StrictInt | None = Field(None, ge=0)
    user: str | None = None
    safety_identifier: str | None = None
    persona: PersonaOptions = Field(default_factory=PersonaOptions)

    def stops(self) -> list[str] | None:
        return [self.stop] if isinstance(self.stop, str) else self.stop


class Rule(Body):
    text: str
    context: str | None = None


class RulesRequest(Body):
    """One rule (``text``, ``context``) or many (``rules``)."""

    text: str | None = None
    context: str | None = None
    rules: list[Rule] | None = None

    def items(self) -> list[tuple[str, str | None]]:
        rules = list(self.rules or [])
        if self.text is not None:
            rules.append(Rule(text=self.text, context=self.context))
        return [(r.text, r.context) for r in rules]


class Pair(Body):
    prompt: str
    chosen: str
    rejected: str


class PairsRequest(Body):
    """One pair (``prompt``, ``chosen``, ``rejected``) or many (``pairs``)."""

    prompt: str | None = None
    chosen: str | None = None
    rejected: str | None = None
    pairs: list[Pair] | None = None

    def items(self) -> list[tuple[str, str, str]]:
        pairs = [(p.prompt, p.chosen, p.rejected) for p in self.pairs or []]
        if self.prompt is not None or self.chosen is not None or self.rejected is not None:
            pairs.append((self.prompt, self.chosen, self.rejected))
        return pairs


class EditRequest(Body):
    prompt: str
    response: str
    edited: str
    context: str | None = None


class ExplainRequest(Body):
    prompt: str


class QuestionRequest(Body):
    prompt: str | None = None
    replies: list[str] | None = None


class ImportRequest(Body):
    """An export (JSON lines, as ``GET /v1/users/{id}/export`` returns) and an optional
    new user id."""

    data: str
    user_id: str | None = None
