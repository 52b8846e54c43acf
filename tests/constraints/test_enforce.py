"""Enforcement in the decode loop, on the tiny random model (which, left alone, breaks
every rule): masks, forced openings, endings that land by the budget, limits that end at
a sentence boundary, and llguidance formats."""

from __future__ import annotations

import json

import pytest

from persona_sdk.constraints import (
    BannedChars,
    Case,
    EndPhrase,
    EndsWithQuestion,
    ForbiddenWords,
    Greeting,
    JsonOnly,
    ListFormat,
    MaxSentences,
    MaxWords,
    Postscript,
    QuoteWrap,
    RequiredWords,
    SignOff,
    StartPhrase,
    TitleLine,
    count_words,
    verify,
)
from persona_sdk.constraints.enforce import ConstraintProcessor
from persona_sdk.decoding.loop import BatchGeneration, SamplingParams

PROMPT = [{"role": "user", "content": "How can I sleep better tonight?"}]


def decode(host, constraints, max_new_tokens=40, rows=4, temperature=1.0, seed=0):
    """``rows`` sampled rows, each held to ``constraints``; their texts, stripped."""
    ids = host.chat_ids(PROMPT)
    processor = ConstraintProcessor(host, [constraints] * rows, max_new_tokens)
    params = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    gen = BatchGeneration(host, [ids] * rows, params, processors=[processor])
    return [row.text.strip() for row in gen.run()]


def assert_kept(texts, constraints):
    for text in texts:
        failed = [r.detail for r in verify(text, constraints) if not r.passed]
        assert not failed, (text, failed)


@pytest.mark.parametrize(
    "constraints",
    [
        [Case("lower"), BannedChars("comma")],
        [Case("upper"), BannedChars("exclamation")],
        [BannedChars("emoji"), BannedChars("em_dash"), BannedChars("semicolon")],
        [ForbiddenWords(("the", "sleep", "light"))],
    ],
    ids=["lower-comma", "upper-excl", "emoji-dash-semicolon", "forbidden"],
)
def test_masks_never_let_a_banned_token_through(tiny_host, constraints):
    assert_kept(decode(tiny_host, constraints, rows=6), constraints)


@pytest.mark.parametrize(
    "constraints",
    [
        [StartPhrase("Sure thing")],
        [StartPhrase("Sure"), Case("lower")],
        [Greeting(True)],
        [QuoteWrap()],
        [Greeting(False)],
    ],
    ids=["start", "start-lower", "greeting", "quote", "no-greeting"],
)
def test_the_opening_is_forced(tiny_host, constraints):
    texts = decode(tiny_host, constraints)
    assert_kept(texts, constraints)
    if isinstance(constraints[0], StartPhrase) and len(constraints) == 2:
        assert all(t.startswith("sure") for t in texts)


@pytest.mark.parametrize("spare", [4, 12, 30])
@pytest.mark.parametrize(
    "constraints",
    [
        [EndPhrase("Hope this helps")],
        [SignOff("Sam")],
        [Postscript()],
        [EndsWithQuestion()],
        [RequiredWords(("honestly",))],
        [SignOff("Sam"), Postscript("call me")],
    ],
    ids=["end-phrase", "sign-off", "ps", "question", "required", "sign-off+ps"],
)
def test_the_ending_lands_even_near_the_budget(tiny_host, constraints, spare):
    """``spare`` tokens beyond what the ending itself takes (byte-level on the tiny model)."""
    tail = ConstraintProcessor(tiny_host, [constraints], 99).rows[0].tail_tokens
    assert_kept(decode(tiny_host, constraints, max_new_tokens=tail + spare), constraints)


@pytest.mark.parametrize("limit", [3, 8, 15])
def test_a_word_budget_ends_at_a_sentence_boundary(tiny_host, limit):
    constraints = [MaxWords(limit)]
    texts = decode(tiny_host, constraints, max_new_tokens=60, rows=6)
    assert_kept(texts, constraints)
    for text in texts:
        assert count_words(text) <= limit
        assert text.endswith((".", "!", "?")), text  # a sentence boundary, not a cut word


@pytest.mark.parametrize("limit", [1, 2])
def test_a_sentence_budget_is_kept(tiny_host, limit):
    constraints = [MaxSentences(limit)]
    assert_kept(decode(tiny_host, constraints, max_new_tokens=60, rows=6), constraints)


def test_sentence_limit_with_an_ending_reserves_it(tiny_host):
    constraints = [MaxSentences(1), EndsWithQuestion(), MaxWords(20)]
    assert_kept(decode(tiny_host, constraints, max_new_tokens=40), constraints)


@pytest.mark.parametrize("budget", [16, 40])
def test_json_only_output_parses(tiny_host, budget):
    texts = decode(tiny_host, [JsonOnly()], max_new_tokens=budget)
    for text in texts:
        assert isinstance(json.loads(text), dict), text


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("budget", [12, 20])
def test_json_only_closes_in_a_tight_budget_whatever_was_sampled(tiny_host, budget, seed):
    # Rows that spent their tokens on whitespace, or stopped before or inside the required
    # key, once ended unparsable (found on a GPU, whose samples differ from the CPU's).
    for text in decode(tiny_host, [JsonOnly()], max_new_tokens=budget, seed=seed):
        assert "answer" in json.loads(text), text


@pytest.mark.parametrize(
    "constraint",
    [
        ListFormat("bullet", 3),
        ListFormat("numbered", 4),
        ListFormat("bullet"),
        ListFormat("bullet", 1),
    ],
    ids=["3-bullets", "4-numbered", "bullets", "1-bullet"],
)
def test_exactly_n_list_items(tiny_host, constraint):
    assert_kept(decode(tiny_host, [constraint], max_new_tokens=48), [constraint])


def test_list_with_a_sign_off_and_a_title(tiny_host):
    constraints = [ListFormat("bullet", 2), SignOff("Sam")]
    assert_kept(decode(tiny_host, constraints, max_new_tokens=48), constraints)
    assert_kept(decode(tiny_host, [TitleLine()], max_new_tokens=40), [TitleLine()])


def test_free_rows_in_a_constrained_batch_are_untouched(tiny_host):
    ids = tiny_host.chat_ids(PROMPT)
    params = SamplingParams(max_new_tokens=20)
    alone = BatchGeneration(tiny_host, [ids], params).run()[0].text
    processor = ConstraintProcessor(tiny_host, [None, [Case("lower")]], 20)
    rows = BatchGeneration(tiny_host, [ids, ids], params, processors=[processor]).run()
    assert rows[0].text == alone


def test_an_opening_longer_than_the_budget_is_cut_and_reported(tiny_host):
    constraints = [StartPhrase("Absolutely wonderful question my friend")]
    texts = decode(tiny_host, constraints, max_new_tokens=3, rows=1)
    assert not verify(texts[0], constraints)[0].passed
