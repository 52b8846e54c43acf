"""Rule-parser matchers for words, phrases and formats (see :mod:`.parse` for the policy).

Phrases come from quotes (``Start with "Sure"``) or, unquoted, only after "the word":
``Start with the word Sure``. "Start with a summary" names no phrase and parses to nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from persona_sdk.constraints.normalize import PLACEHOLDER, Clause
from persona_sdk.constraints.patterns import double_negated, negated_before, scoped
from persona_sdk.constraints.types import (
    BANNED_CHARACTERS,
    BannedChars,
    Constraint,
    EndPhrase,
    EndsWithQuestion,
    ForbiddenWords,
    JsonOnly,
    ListFormat,
    Postscript,
    QuoteWrap,
    RequiredWords,
    SignOff,
    StartPhrase,
    TitleLine,
    is_emoji,
)

_Q = r"§\d+§"
_QLIST = rf"{_Q}(?:\s*(?:,|/|or|and|nor)\s*(?:or\s+|and\s+)?{_Q})*"
_WORD = r"[a-z][\w'-]*"
_WLIST = rf"{_WORD}(?:\s*(?:,|/|or|and|,\s*or|,\s*and)\s+{_WORD})*"
_WORD_NOUN = r"(?:word|term|phrase|expression|keyword|name)"
_WORDS_NOUN = r"(?:words|terms|phrases|expressions|keywords)"

_BAN_VERB = (
    r"(?:never|don't|dont|do not|avoid|stop|no longer|ban|forbid|must not|mustn't|should not"
    r"|shouldn't|can't|cannot|won't|refrain from|no)"
)
_SAY_FILLER = (
    r"(?:\s+(?:ever|again|use|using|say|saying|write|writing|include|including|mention"
    r"|mentioning|type|typing|output|utter|any|the))*"
)
_FORBIDDEN = (
    re.compile(rf"\b{_BAN_VERB}{_SAY_FILLER}\s+(?:{_WORD_NOUN}s?\s+|{_WORDS_NOUN}\s+)?({_QLIST})"),
    re.compile(rf"(?:the\s+{_WORD_NOUN}s?\s+)?({_QLIST})\s+(?:is|are)\s+(?:banned|forbidden"
               r"|off[- ]limits|not allowed|prohibited)"),
    re.compile(rf"\b{_BAN_VERB}{_SAY_FILLER}\s+(?:{_WORD_NOUN})\s+({_WORD})(?!\s*§)"),
    re.compile(rf"\b{_BAN_VERB}{_SAY_FILLER}\s+(?:{_WORDS_NOUN})\s+({_WLIST})"),
)  # fmt: skip
_REQUIRE_VERB = (
    r"(?:always\s+)?(?:say|use|include|mention|contain|write|add|work in|drop in)"
    r"|make sure (?:to|you)\s+(?:say|use|include|mention|write)"
    r"|(?:must|should|has to|have to|needs? to)\s+(?:contain|include|mention|use|say|have)"
)
_REQUIRED = (
    re.compile(rf"\b(?:{_REQUIRE_VERB})\s+(?:the\s+(?:{_WORD_NOUN}s?|{_WORDS_NOUN})\s+)?({_QLIST})"),
    re.compile(rf"\b(?:{_REQUIRE_VERB})\s+the\s+(?:word|term|keyword)\s+({_WORD})(?!\s*§)"),
    re.compile(rf"({_QLIST})\s+(?:must|should)\s+(?:always\s+)?"
               r"(?:appear|be (?:used|included|mentioned))"),
)  # fmt: skip
_POSITION = re.compile(
    r"\b(?:first|last|at the (?:start|beginning|end|top|bottom)|to (?:start|begin|end|finish"
    r"|close|open)|before|after|start\w*|begin\w*|end\w*|finish\w*|clos\w*|open\w*|sign\w*"
    r"|postscript|conclud\w*)\b"
)
_NEGATIONS = re.compile(r"\b(?:never|don't|dont|do not|not|no|avoid|stop|without)\b|n't\b")


def _quoted_list(clause: Clause, span: str) -> list[str]:
    if PLACEHOLDER.search(span):
        return [clause.quote(m.group(0)) for m in PLACEHOLDER.finditer(span)]
    words = re.split(r"\s*(?:,\s*or|,\s*and|,|/|\bor\b|\band\b)\s*", span)
    return [clause.original(w) for w in words if w]


def _split_chars(words: list[str]) -> tuple[list[str], list[Constraint]]:
    """Quoted single banned characters ('never use "!"') become banned characters."""
    kept, chars = [], []
    for word in words:
        category = next((c for c, s in BANNED_CHARACTERS.items() if word in s), None)
        if category is None and len(word) <= 2 and all(is_emoji(ch) for ch in word):
            category = "emoji"
        if category is None:
            kept.append(word)
        else:
            chars.append(BannedChars(category))
    return kept, chars


def _words(clause: Clause) -> list[Constraint]:
    text = clause.text
    if double_negated(text):
        return []
    found: list[Constraint] = []
    for pattern in _FORBIDDEN:
        for match in pattern.finditer(text):
            kept, chars = _split_chars(_quoted_list(clause, match.group(1)))
            found.extend(chars)
            if kept:
                found.append(ForbiddenWords(tuple(kept)))
    if found or _POSITION.search(text):
        return found  # positions belong to the start/end matchers
    if _NEGATIONS.search(text):
        return found  # 'use "we", not "I"' swaps words; it does not require one everywhere
    for pattern in _REQUIRED:
        for match in pattern.finditer(text):
            found.append(RequiredWords(tuple(_quoted_list(clause, match.group(1)))))
    return found


_THE_WORD = r"(?:the\s+(?:word|phrase|words|expression|line|sentence|greeting|opener)\s+)?"
_START = (
    re.compile(rf"\b(?:start|begin|open|lead|preface|kick off)\w*\b(?:\s+\w+){{0,4}}?\s+"
               rf"(?:with|by saying|by writing)\s+{_THE_WORD}({_Q})"),
    re.compile(rf"\b(?:say|write|put|use|place|include|add)\s+({_Q})\s+(?:first|at the (?:start"
               r"|beginning|top)|before anything else|to (?:start|begin|open))"),
    re.compile(rf"\bfirst (?:word|words|line)(?:\s+\w+){{0,4}}?\s+(?:must|should|has to|is)\s+be"
               rf"\s+(?:the\s+word\s+)?({_Q})"),
)  # fmt: skip
_START_WORD = re.compile(
    r"\b(?:start|begin|open|lead|preface)\w*\b(?:\s+\w+){0,4}?\s+with\s+the\s+word\s+([a-z][\w'-]*)"
    r"|\bfirst word(?:\s+\w+){0,4}?\s+(?:must|should|has to|is)\s+be\s+(?:the word\s+)?"
    r"([a-z][\w'-]*)"
)
_END = (
    re.compile(rf"\b(?:end|finish|close|conclude|wrap up)\w*\b(?:\s+\w+){{0,4}}?\s+"
               rf"(?:with|by saying|by writing|on)\s+{_THE_WORD}({_Q})"),
    re.compile(rf"\b(?:say|write|put|use|place|include|add)\s+({_Q})\s+(?:last|at the (?:end"
               r"|bottom)|to (?:end|finish|close))"),
    re.compile(rf"\blast (?:word|words|line)(?:\s+\w+){{0,4}}?\s+(?:must|should|has to|is)\s+be"
               rf"\s+(?:the\s+word\s+)?({_Q})"),
)  # fmt: skip
_END_WORD = re.compile(
    r"\b(?:end|finish|close|conclude)\w*\b(?:\s+\w+){0,4}?\s+with\s+the\s+word\s+([a-z][\w'-]*)"
)
_QUESTION = re.compile(
    r"\b(?:end|finish|close|conclude|wrap up)\w*\b(?:\s+\w+){0,4}?\s+(?:with|by asking|on)\s+"
    r"(?:me\s+)?(?:a|an|1)\s+(?:[\w-]+\s+){0,2}?question\b"
    r"|\bask\w*\s+(?:me\s+)?(?:a|1)\s+(?:[\w-]+\s+)?question\s+at the end\b"
    r"|\blast (?:sentence|line)(?:\s+\w+){0,4}?\s+(?:must|should|has to)\s+be\s+a\s+question\b"
)


def _start_end(clause: Clause) -> list[Constraint]:
    text = clause.text
    found: list[Constraint] = []
    for patterns, word, cls in ((_START, _START_WORD, StartPhrase), (_END, _END_WORD, EndPhrase)):
        for pattern in patterns:
            for match in pattern.finditer(text):
                if not negated_before(text, match) and "sign" not in text:
                    found.append(cls(clause.quote(match.group(1))))
        for match in word.finditer(text):
            if not negated_before(text, match):
                value = next(g for g in match.groups() if g)
                found.append(cls(clause.original(value)))
    match = _QUESTION.search(text)
    if match and not negated_before(text, match):
        found.append(EndsWithQuestion())
    return found


_NAME_WORDS = r"[a-z][\w'.-]*(?:\s+[a-z][\w'.-]*){0,2}"
_SIGN = re.compile(
    r"\bsign(?:ed)?(?:[- ]?off)?\s+(?:\w+\s+){0,3}?(?:as|with|using)\s+(?:the name\s+)?"
    rf"({_Q}|{_NAME_WORDS})"
    r"|\bsign\s+(?:your|every|each|all|my)\s+(?:\w+\s+)?(?:repl(?:y|ies)|answers?|responses?"
    rf"|messages?|emails?|notes?)\s+({_Q}|{_NAME_WORDS})"
    rf"|\bsign[- ]?off\b\s*(?::|of|is|should be|must be)?\s*({_Q})"
)


def _sign_off(clause: Clause) -> list[Constraint]:
    match = _SIGN.search(clause.text)
    if match is None or negated_before(clause.text, match):
        return []
    value = next(g for g in match.groups() if g)
    if PLACEHOLDER.fullmatch(value):
        return [SignOff(clause.quote(value))]
    # Unquoted: keep the leading capitalised words ("Sam" of "Sam from accounting").
    names: list[str] = []
    for word in clause.original(value).split():
        if not word[:1].isupper():
            break
        names.append(word.rstrip(".,;:!?"))
    return [SignOff(" ".join(names))] if names else []


_PS = re.compile(
    r"\b(?:add|include|append|write|put|end|finish|close|attach)\w*\b(?:\s+\w+){0,4}?\s+"
    r"(?:a|an|1)\s+(?:short\s+|brief\s+)?postscript\b|\bpostscript at the end\b"
)
_PS_TEXT = re.compile(rf"\bpostscript\s+(?:line\s+)?(?:saying|that says|reading|with|:)?\s*({_Q})")


def _postscript(clause: Clause) -> list[Constraint]:
    match = _PS.search(clause.text)
    if match is None or negated_before(clause.text, match):
        return []
    said = _PS_TEXT.search(clause.text)
    return [Postscript(clause.quote(said.group(1)) if said else None)]


_BULLET = r"bullet(?:ed)?(?:[- ](?:points?|lists?|form|format|style))?|bullets"
_NUMBERED = r"numbered (?:lists?|steps?|points?|items?)|(?:ordered|enumerated) lists?"
_LIST_DIRECTIVE = re.compile(
    r"\b(?:use|using|answer|reply|respond|write|format|formatted|structure|give|list|put"
    r"|present|break|always|only|make|organi[sz]e|lay out)\b"
)
_LIST_COUNT = re.compile(
    r"\b(\d+)(?:\s+|-)(?:bullet(?:ed)?(?:[- ]points?)?|bullets|items?|points|numbered"
    r"(?:\s+(?:points|items|steps))?|steps)\b|\blist of (?:exactly\s+)?(\d+)\s+(?:items|points)"
)
_COUNT_BOUND = re.compile(
    r"\b(?:at most|up to|no more than|not more than|under|max(?:imum)?|at least|between|or more"
    r"|or fewer|or less|fewer|less|more)\b"
)
_LIST_SCOPE = re.compile(
    r"\bfor\s+(?!me\b|every|each|all\b|your|repl|answer|respons|everything)\w+"
    r"|\b(?:each|per)\s+(?:section|paragraph)|\b(?:sparingly|fewer|less|more|too)\b"
)


def _list_format(clause: Clause) -> list[Constraint]:
    text = clause.text
    found: list[Constraint] = []
    for style, noun in (("bullet", _BULLET), ("numbered", _NUMBERED)):
        match = re.search(rf"\b(?:{noun})\b", text)
        if match is None or negated_before(text, match) or _LIST_SCOPE.search(text):
            continue
        before = text[: match.start()]
        if not (_LIST_DIRECTIVE.search(before) or re.match(r"\s*only\b", text[match.end() :])):
            continue
        count = _LIST_COUNT.search(text)
        if count and _COUNT_BOUND.search(text):
            continue  # "no more than 5 bullets" bounds a list; it does not ask for one
        value = next((int(g) for g in count.groups() if g), None) if count else None
        found.append(ListFormat(style, value))
    return found[:1]


_TITLE_NOUN = r"(?:short\s+|bold\s+|clear\s+|descriptive\s+|catchy\s+|1-line\s+)?"
_TITLE = re.compile(
    r"\b(?:start|begin|open|lead|head|top)\w*\b(?:\s+\w+){0,4}?\s+with\s+(?:a|an)\s+"
    rf"{_TITLE_NOUN}(?:title|heading|headline|header)\b"
    r"|\b(?:give|add|include|put|use|write|always (?:add|include|give))\b(?:\s+\w+){0,4}?\s+"
    rf"(?:a|an)\s+{_TITLE_NOUN}(?:title|headline)(?:\s+line)?\b"
    r"|\b(?:add|include|put|use)\b(?:\s+\w+){0,3}?\s+(?:a|an)\s+(?:heading|header)\s+"
    r"(?:at the top|on the first line|first)\b"
    r"|\btitle\s+(?:every|each|all|your)\s+(?:repl|answer|response|message)"
)
_TITLE_SCOPE = re.compile(r"\b(?:sections?|paragraphs?|each part|lists?|tables?|case)\b")
_QUOTE = re.compile(
    r"\b(?:wrap|enclose|surround|put|place|write|reply|respond|answer|format)\w*\b"
    r"((?:\s+\w+){0,5}?)\s+(?:in|inside|within|with|between)\s+(?:double\s+)?"
    r"(?:quotation marks|quotes|quote marks)\b"
)
_WHOLE_REPLY = re.compile(
    r"^(?:\s+(?:the|your|every|each|all|entire|whole|full|of|complete))*"
    r"(?:\s+(?:repl\w*|answers?|responses?|messages?|output|everything|it|text))?\s*$"
)
_JSON = re.compile(
    r"\b(?:reply|respond|answer|output|return|write|format|formatted|communicate|speak|talk)\w*"
    r"\b(?:\s+\w+){0,3}?\s+(?:in|as|with|using)\s+(?:a\s+|an\s+)?(?:valid\s+|pure\s+|strict\s+"
    r"|raw\s+|only\s+)?json\b(?!\s+(?:examples?|snippets?|files?|schema))"
    r"|\bjson only\b|\bonly (?:valid )?json\b|\bjust json\b|\bnothing but json\b"
    r"|\b(?:must|should|has to|needs to)\s+(?:always\s+)?be\s+(?:valid\s+)?json\b"
)


def _formats(clause: Clause) -> list[Constraint]:
    text = clause.text
    found: list[Constraint] = []
    match = _TITLE.search(text)
    if match and not negated_before(text, match) and not scoped(text, match, _TITLE_SCOPE):
        found.append(TitleLine())
    match = _QUOTE.search(text)
    if match and _WHOLE_REPLY.match(match.group(1)) and not negated_before(text, match):
        found.append(QuoteWrap())
    match = _JSON.search(text)
    if match and not negated_before(text, match) and not re.search(r"\bfor\s+\w+", text):
        found.append(JsonOnly())
    return found


PHRASE_MATCHERS: tuple[Callable[[Clause], list[Constraint]], ...] = (
    _words,
    _start_end,
    _sign_off,
    _postscript,
    _list_format,
    _formats,
)
