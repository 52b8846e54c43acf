"""Hypothesis throws bad input at the server: malformed JSON, wrong types, NaN, huge
bodies, invalid user ids and unknown users. Every answer is an OpenAI-shaped 4xx, never a
500, and nothing already stored changes."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from persona_sdk.validation import USER_ID_PATTERN

SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CHAT = {"model": "persona", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
WRITES = {  # endpoint -> a valid body; its string fields are required
    "/v1/users/ann/rules": {"text": "Be brief."},
    "/v1/users/ann/pairs": {"prompt": "p", "chosen": "a", "rejected": "b"},
    "/v1/users/ann/edits": {"prompt": "p", "response": "a b", "edited": "a"},
    "/v1/users/ann/explain": {"prompt": "p"},
    "/v1/users/import": {"data": "{}", "user_id": "zed"},
}
POSTS = [*WRITES, "/v1/chat/completions", "/v1/users/ann/question"]
READS = ["/memories", "/rules", "/profile", "/export", "/memories/1"]
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
not_strings = values.filter(lambda v: not isinstance(v, str))
bad_ids = st.text(min_size=0, max_size=140).filter(
    lambda s: not USER_ID_PATTERN.fullmatch(s) and s not in (".", "..")
)


@pytest.fixture(scope="module")
def seeded(served):
    with served.client("app") as http:
        assert http.post("/v1/users/ann/rules", json={"text": "Answer briefly."}).status_code == 200
    return served


def stored(persona) -> dict:
    return {user: list(persona.export_user(user)) for user in persona.users()}


def client_error(response, allowed=(400, 404, 405)):
    assert response.status_code in allowed, (response.status_code, response.text)
    body = response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text


@pytest.fixture
def unchanged(seeded):
    before = stored(seeded.persona)
    yield seeded
    assert stored(seeded.persona) == before


@SETTINGS
@given(path=st.sampled_from(POSTS), body=st.binary(max_size=120))
def test_malformed_json_is_400(unchanged, path, body):
    try:
        ok = isinstance(json.loads(body), dict)
    except ValueError:
        ok = False
    if ok:
        return
    with unchanged.client("app") as http:
        client_error(http.post(path, content=body), (400,))


@SETTINGS
@given(path=st.sampled_from(list(WRITES)), data=st.data())
def test_wrong_types_are_400(unchanged, path, data):
    body = dict(WRITES[path])
    field = data.draw(st.sampled_from([k for k, v in body.items() if isinstance(v, str)]))
    body[field] = data.draw(not_strings)
    with unchanged.client("app") as http:
        client_error(http.post(path, json=body), (400,))


@SETTINGS
@given(
    field=st.sampled_from(
        [
            "temperature",
            "top_p",
            "max_tokens",
            "n",
            "seed",
            "messages",
            "stream",
            "stop",
            "persona",
            "model",
        ]
    ),
    value=values,
)
def test_chat_fields_of_any_type_never_500(unchanged, field, value):
    with unchanged.client("app") as http:
        response = http.post("/v1/chat/completions", json={**CHAT, field: value})
    if response.status_code != 200:
        client_error(response)


@SETTINGS
@given(path=st.sampled_from(POSTS), constant=st.sampled_from(["NaN", "Infinity", "-Infinity"]))
def test_nan_and_infinity_are_400(unchanged, path, constant):
    text = json.dumps({**CHAT, **WRITES.get(path, {})})[:-1] + f', "temperature": {constant}}}'
    with unchanged.client("app") as http:
        client_error(http.post(path, content=text), (400,))


@SETTINGS
@given(user=bad_ids, route=st.sampled_from([*READS, "/rules:post", ""]))
def test_invalid_user_ids_are_rejected(unchanged, user, route):
    path = f"/v1/users/{quote(user, safe='')}{route.removesuffix(':post')}"
    with unchanged.client("admin") as http:
        if route.endswith(":post"):
            response = http.post(path, json={"text": "x"})
        else:
            response = http.delete(path) if route == "" else http.get(path)
        client_error(response)
        chat = http.post("/v1/chat/completions", json={**CHAT, "user": user})
        client_error(chat, (400,))


@SETTINGS
@given(
    user=st.from_regex(USER_ID_PATTERN, fullmatch=True).filter(lambda u: u != "ann"),
    route=st.sampled_from([*READS, ""]),
)
def test_unknown_users_are_404(unchanged, user, route):
    if user in unchanged.persona.users() or user in ("__base__", ".", ".."):
        return  # "." and ".." are valid ids that no URL path can carry
    with unchanged.client("admin") as http:
        path = f"/v1/users/{user}{route}"
        deletes = route in ("", "/memories/1")
        client_error(http.delete(path) if deletes else http.get(path), (404,))


@pytest.mark.parametrize("path", POSTS)
def test_huge_bodies_are_400(unchanged, path):
    body = json.dumps({"text": "x" * 200_000, "messages": [], "data": ""})
    with unchanged.client("app") as http:
        client_error(http.post(path, content=body), (400,))
        chunks = (b"x" * 10_000 for _ in range(20))  # no content-length: counted as it comes
        client_error(http.post(path, content=chunks), (400,))
