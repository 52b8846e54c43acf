"""The server over HTTP with real clients: the openai package (sync, async, streaming)
and raw httpx, against uvicorn on 127.0.0.1 running the tiny model."""

from __future__ import annotations

import asyncio
import contextlib
import json

import openai
import pytest

from tests.serving.gateway_harness import spawned_gateway

CHAT = {
    "model": "persona",
    "messages": [{"role": "user", "content": "Explain black holes"}],
    "max_tokens": 12,
}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, tiny_model_dir, built, fakes):
    """`persona serve --engine openai://…` in front of a spawned `persona serve` engine."""
    root = tmp_path_factory.mktemp("gateway")
    with spawned_gateway(root, tiny_model_dir, built[0], fakes.basis_file) as served:
        yield served


@pytest.fixture(scope="module", params=["server", pytest.param("gateway", marks=pytest.mark.slow)])
def served(request, served):
    """Every test here runs against the server, and against a gateway in front of one."""
    return served if request.param == "server" else request.getfixturevalue("gateway")


def is_gateway(served) -> bool:
    return getattr(served, "gateway", False)


def needs_engine(served) -> None:
    if is_gateway(served):
        pytest.skip("reads the local engine's batch counters, which a gateway does not have "
                    "(batching and cancellation happen in the engine behind it)")  # fmt: skip


def oai(served, key="app", cls=openai.OpenAI):
    return cls(base_url=served.url + "/v1", api_key=served.keys[key], max_retries=0)


def test_openai_client_sync_with_persona_options(served):
    with served.client("app") as http:
        assert (
            http.post("/v1/users/ann/rules", json={"text": "Answer in one sentence."}).status_code
            == 200
        )
    client = oai(served)
    out = client.chat.completions.create(
        model="persona",
        messages=CHAT["messages"],
        max_tokens=12,
        extra_body={"persona": {"user_id": "ann", "strength": 0.5}},
    )
    assert out.choices[0].message.content is not None and out.usage.completion_tokens > 0
    facts = out.model_extra["persona"]
    # a gateway folds strength into the adapter: 0 (the base model) for a user with no pairs
    assert facts["user_id"] == "ann" and facts["strength"] == (0.0 if is_gateway(served) else 0.5)
    assert [r["text"] for r in facts["used_rules"]] == ["Answer in one sentence."]
    raw = client.chat.completions.with_raw_response.create(
        model="persona",
        messages=CHAT["messages"],
        max_tokens=4,
        extra_headers={"X-Persona-User": "ann"},
    )
    assert raw.headers["x-persona-user"] == "ann" and raw.headers["x-persona-rules"]


def test_openai_client_streaming_and_async(served):
    client = oai(served)
    stream = client.chat.completions.create(
        model="persona",
        messages=CHAT["messages"],
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
        user="ann",
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage.completion_tokens > 0
    whole = client.chat.completions.create(
        model="persona", messages=CHAT["messages"], max_tokens=16, user="ann"
    )
    assert text == whole.choices[0].message.content

    async def many():
        aclient = oai(served, cls=openai.AsyncOpenAI)
        calls = [
            aclient.chat.completions.create(
                model="persona", messages=CHAT["messages"], max_tokens=8, user=u, n=2
            )
            for u in ("ann", "bob", "carl")
        ]
        return await asyncio.gather(*calls)

    for out in asyncio.run(many()):
        assert len(out.choices) == 2


def _greedy(http, user, strength, max_tokens=24, content="Explain black holes"):
    body = {
        "model": "persona",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "persona": {"user_id": user, "strength": strength},
    }
    out = http.post("/v1/chat/completions", json=body)
    assert out.status_code == 200, out.text
    return out.json()["choices"][0]["message"]["content"]


def test_greedy_reply_is_the_same_alone_and_joining_a_busy_batch(served):
    needs_engine(served)
    import threading

    with served.client("app") as http:
        http.post(
            "/v1/users/ann/pairs",
            json={"prompt": "Write a note", "chosen": "Short.", "rejected": "A much longer note."},
        )
        alone = {s: _greedy(http, "ann", s) for s in (0.5, 1.0)}
    steps = served.engine.stats()["steps"]
    streams = []

    def other(user, strength):
        with served.client("app") as http:
            streams.append(_greedy(http, user, strength, max_tokens=120, content="Hi there"))

    threads = [
        threading.Thread(target=other, args=a) for a in [("bob", 2.0), ("carl", 0.0), ("dee", 1.0)]
    ]
    for t in threads:
        t.start()
    while served.engine.stats()["active_rows"] < 3 and served.engine.stats()["steps"] < steps + 60:
        pass
    with served.client("app") as http:
        busy = {s: _greedy(http, "ann", s) for s in (0.5, 1.0)}
    for t in threads:
        t.join()
    assert busy == alone and len(streams) == 3


def _long_chat(stream):
    """Eight hot rows: all of them ending their turn within a second is unlikely."""
    return {
        "model": "persona",
        "messages": [{"role": "user", "content": "Explain black holes"}],
        "max_tokens": 900,
        "stream": stream,
        "user": "ann",
        "n": 8,
        "temperature": 2.0,
        "seed": 5,
    }


def _wait_cancelled(served, before):
    import time

    deadline = time.time() + 20
    while time.time() < deadline:
        stats = served.engine.stats()
        if stats["cancelled_rows"] > before and stats["batch_copies"] == 0:
            return stats
        time.sleep(0.01)
    raise AssertionError(served.engine.stats())


def test_a_disconnected_stream_is_cancelled_within_one_step(served):
    needs_engine(served)
    before = served.engine.stats()["cancelled_rows"]
    with (
        served.client("app") as http,
        http.stream("POST", "/v1/chat/completions", json=_long_chat(True)) as response,
    ):
        lines = response.iter_lines()
        for _ in range(4):
            next(lines)
    stats = _wait_cancelled(served, before)
    assert stats["cancelled_rows"] - before == 8 and stats["max_cancel_steps"] <= 1


def test_a_disconnected_plain_request_is_cancelled(served):
    needs_engine(served)
    import httpx

    before = served.engine.stats()["cancelled_rows"]
    with served.client("app") as http, contextlib.suppress(httpx.TimeoutException):
        http.post("/v1/chat/completions", json=_long_chat(False), timeout=1.0)
    stats = _wait_cancelled(served, before)
    assert stats["cancelled_rows"] - before == 8 and stats["max_cancel_steps"] <= 1


def test_a_write_mid_reply_changes_the_next_reply_not_this_one(served):
    body = {
        "model": "persona",
        "messages": [{"role": "user", "content": "Tell me about sleep"}],
        "max_tokens": 40,
        "stream": True,
        "user": "erin",
    }
    with served.client("app") as http:
        http.post("/v1/users/erin/rules", json={"text": "Be warm."})
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            lines = []
            for line in response.iter_lines():
                if line and not lines:
                    http.post("/v1/users/erin/rules", json={"text": "Use a bulleted list."})
                lines.append(line)
        final = next(json.loads(x[6:]) for x in reversed(lines) if '"persona"' in x)
        assert [r["text"] for r in final["persona"]["used_rules"]] == ["Be warm."]
        after = http.post("/v1/chat/completions", json={**body, "stream": False}).json()
        assert len(after["persona"]["used_rules"]) == 2
