"""Evidence-scaled default strength (issue 18, item 2): no evidence, no guidance; the
population default is the operator's opt-in; an explicit strength still wins."""

from __future__ import annotations

import numpy as np
import pytest

from persona_sdk.decoding.loop import BatchGeneration, SamplingParams
from persona_sdk.reward.posterior import Posterior, evidence_share
from tests.helpers import PAIRS, add_pairs


def _plain(tp, host, user_id, prompt, max_new_tokens):
    ids = host.chat_ids(tp.prompt_for(user_id, prompt))
    return BatchGeneration(host, [ids], SamplingParams(max_new_tokens=max_new_tokens)).run()[0]


def test_a_user_without_pairs_or_edits_gets_the_base_reply_token_for_token(tp, tiny_host):
    reply = tp.generate("newcomer", "Explain black holes", max_new_tokens=16)
    plain = _plain(tp, tiny_host, "newcomer", "Explain black holes", 16)
    assert reply.strength == 0.0 and reply.personalized is False
    assert reply.text == plain.text.strip() and reply.tokens == len(plain.tokens)
    batch = tp.generate_batch([("newcomer", "Explain black holes")], max_new_tokens=16)
    assert batch[0].text == reply.text and batch[0].strength == 0.0


def test_rules_alone_prompt_the_base_model_and_count_as_personalized(tp, tiny_host):
    tp.user("ruled").add_rule("Explain it like I'm five years old.")  # not a checkable rule
    reply = tp.generate("ruled", "Explain black holes", max_new_tokens=10)
    assert reply.strength == 0.0 and reply.personalized and reply.used_rules
    assert not reply.constraints
    assert reply.text == _plain(tp, tiny_host, "ruled", "Explain black holes", 10).text.strip()


def test_default_strength_grows_with_the_users_own_pairs(tp):
    assert tp.default_strength("nobody") == 0.0
    add_pairs(tp.user("one"), PAIRS[:1])
    add_pairs(tp.user("three"))
    one, three = tp.default_strength("one"), tp.default_strength("three")
    assert 0.0 < one < three < 1.0
    reply = tp.generate("three", "hello", max_new_tokens=4)
    assert reply.strength == three and reply.personalized
    assert tp.generate("three", "hello", strength=0.7, max_new_tokens=4).strength == 0.7
    mixed = tp.generate_batch([("one", "hi"), ("three", "hi")], strength=[None, 1.5],
                              max_new_tokens=3)  # fmt: skip
    assert [r.strength for r in mixed] == [one, 1.5]


def test_the_population_default_is_the_operators_opt_in(tp):
    tp.generation_config.population_default = True
    reply = tp.generate("fresh", "hello", max_new_tokens=4)
    assert reply.strength == 1.0 and reply.personalized is False


def test_evidence_share_is_the_effective_number_of_parameters_over_k():
    prior = np.diag([4.0, 1.0])
    assert evidence_share(Posterior(np.zeros(2), np.linalg.inv(prior), 0), prior) == 0.0
    # data precision 4 on axis 1 (prior 4), 3 on axis 2 (prior 1): shares 1/2 and 3/4
    post = Posterior(np.zeros(2), np.linalg.inv(prior + np.diag([4.0, 3.0])), 5)
    assert evidence_share(post, prior) == pytest.approx((0.5 + 0.75) / 2)
    rotation = np.array([[0.6, -0.8], [0.8, 0.6]])  # the same user in rotated axes
    turned = Posterior(np.zeros(2), rotation @ post.cov @ rotation.T, 5)
    assert evidence_share(turned, rotation @ prior @ rotation.T) == pytest.approx(
        evidence_share(post, prior)
    )


def test_profile_contradictions_lower_the_default_strength(tp, monkeypatch):
    add_pairs(tp.user("doubted"))
    evidence = tp.rewards.evidence("doubted")
    monkeypatch.setattr(tp.rewards, "contradiction_count", lambda user_id: 0)
    assert tp.default_strength("doubted") == round(evidence, 4)
    monkeypatch.setattr(tp.rewards, "contradiction_count", lambda user_id: 2)
    assert tp.default_strength("doubted") == round(evidence / 3, 4)
    assert tp.default_strength("nobody") == 0.0  # no pairs: no profile is even built
