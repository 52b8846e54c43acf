"""The measurable attributes of a reply that simulated users care about.

Some are the interpretable style features of :mod:`persona_sdk.text.style`; the rest are visible
only through an embedding (analogies, caveats, warmth, ...), so a reward model cannot win on
style alone. Every measure is cheap, deterministic and bounded to [0, 1].
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from persona_sdk.memory.edits import template_text
from persona_sdk.simulation.prompts import Prompt
from persona_sdk.text.style import StyleProfile, long_word_share, numeric_tokens, prompt_overlap
from persona_sdk.text.style import measure as measure_style


@lru_cache(maxsize=8192)
def cached_profile(text: str) -> StyleProfile:
    return measure_style(text)


def _sat(x: float, scale: float) -> float:
    """A non-negative amount squashed into [0, 1)."""
    return 1.0 - math.exp(-max(x, 0.0) / scale)


@dataclass(frozen=True)
class Attribute:
    """One measurable property of a reply. ``measure(text, prompt)`` is in [0, 1]."""

    name: str
    measure: Callable[[str, str], float]
    in_style_features: bool
    more_rule: str | None = None
    less_rule: str | None = None

    def rule(self, direction: int) -> str | None:
        """The rule text asking for more (``direction > 0``) or less of this attribute."""
        return self.more_rule if direction > 0 else self.less_rule


def _style(name: str, fn: Callable[[StyleProfile], float]) -> Attribute:
    return Attribute(
        name,
        lambda text, prompt="": fn(cached_profile(text)),
        True,
        template_text(name, +1),
        template_text(name, -1),
    )


def _per100(count: int, p: StyleProfile) -> float:
    return 100.0 * count / max(p.words, 1)


def phrase_pattern(*alternatives: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(alternatives) + r")\b", re.IGNORECASE)


_ANALOGY = phrase_pattern(
    r"like an?",
    "imagine",
    r"think of (?:it|this|them|that) as",
    "similar to",
    "as if",
    "akin to",
    r"analog(?:y|ous)",
    r"picture (?:a|an|this)",
)
CAVEAT_PHRASES = phrase_pattern(
    "however",
    "note that",
    "keep in mind",
    "bear in mind",
    "be aware",
    "be careful",
    r"caveats?",
    "that said",
    "on the other hand",
    "depending on",
    "it depends",
)
_EXAMPLE = re.compile(
    r"\b(?:for example|for instance|such as|as an example|to illustrate)\b"
    r"|\be\.g\.",
    re.IGNORECASE,
)
SUMMARY_PHRASES = phrase_pattern(
    "in short",
    "in summary",
    "to sum up",
    "to summarize",
    r"tl;\s?dr",
    "overall",
    "bottom line",
    "in a nutshell",
)
_EMPATHY = phrase_pattern(
    "i understand",
    "i hear you",
    "sorry to hear",
    "i'm sorry",
    "i am sorry",
    "that sounds",
    "understandable",
    "that must be",
    "you're not alone",
    "you are not alone",
    "it's normal to",
    "it is normal to",
)
_WARMTH = phrase_pattern(
    "glad",
    "happy to",
    "great question",
    r"hope(?:fully)?",
    "wonderful",
    "enjoy",
    "lovely",
    "welcome",
    "appreciate",
    "delighted",
    "good luck",
    "you've got this",
    "you can do it",
)
_SECOND = phrase_pattern("you", "your", "yours", "yourself", "you're", "you've", "you'll", "you'd")
_NATURE = phrase_pattern(
    r"nature",
    r"trees?",
    "forests?",
    "rivers?",
    "ocean",
    "sea",
    "mountains?",
    "gardens?",
    "plants?",
    "flowers?",
    "birds?",
    "sun(?:light|shine)?",
    "rain",
    "seeds?",
    "lea(?:f|ves)",
    "soil",
    "wild(?:life)?",
    "outdoors?",
    "hik(?:e|ing)",
    "roots?",
    "seasons?",
)
_MONEY = re.compile(
    phrase_pattern(
        r"money",
        r"costs?",
        r"prices?",
        r"budgets?",
        r"dollars?",
        "cheap",
        "expensive",
        r"afford(?:able)?",
        "savings",
        "save",
        r"invest(?:ment)?",
        "income",
        "salary",
        r"fees?",
        r"pay(?:ment)?",
    ).pattern
    + r"|\$\d",
    re.IGNORECASE,
)


def _count(pattern: re.Pattern[str], scale: float) -> Callable[[str, str], float]:
    return lambda text, prompt="": _sat(len(pattern.findall(text)), scale)


def _numbers(text: str, prompt: str = "") -> float:
    return _sat(numeric_tokens(text), 4)


def _second_person(text: str, prompt: str = "") -> float:
    return _sat(len(_SECOND.findall(text)) / max(len(text.split()), 1), 0.04)


def _jargon(text: str, prompt: str = "") -> float:
    return _sat(long_word_share(text), 0.08)


def _echo(text: str, prompt: str = "") -> float:
    return prompt_overlap(text, prompt)


# Style attributes first (measured by persona_sdk.text.style, rules worded as edits.TEMPLATES), then
# the ones only an embedding can see. Order is the order of SimulatedUser.weights.
ATTRIBUTES: tuple[Attribute, ...] = (
    _style("length", lambda p: min(1.0, math.log1p(p.words) / math.log1p(500))),
    _style("sentence_length", lambda p: _sat(p.sentence_length, 20)),
    _style("bullets", lambda p: _sat(p.bullet_lines, 2)),
    _style("numbered", lambda p: _sat(p.numbered_lines, 2)),
    _style("emoji", lambda p: _sat(p.emoji, 2)),
    _style("questions", lambda p: _sat(p.questions, 1)),
    _style("exclamations", lambda p: _sat(p.exclamations, 2)),
    _style("code", lambda p: _sat(p.code, 1)),
    _style("headings", lambda p: _sat(p.headings, 1)),
    _style("hedging", lambda p: _sat(_per100(p.hedges, p), 2)),
    _style("greeting", lambda p: float(p.greeting)),
    _style("signoff", lambda p: float(p.signoff)),
    _style("casual", lambda p: _sat(_per100(p.contractions + 2 * p.casual_words, p), 3)),
    Attribute(
        "analogies",
        _count(_ANALOGY, 1.5),
        False,
        "Use analogies to explain ideas.",
        "Avoid analogies; explain things literally.",
    ),
    Attribute(
        "second_person",
        _second_person,
        False,
        'Address the user directly as "you".',
        'Write impersonally; do not address the user as "you".',
    ),
    Attribute(
        "caveats",
        _count(CAVEAT_PHRASES, 1.5),
        False,
        "Point out caveats and limitations.",
        "Skip caveats and disclaimers.",
    ),
    Attribute(
        "examples",
        _count(_EXAMPLE, 1.5),
        False,
        "Give concrete examples.",
        "Skip examples; state the point directly.",
    ),
    Attribute(
        "numbers",
        _numbers,
        False,
        "Back points with specific numbers and figures.",
        "Avoid numbers and statistics.",
    ),
    Attribute(
        "summary",
        _count(SUMMARY_PHRASES, 0.5),
        False,
        "End with a one-line summary.",
        "Do not add a summary line.",
    ),
    Attribute(
        "empathy",
        _count(_EMPATHY, 1.0),
        False,
        "Acknowledge the user's feelings.",
        "Skip sympathy; stick to the facts.",
    ),
    Attribute(
        "jargon",
        _jargon,
        False,
        "Use precise technical terminology.",
        "Use plain words; avoid jargon.",
    ),
    Attribute(
        "nature",
        _count(_NATURE, 2.0),
        False,
        "Draw on imagery from nature.",
        "Leave out nature imagery.",
    ),
    Attribute(
        "money",
        _count(_MONEY, 2.0),
        False,
        "Mention costs and money matters.",
        "Leave out costs and money talk.",
    ),
    Attribute(
        "warmth",
        _count(_WARMTH, 1.5),
        False,
        "Use a warm, encouraging tone.",
        "Keep the tone neutral and matter-of-fact.",
    ),
    Attribute(
        "echo",
        _echo,
        False,
        "Reuse the key words of the user's request.",
        "Rephrase in your own words instead of echoing the request.",
    ),
)
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(a.name for a in ATTRIBUTES)
ATTRIBUTE_INDEX = {name: i for i, name in enumerate(ATTRIBUTE_NAMES)}


@lru_cache(maxsize=8192)
def _vector(text: str, prompt: str) -> tuple[float, ...]:
    return tuple(min(1.0, max(0.0, float(a.measure(text, prompt)))) for a in ATTRIBUTES)


def attribute_vector(text: str, prompt: str | Prompt = "") -> np.ndarray:
    """All :data:`ATTRIBUTES` of ``text`` (a reply to ``prompt``) as a float64 vector."""
    return np.array(_vector(text, str(prompt)), dtype=np.float64)
