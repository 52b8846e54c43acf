"""A real server over the tiny model with basis adapters, and one key of every scope."""

from __future__ import annotations

import pytest

from tests.serving.harness import Served, running


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_host, embedder, built, one_torch_thread):
    from persona_sdk import Persona
    from persona_sdk.serving.app import create_app
    from persona_sdk.serving.engine import EngineConfig
    from persona_sdk.serving.keys import KeyStore
    from persona_sdk.serving.state import ServeConfig

    data = tmp_path_factory.mktemp("serve") / "data"
    persona = Persona.open(data, model=tiny_host, embedder=embedder, adapters=built[0])
    store = KeyStore(data)
    keys = {scope: store.create(scope)[0] for scope in ("admin", "app", "user:ann", "user:bob")}
    keys["ann"], keys["bob"] = keys.pop("user:ann"), keys.pop("user:bob")
    config = ServeConfig(max_body_bytes=64_000, engine=EngineConfig(max_rows=32, torch_threads=1))
    app = create_app(persona, config)
    with running(app) as url:
        assert app.state.serve.engine.ready.wait(60)
        yield Served(url, keys, app, persona)
