"""Rule text → typed constraints.

The parser is deliberately precise rather than greedy: a constraint it invents would be
enforced on every reply, while a rule it misses still reaches the model through the
prompt. So each pattern needs an explicit directive ("under 50 words", "never use
emojis", "start with the word 'Sure'"), and a clause is left prompt-only when it is hedged
or conditional ("usually", "when I ask", "where appropriate", "emojis are fine"), or when
the limit applies to a part of the reply rather than the whole ("each bullet under 10
words", "keep paragraphs to 3 sentences", "use lowercase for hashtags").

Choices a reader may not guess: "under 50 words" means at most 50 (users say "under" for
a cap, and it must equal "no more than 50 words"); "in N sentences" is read as at most N;
word ranges and approximate limits ("about 50 words") stay prompt-only.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from persona_sdk.constraints.normalize import Clause, clauses
from persona_sdk.constraints.parse_phrases import PHRASE_MATCHERS
from persona_sdk.constraints.patterns import (
    double_negated,
    hedged,
    negated_before,
    scoped,
    segment_before,
)
from persona_sdk.constraints.types import (
    BannedChars,
    Case,
    Constraint,
    ForbiddenWords,
    Greeting,
    MaxSentences,
    MaxWords,
    RequiredWords,
)

Matcher = Callable[[Clause], list[Constraint]]

_NEGATOR = (
    r"(?:never|don't|dont|do not|not|shouldn't|should not|mustn't|must not|can't|cannot|won't)"
)
_UPPER_BOUND = (
    r"(?:under|below|less than|fewer than|(?:no|not|never) (?:more|longer) than|shorter than"
    r"|at (?:the )?most|(?:a )?max(?:imum)?(?: of)?|up to|within|not (?:to )?exceed(?:ing)?"
    r"|(?:word )?limit(?: of| is|:)?"
    r"|(?:keep|limit|cap|restrict|trim|cut|hold|stick)\b[\w\s]{0,25}?\b(?:to|at)"
    rf"|{_NEGATOR}\s+(?:\w+\s+){{0,3}}?(?:more than|longer than|over|above|exceed(?:ing)?"
    r"|go (?:over|above|past|beyond)|beyond))"
)
_UPPER_AFTER = (
    r"(?:or (?:fewer|less|under|shorter|below)|max(?:imum)?|at (?:the )?most|tops|limit|cap)"
)
_LOWER_BOUND = re.compile(
    r"\b(?:at least|minimum|min|or more|exactly|around|about|roughly|approximately|between"
    r"|or so|ish)\b|\d+\s*(?:-|to)\s*\d+\s+words|\b(?:no|not|never|don't|do not)\s+"
    r"(?:\w+\s+){0,3}?(?:less|fewer|shorter|under|below)\b"
)
_PARTS = (
    r"paragraphs?|bullets?|bullet points?|items?|lines?|points?|sections?|titles?|headings?"
    r"|headers?|subject(?: lines?)?|captions?|summar(?:y|ies)|tldr|intro\w*|conclusions?|steps?"
    r"|names?|examples?|quotes?|hashtags?|tags?|code"
)
_EACH = (
    r"\b(?:each|every|per|apiece)\s+(?:sentence|paragraph|bullet|item|line|point|section|step)"
    r"|\b(?:each|per|apiece)\b(?!\s+(?:reply|replies|answer|answers|response|responses|message"
    r"|messages|email|emails|time))"
)
# What a length limit may be scoped to instead of the whole reply.
_WORD_ELEMENT = re.compile(rf"{_EACH}|\b(?:sentences?|{_PARTS})\b")
_SENTENCE_ELEMENT = re.compile(rf"{_EACH}|\b(?:{_PARTS})\b")
# Words that make a sentence count describe a part of the reply ("end with one sentence").
_PART_VERBS = re.compile(
    r"\b(?:start|begin|end|finish|close|open|add|include|append|conclude|follow|lead|wrap)\w*\b"
)

_WORDS_BEFORE = re.compile(rf"\b(?:{_UPPER_BOUND})\s+(\d+)(?:\s*-\s*|\s+)words?\b")
_WORDS_AFTER = re.compile(rf"\b(\d+)(?:\s*-\s*|\s+)words?\s+{_UPPER_AFTER}\b")
_WORD_LIMIT = re.compile(
    r"\bword (?:limit|cap|maximum|max|count limit)(?: of| is|:)?\s+(\d+)\b"
    r"|\b(?:max(?:imum)?|limit)(?: word count)?:?\s+(\d+)\s+words?\b"
    r"|\bword count (?:under|below|of at most|at most|no more than|max(?:imum)?|<=?)\s+(\d+)\b"
)
_SENTENCES = (
    re.compile(rf"\b(?:{_UPPER_BOUND})\s+(\d+)(?:\s*-\s*|\s+)sentences?\b"),
    re.compile(rf"\b(\d+)(?:\s*-\s*|\s+)sentences?\s+{_UPPER_AFTER}\b"),
    re.compile(r"\b(?:in|with|using|as|into)\s+(?:just\s+|only\s+)?(\d+)\s+sentences?\b"),
    re.compile(r"\b(?:just|only)\s+(\d+)\s+sentences?\b|\b(\d+)\s+sentences?\s+only\b"),
    re.compile(r"\b(\d+)-sentence\s+(?:answers?|repl(?:y|ies)|responses?|max|limit|messages?)"),
    re.compile(r"\b(?:in|with|as)\s+a\s+sentence\b(?!\s+or)()"),
)
_SENTENCE_RANGES = (
    re.compile(r"\ba sentence or (\d+)\b"),
    re.compile(r"\b\d+\s*(?:or|-|to)\s*(\d+)\s+sentences?\b"),
)


def _bounded_number(clause: Clause, match: re.Match[str], element: re.Pattern[str]) -> int | None:
    if _LOWER_BOUND.search(clause.text) or scoped(clause.text, match, element):
        return None
    value = next((g for g in match.groups() if g is not None), "")
    return int(value) if value.isdigit() else 1  # the bare "in a sentence" pattern


def _max_words(clause: Clause) -> list[Constraint]:
    for pattern in (_WORDS_BEFORE, _WORDS_AFTER, _WORD_LIMIT):
        for match in pattern.finditer(clause.text):
            limit = _bounded_number(clause, match, _WORD_ELEMENT)
            if limit:
                return [MaxWords(limit)]
    return []


def _max_sentences(clause: Clause) -> list[Constraint]:
    text = clause.text
    for pattern in _SENTENCE_RANGES:
        match = pattern.search(text)
        if (
            match
            and not scoped(text, match, _SENTENCE_ELEMENT)
            and not _PART_VERBS.search(segment_before(text, match))
        ):
            return [MaxSentences(int(match.group(1)))]
    for pattern in _SENTENCES:
        for match in pattern.finditer(text):
            if _PART_VERBS.search(segment_before(text, match)):
                continue
            limit = _bounded_number(clause, match, _SENTENCE_ELEMENT)
            if limit:
                return [MaxSentences(limit)]
    return []


_CASE_ELEMENT = re.compile(
    r"\b(?:headings?|headers?|titles?|subject(?: lines?)?|names?|nouns?|acronyms?|code"
    r"|variables?|keys?|tags?|hashtags?|labels?|urls?|links?|first (?:word|letter)s?|start"
    r"|beginning|sentences?|bullets?|items?|brands?|abbreviations?|emphasis|words?)\b"
)
_LOWER_WORD = re.compile(r"\blower[- ]?case\b|\bsmall letters\b")
_CASE_DIRECTIVE = re.compile(
    r"\b(?:only|all|always|entirely|everything|every|just|strictly|purely|exclusively|use"
    r"|using|write|type|reply|respond|answer|keep|stick|in)\b"
)
_NO_CAPITALS = re.compile(
    r"\b(?:no|without(?: any)?|avoid)\s+(?:capital|capitalized|uppercase|upper-case|upper case)"
    r"(?:\s+(?:letters|characters))?\b|\bno capitals\b"
    r"|\b(?:never|don't|dont|do not)\s+(?:use\s+)?(?:any\s+)?(?:capitals|capital|uppercase"
    r"|upper-case|upper case)(?:\s+(?:letters|characters))?\b"
    r"|\b(?:never|don't|dont|do not)\s+capitali[sz]e(?:\s+(?:anything|any letters|at all|ever))?$"
)
_UPPER = re.compile(
    r"\ball[- ]caps\b|\bcaps lock\b|\b(?:all|only|entirely|exclusively|in|using|use)\s+"
    r"(?:in\s+)?(?:upper[- ]?case|capital letters|capitals|caps|block capitals|block letters)\b"
    r"|\b(?:upper[- ]?case|capital letters|capitals|caps) only\b"
)
_NO_LOWER = re.compile(
    r"\b(?:no|without(?: any)?|never use|don't use|do not use)\s+(?:any\s+)?lower[- ]?case\b"
)


def _case(clause: Clause) -> list[Constraint]:
    text = clause.text
    found: list[Constraint] = []
    for match in _NO_CAPITALS.finditer(text):
        if not double_negated(text) and not scoped(text, match, _CASE_ELEMENT):
            found.append(Case("lower"))
    for match in _LOWER_WORD.finditer(text):
        free = not negated_before(text, match) and not scoped(text, match, _CASE_ELEMENT)
        if free and _CASE_DIRECTIVE.search(text) and "upper" not in text:
            found.append(Case("lower"))
    for pattern in (_UPPER, _NO_LOWER):
        for match in pattern.finditer(text):
            negated = pattern is _UPPER and negated_before(text, match)
            if not negated and not scoped(text, match, _CASE_ELEMENT):
                found.append(Case("upper"))
    return found if len(set(found)) == 1 else []  # "mix upper and lower case": neither


_CHAR_NOUNS = {
    "comma": r"commas?",
    "exclamation": r"exclamation(?:\s+(?:marks?|points?))?|exclamations|exclamation-marks?",
    "semicolon": r"semi-?colons?",
    "em_dash": r"em[- ]?dash(?:es)?",
    "emoji": r"emojis?|emoticons?|emojies",
}
_BAN_LEAD = (
    r"(?:\bno\b|\bnever\b|\bdon't\b|\bdont\b|\bdo not\b|\bavoid\b|\bwithout\b|\bzero\b|\bban\b"
    r"|\bstop\b|\bskip\b|\bdrop\b|\bditch\b|\bomit\b|\bleave out\b|\bmust not\b|\bshouldn't\b"
    r"|\bshould not\b|\bnot\b)"
)
_BAN_FILLER = (
    r"(?:\s+(?:use|using|include|including|add|adding|put|putting|write|writing|type|typing"
    r"|insert|inserting|any|the|a|an|all|1|single|ever|even|more|of|with|me|in|your|replies"
    r"|reply))*"
)
_CHAR_BANS = {
    category: re.compile(
        rf"{_BAN_LEAD}{_BAN_FILLER}\s+(?:{noun})\b"
        rf"|\b(?:{noun})\s+(?:are|is)\s+(?:banned|forbidden|not allowed|off[- ]limits|prohibited)"
        rf"|\b(?:{noun})[- ]free\b|\bno\s+(?:{noun})\s+allowed\b"
    )
    for category, noun in _CHAR_NOUNS.items()
}
_CHAR_ELEMENT = re.compile(r"\b(?:numbers?|code|lists?|titles?|headings?|names?|dates?)\b")


def _banned_chars(clause: Clause) -> list[Constraint]:
    if double_negated(clause.text):
        return []
    found: list[Constraint] = []
    for category, pattern in _CHAR_BANS.items():
        match = pattern.search(clause.text)
        if match and not scoped(clause.text, match, _CHAR_ELEMENT):
            found.append(BannedChars(category))
    return found


_GREETING_WORD = r"(?:greeting|hello|hi|salutation)"
_GREET_YES = re.compile(
    r"\b(?:always\s+)?greet\s+me\b|\bgreet\b(?:\s+\w+){0,2}\s+(?:first|at the (?:start|beginning))"
    rf"|\b(?:start|begin|open|lead)\w*\b(?:\s+\w+){{0,4}}?\s+with\s+(?:a|an|some)\s+(?:\w+\s+)?"
    rf"{_GREETING_WORD}\b|\bsay (?:hi|hello)(?: to me)?\s+(?:first|at the (?:start|beginning))\b"
    r"|\binclude a greeting\b|\balways say (?:hi|hello)\b"
)
_GREET_NO = re.compile(
    r"\b(?:don't|dont|do not|never)\s+(?:\w+\s+){0,2}?greet\b|\bno greetings?\b"
    r"|\bwithout (?:a |any )?greetings?\b|\b(?:skip|drop|omit|ditch|cut|avoid|lose)\s+"
    r"(?:the\s+|any\s+|all\s+)?greetings?\b|\b(?:don't|dont|do not|never)\s+(?:start|begin|open"
    rf"|lead)\w*\b(?:\s+\w+){{0,4}}?\s+with\s+(?:a|an|any)\s+(?:\w+\s+)?{_GREETING_WORD}\b"
    r"|\b(?:don't|dont|do not|never)\s+say\s+(?:hi|hello|hey)\b"
    r"|\bgreetings? (?:are|is) (?:not needed|unnecessary|banned|forbidden)\b"
)


def _greeting(clause: Clause) -> list[Constraint]:
    text = clause.text
    if double_negated(text):
        return []
    if _GREET_NO.search(text):
        return [Greeting(False)]
    match = _GREET_YES.search(text)
    if match and not negated_before(text, match):
        return [Greeting(True)]
    return []


MATCHERS: tuple[Matcher, ...] = (
    _max_words,
    _max_sentences,
    _case,
    _banned_chars,
    _greeting,
    *PHRASE_MATCHERS,
)


def parse_clause(clause: Clause) -> list[Constraint]:
    """Constraints one normalised clause states (empty when hedged or conditional)."""
    if hedged(clause.text):
        return []
    found: list[Constraint] = []
    for matcher in MATCHERS:
        found.extend(matcher(clause))
    return found


def parse_rule(text: str) -> list[Constraint]:
    """The checkable constraints a rule states, in order, without duplicates.

    An empty list means the rule stays prompt-only ("be concise", "keep it short-ish").
    """
    found: list[Constraint] = []
    for clause in clauses(text or ""):
        for constraint in parse_clause(clause):
            _add(found, constraint)
    return found


def _add(found: list[Constraint], new: Constraint) -> None:
    """Append ``new`` unless present; one rule's word lists of one kind become one
    constraint ('no "delve", no "tapestry"')."""
    if isinstance(new, (ForbiddenWords, RequiredWords)):
        for i, old in enumerate(found):
            if isinstance(old, (ForbiddenWords, RequiredWords)) and type(old) is type(new):
                found[i] = type(new)(tuple(dict.fromkeys((*old.words, *new.words))))
                return
    if new not in found:
        found.append(new)
