"""Best-of ranking that cannot pick broken text: a degenerate candidate never wins over a
sound one, and among either kind the user's reward is traded against fluency and relevance
relative to the best candidate of the same request."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def rank_candidates(
    rewards: Sequence[float],
    fluency: Sequence[float],
    relevance: Sequence[float],
    degenerate: Sequence[bool],
    fluency_weight: float = 1.0,
    relevance_weight: float = 1.0,
    satisfied: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Candidates' order (best first) and scores.

    ``satisfied`` (the constraints each candidate meets) is the second sort key when
    given: among sound (or among degenerate) replies, one that keeps more of the user's
    checkable rules wins; a degenerate reply never wins over a sound one.

    ``score_i = reward_i + w_f (fluency_i − max fluency) + w_r (relevance_i − max
    relevance)``, where fluency is the base model's mean log-probability per token (NaN,
    for an empty reply, counts as the worst seen). Sorted by (not degenerate, constraints
    met, score), ties kept in input order.
    """
    reward = np.asarray(rewards, dtype=np.float64)
    if reward.size == 0:
        return np.zeros(0, dtype=np.int64), reward
    fluent = np.asarray(fluency, dtype=np.float64)
    known = fluent[np.isfinite(fluent)]
    fluent = np.where(np.isfinite(fluent), fluent, known.min() if known.size else 0.0)
    related = np.asarray(relevance, dtype=np.float64)
    scores = (
        reward
        + fluency_weight * (fluent - fluent.max())
        + relevance_weight * (related - related.max())
    )
    broken = np.asarray(degenerate, dtype=bool)
    keys = [-scores]  # lexsort is stable and sorts by the last key first
    if satisfied is not None:
        keys.append(-np.asarray(satisfied, dtype=np.int64))
    keys.append(broken)  # sound first, whatever else
    order = np.lexsort(tuple(keys))
    return order, scores
