"""Learning from an edit: style deltas (original → edited) become templated rule candidates.

Each template is a (feature, direction) pair such as ``emoji:-`` ("Do not use emojis.").
Templates make consolidation exact: the same template is the same preference, and the
opposite direction of the same feature is a contradiction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from persona_sdk.text.style import StyleProfile, measure

# feature -> (rule text when the user wants more of it, rule text when they want less)
TEMPLATES: dict[str, tuple[str, str]] = {
    "length": ("Give longer, more detailed replies.", "Keep replies short and to the point."),
    "sentence_length": ("Use longer, flowing sentences.", "Use short, simple sentences."),
    "bullets": ("Use bulleted lists.", "Write in prose, not bulleted lists."),
    "numbered": ("Use numbered steps.", "Do not use numbered lists."),
    "emoji": ("Use emojis.", "Do not use emojis."),
    "questions": ("End by asking the user a question.", "Do not ask the user questions."),
    "exclamations": ("Sound enthusiastic, with exclamation marks.", "Avoid exclamation marks."),
    "code": ("Include code examples.", "Do not include code."),
    "headings": ("Organize replies with headings.", "Do not use headings."),
    "hedging": ("Use cautious, hedged language.", "Be direct; do not hedge."),
    "greeting": ("Start with a greeting.", "Do not start with a greeting."),
    "signoff": ("End with a sign-off.", "Do not add a sign-off."),
    "casual": ("Use a casual, friendly tone.", "Use a formal tone, without slang or contractions."),
}
MIN_CONFIDENCE = 0.35


@dataclass(frozen=True)
class RuleCandidate:
    """A rule the edit suggests, with how sure the analyser is."""

    template: str  # "feature:+" or "feature:-"
    text: str
    confidence: float

    @property
    def feature(self) -> str:
        return self.template.split(":")[0]

    @property
    def direction(self) -> int:
        return 1 if self.template.endswith("+") else -1


def template_text(feature: str, direction: int) -> str:
    """The canonical rule text for a feature and direction."""
    more, less = TEMPLATES[feature]
    return more if direction > 0 else less


def normalise_rule_text(text: str | None) -> str:
    """Case, spacing and final punctuation folded: "Be brief." equals "be  brief"."""
    return " ".join((text or "").lower().split()).rstrip(".!")


def is_template(value: object) -> bool:
    """True for ``"feature:+"`` / ``"feature:-"`` of a known feature."""
    if not isinstance(value, str) or value.count(":") != 1:
        return False
    feature, sign = value.split(":")
    return feature in TEMPLATES and sign in ("+", "-")


def opposite(template: str) -> str:
    feature, sign = template.split(":")
    return f"{feature}:{'-' if sign == '+' else '+'}"


def _candidate(feature: str, direction: int, confidence: float) -> RuleCandidate:
    sign = "+" if direction > 0 else "-"
    return RuleCandidate(
        f"{feature}:{sign}", template_text(feature, direction), round(min(1.0, confidence), 3)
    )


def _count_change(feature: str, before: int, after: int, shrunk: bool) -> RuleCandidate | None:
    """Added from nothing is a clear signal; removed entirely is one too, unless the
    whole reply was cut down (then the removal may be a side effect)."""
    if before == 0 and after > 0:
        return _candidate(feature, +1, 0.6 + 0.1 * min(after, 4))
    if before > 0 and after == 0:
        return _candidate(feature, -1, (0.45 if shrunk else 0.7) + 0.1 * min(before, 3))
    return None


def analyse_edit(original: str, edited: str) -> list[RuleCandidate]:
    """Rule candidates explaining how ``edited`` differs from ``original``."""
    a, b = measure(original), measure(edited)
    ratio = (b.words + 1) / (a.words + 1)
    shrunk = ratio < 0.7
    found: list[RuleCandidate | None] = []
    if ratio < 0.7:
        found.append(_candidate("length", -1, 0.4 + (0.7 - ratio)))
    elif ratio > 1.4:
        found.append(_candidate("length", +1, 0.4 + min(ratio - 1.4, 0.6)))
    if a.sentences >= 2 and b.sentences >= 2:
        sentence_ratio = (b.sentence_length + 1) / (a.sentence_length + 1)
        if sentence_ratio < 0.65:
            found.append(_candidate("sentence_length", -1, 0.3 + (0.65 - sentence_ratio)))
        elif sentence_ratio > 1.5:
            found.append(_candidate("sentence_length", +1, 0.3 + min(sentence_ratio - 1.5, 0.6)))
    counts = {
        "bullets": (a.bullet_lines, b.bullet_lines),
        "numbered": (a.numbered_lines, b.numbered_lines),
        "emoji": (a.emoji, b.emoji),
        "questions": (a.questions, b.questions),
        "exclamations": (a.exclamations, b.exclamations),
        "code": (a.code, b.code),
        "headings": (a.headings, b.headings),
        "hedging": (a.hedges, b.hedges),
        "casual": (a.contractions + a.casual_words, b.contractions + b.casual_words),
    }
    found += [_count_change(f, before, after, shrunk) for f, (before, after) in counts.items()]
    found += [_flag_change("greeting", a, b), _flag_change("signoff", a, b)]
    return [c for c in found if c is not None and c.confidence >= MIN_CONFIDENCE]


def _flag_change(feature: str, a: StyleProfile, b: StyleProfile) -> RuleCandidate | None:
    before, after = getattr(a, feature), getattr(b, feature)
    if before == after:
        return None
    return _candidate(feature, +1 if after else -1, 0.8)


# -- classifying a stated rule into a template (for contradiction checks) ------------------

_NEGATION = re.compile(
    r"\b(no|not|never|don't|dont|do not|avoid|without|stop|skip|less|fewer)\b", re.IGNORECASE
)
_KEYWORDS: list[tuple[str, int, re.Pattern[str]]] = [
    ("emoji", +1, re.compile(r"\bemoj", re.IGNORECASE)),
    ("numbered", +1, re.compile(r"\bnumbered|\bsteps?\b", re.IGNORECASE)),
    ("bullets", +1, re.compile(r"\bbullet|\blists?\b", re.IGNORECASE)),
    ("code", +1, re.compile(r"\bcode\b|\bsnippets?\b", re.IGNORECASE)),
    ("headings", +1, re.compile(r"\bheadings?\b|\bheaders?\b|\bsections?\b", re.IGNORECASE)),
    ("greeting", +1, re.compile(r"\bgreet", re.IGNORECASE)),
    ("signoff", +1, re.compile(r"\bsign[- ]?off|\bsign your\b", re.IGNORECASE)),
    ("questions", +1, re.compile(r"\bquestions?\b", re.IGNORECASE)),
    ("exclamations", +1, re.compile(r"\bexclamation", re.IGNORECASE)),
    ("hedging", +1, re.compile(r"\bhedg|\bcautious", re.IGNORECASE)),
    ("casual", +1, re.compile(r"\bcasual|\binformal|\bslang|\bcontractions?\b", re.IGNORECASE)),
    ("casual", -1, re.compile(r"\bformal\b|\bprofessional", re.IGNORECASE)),
    (
        "length",
        -1,
        re.compile(
            r"\bshort|\bbrief|\bconcise|\bone sentence|\bunder \d+ words|"
            r"\bterse|\bto the point",
            re.IGNORECASE,
        ),
    ),
    (
        "length",
        +1,
        re.compile(r"\bdetailed|\blong(er)?\b|\bthorough|\bin depth|\belaborate", re.IGNORECASE),
    ),
]


def classify_rule(text: str) -> str | None:
    """The template a free-text rule expresses, e.g. "Never use emojis" → ``emoji:-``."""
    for feature, direction, pattern in _KEYWORDS:
        if pattern.search(text):
            if _NEGATION.search(text):
                direction = -direction
            return f"{feature}:{'+' if direction > 0 else '-'}"
    return None
