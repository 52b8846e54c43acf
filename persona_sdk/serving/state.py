"""What the routes share: the server's settings and state, and reading a JSON body."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from fastapi import Request

from persona_sdk.persona import Persona
from persona_sdk.serving.auth import Auth
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
    def model_names(self) -> set[str]:
        return {self.persona.host.name, "persona"}


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
