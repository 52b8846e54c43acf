"""``persona serve`` past one machine: the same server as Ray Serve replicas.

Two deployments (``pip install 'persona-sdk[cluster]'``):

- :class:`Engine` replicas, N of them (or autoscaled on queue depth). Each opens the data
  dir itself (its own :class:`Persona`, model copy and continuous-batching engine) and runs
  the server's own FastAPI app (:func:`create_app`) in-process: a request arrives as raw
  HTTP (method, path, headers, body) and leaves as the app's response, streamed. Chat,
  per-user endpoints, auth and errors are the server's code, not a copy.
- One :class:`Ingress`, the HTTP entry point on Ray Serve's proxy. It reads the body,
  names the user the request addresses exactly as the server would
  (:func:`routing.addressed_user`) and forwards the request with that user as the
  multiplexed model id, so Ray routes it to the replica that served the user last (their
  index and adapter slot are warm there). Requests that name no user go anywhere.

Replicas share the store: the data dir's SQLite (one machine), or ``store=`` (another
backend, when ``Persona.open`` accepts it). A replica's FAISS indexes are caches checked
against the user's ``memory_version`` on every use, so a write through one replica is seen
by the next request on any other. Each response carries ``X-Persona-Replica`` (the Ray
Serve replica id), which shows where it was served.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from persona_sdk.config import default_data_dir
from persona_sdk.serving.auth import Auth
from persona_sdk.serving.errors import ApiError
from persona_sdk.serving.keys import KeyStore
from persona_sdk.serving.routing import addressed_user
from persona_sdk.serving.state import ServeConfig
from persona_sdk.validation import validate_path

REPLICA_HEADER = "X-Persona-Replica"
WARM_USERS = 1024  # user ids a replica reports as warm (Ray's LRU; routing prefers them)
LOAD_TIMEOUT_S = 600.0
Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class RawRequest:
    """An HTTP request as the ingress received it (what crosses to a replica)."""

    method: str
    path: str
    query: bytes
    headers: Headers
    body: bytes
    client: tuple[str, int] | None = None


def open_persona(data_dir: str, options: Mapping[str, Any]):
    """``Persona.open`` in a replica. ``embedder`` may be a zero-argument factory (an
    embedder object itself need not pickle); ``store`` is passed only when given."""
    from persona_sdk.decoding.embedder import Embedder
    from persona_sdk.persona import Persona

    kwargs = {k: v for k, v in options.items() if v is not None or k != "store"}
    embedder = kwargs.get("embedder")
    if callable(embedder) and not isinstance(embedder, Embedder):
        kwargs["embedder"] = embedder()
    return Persona.open(data_dir, **kwargs)


class Engine:
    """One engine replica: a Persona, its engine, and the server's app in-process."""

    async def __init__(self, data_dir: str, options: Mapping[str, Any], config: ServeConfig):
        from persona_sdk.serving.app import create_app

        persona = await asyncio.to_thread(open_persona, data_dir, options)
        self.app = create_app(persona, config)
        self.engine = self.app.state.serve.engine
        self.replica_id = serve.get_replica_context().replica_id.unique_id
        self._identity = (REPLICA_HEADER.lower().encode(), self.replica_id.encode())
        self._lifespan = self.app.router.lifespan_context(self.app)
        self._open = True
        self._tasks: set[asyncio.Task] = set()
        await self._lifespan.__aenter__()  # the engine thread starts loading the model
        # Take traffic only once loaded: until then Ray routes to the other replicas.
        await asyncio.to_thread(self.engine.ready.wait, LOAD_TIMEOUT_S)
        if not self.engine.accepting:
            raise RuntimeError(self.engine.load_error or "the model did not load in time")

    @serve.multiplexed(max_num_models_per_replica=WARM_USERS)
    async def _warm(self, user_id: str) -> str:
        # Serving the user's request warms their index and adapter slot; this only makes
        # Ray report the user as warm here, so their next requests are routed here too.
        return user_id

    def check_health(self) -> None:
        """Ray restarts a replica whose engine failed."""
        if self.engine.load_error or not self.engine.accepting:
            raise RuntimeError(self.engine.load_error or "the engine stopped")

    async def forward(self, raw: RawRequest) -> AsyncIterator[tuple[int, Headers] | bytes]:
        """Serve ``raw`` with the app: yields ``(status, headers)``, then body chunks."""
        user = serve.get_multiplexed_model_id()
        if user:
            await self._warm(user)
        sent: asyncio.Queue = asyncio.Queue()
        gone = asyncio.Event()
        task = asyncio.create_task(self._run(raw, sent, gone))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            while (message := await sent.get()) is not None:
                if message["type"] == "http.response.start":
                    headers = [*message.get("headers", []), self._identity]
                    yield message["status"], headers
                elif message["type"] == "http.response.body":
                    if message.get("body"):
                        yield bytes(message["body"])
                    if not message.get("more_body"):
                        return
        finally:
            gone.set()  # the caller went away (or all was sent): the app sees a disconnect

    async def _run(self, raw: RawRequest, sent: asyncio.Queue, gone: asyncio.Event) -> None:
        """The app's ASGI call on ``raw``; ``None`` on ``sent`` marks its end."""
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                 "http_version": "1.1", "method": raw.method, "scheme": "http",
                 "path": raw.path, "raw_path": raw.path.encode(), "root_path": "",
                 "query_string": raw.query, "headers": raw.headers, "client": raw.client,
                 "server": None, "state": {}}  # fmt: skip
        delivered = False

        async def receive() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": raw.body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        try:
            await self.app(scope, receive, sent.put)
        except Exception:  # the app has answered 500 already, or nobody listens
            pass
        finally:
            sent.put_nowait(None)

    async def __del__(self) -> None:
        # Ray calls this on shutdown, after in-flight requests finished (or the graceful
        # timeout passed): drain the engine, save indexes, close the store.
        if getattr(self, "_open", False):
            self._open = False
            await self._lifespan.__aexit__(None, None, None)


class Ingress:
    """The HTTP entry point: picks the replica by user, relays the response."""

    def __init__(self, engine: DeploymentHandle, data_dir: str, config: ServeConfig):
        self.engine = engine.options(stream=True)
        keys = None if config.no_auth else KeyStore(data_dir)
        self.auth = Auth(keys, config.user_header, config.require_user)
        self.max_body = config.max_body_bytes

    async def __call__(self, request: Request) -> Response:
        body = await self._body(request)
        user = await asyncio.to_thread(addressed_user, self.auth, request, body)
        scope = request.scope
        raw = RawRequest(request.method, scope["path"], scope.get("query_string", b""),
                         list(scope["headers"]), body, scope.get("client"))  # fmt: skip
        stream = self.engine.options(multiplexed_model_id=user or "").forward.remote(raw)
        try:
            status, headers = await stream.__anext__()
        except Exception as exc:  # every replica busy, the replica died, or none is up
            stream.cancel()
            return _unavailable(exc).response()
        response = StreamingResponse(_rest(stream), status_code=status)
        response.raw_headers = headers
        return response

    async def _body(self, request: Request) -> bytes:
        """The body, cut one byte past the server's limit (the replica answers the 400)."""
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_body:
                break
        return bytes(body[: self.max_body + 1])


def _unavailable(exc: Exception) -> ApiError:
    retry = {"Retry-After": "1"}
    if isinstance(exc, BackPressureError):  # every replica full and the router queue too
        return ApiError(429, "every engine replica is busy", code="queue_full", headers=retry)
    message = f"no engine replica could serve this: {type(exc).__name__}"
    return ApiError(503, message, code="unavailable", headers=retry)


async def _rest(stream) -> AsyncIterator[bytes]:
    finished = False
    try:
        with contextlib.suppress(Exception):  # a replica lost mid-reply: the reply ends
            async for chunk in stream:
                yield chunk
        finished = True
    finally:
        if not finished:  # the client went away: the replica's app sees a disconnect
            stream.cancel()


def build_app(data_dir: str | Path | None = None, *, replicas: int = 2, store: str | None = None,
              model: str | None = None, embedder: str | Callable[[], Any] | None = None,
              device: str | None = None, dtype: str | None = None,
              config: ServeConfig | None = None, autoscaling: Mapping[str, Any] | None = None,
              replica_cpus: float = 1.0, replica_gpus: float | None = None,
              max_ongoing_requests: int | None = None,
              persona_options: Mapping[str, Any] | None = None):  # fmt: skip
    """The Ray Serve application: an :class:`Ingress` over ``replicas`` :class:`Engine`
    replicas of the server on ``data_dir`` (default: ``$PERSONA_HOME`` or ``~/.persona``).

    ``model``, ``embedder``, ``device``, ``dtype`` and ``persona_options`` go to
    ``Persona.open`` in every replica (``embedder`` may be a zero-argument factory that
    returns an embedder); ``store`` too, when given (a store URL every replica reaches).
    ``config`` holds the server's options (auth, body limit, drain, engine limits).
    ``autoscaling`` is Ray Serve's ``autoscaling_config`` (e.g. ``{"min_replicas": 1,
    "max_replicas": 4, "target_ongoing_requests": 16}``: scale on requests queued or
    decoding per replica); without it, ``replicas`` is fixed. A replica takes up to
    ``max_ongoing_requests`` requests at once (default: the engine's rows plus its queue,
    so the engine's own 429 applies); beyond that, requests wait in the router's queue
    (as long as an engine's), then get 429. Each replica reserves ``replica_cpus`` and
    ``replica_gpus`` (default: one GPU when ``device`` is ``cuda…``, else none; Ray then
    gives each replica its own GPU).
    """
    if replica_gpus is None:
        replica_gpus = 1.0 if str(device or "").startswith("cuda") else 0.0
    config = config or ServeConfig()
    options = {"model": model, "embedder": embedder, "device": device, "dtype": dtype,
               "store": store, **(persona_options or {})}  # fmt: skip
    limit = max_ongoing_requests or config.engine.max_rows + config.engine.max_waiting
    scale = {"num_replicas": replicas}
    if autoscaling:  # starts at ``replicas`` unless told otherwise
        low, high = autoscaling.get("min_replicas", 1), autoscaling.get("max_replicas", replicas)
        start = min(max(replicas, low), high)
        scale = {"autoscaling_config": {"initial_replicas": start, **autoscaling}}
    engine = serve.deployment(Engine).options(
        name="PersonaEngine", max_ongoing_requests=limit, **scale,
        max_queued_requests=config.engine.max_waiting,
        ray_actor_options={"num_cpus": replica_cpus, "num_gpus": replica_gpus},
        graceful_shutdown_timeout_s=config.drain_s + 1, health_check_period_s=5,
    )  # fmt: skip
    ingress = serve.deployment(Ingress).options(
        name="PersonaIngress", max_ongoing_requests=10_000, ray_actor_options={"num_cpus": 0}
    )
    data = str(default_data_dir() if data_dir is None else validate_path(data_dir, "data dir"))
    return ingress.bind(engine.bind(data, options, config), data, config)


def run(data_dir: str | Path | None = None, *, host: str = "127.0.0.1", port: int = 8000,
        name: str = "persona", blocking: bool = False,
        **build: Any) -> DeploymentHandle:  # fmt: skip
    """Deploy :func:`build_app` (``build``: its keyword arguments) with ``serve.run`` on
    Ray Serve's HTTP proxy at ``host:port``; returns the ingress handle once every replica
    is up. Connects to the running Ray cluster, or starts a local one. A Ray cluster has
    one Serve proxy: if Serve already runs, it keeps its own host and port."""
    serve.start(http_options={"host": host, "port": port})
    return serve.run(build_app(data_dir, **build), name=name, route_prefix="/", blocking=blocking)


def serve_replicas(data_dir: str | Path | None, config: ServeConfig, *, replicas: int,
                   host: str = "127.0.0.1", port: int = 8000, model: str | None = None,
                   embedder: str | None = None, device: str | None = None,
                   dtype: str | None = None, store: str | None = None,
                   autoscaling: Mapping[str, Any] | None = None,
                   replica_gpus: float | None = None) -> None:  # fmt: skip
    """``persona serve --replicas N``: :func:`run` with the options of ``persona serve``,
    until SIGINT or SIGTERM; then Ray Serve lets in-flight replies finish (up to
    ``config.drain_s``) and stops the replicas."""

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    import ray

    if not ray.is_initialized():  # first: Ray's start installs its own SIGTERM handler
        ray.init(include_dashboard=False)
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        run(data_dir, host=host, port=port, replicas=replicas, model=model, embedder=embedder,
            device=device, dtype=dtype, store=store, config=config, autoscaling=autoscaling,
            replica_gpus=replica_gpus, blocking=True)  # fmt: skip
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        signal.signal(signal.SIGTERM, previous)
