"""Relevance to the request, and one reply's quality report with its aggregate for evals."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from persona_sdk.errors import InvalidInputError
from persona_sdk.quality.checks import DEFAULT_LIMITS, DegenerationLimits, degenerate_reasons

Encode = Callable[[list[str]], np.ndarray]  # texts -> (n, d) unit-norm rows


def relevance(encode: Encode, prompts: Sequence[str], replies: Sequence[str]) -> np.ndarray:
    """Cosine between each prompt and its reply under ``encode``; 0 for an empty reply.

    Each distinct prompt and non-empty reply is embedded once, in one call. Rows are
    renormalised, so an encoder that does not return unit vectors still gives cosines.
    """
    if len(prompts) != len(replies):
        raise InvalidInputError("give one prompt per reply")
    filled = [i for i, reply in enumerate(replies) if reply.strip()]
    out = np.zeros(len(replies), dtype=np.float64)
    if not filled:
        return out
    unique = list(dict.fromkeys(prompts[i] for i in filled))
    vectors = np.asarray(encode(unique + [replies[i] for i in filled]), dtype=np.float64)
    if vectors.shape[0] != len(unique) + len(filled):
        raise InvalidInputError("encode must return one row per text")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    prompt_row = {prompt: row for row, prompt in enumerate(unique)}
    prompt_vecs = vectors[[prompt_row[prompts[i]] for i in filled]]
    out[filled] = np.einsum("ij,ij->i", prompt_vecs, vectors[len(unique) :])
    return out


@dataclass
class QualityReport:
    """One reply's quality.

    Attributes:
        degenerate: any degenerate sign found (see :mod:`persona_sdk.quality.checks`).
        reasons: those signs' codes.
        nll_per_token: the base model's negative mean log-probability per reply token
            (``None`` when not measured or the reply has no tokens).
        relevance: cosine to the request (``None`` when not measured).
        words: whitespace-separated words.
    """

    degenerate: bool
    reasons: list[str] = field(default_factory=list)
    nll_per_token: float | None = None
    relevance: float | None = None
    words: int = 0

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


def _known(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def assess(
    prompts: Sequence[str],
    replies: Sequence[str],
    *,
    encode: Encode | None = None,
    logprobs: Sequence[float] | None = None,
    limits: DegenerationLimits = DEFAULT_LIMITS,
) -> list[QualityReport]:
    """A report per reply: degenerate signs always; relevance when ``encode`` is given;
    NLL from ``logprobs`` (each reply's mean base log-probability per token, e.g. from
    :func:`~persona_sdk.quality.fluency.score_replies`, NaN when unknown)."""
    if len(prompts) != len(replies):
        raise InvalidInputError("give one prompt per reply")
    if logprobs is not None and len(logprobs) != len(replies):
        raise InvalidInputError("give one log-probability per reply")
    cosines = relevance(encode, prompts, replies) if encode is not None else None
    reports = []
    for i, (prompt, reply) in enumerate(zip(prompts, replies)):
        reasons = degenerate_reasons(reply, prompt, limits)
        logprob = None if logprobs is None else _known(logprobs[i])
        reports.append(
            QualityReport(
                degenerate=bool(reasons),
                reasons=reasons,
                nll_per_token=None if logprob is None else -logprob,
                relevance=None if cosines is None else float(cosines[i]),
                words=len(reply.split()),
            )
        )
    return reports


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def aggregate(reports: Sequence[QualityReport]) -> dict:
    """Means over many reports, for an eval table: ``n``, ``degenerate_rate``,
    ``nll_per_token`` and ``relevance`` (over the reports that measured them; ``None``
    if none did), ``words``, and how often each reason fired."""
    nll = [r.nll_per_token for r in reports if r.nll_per_token is not None]
    rel = [r.relevance for r in reports if r.relevance is not None]
    reasons = Counter(reason for r in reports for reason in r.reasons)
    return {
        "n": len(reports),
        "degenerate_rate": _mean([float(r.degenerate) for r in reports]),
        "nll_per_token": _mean(nll),
        "relevance": _mean(rel),
        "words": _mean([float(r.words) for r in reports]),
        "reasons": dict(sorted(reasons.items())),
    }
