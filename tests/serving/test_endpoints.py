"""Every personalization endpoint and every error code over raw httpx, and a 403 for
another user's key on every user endpoint."""

from __future__ import annotations

import json

import pytest

from persona_sdk.serving.keys import KeyStore
from tests.serving.harness import running

RULE = {"text": "Answer in one sentence."}
PAIR = {"prompt": "Write a note", "chosen": "Short note.", "rejected": "A long, long note."}
EDIT = {"prompt": "Write a note", "response": "Hello!!! 😀 Here is a note.", "edited": "A note."}
CHAT = {"model": "persona", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}


def error(response, status, code=None):
    """An OpenAI-shaped error with ``status``."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"} and body["message"]
    if code is not None:
        assert body["code"] == code, body
    return body


def test_user_endpoints_round_trip(served):
    with served.client("app") as http:
        assert http.post("/v1/users/ann/rules", json=RULE).json()["results"][0]["text"]
        many = http.post(
            "/v1/users/ann/rules",
            json={"rules": [{"text": "Use a bulleted list.", "context": "lists"}]},
        )
        assert many.status_code == 200
        assert http.post("/v1/users/ann/pairs", json=PAIR).status_code == 200
        edit = http.post("/v1/users/ann/edits", json=EDIT).json()
        assert "inferred_rules" in edit and edit["memory"]["kind"] == "edit"
        memories = http.get("/v1/users/ann/memories").json()["results"]
        assert {m["kind"] for m in memories} >= {"rule", "pair", "edit"}
        assert all(
            m["kind"] == "pair"
            for m in http.get("/v1/users/ann/memories?kind=pair").json()["results"]
        )
        rules = http.get("/v1/users/ann/rules").json()["results"]
        assert "Answer in one sentence." in [r["text"] for r in rules]
        profile = http.get("/v1/users/ann/profile").json()
        assert profile["reward"] and profile["adapter"]["coefficients"]
        explained = http.post("/v1/users/ann/explain", json={"prompt": "Write a note"}).json()
        assert explained["rules"]
        question = http.post("/v1/users/ann/question", json={}).json()
        assert question["a"] != question["b"]
        pair_id = next(m["id"] for m in memories if m["kind"] == "pair")
        assert http.delete(f"/v1/users/ann/memories/{pair_id}").json()["deleted"] == pair_id
        error(http.delete(f"/v1/users/ann/memories/{pair_id}"), 404)
    with served.client("admin") as admin:
        exported = admin.get("/v1/users/ann/export")
        assert exported.status_code == 200 and exported.text.count("\n") >= 3
        made = admin.post("/v1/users/import", json={"data": exported.text, "user_id": "ann2"})
        assert made.json() == {"user_id": "ann2", "imported": True}
        again = admin.get("/v1/users/ann2/export").text
        assert again.count("\n") == exported.text.count("\n")
        assert admin.delete("/v1/users/ann2").json()["forgotten"] is True
        error(admin.delete("/v1/users/ann2"), 404)
        error(admin.get("/v1/users/ann2/memories"), 404)


def test_a_user_key_reaches_its_own_user_only(served):
    with served.client("app") as http:
        http.post("/v1/users/ann/rules", json=RULE)
    routes = [
        ("post", "/rules", RULE),
        ("post", "/pairs", PAIR),
        ("post", "/edits", EDIT),
        ("get", "/memories", None),
        ("get", "/rules", None),
        ("delete", "/memories/1", None),
        ("get", "/profile", None),
        ("post", "/explain", {"prompt": "x"}),
        ("post", "/question", {}),
        ("get", "/export", None),
        ("delete", "", None),
    ]
    before = served.persona.export_user("ann")
    with served.client("bob") as bob:
        for method, path, body in routes:
            kwargs = {} if body is None else {"json": body}
            error(getattr(bob, method)(f"/v1/users/ann{path}", **kwargs), 403, "forbidden")
        error(bob.post("/v1/users/import", json={"data": "{}", "user_id": "ann"}), 403)
        error(bob.post("/v1/users/import", json={"data": "{}"}), 403)
        error(bob.post("/v1/chat/completions", json={**CHAT, "persona": {"user_id": "ann"}}), 403)
        error(bob.post("/v1/chat/completions", json=CHAT, headers={"X-Persona-User": "ann"}), 403)
        error(bob.post("/v1/chat/completions", json={**CHAT, "user": "ann"}), 403)
        error(bob.post("/v1/chat/completions", json={**CHAT, "safety_identifier": "ann"}), 403)
        assert bob.get("/v1/users/bob/rules").status_code in (200, 404)
        ok = bob.post("/v1/chat/completions", json=CHAT)
        assert ok.json()["persona"]["user_id"] == "bob" and ok.headers["x-persona-user"] == "bob"
    with served.client("ann") as ann:
        assert ann.get("/v1/users/ann/rules").status_code == 200
        error(ann.get("/v1/users/ann/export"), 403)  # export is admin only
    with served.client("app") as app:
        error(app.get("/v1/users/ann/export"), 403)
    assert list(served.persona.export_user("ann")) == list(before)


def test_auth_errors(served):
    with served.client(None) as anon:
        error(anon.get("/v1/models"), 401, "invalid_api_key")
        error(anon.post("/v1/chat/completions", json=CHAT), 401)
        error(anon.get("/v1/users/ann/rules", headers={"Authorization": "Bearer nope"}), 401)
        store = KeyStore(served.persona.data_dir)
        key, record = store.create("app", "temp")
        assert anon.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        store.revoke(record.id)
        error(anon.get("/v1/models", headers={"Authorization": f"Bearer {key}"}), 401)
        assert anon.get("/health").json()["status"] == "ok"


def test_bad_requests_are_400(served):
    with served.client("app") as http:
        error(http.post("/v1/chat/completions", content=b"{nope"), 400, "invalid_json")
        error(http.post("/v1/chat/completions", content=b'{"model": NaN}'), 400, "invalid_json")
        error(http.post("/v1/chat/completions", json=[1]), 400, "invalid_json")
        error(http.post("/v1/chat/completions", json={**CHAT, "temperature": "hot"}), 400)
        error(http.post("/v1/chat/completions", json={**CHAT, "max_tokens": 10**6}), 400)
        error(
            http.post("/v1/chat/completions", json={**CHAT, "messages": CHAT["messages"] * 300}),
            400,
            "too_many_messages",
        )
        error(http.post("/v1/chat/completions", content=b" " * 70_000), 400, "body_too_large")
        error(
            http.post("/v1/chat/completions", json={**CHAT, "n": 2, "persona": {"best_of": 2}}), 400
        )
        error(
            http.post(
                "/v1/chat/completions", json={**CHAT, "stream": True, "persona": {"best_of": 2}}
            ),
            400,
        )
        error(
            http.post("/v1/chat/completions", json={**CHAT, "user": "bad id!"}),
            400,
            "invalid_user_id",
        )
        error(http.post("/v1/chat/completions", json={**CHAT, "user": "__base__"}), 400)
        error(http.post("/v1/users/ann/rules", json={}), 400)
        error(http.post("/v1/users/ann/rules", json={"text": 5}), 400)
        error(http.get("/v1/users/ann/memories?kind=bogus"), 400)
        error(http.delete("/v1/users/ann/memories/abc"), 400)
        error(http.get("/v1/users/bad%20id/memories"), 400, "invalid_user_id")
        error(http.get("/v1/users/nobody/memories"), 404)
        error(
            http.post("/v1/chat/completions", json={**CHAT, "model": "gpt-9"}),
            404,
            "model_not_found",
        )
        error(http.get("/v1/nothing"), 404)
        error(http.put("/v1/models"), 405)
        error(http.post("/v1/users/import", json={"data": "not json"}), 400)


def test_unknown_fields_are_ignored_and_options_apply(served):
    with served.client("app") as http:
        body = {
            **CHAT,
            "frequency_penalty": 0.5,
            "logit_bias": {},
            "tools": [],
            "whatever": 1,
            "max_completion_tokens": 3,
            "stop": ["zzz"],
            "seed": 1,
            "temperature": 0.7,
            "top_p": 0.9,
            "persona": {"user_id": "ann", "best_of": 3, "mystery": True},
        }
        out = http.post("/v1/chat/completions", json=body)
        assert out.status_code == 200, out.text
        data = out.json()
        assert data["usage"]["completion_tokens"] <= 9 and len(data["persona"]["candidates"]) == 3
        assert float(out.headers["x-persona-reward"]) == pytest.approx(
            data["persona"]["reward"], rel=1e-4
        )
        served.app.state.serve.auth.require_user = True
        try:
            error(http.post("/v1/chat/completions", json=CHAT), 400, "missing_user")
        finally:
            served.app.state.serve.auth.require_user = False
        plain = {**CHAT, "persona": {"user_id": "ann", "use_memory": False}}
        assert http.post("/v1/chat/completions", json=plain).json()["persona"]["used_rules"] == []
        anonymous = http.post("/v1/chat/completions", json=CHAT).json()["persona"]
        assert anonymous["user_id"] is None and anonymous["strength"] == 0.0


def test_queue_full_is_429_with_retry_after(served):
    served.engine.config.max_waiting = 0
    try:
        with served.client("app") as http:
            response = http.post("/v1/chat/completions", json=CHAT)
            error(response, 429, "queue_full")
            assert int(response.headers["retry-after"]) >= 1
    finally:
        served.engine.config.max_waiting = 64


def test_models_health_and_metrics(served):
    with served.client("app") as http:
        models = http.get("/v1/models").json()
        assert models["data"][0]["id"] == served.persona.host.name
        http.post("/v1/chat/completions", json=CHAT)
        health = http.get("/health").json()
        assert health["status"] == "ok" and health["engine"]["steps"] > 0
        text = http.get("/metrics").text
    for name in (
        "persona_requests_total",
        "persona_tokens_total",
        "persona_queue_depth",
        "persona_batch_rows",
        "persona_step_seconds_bucket",
    ):
        assert name in text, name
    assert 'route="/v1/chat/completions",status="200"' in text
    assert 'persona_tokens_total{kind="completion"}' in text


def test_loading_server_is_503(tmp_path, tiny_host, embedder):
    import httpx

    from persona_sdk import Persona
    from persona_sdk.serving.app import create_app

    persona = Persona.open(tmp_path / "data", model=tiny_host, embedder=embedder)
    app = create_app(persona, start_engine=False)
    key = KeyStore(persona.data_dir).create("app")[0]
    with running(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/health").status_code == 503
        response = http.post(
            "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key}"}
        )
        error(response, 503, "unavailable")
        assert response.headers["retry-after"]


def test_a_failure_mid_stream_sends_an_error_event(served, monkeypatch):
    batch = served.engine._batch
    real = batch.step
    calls = []

    def failing(tokens):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return real(tokens)

    monkeypatch.setattr(batch, "step", failing)
    with (
        served.client("app") as http,
        http.stream(
            "POST", "/v1/chat/completions", json={**CHAT, "max_tokens": 50, "stream": True}
        ) as r,
    ):
        lines = [line for line in r.iter_lines() if line]
    events = [json.loads(line[6:]) for line in lines if line != "data: [DONE]"]
    assert "error" in events[-1] and "data: [DONE]" not in lines
