"""Interpretable style features of a reply: the shared vocabulary of the edit analyser,
the reward featurizer's explainable axes, and the simulated users' measurable taste.

Every feature is a cheap deterministic function of the text, so an inferred rule such as
"no emojis" can always be traced back to a number.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# Pictographs, dingbats and symbols; the simulated editor strips runs of these (plus
# variation selectors and joiners) with the same ranges.
EMOJI_RANGES = "\U0001f300-\U0001faff\U00002600-\U000027bf\U0001f000-\U0001f2ff"
_EMOJI = re.compile(f"[{EMOJI_RANGES}]")
_BULLET = re.compile(r"^\s*[-*•]\s+\S")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+\S")
HEADING = re.compile(r"^\s*(#{1,6}\s+\S|\*\*[^*]+\*\*:?\s*$)")
_CODE = re.compile(r"```|`[^`\n]+`|^\s{4}\S", re.MULTILINE)
_GREETING = re.compile(
    r"^\s*(hi|hello|hey|dear|greetings|good (morning|afternoon|evening))\b", re.IGNORECASE
)
SIGNOFF_WORDS = (
    r"(?:best(?: regards)?|kind regards|regards|cheers|thanks|thank you|sincerely|"
    r"warmly|all the best|take care)[,.!]?"
)
SIGNOFF = re.compile(SIGNOFF_WORDS + r"\s*(?:\n.{0,40})?\s*$", re.IGNORECASE)
_HEDGES = re.compile(
    r"\b(maybe|perhaps|might|possibly|probably|i think|i believe|it seems|somewhat|"
    r"could be|may be|generally|typically|arguably)\b",
    re.IGNORECASE,
)
_CONTRACTION = re.compile(r"\b\w+'(s|re|ve|ll|d|m|t)\b", re.IGNORECASE)
_CASUAL = re.compile(
    r"\b(gonna|wanna|kinda|yeah|yep|nope|lol|awesome|cool|stuff|ok|okay)\b", re.IGNORECASE
)
_SENTENCE_END = re.compile(r"[.!?]+(\s|$)")
_WORD = re.compile(r"\S+")

STYLE_FEATURES: tuple[str, ...] = (
    "length",
    "sentence_length",
    "bullets",
    "numbered",
    "emoji",
    "questions",
    "exclamations",
    "code",
    "headings",
    "hedging",
    "greeting",
    "signoff",
    "casual",
)


@dataclass(frozen=True)
class StyleProfile:
    """Raw style measurements of one text."""

    words: int
    sentences: int
    bullet_lines: int
    numbered_lines: int
    emoji: int
    questions: int
    exclamations: int
    code: int
    headings: int
    hedges: int
    greeting: bool
    signoff: bool
    contractions: int
    casual_words: int

    @property
    def sentence_length(self) -> float:
        return self.words / max(self.sentences, 1)

    def vector(self) -> np.ndarray:
        """The features of :data:`STYLE_FEATURES`, squashed to comparable scales."""
        per_100 = 100.0 / max(self.words, 1)
        return np.array(
            [
                np.log1p(self.words),
                np.log1p(self.sentence_length),
                float(self.bullet_lines > 0) + np.log1p(self.bullet_lines) / 3,
                float(self.numbered_lines > 0) + np.log1p(self.numbered_lines) / 3,
                np.log1p(self.emoji),
                np.log1p(self.questions),
                np.log1p(self.exclamations),
                float(self.code > 0),
                np.log1p(self.headings),
                np.log1p(self.hedges * per_100),
                float(self.greeting),
                float(self.signoff),
                np.log1p((self.contractions + 2 * self.casual_words) * per_100),
            ],
            dtype=np.float32,
        )


def measure(text: str) -> StyleProfile:
    """Measure the style of ``text``."""
    lines = text.splitlines()
    body = text.strip()
    return StyleProfile(
        words=len(_WORD.findall(text)),
        sentences=max(len(_SENTENCE_END.findall(body)), 1 if body else 0),
        bullet_lines=sum(bool(_BULLET.match(line)) for line in lines),
        numbered_lines=sum(bool(_NUMBERED.match(line)) for line in lines),
        emoji=len(_EMOJI.findall(text)),
        questions=text.count("?"),
        exclamations=text.count("!"),
        code=len(_CODE.findall(text)),
        headings=sum(bool(HEADING.match(line)) for line in lines),
        hedges=len(_HEDGES.findall(text)),
        greeting=bool(_GREETING.match(body)),
        signoff=bool(SIGNOFF.search(body)) and len(lines) > 1,
        contractions=len(_CONTRACTION.findall(text)),
        casual_words=len(_CASUAL.findall(text)),
    )


def style_matrix(texts: list[str]) -> np.ndarray:
    """``(len(texts), len(STYLE_FEATURES))`` raw style vectors."""
    if not texts:
        return np.zeros((0, len(STYLE_FEATURES)), dtype=np.float32)
    return np.stack([measure(t).vector() for t in texts])


# Lexical measures beside the style profile: the reward featurizer's extra interpretable
# features (and the simulator's measures of the same things).
LEXICAL_FEATURES: tuple[str, ...] = ("numbers", "long_words", "prompt_overlap")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:[.,]\d+)*%?")
_LIST_MARKER = re.compile(r"^\s*\d+[.)]\s+", re.MULTILINE)
_ALPHA = re.compile(r"[A-Za-z]+")
_STOP = frozenset(
    re.findall(
        r"\w+",
        "about what with that this does have your from some short help should there into which "
        "when would could like want need good more plain terms matter choose between difference "
        "simple write give make explain tell recommend summary summarize points things work works",
    )
)


def numeric_tokens(text: str) -> int:
    """Numbers in ``text`` (list markers such as "1." do not count)."""
    return len(_NUMBER.findall(_LIST_MARKER.sub("", text)))


def long_word_share(text: str) -> float:
    """Share of words with ten or more letters (a proxy for technical vocabulary)."""
    words = _ALPHA.findall(text)
    return sum(len(w) >= 10 for w in words) / max(len(words), 1)


def prompt_overlap(text: str, prompt: str) -> float:
    """Share of the prompt's content words (4+ letters, not stop words) used in ``text``."""
    terms = {w.lower() for w in _ALPHA.findall(str(prompt)) if len(w) >= 4} - _STOP
    if not terms:
        return 0.0
    return len(terms & {w.lower() for w in _ALPHA.findall(text)}) / len(terms)


def lexical_matrix(texts: list[str], prompts: list[str]) -> np.ndarray:
    """``(len(texts), len(LEXICAL_FEATURES))``: log numbers, long-word share, prompt overlap."""
    return np.array(
        [
            [np.log1p(numeric_tokens(t)), long_word_share(t), prompt_overlap(t, p)]
            for t, p in zip(texts, prompts)
        ],
        dtype=np.float32,
    ).reshape(len(texts), len(LEXICAL_FEATURES))
