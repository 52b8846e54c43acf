"""The demo tells the truth (issue 18, item 7): on the real embedded model, every demo
user's reply and the base column pass the one quality check."""

from __future__ import annotations

import pytest

from persona_sdk import Persona
from persona_sdk.cli.demo import DEMO_PROMPTS, DEMO_USERS, add_demo_users, demo_replies
from persona_sdk.decoding.models import load_model
from persona_sdk.quality import degenerate_reasons, relevance

pytestmark = pytest.mark.integration


def test_every_demo_reply_passes_the_quality_check(tmp_path, real_embedder):
    host = load_model(shared=False, progress=False)
    with Persona.open(tmp_path, model=host, embedder=real_embedder) as persona:
        add_demo_users(persona)
        replies, base = demo_replies(persona, max_new_tokens=32)
    prompts = [p for p in DEMO_PROMPTS for _ in DEMO_USERS]
    assert [r.user_id for r in replies] == list(DEMO_USERS) * len(DEMO_PROMPTS)
    assert all(r.strength == 0.0 and not r.personalized for r in base.values())
    for prompt, reply in [*zip(prompts, replies), *base.items()]:
        assert reply.text and not degenerate_reasons(reply.text, prompt), (prompt, reply.text)
    for reply in replies:  # two picks each: a little evidence, a little strength
        assert 0.0 < reply.strength < 1.0 and reply.guard is not None
    mine = relevance(real_embedder.encode, prompts, [r.text for r in replies])
    theirs = relevance(real_embedder.encode, prompts, [base[p].text for p in prompts])
    assert mine.mean() >= theirs.mean() - 0.1, (mine, theirs)
