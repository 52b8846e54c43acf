"""Checkable rules as typed constraints: parse them from rule text, merge, verify replies.

>>> from persona_sdk.constraints import parse_rule, verify
>>> parse_rule("Keep it under fifty words, and never use emojis.")
[MaxWords(limit=50), BannedChars(category='emoji')]
>>> [r.passed for r in verify("Short and sweet.", parse_rule("No more than 5 words"))]
[True]
"""

from persona_sdk.constraints.counting import count_sentences, count_words, sentences, words
from persona_sdk.constraints.merge import conflicts, merge
from persona_sdk.constraints.parse import parse_rule
from persona_sdk.constraints.types import (
    BANNED_CHARACTERS,
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
    constraint_from_dict,
    is_emoji,
)
from persona_sdk.constraints.verify import ConstraintResult, verify

__all__ = [
    "BANNED_CHARACTERS",
    "CONSTRAINT_TYPES",
    "BannedChars",
    "Case",
    "Constraint",
    "ConstraintResult",
    "EndPhrase",
    "EndsWithQuestion",
    "ForbiddenWords",
    "Greeting",
    "JsonOnly",
    "ListFormat",
    "MaxSentences",
    "MaxWords",
    "Postscript",
    "QuoteWrap",
    "RequiredWords",
    "SignOff",
    "StartPhrase",
    "TitleLine",
    "conflicts",
    "constraint_from_dict",
    "count_sentences",
    "count_words",
    "is_emoji",
    "merge",
    "parse_rule",
    "sentences",
    "verify",
    "words",
]
