"""Typed constraints: what a program can check (and later enforce) about one reply.

Each constraint is a frozen dataclass with a class-level ``kind`` and its parameters as
fields. ``to_dict()`` gives ``{"kind": ..., **parameters}`` and :func:`constraint_from_dict`
inverts it, so constraints can be stored beside their rule and shown by ``persona show``.

Word and phrase parameters are compared case-insensitively everywhere (a start phrase
"Sure" is met by "sure" under a lowercase rule); the decoder should case-fold forced text
the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from persona_sdk.errors import InvalidInputError

CASE_MODES = ("lower", "upper")
LIST_STYLES = ("bullet", "numbered")

# Characters each banned-character category covers. Emoji are a predicate, not a set.
BANNED_CHARACTERS: dict[str, frozenset[str]] = {
    "comma": frozenset(",，"),
    "exclamation": frozenset("!！¡‼⁉"),
    "semicolon": frozenset(";；"),
    "em_dash": frozenset("—―"),
    "emoji": frozenset(),
}

# Code point ranges treated as emoji: pictographs, emoticons, transport, supplemental
# symbols, dingbats and misc symbols, regional indicators (flags), plus the joiners and
# variation selectors that only occur inside emoji sequences.
_EMOJI_RANGES: tuple[tuple[int, int], ...] = (
    (0x1F000, 0x1FAFF),
    (0x2600, 0x27BF),
    (0x2B00, 0x2BFF),
    (0x231A, 0x231B),
    (0x23E9, 0x23FA),
    (0xFE0E, 0xFE0F),
    (0x200D, 0x200D),
    (0x20E3, 0x20E3),
    (0xE0020, 0xE007F),
)


def is_emoji(char: str) -> bool:
    """True when ``char`` (one code point) is an emoji or part of an emoji sequence."""
    code = ord(char)
    return any(low <= code <= high for low, high in _EMOJI_RANGES)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidInputError(message)


def _clean_words(words: tuple[str, ...], what: str) -> tuple[str, ...]:
    cleaned = tuple(" ".join(str(w).split()) for w in words)
    _check(bool(cleaned) and all(cleaned), f"{what} needs at least one non-empty word")
    return cleaned


@dataclass(frozen=True)
class Constraint:
    """Base class: one checkable property of a reply."""

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": ..., **parameters}``, JSON-ready (tuples become lists)."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def describe(self) -> str:
        """A short human-readable statement of the constraint."""
        return self.kind.replace("_", " ")


@dataclass(frozen=True)
class MaxWords(Constraint):
    """At most ``limit`` words in the reply."""

    kind: ClassVar[str] = "max_words"
    limit: int

    def __post_init__(self) -> None:
        _check(isinstance(self.limit, int) and self.limit >= 1, "max_words needs a limit >= 1")

    def describe(self) -> str:
        return f"at most {self.limit} words"


@dataclass(frozen=True)
class MaxSentences(Constraint):
    """At most ``limit`` sentences in the reply."""

    kind: ClassVar[str] = "max_sentences"
    limit: int

    def __post_init__(self) -> None:
        ok = isinstance(self.limit, int) and self.limit >= 1
        _check(ok, "max_sentences needs a limit >= 1")

    def describe(self) -> str:
        return f"at most {self.limit} sentence{'s' if self.limit > 1 else ''}"


@dataclass(frozen=True)
class Case(Constraint):
    """Every cased letter is lower (``mode="lower"``) or upper case."""

    kind: ClassVar[str] = "case"
    mode: str

    def __post_init__(self) -> None:
        _check(self.mode in CASE_MODES, f"case mode must be one of {CASE_MODES}")

    def describe(self) -> str:
        return f"{self.mode}case only"


@dataclass(frozen=True)
class BannedChars(Constraint):
    """No character of ``category`` (see :data:`BANNED_CHARACTERS`) appears."""

    kind: ClassVar[str] = "banned_chars"
    category: str

    def __post_init__(self) -> None:
        ok = self.category in BANNED_CHARACTERS
        _check(ok, f"banned_chars category must be one of {sorted(BANNED_CHARACTERS)}")

    def is_banned(self, char: str) -> bool:
        """True when one code point falls in this category."""
        if self.category == "emoji":
            return is_emoji(char)
        return char in BANNED_CHARACTERS[self.category]

    def describe(self) -> str:
        return f"no {self.category.replace('_', ' ')}s"


@dataclass(frozen=True)
class ForbiddenWords(Constraint):
    """None of ``words`` (words or phrases, any case, simple inflections too) appears."""

    kind: ClassVar[str] = "forbidden_words"
    words: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "words", _clean_words(tuple(self.words), self.kind))

    def describe(self) -> str:
        return "never: " + ", ".join(repr(w) for w in self.words)


@dataclass(frozen=True)
class RequiredWords(Constraint):
    """Each of ``words`` (words or phrases, any case) appears at least once."""

    kind: ClassVar[str] = "required_words"
    words: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "words", _clean_words(tuple(self.words), self.kind))

    def describe(self) -> str:
        return "always: " + ", ".join(repr(w) for w in self.words)


@dataclass(frozen=True)
class StartPhrase(Constraint):
    """The reply begins with ``phrase``."""

    kind: ClassVar[str] = "start_phrase"
    phrase: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "phrase", _clean_words((self.phrase,), self.kind)[0])

    def describe(self) -> str:
        return f"starts with {self.phrase!r}"


@dataclass(frozen=True)
class EndPhrase(Constraint):
    """The reply ends with ``phrase`` (final punctuation after it is allowed)."""

    kind: ClassVar[str] = "end_phrase"
    phrase: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "phrase", _clean_words((self.phrase,), self.kind)[0])

    def describe(self) -> str:
        return f"ends with {self.phrase!r}"


@dataclass(frozen=True)
class EndsWithQuestion(Constraint):
    """The reply's last sentence is a question."""

    kind: ClassVar[str] = "end_question"

    def describe(self) -> str:
        return "ends with a question"


@dataclass(frozen=True)
class SignOff(Constraint):
    """The reply's last line is a short sign-off ending with ``name`` ("— Sam")."""

    kind: ClassVar[str] = "sign_off"
    name: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", _clean_words((self.name,), self.kind)[0])

    def describe(self) -> str:
        return f"signed {self.name!r}"


@dataclass(frozen=True)
class Postscript(Constraint):
    """The reply ends with a "P.S." paragraph, containing ``text`` when one is given."""

    kind: ClassVar[str] = "postscript"
    text: str | None = None

    def __post_init__(self) -> None:
        if self.text is not None:
            object.__setattr__(self, "text", _clean_words((self.text,), self.kind)[0])

    def describe(self) -> str:
        return "ends with a P.S." + (f" ({self.text!r})" if self.text else "")


@dataclass(frozen=True)
class ListFormat(Constraint):
    """The reply is a list of ``style`` items: exactly ``count`` of them, or at least 2."""

    kind: ClassVar[str] = "list_format"
    style: str = "bullet"
    count: int | None = None

    def __post_init__(self) -> None:
        _check(self.style in LIST_STYLES, f"list style must be one of {LIST_STYLES}")
        ok = self.count is None or (isinstance(self.count, int) and self.count >= 1)
        _check(ok, "list count must be None or >= 1")

    def describe(self) -> str:
        what = "bulleted" if self.style == "bullet" else "numbered"
        return f"{what} list" + (f" of exactly {self.count} items" if self.count else "")


@dataclass(frozen=True)
class TitleLine(Constraint):
    """The first line is a short title, followed by the body."""

    kind: ClassVar[str] = "title"

    def describe(self) -> str:
        return "starts with a title line"


@dataclass(frozen=True)
class QuoteWrap(Constraint):
    """The whole reply is wrapped in double quotation marks."""

    kind: ClassVar[str] = "quote_wrap"

    def describe(self) -> str:
        return "wrapped in double quotes"


@dataclass(frozen=True)
class JsonOnly(Constraint):
    """The whole reply is one JSON object or array, nothing else."""

    kind: ClassVar[str] = "json"

    def describe(self) -> str:
        return "JSON only"


@dataclass(frozen=True)
class Greeting(Constraint):
    """The reply opens with a greeting (``required=True``) or must not."""

    kind: ClassVar[str] = "greeting"
    required: bool

    def __post_init__(self) -> None:
        _check(isinstance(self.required, bool), "greeting needs required=True or False")

    def describe(self) -> str:
        return "opens with a greeting" if self.required else "no greeting"


CONSTRAINT_TYPES: dict[str, type[Constraint]] = {
    cls.kind: cls
    for cls in (
        MaxWords,
        MaxSentences,
        Case,
        BannedChars,
        ForbiddenWords,
        RequiredWords,
        StartPhrase,
        EndPhrase,
        EndsWithQuestion,
        SignOff,
        Postscript,
        ListFormat,
        TitleLine,
        QuoteWrap,
        JsonOnly,
        Greeting,
    )
}


def constraint_from_dict(data: dict[str, Any]) -> Constraint:
    """Rebuild a constraint from :meth:`Constraint.to_dict` output."""
    params = dict(data)
    kind = params.pop("kind", None)
    cls = CONSTRAINT_TYPES.get(str(kind))
    _check(cls is not None, f"unknown constraint kind {kind!r}")
    assert cls is not None
    names = {f.name for f in fields(cls)}
    extra = set(params) - names
    _check(not extra, f"unexpected {kind} parameters: {sorted(extra)}")
    for name in ("words",):
        if isinstance(params.get(name), list):
            params[name] = tuple(params[name])
    try:
        return cls(**params)
    except TypeError as exc:  # a missing parameter
        raise InvalidInputError(f"bad {kind} constraint: {exc}") from exc
