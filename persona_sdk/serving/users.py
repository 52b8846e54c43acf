"""The personalization endpoints, shaped like Mem0's: per-user rules, pairs and edits,
reading and deleting memories, profile, explain, the next onboarding question, forget,
and export (admin only) / import."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from persona_sdk.serving.auth import Caller
from persona_sdk.serving.errors import ApiError
from persona_sdk.serving.schemas import (
    EditRequest,
    ExplainRequest,
    ImportRequest,
    PairsRequest,
    QuestionRequest,
    RulesRequest,
)
from persona_sdk.serving.state import read_json, state

router = APIRouter(prefix="/v1/users")


def _access(request: Request, user_id: str) -> tuple[Caller, str]:
    serve = state(request)
    caller = serve.auth.caller(request)
    return caller, serve.auth.may_access(caller, user_id)


def _existing(request: Request, user_id: str):
    """The user's handle; 404 when nothing is stored for them."""
    persona = state(request).persona
    persona.store.require_user(user_id)
    return persona.user(user_id)


async def _add_many(request: Request, user_id: str, schema, method: str, missing: str) -> dict:
    """Validate a one-or-many body with ``schema``; store it with ``User.<method>``."""
    _, user_id = _access(request, user_id)
    items = schema.model_validate(await read_json(request)).items()
    if not items:
        raise ApiError(400, missing, code="invalid_value")
    user = state(request).persona.user(user_id)
    stored = await run_in_threadpool(getattr(user, method), items)
    return {"user_id": user_id, "results": [m.to_dict() for m in stored]}


@router.post("/{user_id}/rules")
async def add_rules(request: Request, user_id: str):
    """Add stated rules: ``{"text", "context"}`` or ``{"rules": [...]}``."""
    return await _add_many(request, user_id, RulesRequest, "add_rules", "give text, or rules")


@router.post("/{user_id}/pairs")
async def add_pairs(request: Request, user_id: str):
    """Add preference pairs: ``{"prompt", "chosen", "rejected"}`` or ``{"pairs": [...]}``."""
    return await _add_many(request, user_id, PairsRequest, "add_pairs",
                           "give prompt, chosen and rejected, or pairs")  # fmt: skip


@router.post("/{user_id}/edits")
async def add_edit(request: Request, user_id: str):
    """Learn from an edit; the answer includes the rules it inferred."""
    _, user_id = _access(request, user_id)
    body = EditRequest.model_validate(await read_json(request))
    user = state(request).persona.user(user_id)
    result = await run_in_threadpool(user.add_edit, body.prompt, body.response, body.edited,
                                     body.context)  # fmt: skip
    return {"user_id": user_id, **result.to_dict()}


@router.get("/{user_id}/memories")
async def memories(request: Request, user_id: str, kind: str | None = None):
    """Every memory of the user (or one ``kind``: rule, pair, edit)."""
    _, user_id = _access(request, user_id)
    found = await run_in_threadpool(lambda: _existing(request, user_id).memories(kind))
    return {"user_id": user_id, "results": [m.to_dict() for m in found]}


@router.get("/{user_id}/rules")
async def rules(request: Request, user_id: str, all: bool = False):
    """The user's rules (superseded ones with ``?all=true``)."""
    _, user_id = _access(request, user_id)
    found = await run_in_threadpool(lambda: _existing(request, user_id).rules(all))
    return {"user_id": user_id, "results": [m.to_dict() for m in found]}


@router.delete("/{user_id}/memories/{memory_id}")
async def delete_memory(request: Request, user_id: str, memory_id: str):
    """Delete one memory of the user."""
    _, user_id = _access(request, user_id)
    if not memory_id.isdigit() or len(memory_id) > 18:
        raise ApiError(400, "a memory id is a positive integer", param="memory_id",
                       code="invalid_value")  # fmt: skip
    await run_in_threadpool(lambda: _existing(request, user_id).delete_memory(int(memory_id)))
    return {"user_id": user_id, "deleted": int(memory_id)}


@router.get("/{user_id}/profile")
async def profile(request: Request, user_id: str):
    """What the user revealed and what their reward model prefers (``profile``, as
    ``persona show``), plus the axis weights with uncertainty and the user's adapter."""
    _, user_id = _access(request, user_id)
    persona = state(request).persona

    def read() -> dict:
        user = _existing(request, user_id)
        adapters = persona.adapters
        adapter = adapters.info(user_id) if adapters.available() else None
        return {"user_id": user_id, "counts": persona.store.count_memories(user_id),
                "profile": user.profile().to_dict(),
                "reward": user.reward_profile().to_dict(), "adapter": adapter}  # fmt: skip

    return await run_in_threadpool(read)


@router.post("/{user_id}/explain")
async def explain(request: Request, user_id: str):
    """The rules a request with ``prompt`` would use, with their similarities."""
    _, user_id = _access(request, user_id)
    body = ExplainRequest.model_validate(await read_json(request))
    user = state(request).persona.user(user_id)
    return (await run_in_threadpool(user.explain, body.prompt)).to_dict()


@router.post("/{user_id}/question")
async def question(request: Request, user_id: str):
    """The next onboarding A/B question: answer it with ``POST …/pairs``."""
    _, user_id = _access(request, user_id)
    body = QuestionRequest.model_validate(await read_json(request))
    user = state(request).persona.user(user_id)
    asked = await run_in_threadpool(user.next_question, body.prompt, body.replies)
    return {"user_id": user_id, **asked.to_dict()}


@router.delete("/{user_id}")
async def forget(request: Request, user_id: str):
    """Forget the user: every row, vector, index, adapter and cache."""
    _, user_id = _access(request, user_id)
    await run_in_threadpool(lambda: _existing(request, user_id).forget())
    return {"user_id": user_id, "forgotten": True}


@router.get("/{user_id}/export")
async def export(request: Request, user_id: str):
    """The user as JSON lines (admin keys only)."""
    caller, user_id = _access(request, user_id)
    state(request).auth.require_admin(caller)
    persona = state(request).persona

    def lines() -> str:
        persona.store.require_user(user_id)
        return "".join(line if line.endswith("\n") else line + "\n"
                       for line in persona.export_user(user_id))  # fmt: skip

    return Response(await run_in_threadpool(lines), media_type="application/x-ndjson")


@router.post("/import")
async def import_user(request: Request):
    """Create a user from an export (``data``), optionally renamed (``user_id``)."""
    serve = state(request)
    caller = serve.auth.caller(request)
    body = ImportRequest.model_validate(await read_json(request))
    target = body.user_id
    if target is not None:
        target = serve.auth.may_access(caller, target)
    elif caller.user_id is not None:
        raise ApiError(403, "a user key imports only into its own user: give user_id",
                       code="forbidden")  # fmt: skip
    lines = body.data.splitlines()
    user = await run_in_threadpool(serve.persona.import_user, lines, target)
    return {"user_id": user.id, "imported": True}
