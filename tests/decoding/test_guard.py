"""The guard inside guided decoding (issue 18, item 3): the per-token KL cap, the
repetition trip-wire, and that base-only rows stay on the plain fast path."""

from __future__ import annotations

import pytest
import torch

from persona_sdk.config import GuardConfig
from persona_sdk.decoding.guard import DecodeGuard, cap_alpha, kl_from_base
from persona_sdk.decoding.loop import BatchGeneration, SamplingParams, default_forward
from tests.helpers import add_pairs


def _kl(base, delta, alpha):
    return kl_from_base(torch.log_softmax(base, -1), base, delta, alpha)


def test_the_capped_alpha_fits_the_budget_and_equals_a_per_row_loop():
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(6, 300, generator=gen) * 3
    delta = torch.randn(6, 300, generator=gen) * torch.tensor([0.0, 0.1, 3, 3, 6, 2])[:, None]
    alpha = torch.tensor([[1.0], [1.0], [0.5], [1.0], [2.5], [0.0]])
    budget, steps = 0.3, 14
    capped, over = cap_alpha(base, delta, alpha, budget, steps)
    kl = _kl(base, delta, capped)
    assert (kl <= budget + 1e-5).all()
    assert over.tolist() == (_kl(base, delta, alpha) > budget).tolist()
    assert over[2:5].all() and not over[[0, 1, 5]].any()  # the test covers both kinds
    assert torch.equal(capped[~over], alpha[~over])  # rows within budget keep their α
    # the largest α that fits, to the bisection's resolution
    step = alpha[over] / 2**steps
    assert (_kl(base[over], delta[over], capped[over] + 2 * step) > budget).all()
    for row in range(6):
        alone, _ = cap_alpha(base[row : row + 1], delta[row : row + 1], alpha[row : row + 1],
                             budget, steps)  # fmt: skip
        assert torch.allclose(alone, capped[row : row + 1], atol=1e-6)


def test_no_row_over_budget_costs_no_bisection(monkeypatch):
    import persona_sdk.decoding.guard as guard

    calls = []
    real = guard.kl_from_base
    monkeypatch.setattr(guard, "kl_from_base", lambda *a: calls.append(1) or real(*a))
    base = torch.randn(3, 50)
    capped, over = cap_alpha(base, 0.01 * torch.randn(3, 50), torch.ones(3, 1), 0.5)
    assert len(calls) == 1 and not over.any() and torch.equal(capped, torch.ones(3, 1))


def test_all_base_rows_take_the_plain_path_and_give_its_tokens(tp, tiny_host):
    from persona_sdk.replies import Decode

    add_pairs(tp.user("zed"))
    params = SamplingParams(max_new_tokens=10)
    requests = [tp._request(u, "Explain black holes", params, 0.0) for u in ("zed", "new")]
    decode = tp._decode(requests, params, 1)
    assert isinstance(decode, Decode) and decode.guard is None
    assert decode.gen.forward.__qualname__ == default_forward(tiny_host).__qualname__
    plain = BatchGeneration(tiny_host, [r.token_ids for r in requests], params).run()
    assert [r.tokens for r in decode.gen.run()] == [r.tokens for r in plain]


def test_a_base_row_beside_a_guarded_row_keeps_its_plain_tokens(tp, tiny_host):
    add_pairs(tp.user("yan"))
    params = SamplingParams(max_new_tokens=10)
    base_row = tp._request("new", "Explain black holes", params, 0.0)
    guided = tp._request("yan", "hello there", params, 1.0)
    decode = tp._decode([base_row, guided], params, 1)
    assert decode.guard is not None and set(decode.guard.monitors) == {1}  # no monitor: α = 0
    assert decode.gen.forward.expanded_rows == 3  # the α = 1 row keeps a base copy
    rows = decode.gen.run()
    plain = BatchGeneration(tiny_host, [base_row.token_ids, guided.token_ids], params).run()
    assert rows[0].tokens == plain[0].tokens


class _ScriptedAdapter:
    """A forward whose "adapter" forces ``script`` token by token (empty list items), mixed
    by ``guard`` exactly as the guided forward mixes; remembers every step's base logits."""

    def __init__(self, host, guard, script):
        self.inner, self.guard, self.script = default_forward(host), guard, script
        self.bases: list[torch.Tensor] = []

    def __call__(self, input_ids, attention_mask, position_ids, cache, logits_to_keep=1):
        base, cache = self.inner(input_ids, attention_mask, position_ids, cache, logits_to_keep)
        adapted = base.clone()
        adapted[:, self.script[len(self.bases) % len(self.script)]] += 1e4
        self.bases.append(base)
        return self.guard.mix(base, adapted), cache


ASK = "How can I sleep better?"


def _scripted(tiny_host, **guard_config):
    script = tiny_host.tokenizer.encode("-\n" * 8, add_special_tokens=False)
    prompt = tiny_host.chat_ids([{"role": "user", "content": ASK}])
    guard = DecodeGuard([1.0], [ASK], GuardConfig(kl_budget=None, **guard_config), tiny_host.device)
    forward = _ScriptedAdapter(tiny_host, guard, script)
    gen = BatchGeneration(tiny_host, [prompt], SamplingParams(max_new_tokens=24), forward, [guard])
    return script, prompt, guard, forward, gen


def test_empty_list_items_trip_the_row_back_to_the_base(tiny_host):
    script, _prompt, guard, forward, gen = _scripted(tiny_host, restart=False)
    row = gen.run()[0]
    report = guard.report(0, row.text.strip(), ASK)
    assert report["tripped"] and report["reasons"] == ["empty_list_items"]
    assert not report["restarted"]
    at = report["tripped_at_token"]
    assert 0 < at < len(row.tokens) and row.tokens[:at] == script[:at]
    # from the trip on, every token is the base model's greedy choice
    assert row.tokens[at:] == [int(b.argmax()) for b in forward.bases[at : len(row.tokens)]]
    assert report["capped_tokens"] == 0 and report["kl_budget"] is None
    assert report["mean_alpha"] == pytest.approx(at / len(row.tokens), abs=1e-4)


def test_replies_report_the_guard(tp):
    add_pairs(tp.user("xia"))
    reply = tp.generate("xia", "Explain black holes", strength=2.0, max_new_tokens=8)
    guard = reply.guard
    assert set(guard) == {"kl_budget", "capped_tokens", "mean_alpha", "tripped", "reasons",
                          "tripped_at_token", "restarted", "degenerate",
                          "final_reasons"}  # fmt: skip
    assert guard["kl_budget"] == 0.5 and 0 <= guard["capped_tokens"] <= reply.tokens
    assert 0.0 <= guard["mean_alpha"] <= 2.0 and reply.to_dict()["guard"] == guard
    assert tp.generate("xia", "Explain black holes", strength=0.0, max_new_tokens=4).guard is None
    tp.generation_config.guard = GuardConfig(enabled=False)
    assert tp.generate("xia", "Explain black holes", strength=2.0, max_new_tokens=4).guard is None


def test_a_tripped_row_restarts_as_the_base_models_own_reply(tiny_host):
    _script, prompt, guard, _forward, gen = _scripted(tiny_host)
    row = gen.run()[0]
    plain = BatchGeneration(tiny_host, [prompt], SamplingParams(max_new_tokens=24)).run()[0]
    report = guard.report(0, row.text.strip(), ASK)
    assert report["tripped"] and report["restarted"] and row.restarts == 1
    assert row.tokens == plain.tokens and row.finish_reason == plain.finish_reason
    assert report["mean_alpha"] == 0.0


def test_a_streamed_row_is_never_taken_back(tiny_host):
    script, _prompt, guard, _forward, gen = _scripted(tiny_host)
    streamed = "".join(deltas[0] for deltas in gen)  # iterating is streaming
    row = gen.rows[0]
    assert guard.report(0, row.text, ASK)["tripped"] and row.restarts == 0
    assert streamed == row.text and row.tokens[:4] == script[:4]


def test_a_reply_that_ends_broken_before_the_trip_wire_restarts_as_the_base(tiny_host):
    script = tiny_host.tokenizer.encode("-\n" * 8, add_special_tokens=False)
    prompt = tiny_host.chat_ids([{"role": "user", "content": ASK}])
    budget = SamplingParams(max_new_tokens=3)  # cut after one or two empty items: no repeat yet
    guard = DecodeGuard([1.0], [ASK], GuardConfig(kl_budget=None), tiny_host.device)
    forward = _ScriptedAdapter(tiny_host, guard, script)
    row = BatchGeneration(tiny_host, [prompt], budget, forward, [guard]).run()[0]
    plain = BatchGeneration(tiny_host, [prompt], budget).run()[0]
    report = guard.report(0, row.text.strip(), ASK)
    assert report["tripped"] and report["restarted"] and "empty" in report["reasons"]
    assert row.tokens == plain.tokens


def test_a_reply_the_guard_redid_on_the_base_reports_strength_zero(tp, monkeypatch):
    from persona_sdk.replies import Decode

    add_pairs(tp.user("xia"))
    original = Decode.guard_report

    def restarted(self, row, text):
        found = original(self, row, text)
        return None if found is None else {**found, "tripped": True, "restarted": True}

    monkeypatch.setattr(Decode, "guard_report", restarted)
    reply = tp.generate("xia", "Explain black holes", strength=1.5, max_new_tokens=6)
    assert reply.guard["restarted"] and reply.strength == 0.0 and not reply.personalized
    monkeypatch.setattr(Decode, "guard_report", original)
    reply = tp.generate("xia", "Explain black holes", strength=1.5, max_new_tokens=6)
    assert reply.strength == 1.5 and reply.personalized
