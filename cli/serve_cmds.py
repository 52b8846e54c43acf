"""``persona serve`` (the OpenAI-compatible server) and ``persona keys`` (its API keys)."""

from __future__ import annotations

import ipaddress
import socket

import typer

from persona_sdk.cli.common import JsonOption
from persona_sdk.cli.render import console, emit_json, report
from persona_sdk.errors import InvalidInputError

app = typer.Typer()  # merged into the top-level `persona` command
keys_app = typer.Typer(name="keys", help="API keys of `persona serve` (stored hashed).",
                       no_args_is_help=True)  # fmt: skip
app.add_typer(keys_app)


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` resolves to is a loopback address."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


@app.command()
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    dtype: str = typer.Option(None, help="Model dtype (default: float32 on cpu, bf16 on cuda)."),
    no_auth: bool = typer.Option(False, "--no-auth", help="No API keys (loopback only)."),
    require_user: bool = typer.Option(
        False, "--require-user", help="Refuse chat requests that name no user (400)."
    ),
    user_header: str = typer.Option("X-Persona-User", help="Header an app key names users in."),
    max_waiting: int = typer.Option(64, help="Queued requests beyond this get 429."),
    max_rows: int = typer.Option(64, help="Rows decoding at once."),
    prefill_tokens: int = typer.Option(1024, help="Prompt tokens prefilled per step."),
    max_body_bytes: int = typer.Option(1 << 20, help="Largest request body."),
    drain: float = typer.Option(30.0, help="Seconds SIGTERM waits for in-flight replies."),
    threads: int = typer.Option(None, help="Torch threads of the engine (default: torch's)."),
    engine_spec: str = typer.Option(None, "--engine", help="Gateway mode: generate on the "
                                    "OpenAI-compatible engine at openai://HOST:PORT[/v1] "
                                    "(vLLM serving `persona adapters export --for vllm` "
                                    "names, or another `persona serve`); memory, rules, "
                                    "reward and best-of stay here. No model is loaded."),
    engine_key: str = typer.Option(None, "--engine-key", envvar="PERSONA_ENGINE_API_KEY",
                                   help="API key sent to the --engine."),
    engine_model: str = typer.Option(None, "--engine-model", help="The engine's base model "
                                     "(default: the first non-adapter model it lists)."),
    replicas: int = typer.Option(0, "--replicas", min=0, help="Serve as N Ray Serve engine "
                                 "replicas with user-affinity routing (pip install "
                                 "'persona-sdk[cluster]'); 0: one engine in this process."),
    max_replicas: int = typer.Option(0, "--max-replicas", min=0, help="With --replicas: "
                                     "autoscale between 1 and this many replicas on queue "
                                     "depth (0: a fixed count)."),
    target_ongoing: int = typer.Option(16, "--target-ongoing", min=1, help="With "
                                       "--max-replicas: requests queued or decoding per "
                                       "replica that autoscaling aims for."),
) -> None:  # fmt: skip
    """Serve the OpenAI-compatible chat API and the per-user endpoints: one engine in
    this process, N Ray Serve replicas (--replicas), or a gateway to an engine (--engine)."""
    from persona_sdk.serving.engine import EngineConfig
    from persona_sdk.serving.state import ServeConfig

    if no_auth and not is_loopback(host):
        raise InvalidInputError(f"--no-auth is only allowed on a loopback address, not {host}")
    if replicas and engine_spec:
        raise InvalidInputError("give --replicas or --engine, not both")
    if max_replicas and not replicas:
        raise InvalidInputError("--max-replicas needs --replicas")
    engine = EngineConfig(max_waiting=max_waiting, max_rows=max_rows,
                          prefill_tokens=prefill_tokens, torch_threads=threads)  # fmt: skip
    config = ServeConfig(no_auth=no_auth, require_user=require_user, user_header=user_header,
                         max_body_bytes=max_body_bytes, drain_s=drain, engine=engine)  # fmt: skip
    if replicas:
        scale = (replicas, max_replicas, target_ongoing)
        _serve_replicas(ctx.obj, config, dtype, host, port, scale)
        return
    _serve_here(ctx.obj, config, dtype, host, port, engine_spec, engine_key, engine_model)


def _serve_replicas(settings, config, dtype: str | None, host: str, port: int,
                    scale: tuple[int, int, int]) -> None:  # fmt: skip
    """Ray Serve replicas: a fixed count, or autoscaled between 1 and ``max_replicas``."""
    from persona_sdk.serving.cluster import serve_replicas

    replicas, max_replicas, target_ongoing = scale
    autoscaling = None
    if max_replicas:
        autoscaling = {"min_replicas": 1, "max_replicas": max(max_replicas, replicas),
                       "target_ongoing_requests": target_ongoing}  # fmt: skip
    serve_replicas(settings.data, config, replicas=replicas, host=host, port=port,
                   model=settings.model, embedder=settings.embedder, device=settings.device,
                   dtype=dtype, store=settings.store, autoscaling=autoscaling)  # fmt: skip


def _serve_here(settings, config, dtype: str | None, host: str, port: int,
                engine_spec: str | None, engine_key: str | None,
                engine_model: str | None) -> None:  # fmt: skip
    """One uvicorn process: the local engine, or the gateway to ``engine_spec``."""
    import uvicorn

    from persona_sdk.persona import Persona

    upstream = None
    if engine_spec:  # checked before the data dir is opened
        from persona_sdk.serving.gateway_client import engine_url

        upstream = engine_url(engine_spec)
    persona = Persona.open(settings.data, model=settings.model, embedder=settings.embedder,
                           device=settings.device, dtype=dtype, store=settings.store)  # fmt: skip
    if upstream:
        from persona_sdk.serving.gateway import create_gateway_app
        from persona_sdk.serving.gateway_client import EngineClient

        client = EngineClient(upstream, engine_key, engine_model)
        server = create_gateway_app(persona, client, config)
    else:
        from persona_sdk.serving.app import create_app

        server = create_app(persona, config)
    uvicorn.run(server, host=host, port=port, timeout_graceful_shutdown=int(config.drain_s) + 1,
                log_level="info")  # fmt: skip


def _keys(ctx: typer.Context):
    from persona_sdk.serving.keys import KeyStore

    return KeyStore(ctx.obj.data)


@keys_app.command("create")
def create(
    ctx: typer.Context,
    scope: str = typer.Argument(..., help="admin, app, or user:<id>."),
    name: str = typer.Option("", help="A label to recognise the key by."),
    json_: bool = JsonOption,
) -> None:
    """Create a key. It is printed once and only its hash is stored."""
    key, record = _keys(ctx).create(scope, name)
    if json_:
        emit_json({"key": key, **record.public()})
        return
    console.print(f"created key {record.id} ({record.scope}); store it now, it is not shown again:")
    console.out(key, highlight=False)


@keys_app.command("list")
def list_keys(ctx: typer.Context, json_: bool = JsonOption) -> None:
    """List keys (ids, scopes, names; never the keys)."""
    records = [k.public() for k in _keys(ctx).list()]
    if json_:
        emit_json(records)
        return
    for r in records:
        state = "revoked" if r["revoked"] else "active"
        console.print(f"{r['id']}  {r['scope']:<20} {state:<8} {r['name']}", highlight=False)


@keys_app.command("revoke")
def revoke(
    ctx: typer.Context,
    key_id: str = typer.Argument(..., metavar="KEY_ID"),
    json_: bool = JsonOption,
) -> None:
    """Revoke a key by id; a running server stops accepting it at once."""
    record = _keys(ctx).revoke(key_id)
    report(json_, record.public(), f"revoked key {record.id} ({record.scope})")
