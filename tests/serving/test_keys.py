"""API keys: hashed at rest, scoped, revocable; `persona keys` and `serve --no-auth`."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from persona_sdk.cli import serve_cmds
from persona_sdk.cli.common import Settings
from persona_sdk.errors import InvalidInputError
from persona_sdk.serving.keys import KeyStore


def test_keys_are_stored_hashed_and_revocable(tmp_path):
    store = KeyStore(tmp_path)
    key, record = store.create("user:ann", "phone")
    assert key not in (tmp_path / "serve_keys.json").read_text()
    assert store.lookup(key).user_id == "ann" and store.lookup(key + "x") is None
    assert store.lookup("psk_nothing_here") is None and store.lookup("garbage") is None
    assert KeyStore(tmp_path).lookup(key).scope == "user:ann"  # another process sees it
    store.revoke(record.id)
    assert store.lookup(key) is None and KeyStore(tmp_path).list()[0].revoked
    for scope in ("root", "user:", "user:bad id", "user:__x/.."):
        with pytest.raises(InvalidInputError):
            store.create(scope)
    with pytest.raises(InvalidInputError):
        store.revoke("nope")


def invoke(tmp_path, *args):
    settings = Settings(tmp_path / "data", None, None, None)
    return CliRunner().invoke(serve_cmds.app, list(args), obj=settings)


def test_keys_cli_create_list_revoke(tmp_path):
    created = invoke(tmp_path, "keys", "create", "app", "--name", "web", "--json")
    assert created.exit_code == 0, created.output
    made = json.loads(created.output)
    assert made["key"].startswith("psk_") and made["scope"] == "app"
    listed = json.loads(invoke(tmp_path, "keys", "list", "--json").output)
    assert listed == [{k: v for k, v in made.items() if k != "key"}]
    assert "key" not in invoke(tmp_path, "keys", "list").output.lower().replace("keys", "")
    assert invoke(tmp_path, "keys", "revoke", made["id"]).exit_code == 0
    assert json.loads(invoke(tmp_path, "keys", "list", "--json").output)[0]["revoked"]


def test_no_auth_is_refused_off_loopback(tmp_path):
    result = invoke(tmp_path, "serve", "--no-auth", "--host", "0.0.0.0")
    assert isinstance(result.exception, InvalidInputError)
    assert serve_cmds.is_loopback("127.0.0.1") and serve_cmds.is_loopback("localhost")
    assert not serve_cmds.is_loopback("0.0.0.0")
