"""Gateway mode against the real server as its engine (in-process here; spawned in
``test_server.py``): adapter names routed by the engine, what the gateway sends, ranks
and reports, and upstream failures as OpenAI-shaped 502/503s."""

from __future__ import annotations

import contextlib

import pytest

from persona_sdk.adapters.vllm import adapter_name
from persona_sdk.serving.errors import ApiError
from persona_sdk.serving.gateway_client import (
    EngineClient,
    UpstreamNotFound,
    engine_url,
    upstream_failure,
    upstream_status,
)
from tests.helpers import PAIRS, add_pairs
from tests.serving.harness import running

PROMPT = "Explain black holes"


@contextlib.contextmanager
def gateway_app(data, url, key, embedder):
    """A gateway over ``data`` in front of the engine at ``url``; yields (base URL, app)."""
    from persona_sdk import Persona
    from persona_sdk.serving.gateway import create_gateway_app
    from persona_sdk.serving.state import ServeConfig

    persona = Persona.open(data, embedder=embedder)  # the default model: never loaded
    app = create_gateway_app(persona, EngineClient(url, key), ServeConfig(no_auth=True))
    with running(app) as base:
        yield base, app


@pytest.fixture(scope="module")
def gateway(served, embedder):
    data = served.persona.data_dir
    with gateway_app(data, served.url + "/v1", served.keys["admin"], embedder) as (url, app):
        assert app.state.serve.engine.ready.wait(30)
        yield url, app


def chat(http, user=None, **extra):
    body = {"model": "persona", "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 12, **extra}  # fmt: skip
    if user:
        body["user"] = user
    return http.post("/v1/chat/completions", json=body)


def test_the_server_routes_adapter_names_like_vllm(served):
    with served.client("admin") as http:
        http.post("/v1/users/gus/rules", json={"text": "Be warm."})
        http.post("/v1/users/gus/pairs", json={"pairs": [dict(zip(("prompt", "chosen",
                  "rejected"), p)) for p in PAIRS]})  # fmt: skip
        name = adapter_name("gus", served.persona.adapters.version("gus"))
        named = chat(http, model=name)
        assert named.status_code == 200, named.text
        facts = named.json()["persona"]
        assert facts["user_id"] == "gus" and facts["strength"] == 1.0 and not facts["used_rules"]
        plain = chat(http, "gus", persona={"strength": 1.0, "use_memory": False})
        assert named.json()["choices"][0] == plain.json()["choices"][0]  # the same adapter
        stale = chat(http, model=adapter_name("gus", "0123abcd"))
        assert stale.status_code == 404 and name in stale.json()["error"]["message"]
    with served.client("bob") as http:
        assert chat(http, model=name).status_code == 403  # bob's key cannot use gus's adapter


def test_gateway_sends_the_adapter_name_and_the_rules(served, gateway):
    import httpx

    url, app = gateway
    with httpx.Client(base_url=url, timeout=60) as http:
        http.post("/v1/users/hal/rules", json={"text": "Answer in one sentence."})
        fresh = chat(http, "hal").json()["persona"]
        assert fresh["engine"]["model"] == served.persona.host.name and fresh["strength"] == 0
        add_pairs(app.state.serve.persona.user("hal"))
        out = chat(http, "hal")
    assert out.status_code == 200, out.text
    facts = out.json()["persona"]
    name = adapter_name("hal", served.persona.adapters.version("hal"))
    assert facts["engine"]["model"] == name and facts["strength"] == 1.0
    assert [r["text"] for r in facts["used_rules"]] == ["Answer in one sentence."]
    assert out.json()["model"] == served.persona.host.name and out.json()["usage"]["total_tokens"]
    # the engine, asked directly with the gateway's messages and model, says the same
    messages = app.state.serve.persona.prompt_for("hal", PROMPT)
    with served.client("admin") as http:
        direct = http.post("/v1/chat/completions", json={"model": name, "messages": messages,
                                                         "max_tokens": 12})  # fmt: skip
    assert direct.json()["choices"][0]["message"] == out.json()["choices"][0]["message"]


def test_gateway_best_of_ranks_the_engines_rows_by_reward(gateway):
    import httpx

    url, app = gateway
    add_pairs(app.state.serve.persona.user("ida"))
    with httpx.Client(base_url=url, timeout=60) as http:
        out = chat(http, "ida", persona={"best_of": 3}, seed=1, max_tokens=16)
    assert out.status_code == 200, out.text
    facts = out.json()["persona"]
    candidates = facts["candidates"]
    assert (
        len(candidates) == 3
        and out.json()["choices"][0]["message"]["content"] == (candidates[0]["text"])
    )
    assert all(c["fluency"] is None for c in candidates)  # no base log-probs from an engine
    assert facts["reward"] == candidates[0]["reward"] and facts["guard"] is None


def test_an_adapter_the_engine_lacks_falls_back_to_the_base_model(served, gateway, tmp_path,
                                                                  embedder):  # fmt: skip
    from persona_sdk import Persona

    other = tmp_path / "other"  # a store the engine does not see: its adapter name is unknown
    with Persona.open(other, embedder=embedder) as persona:
        add_pairs(persona.user("zed"))
    key = served.keys["admin"]
    with gateway_app(other, served.url + "/v1", key, embedder) as (url, app):
        assert app.state.serve.engine.ready.wait(30)
        import httpx

        with httpx.Client(base_url=url, timeout=60) as http:
            out = chat(http, "zed")
    assert out.status_code == 200, out.text
    facts = out.json()["persona"]
    assert facts["engine"]["model"] == served.persona.host.name and facts["strength"] == 0.0
    assert "not served by the engine" in facts["engine"]["note"]


def test_engine_errors_are_openai_shaped_502_and_503(served, gateway, embedder, tmp_path):
    import httpx

    url, _ = gateway
    with httpx.Client(base_url=url, timeout=60) as http:
        too_long = chat(http, "hal", max_tokens=1020)  # fits the gateway; the engine refuses
        assert too_long.status_code == 502 and too_long.json()["error"]["code"] == "engine_error"
        assert "exceeds" in too_long.json()["error"]["message"]
    from persona_sdk.serving.launch import free_port

    dead = f"http://127.0.0.1:{free_port()}/v1"
    with (
        gateway_app(tmp_path / "d", dead, None, embedder) as (url, _),
        httpx.Client(base_url=url, timeout=10) as http,
    ):
        assert http.get("/health").status_code == 503
        down = chat(http, "hal")
        assert down.status_code == 503 and down.json()["error"]["type"] == "service_unavailable"


def test_error_mapping_and_engine_urls():
    import httpx

    assert upstream_status(429, "busy", "u").status == 503
    assert upstream_status(503, "loading", "u").headers["Retry-After"]
    assert isinstance(upstream_status(404, "no such model", "u"), UpstreamNotFound)
    assert upstream_status(500, "boom", "u").status == 502
    assert upstream_failure(httpx.ConnectError("refused"), "u").status == 503
    assert upstream_failure(ValueError("not JSON"), "u").status == 502
    same = ApiError(400, "x")
    assert upstream_failure(same, "u") is same
    assert engine_url("openai://h:8000") == "http://h:8000/v1"
    assert engine_url("openai://h:8000/v1/") == "http://h:8000/v1"
    assert engine_url("openais://h/api") == "https://h/api/v1"
    for bad in ("h:8000", "ftp://h", "openai://", "openai://h?x=1"):
        with pytest.raises(Exception, match="openai://HOST:PORT"):
            engine_url(bad)


@pytest.mark.slow
def test_spawned_gateway_serves_a_user_through_their_adapter_name(tmp_path, tiny_model_dir,
                                                                  built, fakes):  # fmt: skip
    """`persona serve --engine` in front of a spawned `persona serve`: the adapter path."""
    import openai

    from tests.serving.gateway_harness import spawned_gateway

    with spawned_gateway(tmp_path, tiny_model_dir, built[0], fakes.basis_file) as served:
        with served.client("admin") as http:
            pairs = [dict(zip(("prompt", "chosen", "rejected"), p)) for p in PAIRS]
            assert http.post("/v1/users/pat/pairs", json={"pairs": pairs}).status_code == 200
        client = openai.OpenAI(base_url=served.url + "/v1", api_key=served.keys["app"],
                               max_retries=0)  # fmt: skip
        messages = [{"role": "user", "content": PROMPT}]
        out = client.chat.completions.create(model="persona", user="pat", max_tokens=12,
                                             messages=messages)  # fmt: skip
        facts = out.model_extra["persona"]
        assert facts["engine"]["model"].startswith("persona-pat-v") and facts["strength"] == 1.0
        stream = client.chat.completions.create(model="persona", user="pat", max_tokens=12,
                                                messages=messages, stream=True)  # fmt: skip
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == out.choices[0].message.content
