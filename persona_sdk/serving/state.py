"""What the routes share: the server's settings and state, and reading a JSON body."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from fastapi import Request

from persona_sdk.adapters.guidance import RowPlan
from persona_sdk.adapters.vllm import adapter_name, parse_adapter_name
from persona_sdk.decoding.loop import SamplingParams
from persona_sdk.decoding.prompting import build_messages, normalise_messages, retrieval_query
from persona_sdk.errors import InvalidInputError
from persona_sdk.persona import Persona
from persona_sdk.replies import Request as Prepared
from persona_sdk.reply import Reply
from persona_sdk.serving.auth import Auth, check_user_id
from persona_sdk.serving.engine import Engine, EngineConfig
from persona_sdk.serving.errors import ApiError
from persona_sdk.serving.metrics import Metrics


@dataclass
class ServeConfig:
    """Server settings (``persona serve`` options)."""

    no_auth: bool = False
    require_user: bool = False
    user_header: str = "X-Persona-User"
    max_body_bytes: int = 1 << 20
    max_messages: int = 256
    drain_s: float = 30.0
    engine: EngineConfig = field(default_factory=EngineConfig)


@dataclass
class ServerState:
    """What every route reads from ``request.app.state.serve``."""

    persona: Persona
    engine: Engine
    auth: Auth
    metrics: Metrics
    config: ServeConfig

    @property
    def model_name(self) -> str:
        """The base model, as replies name it."""
        return self.persona.host.name

    @property
    def max_context(self) -> int:
        return self.persona.host.max_context

    @property
    def model_names(self) -> set[str]:
        return {self.persona.host.name, "persona"}

    def adapter_user(self, model: str) -> str | None:
        """The user a ``persona-<user>-v<version>`` model name serves (at strength 1, with
        no rules: like a LoRA name on vLLM, see ``persona adapters export --for vllm``);
        ``None`` for other names; 404 when the name is not that user's current adapter."""
        named = parse_adapter_name(model)
        if named is None:
            return None
        user_id, version = check_user_id(named[0], "model"), named[1]
        adapters = self.persona.adapters
        current = adapters.version(user_id) if adapters.available() else None
        if current != version:
            now = "no adapters here" if current is None else adapter_name(user_id, current)
            raise ApiError(404, f"model {model!r} is not served here (current: {now})",
                           param="model", code="model_not_found")  # fmt: skip
        return user_id

    def prepare(self, user_id: str, messages: list[dict], params: SamplingParams,
                strength: float | None, use_memory: bool = True) -> Prepared:  # fmt: skip
        """Persona's prepared request (rules, tokens, adapter plan: fixed from here on);
        without ``use_memory``, the same prompt without the rules."""
        persona = self.persona
        prepared = persona._request(user_id, messages, params, strength)
        if not use_memory and prepared.rules:
            plain = build_messages(normalise_messages(messages), [],
                                   persona.generation_config.system_prompt)  # fmt: skip
            prepared.token_ids, prepared.rules = persona.host.chat_ids(plain), []
        return prepared

    def prepare_adapter(self, user_id: str, messages: list[dict],
                        params: SamplingParams) -> Prepared:  # fmt: skip
        """A request for an adapter name: the messages as sent (no retrieval, no
        constraints), the user's adapter alone (strength 1)."""
        persona = self.persona
        normal = normalise_messages(messages)
        plain = build_messages(normal, [], persona.generation_config.system_prompt)
        token_ids = persona.host.chat_ids(plain)
        if len(token_ids) + params.max_new_tokens > self.max_context:
            raise InvalidInputError(f"prompt ({len(token_ids)} tokens) plus max_tokens "
                                    f"exceeds the model's {self.max_context}")  # fmt: skip
        plan = RowPlan(persona.adapters.activate(user_id), 1.0)
        return Prepared(user_id, [], token_ids, 0.0, retrieval_query(normal), plan, True)

    def replies(self, decode, started: float) -> list[Reply]:
        """Score a finished decode's rows with the user's reward (Persona's own ranking)."""
        return self.persona._replies(decode, started)


def state(request: Request) -> ServerState:
    return request.app.state.serve


def _no_constants(name: str):
    raise ApiError(400, f"JSON {name} is not a number", code="invalid_json")


async def read_json(request: Request) -> dict:
    """The request body as a JSON object: size-limited, NaN and Infinity refused."""
    limit = state(request).config.max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(400, f"the body is larger than {limit} bytes", code="body_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(400, f"the body is larger than {limit} bytes", code="body_too_large")
    try:
        value = json.loads(bytes(body), parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:  # ApiError (NaN) is neither: it passes
        raise ApiError(400, f"malformed JSON: {exc}", code="invalid_json") from None
    if not isinstance(value, dict):
        raise ApiError(400, "the body must be a JSON object", code="invalid_json")
    return value


def finite(value: float | None) -> float | None:
    """JSON has no NaN: report a non-finite number as null."""
    return None if value is None or not math.isfinite(value) else value
