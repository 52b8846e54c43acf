"""The FastAPI app: one Persona, one engine, the OpenAI-compatible and user routes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from persona_sdk.persona import Persona
from persona_sdk.serving import chat, errors, users
from persona_sdk.serving.auth import Auth
from persona_sdk.serving.engine import Engine
from persona_sdk.serving.keys import KeyStore
from persona_sdk.serving.metrics import Metrics
from persona_sdk.serving.state import ServeConfig, ServerState


def create_app(persona: Persona, config: ServeConfig | None = None, *,
               start_engine: bool = True) -> FastAPI:  # fmt: skip
    """The server app. The engine loads the model in its thread at start-up; until it is
    ready, generation answers 503. Shutdown drains the engine, then closes the store."""
    config = config or ServeConfig()
    metrics = Metrics()
    engine = Engine(persona, config.engine, on_step=metrics.on_step)
    keys = None if config.no_auth else KeyStore(persona.data_dir)
    serve = ServerState(persona, engine, Auth(keys, config.user_header, config.require_user),
                        metrics, config)  # fmt: skip

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        if start_engine:
            engine.start()
        yield
        engine.stop(config.drain_s)
        persona.close()

    def model() -> dict:
        host = persona.host
        return {"id": host.name, "max_context": host.max_context}

    app = assemble_app("persona-sdk", lifespan, serve, metrics, model)

    @app.get("/health")
    async def health():
        if engine.load_error:
            return JSONResponse({"status": "error", "detail": engine.load_error}, 503)
        if not engine.ready.is_set():
            return JSONResponse({"status": "loading"}, 503)
        return {"status": "ok", "model": persona.host.name, "engine": engine.stats()}

    return app


def assemble_app(title: str, lifespan, serve, metrics: Metrics,
                 model: Callable[[], dict]) -> FastAPI:  # fmt: skip
    """What the server and the gateway share: state, errors, the chat and user routes,
    request counting, ``/metrics`` and ``/v1/models`` (``model()``: its id and context)."""
    app = FastAPI(title=title, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.serve = serve
    errors.install(app)
    app.include_router(chat.router)
    app.include_router(users.router)

    @app.middleware("http")
    async def count(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        metrics.requests.labels(getattr(route, "path", "other"), response.status_code).inc()
        return response

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models(request: Request):
        serve.auth.caller(request)
        chat.require_ready(serve)
        entry = {"object": "model", "created": 0, "owned_by": "persona-sdk", **model()}
        return {"object": "list", "data": [entry]}

    return app
