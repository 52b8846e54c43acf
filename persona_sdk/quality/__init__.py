"""The one quality check of a reply, shared by the decode guard, best-of and the evals:
degenerate text (:mod:`.checks`), fluency under the base model (:mod:`.fluency`),
relevance to the request (:mod:`.report`) and best-of ranking on all three (:mod:`.rank`).

Depends only on the standard library, numpy, torch and :mod:`persona_sdk.errors`, so any
layer may import it.
"""

from __future__ import annotations

from persona_sdk.quality.checks import (
    DEFAULT_LIMITS,
    EMPTY,
    EMPTY_LIST_ITEMS,
    REASONS,
    REPEATED_LINE,
    REPETITIVE,
    RESTATES_REQUEST,
    DegenerationLimits,
    DegenerationMonitor,
    degenerate_reasons,
    is_degenerate,
)
from persona_sdk.quality.fluency import (
    LogprobTracker,
    mean_logprob,
    score_replies,
    token_logprobs,
)
from persona_sdk.quality.rank import rank_candidates
from persona_sdk.quality.report import QualityReport, aggregate, assess, relevance

__all__ = [
    "DEFAULT_LIMITS",
    "EMPTY",
    "EMPTY_LIST_ITEMS",
    "REASONS",
    "REPEATED_LINE",
    "REPETITIVE",
    "RESTATES_REQUEST",
    "DegenerationLimits",
    "DegenerationMonitor",
    "LogprobTracker",
    "QualityReport",
    "aggregate",
    "assess",
    "degenerate_reasons",
    "is_degenerate",
    "mean_logprob",
    "rank_candidates",
    "relevance",
    "score_replies",
    "token_logprobs",
]
