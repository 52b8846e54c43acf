"""Measures of a chat reply: words, sentences, list shape, greeting, title.

Counting is meant to agree with what a reader of a chat reply would say:

- a word is a whitespace-separated token holding at least one letter or digit, so
  "e.g.", "3.5", "don't", "state-of-the-art" and a URL are one word each, while list
  markers ("-", "1."), heading hashes, lone dashes and emoji are none; an em dash
  separates words;
- a sentence ends at ``.``, ``!``, ``?`` or an ellipsis followed by a space, or at a line
  break (a bullet item or a heading is a sentence of its own); "e.g.", "Dr.", "vs." and
  initials ("J. K.") do not end one, "etc." and "a.m." do only before a capital, "No."
  does not before a number, and decimals never split (no space after the point). A
  fragment with no letter or digit (an emoji) is no sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from persona_sdk.constraints.types import is_emoji

_MARKDOWN_PREFIX = re.compile(r"^\s*(?:#{1,6}\s+|>\s*|(?:[-*•+]|\d{1,3}[.)])\s+)")
_WORD_SPLIT = re.compile(r"\s+|—|―")
_HAS_ALNUM = re.compile(r"[^\W_]")
_FENCE = re.compile(r"^\s*```")
_TERMINATOR = re.compile(r"([.!?…]+)([\"'”’)\]*_]*)(?=\s|$)")
_NEVER_ENDS = frozenset(
    [
        "e.g",
        "i.e",
        "eg",
        "ie",
        "vs",
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "jr",
        "sr",
        "st",
        "cf",
        "approx",
        "fig",
        "al",
        "viz",
        "ca",
    ]
)
_ENDS_BEFORE_CAPITAL = frozenset(["etc", "a.m", "p.m", "inc", "ltd", "co", "u.s", "u.k"])
_ENDS_UNLESS_NUMBER = frozenset(["no", "nos", "vol", "p", "pp"])
_GREETING = re.compile(
    r"^(?:hi|hello|hey|hiya|howdy|greetings|good\s+(?:morning|afternoon|evening|day)|dear)\b",
    re.IGNORECASE,
)
_LEADING_NOISE = re.compile(r"^[\s#>*_\"'“‘(\[-]+")
LIST_ITEM = re.compile(r"^(?P<indent>[ \t]*)(?:(?P<bullet>[-*•+])|(?P<number>\d{1,3})[.)])\s+\S")


def words(text: str) -> list[str]:
    """The words of ``text`` as a reader would count them (see the module docstring)."""
    out: list[str] = []
    for line in text.splitlines():
        if _FENCE.match(line):
            continue
        line = _MARKDOWN_PREFIX.sub("", line)
        out.extend(t for t in _WORD_SPLIT.split(line) if _HAS_ALNUM.search(t))
    return out


def count_words(text: str) -> int:
    """Number of words in ``text``."""
    return len(words(text))


def _is_boundary(line: str, match: re.Match[str]) -> bool:
    before = line[: match.start()].split()
    previous = before[-1].lstrip("([\"'“‘*_").casefold() if before else ""
    after = line[match.end() :].lstrip()
    next_char = after[:1]
    marks = match.group(1)
    if marks == "." and previous:
        if previous in _NEVER_ENDS:
            return False
        if previous in _ENDS_BEFORE_CAPITAL:
            return next_char.isupper() or not next_char
        if previous in _ENDS_UNLESS_NUMBER and next_char.isdigit():
            return False
        if len(previous) == 1 and previous.isalpha() and before[-1].isupper():
            return not next_char.isupper()  # an initial ("J. K. Rowling")
    if "…" in marks or marks.startswith(".."):
        return next_char.isupper() or not next_char  # "well... maybe" goes on
    return True


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` (see the module docstring); each holds a letter or digit."""
    out: list[str] = []
    for raw in text.splitlines():
        if _FENCE.match(raw):
            continue
        line = _MARKDOWN_PREFIX.sub("", raw).strip()
        start = 0
        for match in _TERMINATOR.finditer(line):
            if _is_boundary(line, match):
                out.append(line[start : match.end()].strip())
                start = match.end()
        out.append(line[start:].strip())
    return [s for s in out if _HAS_ALNUM.search(s)]


def count_sentences(text: str) -> int:
    """Number of sentences in ``text``."""
    return len(sentences(text))


def strip_leading_noise(text: str) -> str:
    """``text`` without leading whitespace, markdown, opening quotes or emoji."""
    previous = None
    while previous != text:
        previous = text
        text = _LEADING_NOISE.sub("", text)
        while text and is_emoji(text[0]):
            text = text[1:]
    return text


def starts_with_greeting(text: str) -> bool:
    """True when ``text`` opens with a greeting ("Hi", "Hello Sam", "Good morning")."""
    return _GREETING.match(strip_leading_noise(text)) is not None


@lru_cache(maxsize=1024)
def word_pattern(word: str) -> re.Pattern[str]:
    """A case-insensitive whole-word pattern for a word or phrase.

    A single word of three letters or more also matches its plain inflections ("delve" →
    "delves", "delved", "delving"): someone who bans a word bans those too.
    """
    parts = [re.escape(p).replace("'", "['’]") for p in word.split()]
    body = r"\s+".join(parts)
    if len(parts) == 1 and word.isalpha() and len(word) >= 3:
        variants = [rf"{body}(?:s|es|d|ed|ing)?"]
        if word.endswith("e"):
            variants.append(re.escape(word[:-1]) + "ing")
        body = "(?:" + "|".join(variants) + ")"
    left = r"(?<!\w)" if re.match(r"\w", word) else ""
    right = r"(?!\w)" if re.search(r"\w$", word) else ""
    return re.compile(left + body + right, re.IGNORECASE)


@dataclass(frozen=True)
class ListShape:
    """Where a reply's top-level list items are, and what surrounds them."""

    bullets: int
    numbered: int
    before: int  # non-empty lines before the first item
    inside: int  # non-item, non-indented lines between the first and last item
    after: int  # non-empty, non-indented lines after the last item


def list_shape(text: str) -> ListShape:
    """The top-level list items of ``text`` (indented items are sub-items, not counted)."""
    lines = [line.expandtabs(4) for line in text.splitlines() if line.strip()]
    kinds: list[str] = []
    for line in lines:
        item = LIST_ITEM.match(line)
        indented = len(line) - len(line.lstrip()) >= 2
        if item and not indented:
            kinds.append("bullet" if item.group("bullet") else "numbered")
        else:
            kinds.append("indented" if indented else "text")
    items = [i for i, k in enumerate(kinds) if k in ("bullet", "numbered")]
    if not items:
        return ListShape(0, 0, len(lines), 0, 0)
    first, last = items[0], items[-1]
    return ListShape(
        bullets=kinds.count("bullet"),
        numbered=kinds.count("numbered"),
        before=first,
        inside=sum(1 for k in kinds[first:last] if k == "text"),
        after=sum(1 for k in kinds[last + 1 :] if k == "text"),
    )
