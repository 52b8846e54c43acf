"""Combining the constraints of several rules: on a contradiction the newest wins.

This mirrors the rule lifecycle (a newer rule supersedes an older one it contradicts).
Two constraints conflict when they cannot both be met, or when both claim a part of the
reply that only one can own:

- one value per kind for the single-valued kinds (two word limits, lower vs upper case,
  two start phrases, greeting vs no greeting, two list formats, ...);
- the reply's first line: a start phrase, a required greeting, a title, a quote wrap and
  JSON (a start phrase that itself opens with a greeting satisfies a required greeting);
- the reply's ending: an end phrase, a closing question, a sign-off, a postscript, a quote
  wrap and JSON (the decoder can land only one ending), except that a P.S. may follow a
  sign-off, as in a letter;
- the reply's shape: a list, a quote wrap and JSON;
- a word both forbidden and required, or a forced phrase containing a forbidden word or a
  banned character;
- a list that needs more items than a sentence limit allows (each item counts as one).

Forbidden and required words are trimmed word by word: only the overlap is lost.
"""

from __future__ import annotations

from persona_sdk.constraints.counting import starts_with_greeting, word_pattern
from persona_sdk.constraints.types import (
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
    Postscript,
    QuoteWrap,
    RequiredWords,
    SignOff,
    StartPhrase,
    TitleLine,
)

_SINGLE_VALUED = {"max_words", "max_sentences", "case", "greeting", "list_format", "start_phrase"}
_FIRST = (StartPhrase, TitleLine, QuoteWrap, JsonOnly)
_LAST = (EndPhrase, EndsWithQuestion, SignOff, Postscript, QuoteWrap, JsonOnly)
_SHAPE = (ListFormat, QuoteWrap, JsonOnly)
_WORD_SETS = (ForbiddenWords, RequiredWords)


def _forced_text(constraint: Constraint) -> str | None:
    """Text the decoder would have to write for this constraint."""
    for attr in ("phrase", "name", "text"):
        value = getattr(constraint, attr, None)
        if isinstance(value, str):
            return value
    if isinstance(constraint, RequiredWords):
        return " ".join(constraint.words)
    return None


def _claims_first(c: Constraint) -> bool:
    return isinstance(c, _FIRST) or (isinstance(c, Greeting) and c.required)


def _first_line_conflict(a: Constraint, b: Constraint) -> bool:
    if not (_claims_first(a) and _claims_first(b)):
        return False
    start = next((c for c in (a, b) if isinstance(c, StartPhrase)), None)
    if start is not None and any(isinstance(c, Greeting) for c in (a, b)):
        return not starts_with_greeting(start.phrase)  # "Hi Sam" is a greeting
    return True


def _forbids(blocker: Constraint, text: str) -> bool:
    if isinstance(blocker, ForbiddenWords):
        return any(word_pattern(w).search(text) for w in blocker.words)
    if isinstance(blocker, BannedChars):
        return any(blocker.is_banned(ch) for ch in text)
    return False


def _cross_conflict(x: Constraint, y: Constraint) -> bool:
    """Conflicts that depend on the pair's order only through which is which."""
    if isinstance(x, Greeting) and not x.required and isinstance(y, StartPhrase):
        return starts_with_greeting(y.phrase)
    if isinstance(x, JsonOnly) and isinstance(y, Case):
        return y.mode == "upper"  # JSON's true, false and null are lowercase
    if isinstance(x, ListFormat) and isinstance(y, MaxSentences):
        return (x.count or 2) > y.limit
    if isinstance(x, _WORD_SETS) and isinstance(y, _WORD_SETS):
        return False  # trimmed word by word in merge()
    text = _forced_text(y)
    return text is not None and not isinstance(y, ForbiddenWords) and _forbids(x, text)


def conflicts(older: Constraint, newer: Constraint) -> bool:
    """True when ``older`` and ``newer`` cannot both hold (see the module docstring).

    Forbidden/required word overlap is handled by trimming in :func:`merge`, not here.
    """
    if older.kind == newer.kind and older.kind in _SINGLE_VALUED:
        return True
    if _first_line_conflict(older, newer):
        return True
    if isinstance(older, _LAST) and isinstance(newer, _LAST):
        return {type(older), type(newer)} != {SignOff, Postscript}
    if isinstance(older, _SHAPE) and isinstance(newer, _SHAPE):
        return True
    return _cross_conflict(older, newer) or _cross_conflict(newer, older)


def _trim(older: Constraint, newer: Constraint) -> Constraint | None:
    """``older`` without the words ``newer`` now decides; None when nothing is left."""
    if not (isinstance(older, _WORD_SETS) and isinstance(newer, _WORD_SETS)):
        return older
    decided = {w.casefold() for w in newer.words}
    kept = tuple(w for w in older.words if w.casefold() not in decided)
    if kept == older.words:
        return older
    return type(older)(kept) if kept else None


def merge(constraints: list[Constraint]) -> list[Constraint]:
    """The constraints that hold together, given oldest first and newest last.

    A constraint is dropped when a newer one conflicts with it; the survivors keep their
    order. Exact duplicates collapse to the newest.
    """
    kept: list[Constraint] = []
    for newer in constraints:
        survivors: list[Constraint] = []
        for older in kept:
            if older == newer or conflicts(older, newer):
                continue
            trimmed = _trim(older, newer)
            if trimmed is not None:
                survivors.append(trimmed)
        kept = [*survivors, newer]
    return kept
