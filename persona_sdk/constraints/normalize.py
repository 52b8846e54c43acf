"""Rule text → clauses the parser's patterns can read.

A rule is lower-cased, curly quotes are straightened, quoted spans are replaced by
placeholders (``§0§``) so that their content never matches a pattern and keeps its case,
number words become digits ("twenty-five" → "25") and the text is split into clauses, each
judged on its own (a hedge in one clause does not void another).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_UNITS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
_SCALES = {"hundred": 100, "thousand": 1000}
_NUMBER_WORD = "|".join([*_UNITS, *_TENS, *_SCALES])
_NUMBER_RUN = re.compile(
    rf"\b(?:a\s+|an\s+)?(?:{_NUMBER_WORD})(?:(?:[\s-]+(?:and[\s-]+)?)(?:{_NUMBER_WORD}))*\b"
)
_FIXED_NUMBERS = (
    (re.compile(r"\b(?:a\s+)?single(?=[\s-]+(?:sentence|word|line|paragraph|bullet|item))"), "1"),
    (re.compile(r"\ba\s+couple\s+of\b|\ba\s+couple\b|\bcouple\s+of\b|\ba\s+pair\s+of\b"), "2"),
    (re.compile(r"\ba\s+dozen\b|\bdozen\b"), "12"),
)

PLACEHOLDER = re.compile(r"§(\d+)§")
_QUOTED = re.compile(r"\"([^\"\n]{1,200})\"|(?<![\w])'([^'\n]{1,200})'(?![\w])")
_CURLY = str.maketrans({"“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "‘": "'", "’": "'"})
_ABBREVIATIONS = (
    (re.compile(r"\bp\.\s?s\.?(?=\s|$|:|,)|\bp\.\s?s\b|\bps\b(?=[\s.:,]|$)"), "postscript"),
    (re.compile(r"\be\.g\.,?"), "eg"),
    (re.compile(r"\bi\.e\.,?"), "ie"),
    (re.compile(r"\betc\."), "etc"),
)
_CLAUSE_SPLIT = re.compile(r"(?<=[.!?;])\s+|\n+|,?\s+but\s+|,?\s+however,?\s+|\s+-\s+")


@dataclass(frozen=True)
class Clause:
    """One clause of a rule: lower-cased text with ``§i§`` placeholders, the quotes, and
    the whole rule as written (to recover the case of an unquoted name)."""

    text: str
    quotes: tuple[str, ...]
    source: str = ""

    def quote(self, token: str) -> str:
        """The original text behind a ``§i§`` placeholder."""
        match = PLACEHOLDER.fullmatch(token.strip())
        if match is None:
            raise KeyError(token)
        return self.quotes[int(match.group(1))]

    def original(self, lowered: str) -> str:
        """``lowered`` (a span of this clause) with the case the rule was written in."""
        pattern = r"\s+".join(re.escape(w) for w in lowered.split())
        match = re.search(rf"(?<!\w){pattern}(?!\w)", self.source, re.IGNORECASE)
        return match.group(0) if match else lowered


def _number_value(words: list[str]) -> int | None:
    total, current, seen, previous = 0, 0, False, ""
    for word in words:
        if word == "and" and previous not in _SCALES:
            return None  # "one and two" is two numbers, not three
        previous = word
        if word in ("a", "an", "and"):
            continue
        seen = True
        if word in _UNITS:
            current += _UNITS[word]
        elif word in _TENS:
            current += _TENS[word]
        elif word == "hundred":
            current = (current or 1) * 100
        else:  # thousand
            total += (current or 1) * 1000
            current = 0
    return total + current if seen else None


def _digits(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        words = re.split(r"[\s-]+", match.group(0))
        has_article = words[0] in ("a", "an")
        if has_article and not any(w in _SCALES for w in words):
            # "a one-sentence answer": keep the article, convert the rest
            return words[0] + " " + str(_number_value(words[1:]))
        value = _number_value(words)
        return match.group(0) if value is None else str(value)

    text = re.sub(r"(\d),(\d{3})\b", r"\1\2", text)
    for pattern, digits in _FIXED_NUMBERS:
        text = pattern.sub(digits, text)
    return _NUMBER_RUN.sub(replace, text)


def mask_quotes(text: str) -> tuple[str, tuple[str, ...]]:
    """Replace quoted spans with ``§i§`` placeholders; return the text and the spans."""
    quotes: list[str] = []

    def replace(match: re.Match[str]) -> str:
        inner = (match.group(1) if match.group(1) is not None else match.group(2)).strip()
        if not inner:
            return match.group(0)
        quotes.append(inner)
        return f"§{len(quotes) - 1}§"

    return _QUOTED.sub(replace, text), tuple(quotes)


def clauses(rule: str) -> list[Clause]:
    """Split a rule into normalised clauses (see the module docstring)."""
    text = rule.translate(_CURLY)
    masked_source, quotes = mask_quotes(text)
    masked = masked_source.lower()
    for pattern, replacement in _ABBREVIATIONS:
        masked = pattern.sub(replacement, masked)
    masked = _digits(masked)
    parts = (" ".join(p.split()).strip(" ,:") for p in _CLAUSE_SPLIT.split(masked))
    return [Clause(p, quotes, masked_source) for p in parts if p]
