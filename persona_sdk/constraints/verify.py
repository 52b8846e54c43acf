"""Checking a finished reply against its constraints.

Phrases and words compare case-insensitively (see :mod:`.types`). Length limits count
the body of the reply: a title line, a sign-off and a P.S. that other constraints ask for
are not counted against a word or sentence limit, so "one sentence" plus "sign as Sam"
can both hold.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from persona_sdk.constraints import counting
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
    MaxWords,
    Postscript,
    QuoteWrap,
    RequiredWords,
    SignOff,
    StartPhrase,
    TitleLine,
    is_emoji,
)

# Lines allowed around a list: a title or greeting and a lead-in before it; a closing
# question, sign-off or P.S. after it.
MAX_LINES_AROUND_LIST = 2
MAX_TITLE_WORDS = 12
MAX_SIGN_OFF_WORDS = 6
_TRAILING = re.compile(r"[\s.!?…,;:*_\"'”’)\]]+$")
_PS_LINE = re.compile(r"^\s*[*_]*p\.?\s?s\b\.?[*_]*(?:[:\-—\s]|$)", re.IGNORECASE)
_TITLE_MARKUP = re.compile(r"^\s*(?:#{1,6}\s+|\*\*|__|<<)|(?:\*\*|__|>>)\s*$")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'"})


@dataclass(frozen=True)
class ConstraintResult:
    """Whether one reply meets one constraint, with a short reason."""

    constraint: Constraint
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the constraint's dict, ``passed`` and ``detail``."""
        return {
            "constraint": self.constraint.to_dict(),
            "passed": self.passed,
            "detail": self.detail,
        }


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _fold(text: str) -> str:
    return " ".join(text.translate(_APOSTROPHES).casefold().split())


def _ps_start(lines: list[str]) -> int | None:
    """Index of the line opening the final P.S. paragraph, if the reply ends with one."""
    for i in range(len(lines) - 1, -1, -1):
        if _PS_LINE.match(lines[i]):
            return i
    return None


def _sign_off_lines(lines: list[str], name: str) -> int:
    """How many final lines form a sign-off ending with ``name`` (0 when there is none)."""
    for n in (1, 2):
        if len(lines) < n:
            break
        tail = " ".join(line.strip() for line in lines[-n:]).lstrip("-—–~ ")
        if counting.count_words(tail) <= MAX_SIGN_OFF_WORDS and _ends_with(tail, name):
            previous = lines[-n - 1].strip() if len(lines) > n else ""
            valediction = previous.endswith(",") and counting.count_words(previous) <= 3
            return n + 1 if valediction else n  # "Best,\nSam"
    return 0


def _body(text: str, constraints: Sequence[Constraint]) -> str:
    """The reply without the title, sign-off and P.S. that other constraints ask for."""
    lines = _lines(text)
    kinds = {c.kind for c in constraints}
    if "postscript" in kinds and (start := _ps_start(lines)) is not None:
        lines = lines[:start]
    if "sign_off" in kinds:
        name = next(c.name for c in constraints if isinstance(c, SignOff))
        lines = lines[: len(lines) - _sign_off_lines(lines, name)]
    if "title" in kinds and len(lines) > 1:
        lines = lines[1:]
    return "\n".join(lines)


def _ends_with(text: str, phrase: str) -> bool:
    tail = text.rstrip()
    if not re.search(r"[.!?…]$", phrase.strip()):
        tail = _TRAILING.sub("", tail)
    tail, phrase = _fold(tail), _fold(phrase)
    if not tail.endswith(phrase):
        return False
    before = tail[: len(tail) - len(phrase)]
    return not before or not (before[-1].isalnum() and phrase[:1].isalnum())


def _check_max_words(c: MaxWords, text: str, body: str) -> tuple[bool, str]:
    n = counting.count_words(body)
    return n <= c.limit, f"{n} words (limit {c.limit})"


def _check_max_sentences(c: MaxSentences, text: str, body: str) -> tuple[bool, str]:
    n = counting.count_sentences(body)
    return n <= c.limit, f"{n} sentence{'s' if n != 1 else ''} (limit {c.limit})"


def _check_case(c: Case, text: str, body: str) -> tuple[bool, str]:
    wrong = str.isupper if c.mode == "lower" else str.islower
    bad = [w for w in re.findall(r"\S+", text) if any(wrong(ch) for ch in w)]
    if not bad:
        return True, f"all {c.mode}case"
    return False, f"{len(bad)} word(s) not {c.mode}case, e.g. {', '.join(bad[:3])}"


def _check_banned(c: BannedChars, text: str, body: str) -> tuple[bool, str]:
    found = [ch for ch in text if c.is_banned(ch)]
    if not found:
        return True, f"no {c.category}"
    shown = "".join(dict.fromkeys(found))[:5]
    return False, f"{len(found)} {c.category} character(s): {shown}"


def _check_forbidden(c: ForbiddenWords, text: str, body: str) -> tuple[bool, str]:
    text = text.translate(_APOSTROPHES)
    hits = [m.group(0) for w in c.words for m in counting.word_pattern(w).finditer(text)]
    if not hits:
        return True, "none of the forbidden words"
    return False, "forbidden: " + ", ".join(repr(h) for h in dict.fromkeys(hits))


def _check_required(c: RequiredWords, text: str, body: str) -> tuple[bool, str]:
    text = text.translate(_APOSTROPHES)
    missing = [w for w in c.words if not counting.word_pattern(w).search(text)]
    if not missing:
        return True, "all required words present"
    return False, "missing: " + ", ".join(repr(w) for w in missing)


def _check_start(c: StartPhrase, text: str, body: str) -> tuple[bool, str]:
    head = _fold(counting.strip_leading_noise(text))
    phrase = _fold(c.phrase)
    after = head[len(phrase) : len(phrase) + 1]
    ok = head.startswith(phrase) and not (after.isalnum() and phrase[-1:].isalnum())
    return ok, f"starts with {text.strip()[: len(c.phrase) + 10]!r}"


def _check_end(c: EndPhrase, text: str, body: str) -> tuple[bool, str]:
    return _ends_with(text, c.phrase), f"ends with {text.strip()[-(len(c.phrase) + 10) :]!r}"


def _check_question(c: EndsWithQuestion, text: str, body: str) -> tuple[bool, str]:
    tail = text.rstrip()
    while tail and (is_emoji(tail[-1]) or tail[-1] in " \t\n*_\"'”’)]"):
        tail = tail[:-1]
    ok = tail.endswith(("?", "？"))
    return ok, "ends with a question" if ok else f"ends with {tail[-20:]!r}"


def _check_sign_off(c: SignOff, text: str, body: str) -> tuple[bool, str]:
    lines = _lines(text)
    if not lines:
        return False, "empty reply"
    n = _sign_off_lines(lines, c.name)
    return 0 < n < len(lines), f"last line {lines[-1].strip()[:40]!r}"


def _check_postscript(c: Postscript, text: str, body: str) -> tuple[bool, str]:
    lines = _lines(text)
    start = _ps_start(lines)
    if start is None:
        return False, "no P.S. line"
    rest = text[text.rfind(lines[start]) :]
    if re.search(r"\n\s*\n", rest.strip()):
        return False, "the P.S. is not the last paragraph"
    if c.text and _fold(c.text) not in _fold(rest):
        return False, f"the P.S. does not say {c.text!r}"
    return True, "ends with a P.S."


def _check_list(c: ListFormat, text: str, body: str) -> tuple[bool, str]:
    shape = counting.list_shape(text)
    mine, other = (
        (shape.bullets, shape.numbered) if c.style == "bullet" else (shape.numbered, shape.bullets)
    )
    detail = (
        f"{mine} {c.style} item(s), {other} other, {shape.before} line(s) before, "
        f"{shape.inside} between, {shape.after} after"
    )
    count_ok = mine == c.count if c.count else mine >= 2
    around = shape.before <= MAX_LINES_AROUND_LIST and shape.after <= MAX_LINES_AROUND_LIST
    return count_ok and other == 0 and shape.inside == 0 and around, detail


def _check_title(c: TitleLine, text: str, body: str) -> tuple[bool, str]:
    lines = _lines(text)
    if len(lines) < 2:
        return False, "no line after the first"
    first = lines[0]
    marked = bool(_TITLE_MARKUP.search(first))
    title = _TITLE_MARKUP.sub("", first).strip()
    n = counting.count_words(title)
    ending = r"[,;]$" if marked else r"[.!?,;:]$"
    ok = 1 <= n <= MAX_TITLE_WORDS and not re.search(ending, title)
    ok = ok and not counting.LIST_ITEM.match(first)
    return ok, f"first line {first.strip()[:50]!r}"


def _check_quote(c: QuoteWrap, text: str, body: str) -> tuple[bool, str]:
    s = text.strip()
    ok = len(s) >= 3 and s[0] in '"“' and s[-1] in '"”'
    return ok, "wrapped in double quotes" if ok else f"starts {s[:1]!r}, ends {s[-1:]!r}"


def _check_json(c: JsonOnly, text: str, body: str) -> tuple[bool, str]:
    try:
        value = json.loads(text.strip())
    except ValueError as exc:
        return False, f"not JSON: {exc}"
    if not isinstance(value, (dict, list)):
        return False, f"JSON {type(value).__name__}, not an object or array"
    return True, "a JSON " + ("object" if isinstance(value, dict) else "array")


def _check_greeting(c: Greeting, text: str, body: str) -> tuple[bool, str]:
    greets = counting.starts_with_greeting(text)
    return greets == c.required, "opens with a greeting" if greets else "no greeting"


_CHECKS: dict[type[Constraint], Callable[[Any, str, str], tuple[bool, str]]] = {
    MaxWords: _check_max_words,
    MaxSentences: _check_max_sentences,
    Case: _check_case,
    BannedChars: _check_banned,
    ForbiddenWords: _check_forbidden,
    RequiredWords: _check_required,
    StartPhrase: _check_start,
    EndPhrase: _check_end,
    EndsWithQuestion: _check_question,
    SignOff: _check_sign_off,
    Postscript: _check_postscript,
    ListFormat: _check_list,
    TitleLine: _check_title,
    QuoteWrap: _check_quote,
    JsonOnly: _check_json,
    Greeting: _check_greeting,
}


def _before_postscript(text: str) -> str:
    lines = _lines(text)
    start = _ps_start(lines)
    return text if start is None else "\n".join(lines[:start])


def verify(text: str, constraints: Sequence[Constraint]) -> list[ConstraintResult]:
    """Check ``text`` against each constraint; one result per constraint, in order."""
    body = _body(text, constraints)
    has_ps = any(isinstance(c, Postscript) for c in constraints)
    results = []
    for constraint in constraints:
        # A sign-off may sit above a requested P.S., as in a letter.
        subject = _before_postscript(text) if has_ps and isinstance(constraint, SignOff) else text
        passed, detail = _CHECKS[type(constraint)](constraint, subject, body)
        results.append(ConstraintResult(constraint, passed, detail))
    return results
