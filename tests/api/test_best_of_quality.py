"""Best-of that cannot pick broken text (issue 18, item 4): candidates ranked by (not
degenerate, reward + fluency and relevance terms), every term shown."""

from __future__ import annotations

import math

import numpy as np
import pytest

from persona_sdk.decoding.loop import SamplingParams
from persona_sdk.quality import rank_candidates, score_replies
from tests.helpers import add_pairs

TERMS = {"text", "reward", "fluency", "relevance", "degenerate", "reasons", "score"}


def test_a_degenerate_candidate_never_wins_over_a_fluent_one():
    order, scores = rank_candidates(
        rewards=[50.0, 0.1, 0.2, 9.0],
        fluency=[-0.5, -1.0, math.nan, -9.0],
        relevance=[0.9, 0.5, 0.6, 0.1],
        degenerate=[True, False, False, True],
    )
    assert order.tolist() == [1, 2, 0, 3]  # both sound ones first, however large the reward
    kept = rank_candidates([50.0, 0.1], [-0.5, -1.0], [0.9, 0.5], [True, False], satisfied=[3, 0])
    assert kept[0].tolist() == [1, 0]  # nor however many rules it keeps
    # reward + (fluency − best fluency) + (relevance − best relevance); NaN is the worst fluency
    assert scores == pytest.approx([50.0, 0.1 - 0.5 - 0.4, 0.2 - 8.5 - 0.3, 9.0 - 8.5 - 0.8])


def test_equal_scores_keep_their_order_and_weights_trade_terms():
    order, _ = rank_candidates([1.0, 1.0], [-1.0, -1.0], [0.5, 0.5], [False, False])
    assert order.tolist() == [0, 1]
    args = ([1.0, 0.0], [-3.0, -1.0], [0.5, 0.5], [False, False])
    assert rank_candidates(*args)[0].tolist() == [1, 0]  # 2 nats of fluency beat 1 of reward
    assert rank_candidates(*args, fluency_weight=0.1)[0].tolist() == [0, 1]


def test_best_of_candidates_show_every_term_best_first(tp):
    add_pairs(tp.user("bea"))
    reply = tp.generate("bea", "Write a note to my team", best_of=4, strength=1.0,
                        max_new_tokens=8, seed=3)  # fmt: skip
    cands = reply.candidates
    assert len(cands) == 4 and all(set(c) >= TERMS for c in cands)
    assert reply.text == cands[0]["text"] and reply.reward == cands[0]["reward"]
    keys = [(c["degenerate"], -c.get("constraints_met", 0), -c["score"]) for c in cands]
    assert keys == sorted(keys)
    for c in cands:
        assert c["degenerate"] == bool(c["reasons"])
        assert c["fluency"] is None or c["fluency"] <= 0
        assert -1.0 <= c["relevance"] <= 1.0
    texts = [c["text"] for c in cands]
    expected = tp.rewards.scores("bea", "Write a note to my team", texts)
    assert np.allclose([c["reward"] for c in cands], expected, atol=1e-6)


def test_best_of_fluency_is_the_base_models_logprob_of_each_row(tp, tiny_host):
    add_pairs(tp.user("cid"))
    params = SamplingParams(max_new_tokens=6, temperature=0.8, seed=5)
    request = tp._request("cid", "Explain black holes", params, 1.5)
    decode = tp._decode([request], params, 3)
    rows = decode.gen.run()
    expected = score_replies(tiny_host.model, [request.token_ids] * 3, [r.tokens for r in rows])
    assert np.allclose(decode.fluency.means(), expected, atol=1e-3, equal_nan=True)


def test_best_of_skips_a_degenerate_candidate_even_with_the_best_reward(tp, monkeypatch):
    import persona_sdk.replies as replies

    add_pairs(tp.user("dov"))
    honest = tp.generate("dov", "hello", best_of=3, strength=1.0, max_new_tokens=6, seed=11)
    top = honest.candidates[0]["text"]
    monkeypatch.setattr(replies, "degenerate_reasons",
                        lambda text, prompt: ["repeated_line"] if text == top else [])  # fmt: skip
    flagged = tp.generate("dov", "hello", best_of=3, strength=1.0, max_new_tokens=6, seed=11)
    if all(c["text"] == top for c in flagged.candidates):
        pytest.skip("every sampled candidate is the same text")
    assert flagged.text != top and flagged.candidates[-1]["degenerate"]
