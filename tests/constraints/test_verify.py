"""Verifying hand-written replies against constraints, and the counting underneath."""

from __future__ import annotations

import json

import pytest

from persona_sdk.constraints import (
    CONSTRAINT_TYPES,
    BannedChars,
    Case,
    Constraint,
    ConstraintResult,
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
    count_sentences,
    count_words,
    parse_rule,
    verify,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello world", 2),
        ("Use e.g. 3.5 cups, i.e. a lot.", 7),
        ("- First point\n- Second point\n1. Third point", 6),
        ("## Sleep tips\n**Dark** rooms help — really.", 6),
        ("don't state-of-the-art https://x.io/a?b=1", 3),
        ("Great job 😀 !!! - —", 2),
        ("", 0),
        ("```python\nprint(1)\n```", 1),
    ],
)
def test_count_words(text: str, expected: int) -> None:
    assert count_words(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One. Two! Three? Four", 4),
        ("Use spices, e.g. cumin. It costs 3.5 dollars.", 2),
        ("Dr. Smith met J. K. Rowling at 9 a.m. Then they left.", 2),
        ("Bring fruit, etc. and water.", 1),
        ("Bring fruit etc. Then rest.", 2),
        ("See rule No. 5 today.", 1),
        ("well... maybe. then again, no.", 2),
        ("hi there. how are you?", 2),
        ("Tips:\n- Sleep early\n- Drink water\n- Walk daily", 4),
        ("# Title\n\nBody sentence here.", 2),
        ("Done! 😀", 1),
        ('He said "stop." Then he left.', 2),
        ("", 0),
    ],
)
def test_count_sentences(text: str, expected: int) -> None:
    assert count_sentences(text) == expected


def check(text: str, constraint: Constraint) -> ConstraintResult:
    [result] = verify(text, [constraint])
    assert result.constraint == constraint and result.detail
    return result


# (constraint, replies that pass, replies that fail)
REPLIES: list[tuple[Constraint, list[str], list[str]]] = [
    (MaxWords(5), ["Sleep seven to nine hours.", "- Sleep\n- Eat\n- Walk", "E.g. 3.5 hours."],
     ["Sleep seven to nine hours every night.", "One two three four five six"]),
    (MaxSentences(1), ["Sleep well, e.g. eight hours.", "Yes 😀", "It costs 3.5 dollars."],
     ["Sleep well. Eat well.", "Tips:\n- Sleep", "Hi! Sleep well."]),
    (Case("lower"), ["all lowercase here, 3.5 ok.", "no caps 😀"],
     ["Not lowercase", "ok, I think"]),
    (Case("upper"), ["ALL CAPS HERE!", "OK 3.5"], ["ALL CAPS eXCEPT"]),
    (BannedChars("comma"), ["No commas here.", "Numbers like 3.5 are fine"], ["Yes, sir.", "Ja，"]),
    (BannedChars("exclamation"), ["Calm reply.", "Really?"], ["Wow!", "Great‼"]),
    (BannedChars("emoji"), ["Plain text — with dashes → arrows.", "© 2024"],
     ["Great 😀", "Nice 👍🏽", "Love it ❤️", "Flags 🇫🇷", "Done ✅"]),
    (BannedChars("em_dash"), ["Use a hyphen - or an en dash – instead."], ["This — that"]),
    (ForbiddenWords(("delve",)), ["Let us dig in.", "Delaware is a state."],
     ["Let us delve in.", "DELVES deep", "We delved.", "Delving now."]),
    (ForbiddenWords(("as an AI",)), ["As a model, I think so."], ["As an  AI, I can't."]),
    (ForbiddenWords(("I'm",)), ["I am here."], ["I\u2019m here.", "I'm here."]),
    (RequiredWords(("Acme", "thank you")), ["Thank you for choosing ACME.", "acme: thank you"],
     ["Thank you.", "Acmes rule"]),
    (StartPhrase("Sure"), ["Sure, here it is.", "sure thing", "**Sure!** Here.", "  Sure."],
     ["Surely not.", "Okay, sure.", ""]),
    (StartPhrase("Hi Sam"), ["Hi  Sam, welcome."], ["Hi Samantha"]),
    (EndPhrase("Hope this helps"), ["Here it is. Hope this helps!", "hope this helps."],
     ["Hope this helps you.", "Here. I hope this helps me"]),
    (EndPhrase("Cheers!"), ["Bye. Cheers!"], ["Bye. Cheers."]),
    (EndsWithQuestion(), ["What do you think?", "Want more? 😀", "Ready?**", '"Why?"'],
     ["I think so.", "Is it? Yes."]),
    (SignOff("Sam"), ["Here you go.\n\nSam", "Here you go.\n— Sam", "Here.\nBest,\nSam",
                      "Here.\nCheers, Sam!"],
     ["Sam", "Here you go, Sam.", "Here.\nSamantha", "Here.\nI was told this by my friend Sam"]),
    (SignOff("Best, Sam"), ["Note.\nBest, Sam", "Note.\nBest,\nSam"], ["Note.\nSam"]),
    (Postscript(), ["Body.\n\nP.S. Drink water.", "Body.\nPS: more soon", "Body.\n**P.S.** Hi"],
     ["Body only.", "Body.\n\nP.S. Drink.\n\nAnother paragraph.", "Hops are nice."]),
    (Postscript("stay curious"), ["Body.\n\nP.S. Stay curious!"], ["Body.\n\nP.S. Stay safe."]),
    (ListFormat("bullet"), ["- one\n- two", "Tips:\n\n* one\n* two\n\nWant more?",
                            "• a\n  more on a\n• b", "- a\n  - sub\n- b"],
     ["- only one", "Prose only.", "1. one\n2. two", "- a\nmiddle text\n- b",
      "A\nB\nC\n- a\n- b", "- a\n- b\n1. c"]),
    (ListFormat("bullet", 3), ["- a\n- b\n- c", "Here:\n- a\n  - sub\n- b\n- c"],
     ["- a\n- b", "- a\n- b\n- c\n- d"]),
    (ListFormat("numbered", 2), ["1. a\n2) b"], ["- a\n- b", "1. a"]),
    (TitleLine(), ["Sleep Tips\n\nSleep early.", "# Why we sleep?\nBecause.", "**Tips**\nBody"],
     ["Sleep early. Eat well.", "Sleep early.\nMore.", "Hi Sam,\nBody", "Just a title",
      "- Item\n- Item"]),
    (QuoteWrap(), ['"Quoted reply."', "\u201cCurly quotes.\u201d", '  "Padded"  '],
     ['"Not closed', 'Not "wrapped".', '"Quoted".']),
    (JsonOnly(), ['{"a": 1}', '  [1, 2]\n', '{"tips": ["a", "b"]}'],
     ['```json\n{"a": 1}\n```', 'Here: {"a": 1}', '"just a string"', "{bad}"]),
    (Greeting(True), ["Hi Sam! Here.", "Hello, friend.", "Good morning!", "**Hey** there"],
     ["Sure, here.", "Highly likely."]),
    (Greeting(False), ["Sure, here.", "Highlights: none."], ["Hello! Here.", "hey, ok"]),
]  # fmt: skip

PASSES = [(c, t) for c, ok, _ in REPLIES for t in ok]
FAILS = [(c, t) for c, _, bad in REPLIES for t in bad]


@pytest.mark.parametrize(("constraint", "text"), PASSES)
def test_replies_that_pass(constraint: Constraint, text: str) -> None:
    assert check(text, constraint).passed


@pytest.mark.parametrize(("constraint", "text"), FAILS)
def test_replies_that_fail(constraint: Constraint, text: str) -> None:
    assert not check(text, constraint).passed


def test_every_kind_is_verified_both_ways() -> None:
    kinds_ok = {c.kind for c, _ in PASSES}
    kinds_bad = {c.kind for c, _ in FAILS}
    assert kinds_ok == kinds_bad == set(CONSTRAINT_TYPES)


def test_results_keep_order_and_explain_failures() -> None:
    constraints = [MaxWords(3), Case("lower"), BannedChars("emoji")]
    results = verify("Way Too many words here 😀", constraints)
    assert [r.constraint for r in results] == constraints
    assert [r.passed for r in results] == [False, False, False]
    assert results[0].detail == "5 words (limit 3)"
    assert "Way" in results[1].detail
    assert "😀" in results[2].detail
    data = results[0].to_dict()
    assert data == {
        "constraint": {"kind": "max_words", "limit": 3},
        "passed": False,
        "detail": "5 words (limit 3)",
    }
    json.dumps([r.to_dict() for r in results])


def test_length_limits_do_not_count_the_parts_other_rules_add() -> None:
    reply = "Friday Update\n\nThe report ships on Friday.\n\nBest,\nSam\n\nP.S. Coffee is on me."
    constraints = [TitleLine(), MaxSentences(1), MaxWords(6), SignOff("Sam"), Postscript()]
    assert [r.passed for r in verify(reply, constraints)] == [True] * 5
    # alone, the same limits count everything
    assert [r.passed for r in verify(reply, [MaxSentences(1), MaxWords(6)])] == [False, False]


def test_readme_alice_rules_on_hand_written_replies() -> None:
    constraints = parse_rule("Answer in one sentence.") + parse_rule("Keep it under 100 words")
    assert constraints == [MaxSentences(1), MaxWords(100)]
    good = "Hi Dana, the Friday report will be ready by noon, e.g. before the 3.5-hour review."
    bad = "Hi Dana,\n\nThe report is late. It will be ready Friday.\n\nThanks!"
    assert all(r.passed for r in verify(good, constraints))
    assert [r.passed for r in verify(bad, constraints)] == [False, True]


def test_the_issue_rules_end_to_end() -> None:
    rules = [
        "Keep every reply under 30 words.",
        "Always answer with a bulleted list.",
        "Start every reply with the word 'Sure'.",
        "End every reply with a question to me.",
        "Write only in lowercase letters.",
    ]
    constraints = [c for rule in rules for c in parse_rule(rule)]
    reply = "sure, here goes:\n- sleep at 10 p.m.\n- skip coffee after noon\nwant more tips?"
    assert [r.passed for r in verify(reply, constraints)] == [True] * 5
    shouty = "Sure! Here are tips.\n\nSleep well. What else?"
    assert [r.passed for r in verify(shouty, constraints)] == [True, False, True, True, False]
