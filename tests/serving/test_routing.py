"""``routing.addressed_user``: the replica router names the user exactly as the server
does, and never refuses (a request the server would refuse routes to no user)."""

from __future__ import annotations

import json

import pytest
from starlette.requests import Request

from persona_sdk.serving.auth import Auth
from persona_sdk.serving.keys import KeyStore
from persona_sdk.serving.routing import addressed_user


@pytest.fixture
def auth(tmp_path):
    store = KeyStore(tmp_path)
    keys = {scope: store.create(scope)[0] for scope in ("admin", "app", "user:cat")}
    keys["cat"] = keys.pop("user:cat")
    return Auth(store), keys


def user_of(auth, method, path, key=None, body=None, **headers) -> str | None:
    auth, keys = auth
    raw = {k.replace("_", "-").lower(): v for k, v in headers.items()}
    if key is not None:
        raw["authorization"] = f"Bearer {keys[key]}"
    encoded = [(k.encode(), v.encode()) for k, v in raw.items()]
    scope = {"type": "http", "method": method, "path": path, "root_path": "",
             "query_string": b"", "headers": encoded}  # fmt: skip
    data = body if isinstance(body, bytes) else json.dumps(body or {}).encode()
    return addressed_user(auth, Request(scope), data)


def chat(**fields) -> dict:
    return {"model": "persona", "messages": [{"role": "user", "content": "Hi"}], **fields}


def test_per_user_endpoints_route_by_their_path(auth):
    assert user_of(auth, "POST", "/v1/users/ann/rules", "app", {"text": "x"}) == "ann"
    assert user_of(auth, "GET", "/v1/users/ann/memories", "admin") == "ann"
    assert user_of(auth, "DELETE", "/v1/users/ann/memories/3", "admin") == "ann"
    assert user_of(auth, "DELETE", "/v1/users/ann", "admin") == "ann"
    assert user_of(auth, "POST", "/v1/users/import", "admin", {"data": "", "user_id": "bo"}) == "bo"
    assert user_of(auth, "POST", "/v1/users/import", "cat", {"data": ""}) == "cat"


def test_chat_routes_by_the_same_precedence_as_the_server(auth):
    both = chat(user="bob", persona={"user_id": "ann"})
    assert user_of(auth, "POST", "/v1/chat/completions", "app", both) == "ann"  # persona first
    header = {"X_Persona_User": "dan"}
    assert user_of(auth, "POST", "/v1/chat/completions", "app", both, **header) == "dan"
    assert user_of(auth, "POST", "/v1/chat/completions", "cat", chat()) == "cat"  # the key's
    assert user_of(auth, "POST", "/v1/chat/completions", "app", chat(safety_identifier="e")) == "e"
    assert user_of(auth, "POST", "/v1/chat/completions", "app", chat()) is None  # the base model
    named = chat(model="persona-fay-v3", user="bob")  # an adapter name is its user's
    assert user_of(auth, "POST", "/v1/chat/completions", "app", named) == "fay"
    assert user_of(auth, "GET", "/v1/models", "cat") == "cat"
    assert user_of(auth, "GET", "/health") is None


def test_what_the_server_would_refuse_routes_to_no_user(auth):
    assert user_of(auth, "POST", "/v1/chat/completions", None, chat(user="ann")) is None  # no key
    assert user_of(auth, "GET", "/v1/users/ann/rules", "cat") is None  # another user's key
    assert user_of(auth, "POST", "/v1/chat/completions", "app", b"{not json") is None
    assert user_of(auth, "POST", "/v1/chat/completions", "app", b"[1, 2]") is None
    assert user_of(auth, "POST", "/v1/chat/completions", "app", chat(user="__base__")) is None
    assert user_of(auth, "POST", "/v1/chat/completions", "app", {"messages": 3}) is None
