"""Gateway mode, ``persona serve --engine openai://HOST:PORT``: memory, rules, reward and
best-of reranking stay here; generation goes to an OpenAI-compatible engine (vLLM, or
another ``persona serve``) that serves the exported adapters by name.

The app is the server's own (routes, auth, errors, schemas, ``chat.py``); only the
backend differs. A request is prepared here (rules retrieved into the system message,
constraints selected for verification), then sent upstream with
``model="persona-<user>-v<version>"`` (the user's adapter at strength 1; the base model
for users with no evidence or strength 0) and ``n`` rows; the rows come back streamed and
are ranked by ``build_replies``, the same code that ranks a local decode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from types import SimpleNamespace

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from persona_sdk.adapters.guidance import RowPlan
from persona_sdk.adapters.vllm import adapter_name
from persona_sdk.decoding.loop import SamplingParams
from persona_sdk.decoding.prompting import build_messages, normalise_messages
from persona_sdk.persona import Persona
from persona_sdk.replies import Decode, build_replies
from persona_sdk.replies import Request as Prepared
from persona_sdk.reply import Reply
from persona_sdk.serving.app import assemble_app
from persona_sdk.serving.auth import ANONYMOUS, Auth
from persona_sdk.serving.engine import EngineConfig, Group, NotReadyError, QueueFullError
from persona_sdk.serving.errors import ApiError
from persona_sdk.serving.gateway_client import Completion, EngineClient, UpstreamNotFound
from persona_sdk.serving.keys import KeyStore
from persona_sdk.serving.metrics import Metrics
from persona_sdk.serving.state import ServeConfig, ServerState
from persona_sdk.validation import validate_number, validate_user_id

log = logging.getLogger("persona.serve")


@dataclass
class RemoteRequest(Prepared):
    """A prepared request for the engine: the rule-augmented messages and the model name
    (no token ids: the engine applies its own chat template)."""

    messages: list[dict] = field(default_factory=list)
    model: str = ""
    facts: dict = field(default_factory=dict)  # added to the reply's ``persona`` object


class RemoteDecode:
    """A finished upstream completion, shaped like the :class:`Decode` that
    ``build_replies`` ranks: rows, constraint checks on the final text, no fluency (the
    engine returns no base-model log-probabilities: NaN, which ranking ignores) and no
    guard."""

    checks = Decode.checks  # each row verified against its request's constraints

    def __init__(self, requests: list[RemoteRequest], best_of: int, done: Completion):
        self.requests, self.best_of, self.usage = requests, best_of, done.usage
        self.gen = SimpleNamespace(rows=done.rows, timings=done.timings)
        self.constraints = [r.constraints for r in requests]
        nan = [math.nan] * len(done.rows)
        self.fluency = SimpleNamespace(means=lambda: nan) if best_of > 1 else None
        self.guard = None

    def guard_report(self, row: int, text: str) -> None:
        return None


class RemoteEngine:
    """The gateway's engine: each admitted group is one streamed upstream call (an
    asyncio task), cancelled when its client goes away. Same surface as the local
    :class:`~persona_sdk.serving.engine.Engine` for the routes."""

    def __init__(self, client: EngineClient, config: EngineConfig | None = None):
        self.client, self.config = client, config or EngineConfig()
        self.ready = threading.Event()
        self.load_error: str | None = None
        self.counters = {"admitted": 0, "finished": 0, "failed": 0, "cancelled_groups": 0,
                         "fallbacks": 0}  # fmt: skip
        self._tasks: dict[Group, asyncio.Task] = {}
        self._stopping = False
        self._probe: asyncio.Task | None = None

    @property
    def accepting(self) -> bool:
        return self.ready.is_set() and not self._stopping

    async def start(self, retry_s: float = 0.5) -> None:
        """Probe the engine (base model, context) in the background until it answers."""

        async def probe() -> None:
            while not self._stopping:
                try:
                    await self.client.probe()
                except ApiError as exc:
                    self.load_error = None if exc.status == 503 else exc.message
                    await asyncio.sleep(retry_s)
                    continue
                self.load_error = None
                self.ready.set()
                return

        self._probe = asyncio.ensure_future(probe())

    async def stop(self, drain_s: float = 30.0) -> None:
        """Stop admitting; let in-flight calls finish for up to ``drain_s``; close."""
        self._stopping = True
        if self._probe is not None:
            self._probe.cancel()
        pending = dict(self._tasks)
        if pending:
            await asyncio.wait(pending.values(), timeout=drain_s)
        for group, task in pending.items():
            if not task.done():
                task.cancel()
                group.sink(("error", ApiError(503, "the server shut down before the reply "
                                              "finished", code="unavailable")))  # fmt: skip
        await self.client.close()

    def submit(self, group: Group) -> None:
        """Start ``group``'s upstream call (called on the event loop)."""
        if not self.accepting:
            raise NotReadyError(self.load_error or "the engine is not reachable yet")
        if len(self._tasks) >= self.config.max_waiting:
            raise QueueFullError("too many requests in flight to the engine")
        self.counters["admitted"] += 1
        self._tasks[group] = asyncio.get_running_loop().create_task(self._run(group))

    def cancel(self, group: Group) -> None:
        """The client went away: end its upstream call (the engine sees the disconnect)."""
        task = self._tasks.get(group)
        if task is not None and not group.done:
            group.cancelled = True
            self.counters["cancelled_groups"] += 1
            task.cancel()

    def stats(self) -> dict:
        return {**self.counters, "in_flight": len(self._tasks), "url": self.client.url}

    async def _run(self, group: Group) -> None:
        request: RemoteRequest = group.request
        emit = lambda deltas: group.sink(("delta", deltas))  # noqa: E731
        try:
            try:
                done = await self.client.complete(request.model, request.messages,
                                                  group.params, group.rows, emit)  # fmt: skip
            except UpstreamNotFound as exc:
                if request.model == self.client.base_model:
                    raise
                self._fall_back(request, exc)
                done = await self.client.complete(request.model, request.messages,
                                                  group.params, group.rows, emit)  # fmt: skip
            requests = [request] if group.best_of > 1 else [request] * group.rows
            group.decode = RemoteDecode(requests, group.best_of, done)
            group.done = True
            self.counters["finished"] += 1
            group.sink(("done", None))
        except ApiError as exc:
            self.counters["failed"] += 1
            group.done = True
            group.sink(("error", exc))
        finally:
            self._tasks.pop(group, None)

    def _fall_back(self, request: RemoteRequest, exc: ApiError) -> None:
        """The engine does not serve the user's adapter (not exported or stale): the base
        model answers, and the reply says so."""
        log.warning("%s; falling back to the base model", exc.message)
        self.counters["fallbacks"] += 1
        request.facts["engine"]["note"] = (f"{request.model} is not served by the engine; "
                                           "the base model answered")  # fmt: skip
        request.model = request.facts["engine"]["model"] = self.client.base_model
        request.plan = RowPlan(None, 0.0)


@dataclass
class GatewayState(ServerState):
    """The server state of a gateway: the routes' backend is the remote engine."""

    engine: RemoteEngine

    @property
    def model_name(self) -> str:
        return self.engine.client.base_model or "persona"

    @property
    def max_context(self) -> int:
        return self.engine.client.max_context

    @property
    def model_names(self) -> set[str]:
        return {self.model_name, "persona"}

    def adapter_user(self, model: str) -> None:
        return None  # adapter names are the engine's; clients here ask for "persona"

    def route(self, user_id: str, strength: float | None) -> tuple[str, float]:
        """The engine model for a request and the strength it applies: the user's exported
        adapter (``strength`` folded into it: always 1) when they have evidence and
        strength is not 0; else the base model (strength 0)."""
        if user_id == ANONYMOUS or strength == 0.0:
            return self.model_name, 0.0
        if self.persona.rewards.evidence(user_id) <= 0.0:
            return self.model_name, 0.0
        return adapter_name(user_id, self.persona.adapters.version(user_id)), 1.0

    def prepare(self, user_id: str, messages: list[dict], params: SamplingParams,
                strength: float | None, use_memory: bool = True) -> RemoteRequest:  # fmt: skip
        """Rules retrieved into the system message, constraints selected (verified on the
        returned text), and the engine model; the tokens are the engine's business."""
        persona = self.persona
        user_id = validate_user_id(user_id)
        if strength is not None:
            validate_number(strength, "strength", low=0.0,
                            high=persona.generation_config.max_strength)  # fmt: skip
        started = time.perf_counter()
        full, rules, query = persona._personalized_messages(user_id, messages)
        retrieve_ms = (time.perf_counter() - started) * 1000
        enforced = persona.enforced_rules(user_id, rules)
        if not use_memory:  # the same prompt without the rules
            full, rules = build_messages(normalise_messages(messages), [],
                                         persona.generation_config.system_prompt), []  # fmt: skip
        model, applied = self.route(user_id, strength)
        facts = {"engine": {"url": self.engine.client.url, "model": model}}
        return RemoteRequest(user_id, rules, [], retrieve_ms, query, RowPlan(None, applied),
                             applied > 0, enforced, messages=full, model=model,
                             facts=facts)  # fmt: skip

    def replies(self, decode, started: float) -> list[Reply]:
        persona = self.persona
        return build_replies(decode, persona.rewards, persona._encode, self.model_name,
                             persona.generation_config, started)  # fmt: skip


def create_gateway_app(persona: Persona, client: EngineClient,
                       config: ServeConfig | None = None) -> FastAPI:  # fmt: skip
    """The server app in gateway mode: generation by the engine ``client`` talks to."""
    config = config or ServeConfig()
    metrics = Metrics()
    engine = RemoteEngine(client, config.engine)
    keys = None if config.no_auth else KeyStore(persona.data_dir)
    serve = GatewayState(persona, engine, Auth(keys, config.user_header, config.require_user),
                         metrics, config)  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        await engine.start()
        yield
        await engine.stop(config.drain_s)
        persona.close()

    def model() -> dict:
        return {"id": serve.model_name, "max_context": serve.max_context}

    app = assemble_app("persona-sdk gateway", lifespan, serve, metrics, model)

    @app.get("/health")
    async def health():
        if not engine.ready.is_set():
            detail = engine.load_error or f"waiting for the engine at {client.url}"
            return JSONResponse({"status": "loading", "detail": detail}, 503)
        return {"status": "ok", "model": serve.model_name, "engine": engine.stats()}

    return app
