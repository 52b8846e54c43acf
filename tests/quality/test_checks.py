"""The shared quality check: degenerate signs (batch and incremental), fluency under a
model, relevance, and the report an eval aggregates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from persona_sdk.errors import InvalidInputError
from persona_sdk.quality import (
    EMPTY,
    EMPTY_LIST_ITEMS,
    REPEATED_LINE,
    REPETITIVE,
    RESTATES_REQUEST,
    DegenerationMonitor,
    LogprobTracker,
    QualityReport,
    aggregate,
    assess,
    checks,
    degenerate_reasons,
    is_degenerate,
    mean_logprob,
    relevance,
    score_replies,
    token_logprobs,
)
from tests.helpers import build_tiny_model

SLEEP = "Give me tips to sleep better."

# The two broken replies of issue 18 (ana in the demo), then other hand-written breakage.
EMPTY_ITEMS = "\n".join(f"- {i}." for i in range(1, 11))
REVISED = "\n".join(["Here's a revised version of your request:"] * 4)
BROKEN = {
    "ten empty items": (EMPTY_ITEMS, {EMPTY_LIST_ITEMS, EMPTY}),
    "revised four times": (REVISED, {RESTATES_REQUEST, REPEATED_LINE, REPETITIVE}),
    "revised four times, one line": (REVISED.replace("\n", " "), {RESTATES_REQUEST, REPETITIVE}),
    "revised, then the request": (
        "Here's a revised version of your request:\nGive me tips to sleep better.",
        {RESTATES_REQUEST},
    ),
    "the request copied": ("Give me tips to sleep better.", {RESTATES_REQUEST}),
    "one sentence looping": ("I can help with that. " * 8, {REPEATED_LINE, REPETITIVE}),
    "a loop after a fine start": (
        "Sleep matters for your health and mood, and a few habits make a big difference "
        "for almost everyone. " + "and the night and the night " * 12,
        {REPETITIVE},
    ),
    "a list repeating its item": (
        "1. Keep a regular schedule.\n"
        + "".join(f"{i}. Use a robust routine to wind down.\n" for i in range(2, 6)),
        {REPEATED_LINE},
    ),
    "blank": ("  \n ", {EMPTY}),
    "code repeating a line": (
        "```python\n" + "print('hello world')\n" * 6 + "```",
        {REPEATED_LINE},
    ),
}

FLUENT = {
    "prose": (
        "Keep a regular sleep schedule, even on weekends, so your body learns when to wind "
        "down. Avoid caffeine after lunch and screens in the last hour before bed. A cool, "
        "dark, quiet room helps too, and if you can't fall asleep within twenty minutes, get "
        "up and read something calm until you feel drowsy."
    ),
    "bullets": (
        "Here are a few tips:\n\n- Go to bed and wake up at the same time every day.\n"
        "- Avoid caffeine after 2 pm.\n- Keep your bedroom cool, dark and quiet.\n"
        "- Put your phone away an hour before bed.\n- Get some sunlight in the morning."
    ),
    "numbered": (
        "1. Stick to a schedule: same bedtime, same wake time.\n2. Limit naps to 20 minutes.\n"
        "3. Exercise during the day, but not right before bed.\n"
        "4. Skip heavy meals late at night.\n"
        "5. Try a short breathing exercise when you lie down."
    ),
    "bold numbered with a blank line after each item": (
        "1. **Schedule**\n\nGo to bed at the same time.\n\n2. **Light**\n\nDim the lights.\n\n"
        "3. **Caffeine**\n\nNone after noon."
    ),
    "code": (
        "Here is a function that sorts a list:\n\n```python\ndef sort_numbers(xs):\n"
        "    return sorted(xs)\n\nprint(sort_numbers([3, 1, 2]))\n```\n\nIt returns a new list."
    ),
    "code with a grid of zeros": "```python\ngrid = [\n" + "    [0, 0, 0, 0, 0],\n" * 5 + "]\n```",
    "html without a fence": "".join(
        f'<div class="tip">\n<p>{tip}</p>\n</div>\n'
        for tip in ("Sleep early.", "No coffee after noon.", "Dim the lights.")
    ),
    "one-liner": "Sure.",
    "a number": "42",
    "an emoji": "👍",
    "email": (
        "Subject: Friday\n\nHi Sam,\n\nI'll be out on Friday afternoon for a doctor's "
        "appointment. I've moved our review to Monday at 10.\n\nBest regards,\nAna"
    ),
    "headings and a table": (
        "## Morning\n\nGet outside early.\n\n## Evening\n\n| Habit | When |\n|---|---|\n"
        "| No coffee | after 2 pm |\n| Screens off | 9 pm |\n| Lights low | 9 pm |"
    ),
    "the request quoted once, then answered": (
        "You asked: give me tips to sleep better. Keep a fixed bedtime, dim the lights an "
        "hour before, and skip late coffee."
    ),
    "a rewrite that calls itself revised": "Here's a revised version of your request: read more.",
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_replies_are_flagged_with_their_reasons(name):
    text, expected = BROKEN[name]
    reasons = degenerate_reasons(text, SLEEP)
    assert set(reasons) == expected
    assert reasons == [r for r in checks.REASONS if r in expected]  # a fixed order
    assert is_degenerate(text, SLEEP)


@pytest.mark.parametrize("name", sorted(FLUENT))
def test_fluent_replies_pass(name):
    # The rewrite is the one fluent case that needs a prompt asking for it.
    rewrite = "rewrite" in name
    assert (
        degenerate_reasons(FLUENT[name], "Improve my request: read books" if rewrite else SLEEP)
        == []
    )
    if not rewrite:  # nor do they need the prompt to pass
        assert degenerate_reasons(FLUENT[name]) == []


def test_restating_without_a_prompt_and_with_a_rework_request():
    assert degenerate_reasons("Here's a revised version of your request:") == [RESTATES_REQUEST]
    assert degenerate_reasons(REVISED) == [REPEATED_LINE, REPETITIVE, RESTATES_REQUEST]
    # A request to fix or repeat a passage it quotes is answered by copying it.
    assert degenerate_reasons("I have an apple.", "Fix the grammar: I has an apple.") == []
    assert degenerate_reasons("I love long walks.", "Repeat after me: I love long walks.") == []
    assert checks.asks_to_rework("Rewrite this:\nhello")
    assert not checks.asks_to_rework("How can I improve my sleep?")  # no passage to rework


def _chunks(text: str, size: int) -> list[str]:
    """The text so far after each decode step of ``size`` characters."""
    return [text[:end] for end in range(size, len(text), size)] + [text]


ALL = {
    **{k: (v[0], SLEEP) for k, v in BROKEN.items()},
    **{k: (v, SLEEP) for k, v in FLUENT.items()},
}
ALL["a rewrite that calls itself revised"] = (
    FLUENT["a rewrite that calls itself revised"],
    "Improve my request: read books",
)


@pytest.mark.parametrize("size", [1, 3, 7, 50])
@pytest.mark.parametrize("name", sorted(ALL))
def test_monitor_fed_step_by_step_agrees_with_the_batch_check(name, size):
    text, prompt = ALL[name]
    monitor = DegenerationMonitor(prompt)
    found = []
    for so_far in _chunks(text, size):
        found += monitor.update(so_far)
    assert len(found) == len(set(found))  # each reason reported once, by the call that found it
    assert sorted(found, key=checks.REASONS.index) == monitor.reasons
    assert monitor.finish(text) == degenerate_reasons(text, prompt)
    if name in FLUENT:
        assert not found and monitor.tripped_at is None


@pytest.mark.parametrize(
    ("text", "reason", "prefix"),
    [
        (EMPTY_ITEMS, EMPTY_LIST_ITEMS, "- 1.\n- 2.\n- 3.\n"),
        (REVISED, RESTATES_REQUEST, "\n".join(REVISED.splitlines()[:2]) + "\n"),
        ("I can help with that. " * 8, REPEATED_LINE, "I can help with that. " * 3),
    ],
)
def test_monitor_trips_as_soon_as_the_sign_is_complete(text, reason, prefix):
    monitor = DegenerationMonitor(SLEEP)
    for so_far in _chunks(text, 2):
        if monitor.update(so_far):
            break
    assert reason in monitor.reasons
    assert monitor.tripped_at == len(prefix)


def test_monitor_reads_each_character_once(monkeypatch):
    read = {"_scan": 0, "_sentence": 0}
    for name in read:
        real = getattr(DegenerationMonitor, name)

        def counted(self, text, _real=real, _name=name):
            read[_name] += len(text)
            return _real(self, text)

        monkeypatch.setattr(DegenerationMonitor, name, counted)
    text = (FLUENT["prose"] + "\n" + FLUENT["numbered"] + "\n") * 20
    monitor = DegenerationMonitor(SLEEP)
    for so_far in _chunks(text, 4):
        monitor.update(so_far)
    # O(new text) per call: no character is looked at twice, whatever the reply's length.
    assert read["_scan"] <= len(text) and read["_sentence"] <= len(text)
    assert monitor.finish(text) == [REPEATED_LINE, REPETITIVE]  # twenty copies of one answer


def test_monitor_waits_for_an_incomplete_character_and_tolerates_a_cut():
    monitor = DegenerationMonitor(None)
    assert monitor.update("Caf\ufffd") == []  # a UTF-8 character still arriving
    monitor.update("Café is closed. Caf\ufffd")
    assert monitor.finish("Café is closed. Café opens at nine.") == []
    assert monitor.update("anything more ") == [] and monitor.finish("") == []
    cut = DegenerationMonitor(None)
    cut.update("Dim the lights. STOP here and ")
    assert cut.finish("Dim the lights.") == []  # a stop string shortened the text


# -- fluency ---------------------------------------------------------------------------


def _hand_logprob(row: torch.Tensor, token: int) -> float:
    values = [float(v) for v in row.double()]
    return values[token] - math.log(sum(math.exp(v) for v in values))


def test_mean_logprob_equals_a_hand_computation():
    torch.manual_seed(0)
    logits = torch.randn(5, 11) * 3
    ids = [3, 0, 10, 3, 7]
    hand = sum(_hand_logprob(logits[t], ids[t]) for t in range(5)) / 5
    assert mean_logprob(logits, ids) == pytest.approx(hand, abs=1e-5)
    assert mean_logprob(logits.half(), ids) == pytest.approx(hand, abs=0.05)  # any dtype in
    assert math.isnan(mean_logprob(logits[:0], []))
    with pytest.raises(InvalidInputError):
        token_logprobs(logits, [1, 2])


def test_logprob_tracker_sums_only_active_rows():
    torch.manual_seed(1)
    steps = [torch.randn(3, 7) for _ in range(3)]
    tokens = [torch.tensor([1, 2, 3]), torch.tensor([4, 5, 6]), torch.tensor([0, 0, 0])]
    active = [None, torch.tensor([True, False, True]), torch.tensor([True, False, False])]
    tracker = LogprobTracker(3)
    for logits, toks, on in zip(steps, tokens, active):
        tracker.add(logits, toks, on)
    lp = [[_hand_logprob(s[r], int(t[r])) for r in range(3)] for s, t in zip(steps, tokens)]
    expected = [(lp[0][0] + lp[1][0] + lp[2][0]) / 3, lp[0][1], (lp[0][2] + lp[1][2]) / 2]
    assert tracker.mean() == pytest.approx(expected, abs=1e-5)
    assert math.isnan(LogprobTracker(1).mean()[0])


@pytest.fixture(scope="module")
def tiny_lm():
    """A random two-layer Llama over 50 token ids: no tokenizer needed."""
    return build_tiny_model(50)


def test_score_replies_equals_a_hand_computation(tiny_lm):
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14], [20, 21]]
    replies = [[30, 31, 32, 33], [34], [35, 36, 37, 38, 39, 40, 41], []]
    hand = []
    for prompt, reply in zip(prompts[:3], replies[:3]):  # one unpadded sequence at a time
        with torch.no_grad():
            logits = tiny_lm(input_ids=torch.tensor([prompt + reply])).logits[0]
        rows = logits[len(prompt) - 1 : len(prompt) + len(reply) - 1]
        hand.append(sum(_hand_logprob(rows[t], reply[t]) for t in range(len(reply))) / len(reply))
    for batch_size in (1, 2, 8):  # padding and batching change nothing
        scores = score_replies(tiny_lm, prompts, replies, batch_size=batch_size)
        assert scores[:3] == pytest.approx(hand, abs=1e-4)
        assert math.isnan(scores[3])
    with pytest.raises(InvalidInputError):
        score_replies(tiny_lm, [[]], [[1]])
    with pytest.raises(InvalidInputError):
        score_replies(tiny_lm, [[1]], [[1], [2]])


# -- relevance and reports ---------------------------------------------------------------


class _Encoder:
    """Two topics, one axis each; not unit norm, to check the renormalisation."""

    def __init__(self):
        self.seen: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.seen += texts
        return np.array([[3.0, 0.0] if "sleep" in t.lower() else [0.0, 2.0] for t in texts])


def test_relevance_is_a_cosine_and_an_empty_reply_scores_zero():
    encode = _Encoder()
    prompts = [SLEEP, SLEEP, SLEEP, "Tax tips?"]
    replies = ["Sleep early.", "Taxes are due.", " ", "Sleep early."]
    assert relevance(encode, prompts, replies).tolist() == [1.0, 0.0, 0.0, 0.0]
    assert encode.seen == [SLEEP, "Tax tips?", "Sleep early.", "Taxes are due.", "Sleep early."]
    assert relevance(encode, [SLEEP], [""]).tolist() == [0.0]
    with pytest.raises(InvalidInputError):
        relevance(encode, [SLEEP], [])


def test_reports_and_their_aggregate():
    prompts = [SLEEP, SLEEP, SLEEP]
    replies = [FLUENT["prose"], EMPTY_ITEMS, ""]
    reports = assess(prompts, replies, encode=_Encoder(), logprobs=[-1.5, -4.0, math.nan])
    assert [r.degenerate for r in reports] == [False, True, True]
    assert reports[1].reasons == [EMPTY, EMPTY_LIST_ITEMS]
    assert [r.nll_per_token for r in reports] == [1.5, 4.0, None]
    assert reports[0].relevance == 1.0 and reports[2].relevance == 0.0
    assert reports[0].to_dict() == {
        "degenerate": False,
        "reasons": [],
        "nll_per_token": 1.5,
        "relevance": 1.0,
        "words": len(FLUENT["prose"].split()),
    }
    summary = aggregate(reports)
    assert summary["n"] == 3 and summary["degenerate_rate"] == pytest.approx(2 / 3)
    assert summary["nll_per_token"] == pytest.approx(2.75)
    assert summary["relevance"] == pytest.approx(1 / 3)
    assert summary["reasons"] == {EMPTY: 2, EMPTY_LIST_ITEMS: 1}
    bare = assess([SLEEP], ["Sure."])[0]
    assert bare == QualityReport(degenerate=False, reasons=[], words=1)
    assert aggregate([bare])["nll_per_token"] is None and aggregate([])["degenerate_rate"] is None
