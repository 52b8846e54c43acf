"""Typed values in a stated rule: numbers with units, languages, unit systems, currencies,
names, places, diets and other facts about the user.

Each extractor consumes the span it read (blanks it), so what is left is read for topic
words and polarity: "no more than 50 words" is a limit, not a negation.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from persona_sdk.memory.rule_lexicon import NUMBER, parse_number, stem, words


@dataclass(frozen=True)
class Value:
    """One extracted value. ``comparator`` is "<=", ">=" or "=" for amounts, else ""."""

    kind: str
    value: str
    comparator: str = ""


class Span:
    """A rule's text in two aligned forms, with consumed spans blanked in both."""

    def __init__(self, original: str, low: str):
        self.original = original
        self.low = low

    def take(self, start: int, end: int) -> None:
        blank = " " * (end - start)
        self.original = self.original[:start] + blank + self.original[end:]
        self.low = self.low[:start] + blank + self.low[end:]


_LANGUAGES = words(
    "english french german spanish italian portuguese dutch swedish norwegian danish finnish "
    "polish czech greek turkish russian ukrainian arabic hebrew hindi bengali urdu japanese "
    "chinese mandarin cantonese korean vietnamese thai indonesian malay swahili tagalog persian "
    "farsi romanian hungarian catalan welsh irish"
)
_PROGRAMMING = r"python|rust|javascript|typescript|java|kotlin|swift|ruby|php|c\+\+|c#|golang|"
_PROGRAMMING += r"haskell|scala|perl|sql|bash|elixir|julia"
_OCCUPATIONS = (
    r"nurse|teacher|(software |data )?engineer|developer|programmer|student|doctor|lawyer|"
    r"designer|accountant|chef|cook|writer|scientist|researcher|pharmacist|architect|"
    r"consultant|freelancer|journalist|photographer|electrician|plumber|mechanic|farmer|"
    r"dentist|paramedic|firefighter|police officer|retired|retiree|unemployed|manager|"
    r"professor|translator|carpenter|pilot|banker|analyst|librarian|vet|veterinarian"
)
_CMP_LE = (
    r"under|below|less than|fewer than|at most|no more than|not more than|up to|max(?:imum)?"
    r"(?: of)?|within|limit(?:ed)? to|cap(?:ped)? at|shorter than|no longer than"
)
_CMP_GE = r"over|above|more than|at least|min(?:imum)?(?: of)?|no less than|longer than"
_LENGTH_UNITS = frozenset(
    stem(w) for w in words("word sentence paragraph line character page minute bullet")
)
_TITLE = r"(?:(?:Dr|Mr|Mrs|Ms|Mx|Prof|Sir|Dame)\.?\s+)"
_CAPITALISED = re.compile(rf"{_TITLE}?[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*")
_ANY_WORD = re.compile(r"[\w'-]+")
Extractor = Callable[[Span, bool], list[Value]]


def _lexicon(kind: str, table: list[tuple[str, str]], facts_only: bool = False) -> Extractor:
    """An extractor for fixed phrases: [(regex, canonical value)]."""
    compiled = [(re.compile(rf"\b(?:{p})\b"), v) for p, v in table]

    def extract(span: Span, is_fact: bool) -> list[Value]:
        if facts_only and not is_fact:
            return []
        found = []
        for pattern, value in compiled:
            for m in list(pattern.finditer(span.low)):
                found.append(Value(kind, value or " ".join(m.group(0).split())))
                span.take(m.start(), m.end())
        return found

    return extract


def _proper(span: Span, start: int, allow_lower: bool) -> tuple[str, int] | None:
    """The capitalised words at ``start`` (a title such as "Dr." included), else one word
    when ``allow_lower`` (users type names in lower case)."""
    while start < len(span.original) and span.original[start] == " ":
        start += 1
    m = _CAPITALISED.match(span.original, start)
    if m is None and allow_lower:
        m = _ANY_WORD.match(span.original, start)
    if m is None:
        return None
    return re.sub(r"[.\s]+", " ", m.group(0)).strip().lower(), m.end()


def _after(
    kind: str, trigger: str, allow_lower: bool = False, facts_only: bool = False
) -> Extractor:
    """An extractor for a proper name following a trigger phrase ("call me", "moved to")."""
    pattern = re.compile(rf"\b(?:{trigger})\s+")

    def extract(span: Span, is_fact: bool) -> list[Value]:
        if facts_only and not is_fact:
            return []
        found = []
        for m in list(pattern.finditer(span.low)):
            got = _proper(span, m.end(), allow_lower)
            if got is not None and got[0]:
                found.append(Value(kind, got[0]))
                span.take(m.start(), got[1])
        return found

    return extract


_OWNED_NAME = re.compile(r"\bmy (\w+) (?:is |was )?(?:called|named|name is)\s+")


def _owned_name(span: Span, is_fact: bool) -> list[Value]:
    """ "my dog is called Rex" / "my dog name is Max" → name:dog."""
    found = []
    for m in list(_OWNED_NAME.finditer(span.low)):
        got = _proper(span, m.end(), allow_lower=True)
        if got is not None and m.group(1) != "name":
            found.append(Value(f"name:{stem(m.group(1))}", got[0]))
            span.take(m.start(), got[1])
    return found


_AMOUNT = re.compile(
    rf"(?:\b(?P<le>{_CMP_LE})\s+|\b(?P<ge>{_CMP_GE})\s+)?"
    rf"\b(?P<num>{NUMBER})[\s-]+(?P<unit>bullet points?|[a-z]+)"
)


def _amounts(span: Span, is_fact: bool) -> list[Value]:
    """ "under 100 words" → length 100 word <=; "three kids" → count:kid 3."""
    found = []
    for m in list(_AMOUNT.finditer(span.low)):
        n = parse_number(m.group("num"))
        unit = stem(m.group("unit").split()[0])
        if n is None or unit in ("and", "or", "of", "the", "a", "an", "to", "in"):
            continue
        comparator = "<=" if m.group("le") else ">=" if m.group("ge") else "="
        kind = "length" if unit in _LENGTH_UNITS else f"count:{unit}"
        found.append(Value(kind, f"{n:g} {unit}", comparator))
        span.take(m.start(), m.end())
    return found


_AGE = re.compile(
    rf"\b(?:(?P<a>{NUMBER})[\s-]+years?[\s-]+old|turn(?:ed|ing)?\s+(?P<b>{NUMBER})|"
    rf"(?:i am|aged?)\s+(?P<c>\d+)(?!\s*[a-z]))"
)


def _age(span: Span, is_fact: bool) -> list[Value]:
    if not is_fact:
        return []
    found = []
    for m in list(_AGE.finditer(span.low)):
        n = parse_number(m.group("a") or m.group("b") or m.group("c"))
        if n is not None:
            found.append(Value("age", f"{n:g}"))
            span.take(m.start(), m.end())
    return found


_TIMEZONE = re.compile(
    r"\b(?:(?:[A-Z][a-z]+ )+[Tt]ime(?: zone)?|(?:[a-z]+ )?time zone|"
    r"[PMCE][SD]T|CEST?|GMT|UTC(?:[+-]\d+)?|BST|IST|JST|AEST)\b"
)


def _timezone(span: Span, is_fact: bool) -> list[Value]:
    found = []
    for m in list(_TIMEZONE.finditer(span.original)):
        value = re.sub(r"\s*\b(time|zone)\b", "", m.group(0).lower()).strip()
        if value:
            found.append(Value("timezone", value))
            span.take(m.start(), m.end())
    return found


_POSSESSION = re.compile(r"\bmy (?:favou?rite )?(\w+) is (?:now |still )?(.+)$")


def _possession(span: Span, is_fact: bool) -> list[Value]:
    """ "my favourite colour is blue" → my:colour = blue (the fallback for facts)."""
    m = _POSSESSION.search(span.low)
    if not is_fact or m is None or not m.group(2).strip():
        return []
    value = re.sub(r"\b(now|these days|again)\b", "", m.group(2))
    span.take(m.start(), m.end())
    return [Value(f"my:{stem(m.group(1))}", " ".join(value.split()))]


def _language_table() -> list[tuple[str, str]]:
    return [(lang, lang) for lang in _LANGUAGES]


EXTRACTORS: list[Extractor] = [
    _lexicon(
        "time_format",
        [
            (r"24[- ]?h(?:ou)?r?(?: clock| time| format)?|military time", "24h"),
            (r"12[- ]?h(?:ou)?r?(?: clock| time| format)?|am ?/ ?pm|a\.m\./p\.m\.", "12h"),
        ],
    ),
    _after("name:self", r"my name is(?: now)?|call me|address me as|refer to me as", True),
    _owned_name,
    _lexicon(
        "currency",
        [
            (r"(?:us |american )?dollars?|usd|bucks", "usd"),
            (r"euros?|eur", "eur"),
            (r"(?:british )?pounds? sterling|gbp", "gbp"),
            (r"yen|jpy", "jpy"),
            (r"(?:swiss )?francs?|chf", "chf"),
            (r"rupees?|inr", "inr"),
        ],
    ),
    _lexicon(
        "spelling",
        [
            (r"(?:british|uk) (?:spelling|english)", "british"),
            (r"(?:american|us) (?:spelling|english)", "american"),
        ],
    ),
    _lexicon(
        "unit_system",
        [(r"metric(?: system)?", "metric"), (r"imperial(?: system)?|us customary", "imperial")],
    ),
    _lexicon("temperature_unit", [(r"celsius|centigrade", "c"), (r"fahrenheit", "f")]),
    _lexicon("distance_unit", [(r"kilomet(?:er|re)s?|km", "km"), (r"miles?", "mi")]),
    _lexicon("weight_unit", [(r"kilo(?:gram)?s?|kgs?", "kg"), (r"pounds?|lbs?", "lb")]),
    _lexicon("programming_language", [(_PROGRAMMING, "")]),
    _age,
    _amounts,
    # named things before trigger phrases: "I moved to Windows" is not a place
    _lexicon(
        "os",
        [
            (r"windows", "windows"),
            (r"mac(?:book)?|macos|os x", "mac"),
            (r"linux|ubuntu", "linux"),
            (r"chromebook|chrome os", "chromeos"),
        ],
        facts_only=True,
    ),
    _after(
        "home",
        r"live in|living in|lives in|reside in|based in|moved to|moving to|"
        r"relocated to|settled in|my home is in",
        facts_only=True,
    ),
    _after(
        "employer",
        r"work(?:ing)? (?:at|for)|started (?:at|with)|joined|employed (?:at|by)",
        facts_only=True,
    ),
    _after("work_place", r"work(?:ing)? (?:in|from)", facts_only=True),
    _timezone,
    _lexicon(
        "diet",
        [
            (
                r"(?:do not|never|not|no longer) eat (?:any )?meat|no meat|vegetarian|veggie",
                "vegetarian",
            ),
            (r"vegan|plant[- ]based", "vegan"),
            (r"pesc[ae]tarian", "pescatarian"),
            (r"(?:eat|eating|ate) meat|meat[- ]eater|omnivore", "omnivore"),
            (r"keto", "keto"),
        ],
    ),
    _lexicon(
        "relationship",
        [
            (r"am single|i am single", "single"),
            (r"married|a husband|a wife", "married"),
            (r"engaged", "engaged"),
            (r"divorced", "divorced"),
            (r"widowed", "widowed"),
            (r"in a relationship|a (?:girl|boy)friend", "relationship"),
        ],
        facts_only=True,
    ),
    _lexicon("occupation", [(_OCCUPATIONS, "")], facts_only=True),
    _lexicon(
        "level",
        [(w, w) for w in ("beginner", "novice", "intermediate", "advanced", "expert")],
        facts_only=True,
    ),
    _possession,
    _lexicon("language", _language_table()),
]


def extract_values(span: Span, is_fact: bool) -> list[Value]:
    """Every typed value in the rule, consuming what was read."""
    values = _money(span)
    for extractor in EXTRACTORS:
        values.extend(extractor(span, is_fact))
    return values


_MONEY = re.compile(
    r"[$€£¥]\s?\d[\d,]*(?:\.\d+)?k?|\b\d[\d,]*(?:\.\d+)?k?\s?(?:dollars|euros|bucks)\b"
)


def _money(span: Span) -> list[Value]:
    found = []
    for m in list(_MONEY.finditer(span.low)):
        found.append(Value("money", re.sub(r"\s+", "", m.group(0))))
        span.take(m.start(), m.end())
    return found
