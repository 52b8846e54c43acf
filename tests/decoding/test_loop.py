"""The batched decoding loop, on the tiny random-weight Llama."""

from __future__ import annotations

import pytest
import torch

from persona_sdk.decoding.loop import BatchGeneration, SamplingParams, _held_back, sample_next

MESSAGES = [
    [{"role": "user", "content": "How can I sleep better?"}],
    [
        {"role": "system", "content": "Answer in one sentence."},
        {"role": "user", "content": "Write an email to my manager about the budget, please."},
    ],
    [{"role": "user", "content": "Black holes?"}],
]


def prompts(host):
    return [host.chat_ids(m) for m in MESSAGES]


def test_greedy_matches_transformers_generate(tiny_host):
    for ids in prompts(tiny_host):
        ours = BatchGeneration(tiny_host, [ids], SamplingParams(max_new_tokens=12)).run()[0]
        reference = tiny_host.model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=12,
            do_sample=False,
            eos_token_id=tiny_host.stop_token_ids,
            pad_token_id=tiny_host.tokenizer.pad_token_id,
        )[0, len(ids) :].tolist()
        reference = [t for t in reference if t not in tiny_host.stop_token_ids]
        assert ours.tokens == reference[: len(ours.tokens)]
        assert len(ours.tokens) > 0


def test_left_padded_batch_equals_rows_alone(tiny_host):
    rows = prompts(tiny_host)
    assert len({len(r) for r in rows}) > 1  # really different lengths, so padding happens
    params = SamplingParams(max_new_tokens=10)
    batched = BatchGeneration(tiny_host, rows, params).run()
    for ids, row in zip(rows, batched):
        alone = BatchGeneration(tiny_host, [ids], params).run()[0]
        assert row.tokens == alone.tokens


def test_kv_cache_is_reused_one_token_per_step(tiny_host):
    rows = prompts(tiny_host)
    gen = BatchGeneration(tiny_host, rows, SamplingParams(max_new_tokens=8))
    gen.run()
    assert gen.forward_calls[0] == max(len(r) for r in rows)  # the prefill
    assert all(n == 1 for n in gen.forward_calls[1:])  # never re-encodes the prefix
    assert len(gen.forward_calls) <= 8


def test_stream_chunks_add_up_to_the_text(tiny_host):
    gen = BatchGeneration(tiny_host, prompts(tiny_host), SamplingParams(max_new_tokens=15))
    pieces = [[], [], []]
    for deltas in gen:
        for i, delta in enumerate(deltas):
            pieces[i].append(delta)
    for row, parts in zip(gen.rows, pieces):
        assert "".join(parts) == row.text
        assert row.finish_reason in ("stop", "length")
    assert gen.timings["ttft"] <= gen.timings["total"]


def test_max_new_tokens_is_respected(tiny_host):
    row = BatchGeneration(
        tiny_host, prompts(tiny_host)[:1], SamplingParams(max_new_tokens=3)
    ).run()[0]
    assert len(row.tokens) <= 3


def test_stop_string_truncates_and_is_never_streamed(tiny_host):
    ids = prompts(tiny_host)[0]
    full = BatchGeneration(tiny_host, [ids], SamplingParams(max_new_tokens=20)).run()[0].text
    stop = full[5:8]
    assert stop and stop in full
    gen = BatchGeneration(tiny_host, [ids], SamplingParams(max_new_tokens=20, stop=(stop,)))
    streamed = "".join(d[0] for d in gen)
    assert gen.rows[0].text == full[: full.index(stop)]
    assert streamed == gen.rows[0].text
    assert gen.rows[0].finish_reason == "stop"


def test_sampling_is_seeded(tiny_host):
    ids = prompts(tiny_host)[:1]
    params = SamplingParams(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=7)
    first = BatchGeneration(tiny_host, ids, params).run()[0].tokens
    again = BatchGeneration(tiny_host, ids, params).run()[0].tokens
    other = (
        BatchGeneration(
            tiny_host, ids, SamplingParams(max_new_tokens=10, temperature=1.0, top_p=0.9, seed=8)
        )
        .run()[0]
        .tokens
    )
    assert first == again
    assert first != other


def test_top_p_keeps_only_the_nucleus():
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.05, 0.05]]))
    params = SamplingParams(temperature=1.0, top_p=0.8)
    generator = torch.Generator().manual_seed(0)
    picks = {int(sample_next(logits, params, generator)) for _ in range(200)}
    assert picks == {0, 1}
    assert int(sample_next(logits, SamplingParams(), None)) == 0


@pytest.mark.parametrize(
    ("text", "stops", "held"),
    [
        ("hello wor", ("world",), 3),
        ("hello", ("xyz",), 0),
        ("abc\ufffd", (), 1),
        ("ab", ("b!",), 1),
        ("Bla\ufffd", ("a\u0396",), 2),
    ],
)
def test_held_back_suffix(text, stops, held):
    assert _held_back(text, stops) == held


def test_best_of_samples_with_its_own_defaults():
    from persona_sdk.config import GenerationConfig
    from persona_sdk.decoding.loop import sampling_params

    config = GenerationConfig()
    one = sampling_params(config, 2048, 1, None, None, None, None, None)
    assert (one.temperature, one.top_p) == (config.temperature, config.top_p)  # greedy, 1.0
    four = sampling_params(config, 2048, 4, None, None, None, None, None)
    assert (four.temperature, four.top_p) == (config.best_of_temperature, config.best_of_top_p)
    assert 0 < config.best_of_top_p < 1  # nucleus: fewer disfluent tails (RESULTS)
    asked = sampling_params(config, 2048, 4, None, 0.5, 1.0, None, None)
    assert (asked.temperature, asked.top_p) == (0.5, 1.0)  # what the caller gives wins
