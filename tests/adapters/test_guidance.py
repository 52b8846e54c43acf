"""Decoding-time guidance and best-of-N on the tiny model: one forward per step over the
expanded rows (never re-encoding the prefix), reranking by the user's reward, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from persona_sdk import InvalidInputError
from persona_sdk.adapters.guidance import RowPlan, guided_forward
from persona_sdk.decoding.loop import BatchGeneration, SamplingParams
from tests.helpers import add_pairs, assert_error


@pytest.fixture
def fed_tokens(tiny_host):
    """The (rows, tokens) shape of every input the model's embedding layer sees."""
    shapes: list[tuple[int, int]] = []
    layer = tiny_host.model.get_input_embeddings()
    handle = layer.register_forward_pre_hook(lambda _m, args: shapes.append(tuple(args[0].shape)))
    yield shapes
    handle.remove()


def test_guided_decoding_feeds_one_token_per_row_copy_after_the_prefill(tp, tiny_host, fed_tokens):
    add_pairs(tp.user("ann"))
    slot = tp.adapters.activate("ann")
    prompts = [tiny_host.chat_ids([{"role": "user", "content": text}]) for text in ("hi", "hey")]
    plans = [RowPlan(slot, 0.5), RowPlan(slot, 1.0)]  # copies: base + adapter, adapter
    forward = guided_forward(tiny_host, tp.adapters.server, plans)
    gen = BatchGeneration(tiny_host, prompts, SamplingParams(max_new_tokens=6), forward)
    gen.run()
    width = max(len(p) for p in prompts)
    assert forward.expanded_rows == 3
    assert fed_tokens[0] == (3, width)  # the prefill, once
    assert fed_tokens[1:] == [(3, 1)] * (len(fed_tokens) - 1)  # then one token per copy
    assert len(fed_tokens) == len(gen.forward_calls) <= 6


def test_best_of_reranks_by_the_users_reward_in_one_batch(tp, fed_tokens):
    user = tp.user("bo")
    add_pairs(user)
    reply = tp.generate("bo", "Write a note to my team", best_of=4, max_new_tokens=8, seed=3)
    # four candidates in one batch, each an adapter and a base copy (the guard needs both)
    assert fed_tokens[0][0] == 8
    rewards = [c["reward"] for c in reply.candidates]
    keys = [(c["degenerate"], -c.get("constraints_met", 0), -c["score"]) for c in reply.candidates]
    assert len(rewards) == 4 and keys == sorted(keys)  # sound first, then the user's score
    assert reply.text == reply.candidates[0]["text"] and reply.reward == rewards[0]
    texts = [c["text"] for c in reply.candidates]
    expected = tp.rewards.scores("bo", "Write a note to my team", texts)
    assert np.allclose(rewards, expected, atol=1e-6)
    assert "reward" in reply.timings and reply.to_dict()["candidates"] == reply.candidates


def test_every_reply_reports_the_users_reward(tp):
    add_pairs(tp.user("cy"))
    reply = tp.generate("cy", "Explain black holes", max_new_tokens=6)
    assert reply.candidates == []
    expected = tp.rewards.scores("cy", "Explain black holes", [reply.text])[0]
    assert reply.reward == pytest.approx(float(expected))
    new_user = tp.generate("nobody-yet", "Explain black holes", max_new_tokens=6)
    assert new_user.personalized is False and isinstance(new_user.reward, float)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"best_of": 0}, "best_of must be between 1 and 16"),
        ({"best_of": 17}, "best_of must be between 1 and 16"),
        ({"best_of": 2, "temperature": 0.0}, "temperature > 0"),
        ({"best_of": 2, "stream": True}, "cannot stream"),
        ({"strength": float("nan")}, "strength must be finite"),
        ({"strength": -1.0}, "strength must be >= 0"),
        ({"strength": 4.5}, "strength must be <= 4"),
        ({"stop": ["ok", ""]}, "stop strings must be non-empty"),
        ({"max_new_tokens": 0}, "max_new_tokens must be between 1"),
    ],
)
def test_bad_guidance_arguments_are_refused(tp, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        tp.generate("dee", "hi", **kwargs)


def test_strength_cap_is_configurable(tp):
    tp.generation_config.max_strength = 2.0
    with pytest.raises(InvalidInputError, match="strength must be <= 2"):
        tp.generate("dee", "hi", strength=2.5, max_new_tokens=2)
    assert tp.generate("dee", "hi", strength=2.0, max_new_tokens=2).strength == 2.0


def test_best_of_zero_strength_equals_sampled_base_candidates(tp, tiny_host):
    """At strength 0 the candidates are the base model's samples: guidance adds nothing."""
    add_pairs(tp.user("eve"))
    reply = tp.generate("eve", "hello", best_of=3, strength=0.0, max_new_tokens=5, seed=7)
    ids = tiny_host.chat_ids(tp.prompt_for("eve", "hello"))
    config = tp.generation_config
    params = SamplingParams(max_new_tokens=5, temperature=config.best_of_temperature,
                            top_p=config.best_of_top_p, seed=7)  # fmt: skip
    rows = BatchGeneration(tiny_host, [ids] * 3, params).run()
    assert sorted(c["text"] for c in reply.candidates) == sorted(r.text.strip() for r in rows)


def test_cli_generate_best_of(adapter_cli):
    cli = adapter_cli
    cli.ok("add-rule", "fay", "Be brief.")
    out = cli.json("generate", "fay", "hi", "--best-of", "2", "--max-new-tokens", "4")
    assert len(out["candidates"]) == 2 and out["reward"] == out["candidates"][0]["reward"]
    assert_error(cli("generate", "fay", "hi", "--best-of", "0"), "best_of")
    json.dumps(out)  # JSON-ready


@pytest.mark.slow
def test_eval_generation_compares_every_method(adapter_cli, tmp_path):
    from persona_sdk.evals.generation import FULL_PIPELINE, METHODS

    plot = tmp_path / "generation.png"
    args = ["eval", "generation", "--users", "3", "--prompts", "2", "--shots", "2",
            "--users-per-batch", "2"]  # fmt: skip
    out = adapter_cli.json(*args, "--max-new-tokens", "3", "--plot", str(plot))
    assert [m["method"] for m in out["methods"]] == [name for name, *_ in METHODS]
    assert all(len(m["per_user"]) == 3 and np.isfinite(m["mean"]) for m in out["methods"])
    assert set(out["gains"]) == {name for name, *_ in METHODS} - {FULL_PIPELINE}
    base = next(m for m in out["methods"] if m["method"] == "base")
    assert base["per_user"][0] != base["per_user"][1]  # one base text, two users' utilities
    # "over the pool" subtracts one per-user reference that no method touches
    offsets = np.array([np.subtract(m["per_user"], m["over_pool"]["per_user"])
                        for m in out["methods"]])  # fmt: skip
    np.testing.assert_allclose(offsets, np.broadcast_to(offsets[0], offsets.shape), atol=1e-9)
    assert offsets[0][0] != offsets[0][1]
    assert set(out["full_beats_with_separate_cis"]) == {"base", "rules only"}
    assert set(out["full_beats_with_separate_cis"]["base"]) == {
        "utility",
        "over_pool",
        "quality_adjusted",
    }
    for m in out["methods"]:  # quality beside every utility; broken replies score the base's
        assert set(m["quality"]) == {
            "degenerate_rate",
            "nll_per_token",
            "nll_per_token_as_prompted",
            "relevance",
            "words",
        }
        assert (
            0.0 <= m["quality"]["degenerate_rate"] <= 1.0
            and len(m["quality_adjusted"]["per_user"]) == 3
        )
    with_rules = {name for name, rules, *_ in METHODS if rules}
    for m in out["methods"]:  # NLL as prompted: the rules the reply was written with count
        q = m["quality"]
        if m["method"] in with_rules:
            assert q["nll_per_token_as_prompted"] != pytest.approx(q["nll_per_token"])
        else:
            assert q["nll_per_token_as_prompted"] == pytest.approx(q["nll_per_token"])
    base_q = next(m for m in out["methods"] if m["method"] == "base")
    assert (
        base_q["quality_adjusted"]["per_user"] == base_q["per_user"]
        or base_q["quality"]["degenerate_rate"] > 0
    )
    assert set(out["targets"]) == {
        "degenerate_rate_delta",
        "nll_per_token_delta",
        "relevance_delta",
        "adjusted_above_base",
        "adjusted_above_rules_only",
    }
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert adapter_cli.json("users") == []  # the simulated users are forgotten afterwards
    assert_error(adapter_cli("eval", "generation", "--users", "1"), "users must be between 2")


def test_eval_generation_runs_a_subset_of_methods(tp):
    from persona_sdk.evals.generation import (
        FULL_PIPELINE,
        GenerationEvalConfig,
        run_generation_eval,
    )

    config = GenerationEvalConfig(users=2, prompts=1, shots=2, max_new_tokens=3)
    result = run_generation_eval(tp, config, methods=["adapter α=1"])
    names = [m["method"] for m in result.methods]
    assert names == ["base", "rules only", "adapter α=1", FULL_PIPELINE]  # METHODS' order
    assert set(result.gains) == {"base", "rules only", "adapter α=1"}
    with pytest.raises(InvalidInputError, match="unknown method"):
        run_generation_eval(tp, config, methods=["adapter α=3"])


def test_eval_generation_resumes_from_its_checkpoint(tp, tmp_path, monkeypatch):
    from persona_sdk.evals import generation

    config = generation.GenerationEvalConfig(users=4, prompts=1, shots=2, max_new_tokens=3,
                                             users_per_batch=2)  # fmt: skip
    unbroken = generation.run_generation_eval(tp, config, methods=[]).to_dict()
    checkpoint = tmp_path / "eval.json"
    real, calls = generation._generate_chunk, []

    def killed_on_the_second_batch(*args):
        calls.append(args[-1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        real(*args)

    monkeypatch.setattr(generation, "_generate_chunk", killed_on_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        generation.run_generation_eval(tp, config, methods=[], checkpoint=checkpoint)
    assert json.loads(checkpoint.read_text())["done"] == 2
    monkeypatch.setattr(generation, "_generate_chunk", real)
    resumed = generation.run_generation_eval(tp, config, methods=[], checkpoint=checkpoint)
    assert resumed.to_dict() == unbroken
    assert tp.users() == []  # the half-onboarded users of the killed batch are gone too
    other = generation.GenerationEvalConfig(users=4, prompts=1, shots=3, max_new_tokens=3)
    with pytest.raises(InvalidInputError, match="other settings"):
        generation.run_generation_eval(tp, other, methods=[], checkpoint=checkpoint)


def test_eval_generation_cli_takes_methods_and_a_checkpoint(adapter_cli, tmp_path):
    checkpoint = tmp_path / "run.json"
    args = ("eval", "generation", "--users", "2", "--prompts", "1", "--shots", "2",
            "--max-new-tokens", "3", "--methods", "adapter α=1", "--checkpoint",
            str(checkpoint))  # fmt: skip
    result = adapter_cli.json(*args)
    assert [m["method"] for m in result["methods"]] == [
        "base", "rules only", "adapter α=1", "rules + guidance + best-of-4"
    ]  # fmt: skip
    assert json.loads(checkpoint.read_text())["done"] == 2
    assert adapter_cli.json(*args) == result  # a finished checkpoint: only the summary reruns
    assert_error(adapter_cli(*args[:-4], "--methods", "nope"), "unknown method")
    assert_error(adapter_cli(*args, "--users", "3"), "other settings")  # the last --users wins
    assert_error(adapter_cli(*args[:-1], str(tmp_path / "no" / "run.json")), "does not exist")
