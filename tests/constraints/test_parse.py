"""Rule text → typed constraints: phrasing variants, look-alikes that stay prompt-only,
dict round-trips and merge semantics. Pure Python, no models."""

from __future__ import annotations

import pytest

from persona_sdk.constraints import (
    CONSTRAINT_TYPES,
    BannedChars,
    Case,
    Constraint,
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
    conflicts,
    constraint_from_dict,
    merge,
    parse_rule,
)
from persona_sdk.errors import InvalidInputError

# (expected constraint, phrasings that must each parse to exactly that one constraint)
VARIANTS: list[tuple[Constraint, list[str]]] = [
    (MaxWords(50), [
        "Never more than 50 words.", "Keep it under fifty words.", "Max 50 words.",
        "50 words or fewer.", "No longer than 50 words.", "Don't write more than fifty words",
        "Limit replies to 50 words", "50-word limit", "Word limit: 50", "Never exceed 50 words",
        "Keep replies to fifty words or less", "Cap responses at 50 words",
        "Maximum of 50 words per reply", "Stay within 50 words", "Don't go over 50 words",
    ]),
    (MaxWords(25), ["Be brief, no more than twenty-five words", "25 words max", "Up to 25 words",
                    "At most twenty five words", "Keep each reply below 25 words"]),
    (MaxWords(100), ["Keep it under 100 words", "Keep it under a hundred words",
                     "Keep emails to my manager under 100 words", "one hundred words at most",
                     "Use fewer than 100 words"]),
    (MaxSentences(1), [
        "Answer in one sentence.", "Reply in a single sentence.", "One sentence only.",
        "No more than one sentence.", "Keep it to 1 sentence", "Single-sentence answers, please",
        "Respond with a one-sentence reply", "Answer in a sentence.",
    ]),
    (MaxSentences(2), ["At most two sentences", "Max 2 sentences", "A sentence or two",
                       "Never write more than two sentences", "Keep it brief: 2 sentences max.",
                       "Answer in two sentences or fewer", "One or two sentences"]),
    (Case("lower"), [
        "Write only in lowercase letters.", "use lowercase only", "all lower case",
        "No capital letters.", "Never use capitals", "Don't capitalize anything",
        "Reply in all lowercase", "Never use uppercase letters",
    ]),
    (Case("upper"), ["ALL CAPS", "Answer in uppercase only", "Write everything in capital letters",
                     "Reply in all caps", "Capital letters only", "Use only uppercase"]),
    (BannedChars("comma"), ["No commas.", "Never use commas", "Avoid commas",
                            "Don't use any commas in your replies", "Write without commas",
                            "Do not use a single comma"]),
    (BannedChars("exclamation"), [
        "No exclamation marks!", "Never use exclamation points", "Don't use \"!\"",
        "Stop using exclamation marks", "Exclamation marks are banned", "Avoid exclamations",
    ]),
    (BannedChars("emoji"), ["No emojis.", "Never use emojis", "Don't put emojis in your replies",
                            "Avoid emoji", "Keep it emoji-free", "Zero emojis please",
                            "No emojis when you reply to me"]),
    (BannedChars("em_dash"), ["No em dashes", "Never use em-dashes", "Avoid the em dash",
                              "Don't use em dashes", "Stop using em-dashes"]),
    (BannedChars("semicolon"), ["No semicolons", "Never use semicolons", "Avoid semi-colons",
                                "Don't use any semicolons", "Write without semicolons"]),
    (ForbiddenWords(("delve",)), [
        'Never say "delve".', "Don't use the word delve.", 'Avoid the word "delve"',
        "Ban the word 'delve'", 'Stop saying "delve"', 'The word "delve" is banned',
        "Do not write \u201cdelve\u201d",
    ]),
    (ForbiddenWords(("delve", "tapestry")), [
        'Never use the words "delve" or "tapestry"', "avoid the words delve and tapestry",
        "Don't say 'delve' or 'tapestry'", '"delve" and "tapestry" are off-limits',
        'No "delve", no "tapestry"',
    ]),
    (RequiredWords(("Acme",)), [
        'Always mention "Acme".', 'Include the word "Acme" in every reply',
        "Make sure to say 'Acme'", 'Every reply must contain "Acme"', 'Use the keyword "Acme"',
        'Mention the name "Acme"',
    ]),
    (StartPhrase("Sure"), [
        "Start every reply with the word 'Sure'.", 'Begin every answer with "Sure"',
        'Always open with "Sure"', "Your first word should be 'Sure'",
        "Start your replies with the word Sure.", 'Say "Sure" first',
        'Every reply must begin with "Sure"',
    ]),
    (EndPhrase("Hope this helps"), [
        'End every reply with "Hope this helps".', 'Finish with the phrase "Hope this helps"',
        "Always close with 'Hope this helps'", 'Conclude each answer with "Hope this helps"',
        'Put "Hope this helps" at the end', 'Your last words should be "Hope this helps"',
    ]),
    (EndsWithQuestion(), [
        "End every reply with a question to me.", "Finish with a question",
        "Always close by asking me a question", "End with a follow-up question",
        "Your last sentence should be a question", "Ask me a question at the end",
    ]),
    (SignOff("Sam"), ["Sign as Sam.", "Sign off as Sam", 'Sign every reply with "Sam"',
                      "Sign your messages Sam", "Always sign as Sam from accounting",
                      "Sign your emails 'Sam'"]),
    (Postscript(), ["Always add a P.S.", "Include a postscript", "End with a P.S. line",
                    "Add a PS at the end", "Finish every reply with a P.S.",
                    "Append a short postscript"]),
    (ListFormat("bullet"), [
        "Always answer with a bulleted list.", "Use bullet points.",
        "Format replies as bullet points", "Reply in bullets", "Bullet points only",
        "Answer as a list of bullet points", "Write in bullet form",
    ]),
    (ListFormat("bullet", 3), [
        "Give me exactly 3 bullet points", "Use three bullets", "Answer in exactly three bullets",
        "Respond with 3 bullet points", "Always reply with three bullet points",
        "Format every answer as 3 bullets",
    ]),
    (ListFormat("numbered"), ["Make it a numbered list", "Use a numbered list",
                              "Always answer with numbered steps", "Reply with an ordered list",
                              "Format replies as a numbered list"]),
    (TitleLine(), [
        "Start every reply with a title.", "Give each answer a title",
        "Include a title line at the top", "Add a heading at the top of every reply",
        "Always begin with a short title", "Title every reply",
    ]),
    (QuoteWrap(), [
        "Wrap your entire reply in double quotation marks.", "Put your whole answer in quotes",
        "Enclose every response in quotation marks", "Surround your reply with double quotes",
        "Always reply inside quotation marks", "Wrap everything in quotes",
    ]),
    (JsonOnly(), [
        "Reply only in JSON.", "Always answer in valid JSON", "Respond with a JSON object only",
        "Output JSON only, no prose", "Your reply must be valid JSON",
        "Format every reply as JSON", "JSON only",
    ]),
    (Greeting(True), ["Always greet me.", "Start every reply with a greeting",
                      "Begin with a friendly greeting", "Greet me first", "Say hello first",
                      "Open each reply with a greeting"]),
    (Greeting(False), ["Don't greet me.", "No greetings.", "Skip the greeting",
                       "Never start with a greeting", "Don't say hello",
                       "Get straight to the point without greetings"]),
]  # fmt: skip

CASES = [(text, expected) for expected, texts in VARIANTS for text in texts]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[t for t, _ in CASES])
def test_phrasing_variants_parse_to_the_same_constraint(text: str, expected: Constraint) -> None:
    assert parse_rule(text) == [expected]


def test_every_type_has_at_least_five_variants() -> None:
    per_kind: dict[str, int] = {}
    for expected, texts in VARIANTS:
        per_kind[expected.kind] = per_kind.get(expected.kind, 0) + len(texts)
    assert set(per_kind) == set(CONSTRAINT_TYPES)
    assert min(per_kind.values()) >= 5


LOOK_ALIKES = [
    # vague or hedged length
    "Keep it short-ish", "Be concise", "Don't ramble", "Keep it brief", "Short answers please",
    "Try to be brief when possible", "Usually answer in one sentence",
    "Answer in one sentence unless I ask for more", "Keep it to about 50 words",
    "Around fifty words is good", "At least 50 words", "Write more than 100 words",
    "Use between 20 and 50 words", "Answer in 50 words",
    # limits on a part of the reply
    "Keep sentences under 20 words", "Each bullet should be no more than 10 words",
    "Limit titles to 8 words", "The summary should be under 50 words",
    "Keep paragraphs under 3 sentences", "End with one sentence of advice",
    "Add a one-sentence summary at the end", "Give me a 100-word summary",
    # case look-alikes
    "Don't use all caps", "Use lowercase for hashtags", "Lowercase is fine",
    "Capitalize proper nouns", "Start every sentence with a capital letter", "Use title case",
    "Never write in lowercase for names", "Mix upper and lower case",
    # character look-alikes
    "I don't mind emojis", "Emojis are fine", "Use fewer emojis", "Don't avoid emojis",
    "Don't use more than 3 emojis", "Use emojis sparingly", "Feel free to use exclamation marks",
    "No commas in numbers",
    # word look-alikes
    "Avoid jargon", "Never say sorry", 'Use the word "delve" sparingly', "Mention sources",
    'Say "use" instead of "utilize"', "Use simple words", "Use 'we' not 'I'",
    "Say 'Thanks' when I thank you", "Call me 'Boss'", "Never start sentences with 'And'",
    # start / end / sign-off look-alikes
    "Start with a summary", 'Don\'t start with "Sure"', "Don't end with a question",
    "Answer my question at the end", "Sign off politely", "Sign as the assistant",
    "Don't add a P.S.", "Start with the answer",
    # list / title / quote / json look-alikes
    "Use bullet points when listing steps", "Don't use bullet points", "Bullet points are fine",
    "Use fewer bullet points", "Keep bullet points short", "No more than 5 bullet points",
    "Start each bullet with a verb", "Use bullets for steps", "Include the title of the book",
    "Don't add a title", "Add a title to each section", "Quote your sources",
    "Put book titles in quotes", "Don't use quotation marks", "Wrap replies in single quotes",
    "Explain JSON simply", "Use JSON for code examples", "Don't reply in JSON",
    "When I ask for data, use JSON", "Include a JSON example",
    # no checkable content at all
    "Be formal", "Reply in English", "Explain things like I'm five", "",
]  # fmt: skip


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_rules_that_only_look_checkable_stay_prompt_only(text: str) -> None:
    assert parse_rule(text) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Use lowercase, no emojis, under 30 words",
            [MaxWords(30), Case("lower"), BannedChars("emoji")],
        ),
        (
            'Start with "Sure" and never say "delve".',
            [ForbiddenWords(("delve",)), StartPhrase("Sure")],
        ),
        ("Use bullet points and keep it under 50 words", [MaxWords(50), ListFormat("bullet")]),
        ("Answer in one sentence. Usually skip emojis.", [MaxSentences(1)]),
        ('Never use "!" or "😀"', [BannedChars("exclamation"), BannedChars("emoji")]),
        ('Add a P.S. saying "Stay curious"', [Postscript("Stay curious")]),
        ('Use the sign-off "Best, Sam"', [SignOff("Best, Sam")]),
        ('Start every reply with "Hi Sam"', [StartPhrase("Hi Sam")]),
        (
            "Always answer in one sentence, and start with 'Sure'",
            [MaxSentences(1), StartPhrase("Sure")],
        ),
        ("Write 'lol' at the end of every message", [EndPhrase("lol")]),
        ("End with 'Thanks!' and no emojis", [BannedChars("emoji"), EndPhrase("Thanks!")]),
        ("Under 40 words please, and lowercase only.", [MaxWords(40), Case("lower")]),
        ("KEEP IT UNDER 40 WORDS", [MaxWords(40)]),
    ],
)
def test_compound_and_parameterised_rules(text: str, expected: list[Constraint]) -> None:
    assert parse_rule(text) == expected


def test_quoted_text_keeps_its_case_and_never_matches_a_pattern() -> None:
    assert parse_rule('Always mention "No Emojis Inc"') == [RequiredWords(("No Emojis Inc",))]
    assert parse_rule("Sign as Sam Jones") == [SignOff("Sam Jones")]


@pytest.mark.parametrize("constraint", [c for c, _ in VARIANTS])
def test_to_dict_round_trips(constraint: Constraint) -> None:
    data = constraint.to_dict()
    assert data["kind"] == constraint.kind
    assert constraint_from_dict(data) == constraint
    assert isinstance(constraint.describe(), str) and constraint.describe()


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "nope"},
        {"kind": "max_words", "limit": 0},
        {"kind": "max_words"},
        {"kind": "case", "mode": "title"},
        {"kind": "banned_chars", "category": "vowels"},
        {"kind": "forbidden_words", "words": []},
        {"kind": "list_format", "style": "bullet", "count": 0},
        {"kind": "max_words", "limit": 5, "extra": 1},
    ],
)
def test_bad_dicts_raise_input_errors(bad: dict) -> None:
    with pytest.raises(InvalidInputError):
        constraint_from_dict(bad)


def test_merge_newest_wins_for_single_valued_kinds() -> None:
    assert merge([Case("lower"), MaxWords(50), Case("upper")]) == [MaxWords(50), Case("upper")]
    assert merge([MaxWords(50), MaxWords(100)]) == [MaxWords(100)]
    assert merge([Greeting(True), Greeting(False)]) == [Greeting(False)]
    assert merge([ListFormat("bullet"), ListFormat("bullet", 3)]) == [ListFormat("bullet", 3)]
    assert merge([MaxWords(50), MaxWords(50)]) == [MaxWords(50)]


def test_merge_keeps_compatible_constraints_in_order() -> None:
    kept = [MaxWords(50), Case("lower"), BannedChars("emoji"), BannedChars("comma"), TitleLine()]
    assert merge(kept) == kept
    assert merge([Greeting(True), StartPhrase("Hi there")]) == [
        Greeting(True),
        StartPhrase("Hi there"),
    ]
    assert merge([TitleLine(), ListFormat("bullet", 3)]) == [TitleLine(), ListFormat("bullet", 3)]


def test_merge_positions_have_one_owner() -> None:
    assert merge([EndPhrase("Cheers"), SignOff("Sam")]) == [SignOff("Sam")]
    assert merge([EndsWithQuestion(), Postscript()]) == [Postscript()]
    assert merge([SignOff("Sam"), Postscript()]) == [SignOff("Sam"), Postscript()]  # a letter
    assert merge([StartPhrase("Sure"), Greeting(True)]) == [Greeting(True)]
    assert merge([Greeting(False), StartPhrase("Hello friend")]) == [StartPhrase("Hello friend")]
    assert merge([ListFormat("bullet"), JsonOnly()]) == [JsonOnly()]
    assert merge([JsonOnly(), QuoteWrap()]) == [QuoteWrap()]
    assert merge([JsonOnly(), Case("upper")]) == [Case("upper")]
    assert merge([MaxSentences(1), ListFormat("bullet")]) == [ListFormat("bullet")]
    assert merge([ListFormat("bullet", 3), MaxSentences(3)]) == [
        ListFormat("bullet", 3),
        MaxSentences(3),
    ]


def test_merge_trims_words_both_forbidden_and_required() -> None:
    older = ForbiddenWords(("delve", "tapestry"))
    assert merge([older, RequiredWords(("Delve",))]) == [
        ForbiddenWords(("tapestry",)),
        RequiredWords(("Delve",)),
    ]
    assert merge([RequiredWords(("acme",)), ForbiddenWords(("ACME",))]) == [
        ForbiddenWords(("ACME",))
    ]


def test_merge_drops_a_forced_phrase_that_a_newer_ban_forbids() -> None:
    assert merge([SignOff("Best, Sam"), BannedChars("comma")]) == [BannedChars("comma")]
    assert merge([StartPhrase("Sure"), ForbiddenWords(("sure",))]) == [ForbiddenWords(("sure",))]
    assert merge([BannedChars("exclamation"), EndPhrase("Cheers!")]) == [EndPhrase("Cheers!")]
    # case never conflicts with a phrase: phrases compare case-insensitively
    assert not conflicts(Case("lower"), StartPhrase("Sure"))


def test_merge_of_parsed_rules_follows_the_rule_lifecycle() -> None:
    rules = ["Write only in lowercase.", "Keep it under 50 words", "Use ALL CAPS from now on"]
    merged = merge([c for rule in rules for c in parse_rule(rule)])
    assert merged == [MaxWords(50), Case("upper")]
