"""A few end-to-end checks on the real embedded SmolLM2-135M and MiniLM (slower)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from persona_sdk import Persona
from persona_sdk.cli.main import app
from persona_sdk.decoding.models import EMBEDDED_MODEL, embedded_cache_path, load_model

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def real_host():
    first = load_model(shared=False, progress=False)  # converts the GGUF if not cached yet
    return first


def test_conversion_is_cached_and_reused(real_host):
    path = embedded_cache_path()
    assert (path / "config.json").exists() and (path / "model.safetensors").exists()
    assert "quantization_config" not in json.loads((path / "config.json").read_text())
    second = load_model(shared=False, progress=False)
    assert not second.converted  # read from the cache (its speed is a benchmark's job)
    assert second.name == EMBEDDED_MODEL and second.max_context >= 2048


def test_a_stated_rule_changes_the_real_reply(real_host, tmp_path, real_embedder):
    persona = Persona.open(tmp_path, model=real_host, embedder=real_embedder)
    persona.user("ana").add_rule("Answer in one sentence.")
    prompt = "Explain what a black hole is."
    with_rule, plain = persona.generate_batch(
        [("ana", prompt), ("nobody", prompt)], max_new_tokens=60, strength=0.0
    )
    assert "black hole" in plain.text.lower() and "black hole" in with_rule.text.lower()
    assert plain.finish_reason == "length"  # the base model rambles on
    assert with_rule.finish_reason == "stop" and with_rule.tokens < plain.tokens
    streamed = persona.generate("ana", prompt, max_new_tokens=60, stream=True, strength=0.0)
    assert "".join(streamed).strip() == with_rule.text
    persona.close()


def test_shipped_basis_adapters_guide_the_real_model(real_host, tmp_path, real_embedder):
    persona = Persona.open(tmp_path, model=real_host, embedder=real_embedder)
    user = persona.user("cy")
    user.add_pair("Say hi to the team", chosen="Hi all!", rejected="Dear colleagues, greetings.")
    prompt = "Write a two-line note telling my team the office is closed on Friday."
    base, guided = persona.generate_batch([("cy", prompt)] * 2, max_new_tokens=40,
                                          strength=[0.0, 1.0])  # fmt: skip
    assert base.strength == 0.0 and guided.strength == 1.0 and guided.personalized
    assert guided.text and guided.text != base.text
    info = persona.adapters.info("cy")
    assert info["source"] == "generated" and info["rank"] == 64
    assert persona.adapters.basis_adapters.manifest.base_model == EMBEDDED_MODEL
    persona.close()


def test_demo_on_the_embedded_model():
    result = CliRunner().invoke(app, ["demo", "--json", "--max-new-tokens", "24"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"] == EMBEDDED_MODEL
    assert len(data["replies"]) == 6 and all(r["text"] for r in data["replies"])
    by_user = {u: [r for r in data["replies"] if r["user_id"] == u] for u in ("ana", "ben")}
    assert all(r["used_rules"] for rs in by_user.values() for r in rs)
    pairs = zip(by_user["ana"], by_user["ben"])
    assert sum(a["text"] != b["text"] for a, b in pairs) >= 2


def test_the_readme_quickstarts_alice_gets_a_one_sentence_note(real_host, tmp_path, real_embedder):
    p = Persona.open(tmp_path, model=real_host, embedder=real_embedder)
    alice = p.user("alice")
    alice.add_rule("Answer in one sentence.")
    alice.add_rule("Keep it under 100 words", context="emails to my manager")
    reply = p.generate("alice", "Draft a note to my manager about Friday", max_new_tokens=120)
    checks = {c.constraint.describe(): c.passed for c in reply.constraints}
    assert checks == {"at most 1 sentence": True, "at most 100 words": True}, reply.text
    assert len(reply.text.split()) <= 100 and reply.text.strip()
