"""Which user a request addresses, decided by the server's own rules, for routing.

A router in front of several engines (``cluster.py``) sends each user's requests to the
replica where their adapter and index are warm. It must name the user exactly as the
server will: the path of a per-user endpoint (matched against the server's own routes),
the body of an import, or, for chat, the user of a ``persona-<user>-v<version>`` model
name, else :meth:`Auth.chat_user` over the validated :class:`ChatRequest` (a user-scoped
key's user, the user header, ``persona.user_id``, ``user``, ``safety_identifier``).
Routing never refuses anything: a request the server would refuse (bad key, bad JSON,
foreign user) routes to no user, and the replica that gets it answers the error.
"""

from __future__ import annotations

import json

from fastapi import Request
from pydantic import ValidationError
from starlette.routing import Match

from persona_sdk.adapters.vllm import parse_adapter_name
from persona_sdk.serving import users
from persona_sdk.serving.auth import ANONYMOUS, Auth
from persona_sdk.serving.errors import ApiError
from persona_sdk.serving.schemas import ChatRequest

CHAT_PATH = "/v1/chat/completions"


def _path_user(scope: dict) -> str | None:
    """The ``{user_id}`` of the per-user route that would serve ``scope``, if any."""
    for route in users.router.routes:
        match, child = route.matches(scope)
        if match == Match.FULL:
            return child.get("path_params", {}).get("user_id")
    return None


def chat_options(body: ChatRequest) -> dict[str, str | None]:
    """The body fields :meth:`Auth.chat_user` reads."""
    return {"persona.user_id": body.persona.user_id, "user": body.user,
            "safety_identifier": body.safety_identifier}  # fmt: skip


def addressed_user(auth: Auth, request: Request, body: bytes) -> str | None:
    """The user ``request`` (whose raw body is ``body``) acts for, or ``None`` when it
    names none or the server would refuse it."""
    try:
        caller = auth.caller(request)
        path_user = _path_user(request.scope)
        if path_user is not None:
            return auth.may_access(caller, path_user)
        path = request.url.path
        if path == "/v1/users/import":
            target = json.loads(body).get("user_id")
            return caller.user_id if target is None else auth.may_access(caller, target)
        if path == CHAT_PATH and request.method == "POST":
            chat = ChatRequest.model_validate(json.loads(body))
            adapter = parse_adapter_name(chat.model)  # the server checks its version
            if adapter is not None:
                return auth.may_access(caller, adapter[0], "model")
            user = auth.chat_user(caller, request, chat_options(chat))
            return None if user == ANONYMOUS else user
        return caller.user_id
    except (ApiError, ValueError, ValidationError, AttributeError, RecursionError):
        return None  # the replica answers the error with the server's own response
