"""Guards shared by the rule parser: hedges, negation and what a limit is scoped to."""

from __future__ import annotations

import re

# A benign "when": the rule applies whenever the assistant replies, i.e. always.
_BENIGN_WHEN = re.compile(
    r"\b(?:when|whenever|if)\s+(?:you\s+)?(?:are\s+)?(?:reply|replying|answer|answering"
    r"|respond|responding|write|writing|talk|talking|chat|chatting)(?:\s+(?:to|with)\s+me)?"
    r"(?=\s*(?:,|$))"
)
_HEDGE = re.compile(
    r"\b(?:if|when|whenever|unless|except|sometimes|usually|generally|mostly|often"
    r"|occasionally|ideally|preferably|prefer|prefers|preferred|possible|as needed"
    r"|appropriate|relevant|necessary|maybe|perhaps|might|could|feel free|you can|you may"
    r"|don't mind|do not mind|doesn't matter|optional|sparingly|rarely|too many|too much"
    r"|overus\w*|excessive\w*|instead of|rather than|in place of|i like|i love|i prefer"
    r"|it's fine|it's ok|it's okay|is fine|are fine|is ok|are ok|is okay|are okay|is allowed"
    r"|are allowed|is acceptable|are acceptable|are welcome|is welcome|a bit|somewhat|ish)\b"
)
_NEGATION = re.compile(
    r"\b(?:no|not|never|don't|dont|do not|doesn't|does not|didn't|won't|shouldn't|mustn't"
    r"|can't|cannot|avoid|without|stop|skip|drop|ditch|omit|nor|neither)\b|n't\b"
)
_DOUBLE_NEGATION = re.compile(
    r"\b(?:don't|dont|do not|never|no need to|stop)\s+(?:avoid|avoiding|skip|skipping|drop"
    r"|dropping|omit|omitting|ban|banning|forbid|forbidding)\b|\bnot (?:banned|forbidden)\b"
)
_SEPARATOR = re.compile(r"\band\b|,|;|:")


def hedged(text: str) -> bool:
    """True when a clause is conditional, hedged or permissive, so it stays prompt-only."""
    return _HEDGE.search(_BENIGN_WHEN.sub(" ", text)) is not None


def double_negated(text: str) -> bool:
    """True for "don't avoid emojis"-style clauses, which ban nothing."""
    return _DOUBLE_NEGATION.search(text) is not None


def segment_before(text: str, match: re.Match[str]) -> str:
    """The words between the previous "and"/comma and the match."""
    return _SEPARATOR.split(text[: match.start()])[-1]


def segment_after(text: str, match: re.Match[str]) -> str:
    """The words between the match and the next "and"/comma."""
    return _SEPARATOR.split(text[match.end() :])[0]


def negated_before(text: str, match: re.Match[str]) -> bool:
    """True when a negation precedes the match within its own part of the clause."""
    return _NEGATION.search(segment_before(text, match)) is not None


def scoped(text: str, match: re.Match[str], element: re.Pattern[str]) -> bool:
    """True when the matched limit applies to a part of the reply (``element`` words in
    it or right around it: "each bullet under 10 words", "limit titles to 8 words")."""
    window = " ".join((segment_before(text, match), match.group(0), segment_after(text, match)))
    return element.search(window) is not None
