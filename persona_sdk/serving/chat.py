"""``POST /v1/chat/completions``: OpenAI's chat API over the engine, plus a ``persona``
object (and ``X-Persona-*`` headers) saying what shaped the reply."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response, StreamingResponse

from persona_sdk.decoding.loop import sampling_params
from persona_sdk.errors import InvalidInputError
from persona_sdk.reply import Reply
from persona_sdk.serving import state as server
from persona_sdk.serving.auth import ANONYMOUS
from persona_sdk.serving.engine import Group, NotReadyError, QueueFullError
from persona_sdk.serving.errors import ApiError, sse_error
from persona_sdk.serving.schemas import ChatRequest

router = APIRouter()
ROLE_MAP = {"developer": "system"}


@dataclass
class Job:
    """One admitted chat request: its group and the queue its events arrive on."""

    body: ChatRequest
    user_id: str
    best_of: int
    group: Group
    events: asyncio.Queue
    started: float
    id: str = ""


def require_ready(serve) -> None:
    if not serve.engine.accepting:
        detail = serve.engine.load_error or "the model is loading or the server is stopping"
        raise ApiError(503, detail, code="unavailable", headers={"Retry-After": "5"})


def _prepare(serve, body: ChatRequest, user_id: str, adapter: bool = False):
    """The prepared request (through the server's backend), its sampling settings, rows
    and best-of. ``adapter``: the model named the user's adapter (strength 1, no rules)."""
    persona, options = serve.persona, body.persona
    n, best_of = body.n, options.best_of
    if n > 1 and best_of > 1:
        raise InvalidInputError("give n or persona.best_of, not both")
    if body.stream and best_of > 1:
        raise InvalidInputError("best_of > 1 picks a reply at the end; it cannot stream")
    limit = persona.generation_config.max_best_of
    if n > limit:
        raise InvalidInputError(f"n must be at most {limit}")
    max_new = body.max_completion_tokens or body.max_tokens
    params = sampling_params(persona.generation_config, serve.max_context, best_of, max_new,
                             body.temperature, body.top_p, body.seed, body.stops())  # fmt: skip
    messages = [{"role": ROLE_MAP.get(m.role, m.role), "content": m.text()}
                for m in body.messages]  # fmt: skip
    if adapter:
        prepared = serve.prepare_adapter(user_id, messages, params)
    else:
        strength = 0.0 if user_id == ANONYMOUS else options.strength
        prepared = serve.prepare(user_id, messages, params, strength, options.use_memory)
    return prepared, params, max(n, best_of), best_of


async def admit(request: Request, body: ChatRequest, user_id: str, adapter: bool = False) -> Job:
    """Prepare the request and queue it on the engine (503 loading, 429 queue full)."""
    serve = server.state(request)
    require_ready(serve)
    prepared, params, rows, best_of = await run_in_threadpool(_prepare, serve, body, user_id,
                                                              adapter)  # fmt: skip
    loop, events = asyncio.get_running_loop(), asyncio.Queue()
    sink = lambda e: loop.call_soon_threadsafe(events.put_nowait, e)  # noqa: E731
    group = Group(prepared, rows, params, sink, best_of)
    try:
        serve.engine.submit(group)
    except QueueFullError as exc:
        retry = str(serve.engine.config.retry_after_s)
        raise ApiError(429, str(exc), code="queue_full", headers={"Retry-After": retry}) from None
    except NotReadyError as exc:
        raise ApiError(503, str(exc), code="unavailable", headers={"Retry-After": "5"}) from None
    return Job(body, user_id, best_of, group, events, time.perf_counter(),
               f"chatcmpl-{uuid.uuid4().hex}")  # fmt: skip


def _replies(serve, job: Job) -> list[Reply]:
    """Score the finished rows with the user's reward (Persona's own ranking)."""
    return serve.replies(job.group.decode, job.started)


def persona_facts(job: Job, reply: Reply | None) -> dict:
    """The ``persona`` object: user, strength applied, rules used, reward, guard events."""
    request = job.group.request  # a gateway's request adds its engine's facts
    facts = {"user_id": None if job.user_id == ANONYMOUS else job.user_id,
             "strength": request.plan.strength,
             "used_rules": [rule.to_dict() for rule in request.rules],
             **getattr(request, "facts", {})}  # fmt: skip
    if reply is not None:
        facts["reward"] = server.finite(reply.reward)
        facts["personalized"] = reply.personalized
        facts["guard"] = reply.guard
        if reply.candidates:
            facts["candidates"] = reply.candidates
    return facts


def headers(job: Job, reply: Reply | None = None) -> dict[str, str]:
    """The same facts as ``X-Persona-*`` headers (some clients drop unknown body fields)."""
    facts = persona_facts(job, reply)
    out = {"X-Persona-User": facts["user_id"] or "",
           "X-Persona-Strength": f"{facts['strength']:g}",
           "X-Persona-Rules": ",".join(str(r["id"]) for r in facts["used_rules"])}  # fmt: skip
    if reply is not None and facts["reward"] is not None:
        out["X-Persona-Reward"] = f"{facts['reward']:.6g}"
    return out


def usage(job: Job) -> dict:
    if getattr(job.group.decode, "usage", None):  # a gateway's: as its engine counted
        return job.group.decode.usage
    prompt = len(job.group.request.token_ids)
    completion = sum(len(row.tokens) for row in job.group.decode.gen.rows)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}  # fmt: skip


async def _until_done(request: Request, job: Job) -> bool:
    """Wait for the group; a client that goes away first cancels it (returns False)."""

    async def finished():
        while True:
            kind, payload = await job.events.get()
            if kind == "error":
                if isinstance(payload, ApiError):  # e.g. a gateway's engine failed: 502/503
                    raise payload
                raise ApiError(500, str(payload), code="generation_failed")
            if kind == "done":
                return

    async def gone():
        while (await request.receive())["type"] != "http.disconnect":
            pass

    waiter, watcher = asyncio.ensure_future(finished()), asyncio.ensure_future(gone())
    try:
        done, _ = await asyncio.wait({waiter, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not waiter.done():
            waiter.cancel()
            server.state(request).engine.cancel(job.group)
    if waiter not in done:
        return False
    waiter.result()  # raises the generation error, if any
    return True


@router.post("/v1/chat/completions")
async def chat_completions(request: Request):
    """OpenAI-compatible chat completions (streaming too)."""
    serve = server.state(request)
    caller = serve.auth.caller(request)
    body = ChatRequest.model_validate(await server.read_json(request))
    adapter_user = None
    if body.model not in serve.model_names:  # an adapter name reads the user's weights
        adapter_user = await run_in_threadpool(serve.adapter_user, body.model)
    if adapter_user is None and body.model not in serve.model_names:
        raise ApiError(404, f"model {body.model!r} is not served here", param="model",
                       code="model_not_found")  # fmt: skip
    if len(body.messages) > serve.config.max_messages:
        raise ApiError(400, f"at most {serve.config.max_messages} messages", param="messages",
                       code="too_many_messages")  # fmt: skip
    options = {"persona.user_id": body.persona.user_id, "user": body.user,
               "safety_identifier": body.safety_identifier}  # fmt: skip
    if adapter_user is not None:  # the adapter's user, whoever else the request names
        user_id = serve.auth.may_access(caller, adapter_user, "model")
    else:
        user_id = serve.auth.chat_user(caller, request, options)
    job = await admit(request, body, user_id, adapter_user is not None)
    if body.stream:
        return StreamingResponse(_stream(serve, job), media_type="text/event-stream",
                                 headers=headers(job))  # fmt: skip
    if not await _until_done(request, job):
        return Response(status_code=499)  # nobody is listening
    replies = await run_in_threadpool(_replies, serve, job)
    choices = [{"index": i, "message": {"role": "assistant", "content": r.text},
                "finish_reason": r.finish_reason, "logprobs": None}
               for i, r in enumerate(replies)]  # fmt: skip
    out = {"id": job.id, "object": "chat.completion", "created": int(time.time()),
           "model": serve.model_name, "choices": choices, "usage": usage(job),
           "persona": persona_facts(job, replies[0])}  # fmt: skip
    return JSONResponse(out, headers=headers(job, replies[0]))


def _chunk(serve, job: Job, choices: list, **extra) -> str:
    body = {"id": job.id, "object": "chat.completion.chunk", "created": int(time.time()),
            "model": serve.model_name, "choices": choices, **extra}  # fmt: skip
    return f"data: {json.dumps(body)}\n\n"


async def _stream(serve, job: Job) -> AsyncIterator[str]:
    """Server-sent events: role, content deltas, finish (with ``persona``), usage, [DONE]."""
    rows = range(job.group.rows)
    finished = False
    try:
        yield _chunk(serve, job, [{"index": i, "delta": {"role": "assistant", "content": ""},
                                   "finish_reason": None} for i in rows])  # fmt: skip
        while True:
            kind, payload = await job.events.get()
            if kind == "delta":
                choices = [{"index": i, "delta": {"content": d}, "finish_reason": None}
                           for i, d in enumerate(payload) if d]  # fmt: skip
                yield _chunk(serve, job, choices)
                continue
            finished = True
            if kind == "error":
                status = payload.status if isinstance(payload, ApiError) else 500
                yield sse_error(str(payload), status)
                return
            replies = await run_in_threadpool(_replies, serve, job)
            yield _chunk(serve, job, [{"index": i, "delta": {}, "finish_reason":
                                       r.finish_reason} for i, r in enumerate(replies)],
                         persona=persona_facts(job, replies[0]))  # fmt: skip
            options = job.body.stream_options
            if options is not None and options.include_usage:
                yield _chunk(serve, job, [], usage=usage(job))
            yield "data: [DONE]\n\n"
            return
    finally:
        if not finished:  # the client went away mid-stream
            serve.engine.cancel(job.group)
