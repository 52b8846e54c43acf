"""What a row's constraints ask of the decoder: a :class:`RowPlan` built once per row.

It gathers the static mask (case, banned characters), the word blockers, the text forced
at the start (opening quote, greeting, start phrase), the structured format, the limits,
and the ending to land (required words, end phrase or closing question, sign-off, P.S.,
closing quote), with the token reserve that ending needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from persona_sdk.constraints import counting
from persona_sdk.constraints.masks import TokenTable, WordBlocker, inflections
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
)

GREETING_FORMS = ("hi", "hello", "hey", "hiya", "howdy", "greetings", "dear", "good morning",
                  "good afternoon", "good evening", "good day")  # fmt: skip
QUESTION = "Does that help?"
POSTSCRIPT = "Have a good day."
CLOSING_STEPS = 3  # tokens to finish the open word, then the terminator


def _fold(case: str | None) -> Callable[[str], str]:
    if case == "lower":
        return str.lower
    if case == "upper":
        return str.upper
    return lambda s: s


@dataclass
class RowPlan:
    """One row's enforcement plan (see the module docstring)."""

    constraints: list[Constraint]
    banned: np.ndarray | None = None
    blockers: list[WordBlocker] = field(default_factory=list)
    no_greeting: WordBlocker | None = None
    prefix: str = ""
    glue_free: bool = False  # after the prefix, the next token must not extend its word
    structure: JsonOnly | ListFormat | None = None
    title: bool = False
    max_words: int | None = None
    max_sentences: int | None = None
    end_phrase: str | None = None
    question: bool = False
    required: tuple[str, ...] = ()
    sign_off: str | None = None
    postscript: str | None = None
    quote: bool = False
    fold: Callable[[str], str] = field(default=lambda s: s)
    banned_chars: tuple[BannedChars, ...] = ()
    case_map: tuple[torch.Tensor, torch.Tensor] | None = None  # (banned, twin) token ids

    def allows(self, text: str) -> bool:
        """Whether forced text keeps the banned characters out."""
        return not any(c.is_banned(ch) for c in self.banned_chars for ch in text)

    @property
    def limited(self) -> bool:
        return self.max_words is not None or self.max_sentences is not None

    def sentence_tail(self, body: str) -> list[str]:
        """The sentences the ending still needs after ``body`` (required words, end
        phrase or closing question), folded to the case rule."""
        out = []
        text = body.translate(str.maketrans({"’": "'"}))
        missing = [w for w in self.required if not counting.word_pattern(w).search(text)]
        if missing:
            joiner = ", " if self.allows(",") else " and "
            out.append("Keywords: " + joiner.join(missing) + ".")
        if self.end_phrase and not _ends_with(body, self.end_phrase):
            phrase = self.end_phrase
            out.append(phrase if re.search(r"[.!?…]$", phrase) else phrase + ".")
        elif self.question and not body.rstrip().endswith("?") and not self.inline_question:
            out.append(QUESTION)
        return [self.fold(s) for s in out]

    @property
    def inline_question(self) -> bool:
        """A closing question with no sentence left for it ends the last sentence with ?."""
        return self.question and self.max_sentences is not None and self._spare_sentences() < 1

    def _spare_sentences(self) -> int:
        taken = (1 if self.required else 0) + (1 if self.end_phrase or self.question else 0)
        return (self.max_sentences or 0) - taken

    def sentence_budget(self) -> int | None:
        """Sentences the model may write itself (the ending's sentences reserved)."""
        if self.max_sentences is None:
            return None
        return max(1, self._spare_sentences())

    def word_budget(self) -> int | None:
        """Words the model may write itself (the ending's words reserved)."""
        if self.max_words is None:
            return None
        reserved = sum(counting.count_words(s) for s in self.sentence_tail(""))
        return max(1, self.max_words - reserved)

    def ending(self, body: str) -> str:
        """All the text still to force after ``body``'s last sentence."""
        sep = "\n" if isinstance(self.structure, ListFormat) else " "
        text = "".join(sep + s for s in self.sentence_tail(body))
        if self.sign_off:
            dash = "—" if self.allows("—") else "--"
            text += "\n\n" + self.fold(f"{dash} {self.sign_off}")
        if self.postscript:
            text += "\n\n" + self.fold("P.S. " + self.postscript)
        if self.quote:
            text += '"'
        return text

    def terminator(self) -> str:
        return "?" if self.inline_question else "."


def _ends_with(text: str, phrase: str) -> bool:
    tail = re.sub(r"[\s.!?…,;:]+$", "", text).lower()
    return tail.endswith(re.sub(r"[\s.!?…,;:]+$", "", phrase).lower())


def build_plan(constraints: Sequence[Constraint], table: TokenTable) -> RowPlan:
    """The plan for one row's (merged) constraints on ``table``'s tokenizer."""
    plan = RowPlan(list(constraints))
    case = next((c.mode for c in constraints if isinstance(c, Case)), None)
    plan.fold = _fold(case)
    masks = [table.banned("upper" if case == "lower" else "lower")] if case else []
    if case:
        src, dst = table.case_map(case)
        plan.case_map = (torch.from_numpy(src), torch.from_numpy(dst))
    plan.banned_chars = tuple(c for c in constraints if isinstance(c, BannedChars))
    masks += [table.banned(c.category) for c in plan.banned_chars]
    if masks:
        plan.banned = np.logical_or.reduce(masks)
    for c in constraints:
        _apply(plan, c, table)
    return plan


def _apply(plan: RowPlan, c: Constraint, table: TokenTable) -> None:
    """Fold one constraint into ``plan``."""
    if isinstance(c, ForbiddenWords):
        forms = [f for w in c.words for f in inflections(w)]
        plan.blockers.append(table.word_blocker(forms))
    elif isinstance(c, Greeting):
        if not c.required:
            plan.no_greeting = table.word_blocker(GREETING_FORMS)
        elif not any(isinstance(x, StartPhrase) for x in plan.constraints):
            mark = next((m for m in "!,." if plan.allows(m)), "")
            plan.prefix += plan.fold("Hello" + mark)
    elif isinstance(c, StartPhrase):
        plan.prefix += plan.fold(c.phrase)
        plan.glue_free = c.phrase[-1:].isalnum()
    elif isinstance(c, QuoteWrap):
        plan.prefix = '"' + plan.prefix
        plan.quote = True
    elif isinstance(c, (JsonOnly, ListFormat)):
        plan.structure = c
    elif isinstance(c, TitleLine):
        plan.title = True
    elif isinstance(c, MaxWords):
        plan.max_words = c.limit
    elif isinstance(c, MaxSentences):
        plan.max_sentences = c.limit
    elif isinstance(c, EndPhrase):
        plan.end_phrase = c.phrase
    elif isinstance(c, EndsWithQuestion):
        plan.question = True
    elif isinstance(c, RequiredWords):
        plan.required = tuple(dict.fromkeys((*plan.required, *c.words)))
    elif isinstance(c, SignOff):
        plan.sign_off = c.name
    elif isinstance(c, Postscript):
        plan.postscript = c.text or POSTSCRIPT
