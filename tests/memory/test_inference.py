"""Optional LLM inference of a preference phrase from an edit."""

from __future__ import annotations

import pytest

from persona_sdk import Persona
from persona_sdk.config import MemoryConfig
from persona_sdk.memory.inference import _clean, infer_preference_phrase


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "Keep replies short and skip greetings\nmore text",
            "Keep replies short and skip greetings.",
        ),
        ("Instruction: Use bullet points.", "Use bullet points."),
        ('"Do not use emojis!"', "Do not use emojis!"),
        ("", None),
        ("ok", None),
        ("@@ ## 1234 %% ^^ ~~ ))", None),
        ("word " * 30, None),
    ],
)
def test_clean_keeps_only_a_plausible_phrase(raw, expected):
    assert _clean(raw) == expected


def test_inference_runs_on_a_model_and_never_breaks_an_edit(tmp_path, tiny_host, embedder):
    phrase = infer_preference_phrase(tiny_host, "Hello!! Long reply here.", "Short reply.")
    assert phrase is None or (phrase.endswith((".", "!")) and len(phrase.split()) >= 3)
    config = MemoryConfig(infer_with_llm=True)
    with Persona.open(tmp_path, model=tiny_host, embedder=embedder, memory=config) as persona:
        result = persona.user("u").add_edit(
            "Explain tides",
            response="Hello!! 😀 Tides are caused by the moon!!",
            edited="Tides come from the moon's pull.",
        )
        assert {r.template for r in result.inferred_rules} >= {"emoji:-", "greeting:-"}
        assert len(result.outcomes) >= len(result.inferred_rules)
