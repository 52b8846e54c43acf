"""From prepared requests to replies: one guarded batched decode, then each request's
reply picked from its ``best_of`` rows by the user's reward and the quality check."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from persona_sdk.adapters.guidance import GuidedForward, RowPlan, guided_forward
from persona_sdk.adapters.serving import AdapterServer
from persona_sdk.config import GenerationConfig
from persona_sdk.constraints.enforce import ConstraintProcessor
from persona_sdk.constraints.select import EnforcedRule, request_constraints
from persona_sdk.constraints.verify import ConstraintResult, verify
from persona_sdk.decoding.guard import DecodeGuard, FluencyTracker
from persona_sdk.decoding.loop import BatchGeneration, LogitsProcessor, SamplingParams
from persona_sdk.decoding.models import ModelHost
from persona_sdk.memory.retrieval import RetrievedRule
from persona_sdk.quality import degenerate_reasons, rank_candidates, relevance
from persona_sdk.reply import Reply
from persona_sdk.reward.rewards import Rewards

Encode = Callable[[list[str]], np.ndarray]


@dataclass
class Request:
    """A validated request, with its rules retrieved and its prompt tokenised."""

    user_id: str
    rules: list[RetrievedRule]
    token_ids: list[int]
    retrieve_ms: float
    query: str = ""  # the latest user turn: what replies are scored against
    plan: RowPlan = field(default_factory=lambda: RowPlan(None, 0.0))
    has_pairs: bool = False
    enforced: list[EnforcedRule] = field(default_factory=list)  # rules enforced as constraints

    @property
    def constraints(self) -> list:
        return request_constraints(self.enforced)


class Decode:
    """One batched decode of ``requests`` × ``best_of`` rows: the guided forward, the
    guard on guided rows (when ``config.guard`` is enabled) and, for best-of, the base
    log-probabilities of every row (fluency)."""

    def __init__(
        self,
        host: ModelHost,
        server: AdapterServer,
        requests: Sequence[Request],
        params: SamplingParams,
        best_of: int,
        config: GenerationConfig,
    ):
        self.requests, self.best_of = list(requests), best_of
        plans = [r.plan for r in requests for _ in range(best_of)]
        self.guard = None
        if config.guard.enabled and any(p.needs_adapter for p in plans):
            queries = [r.query for r in requests for _ in range(best_of)]
            alphas = [p.strength if p.needs_adapter else 0.0 for p in plans]
            self.guard = DecodeGuard(alphas, queries, config.guard, host.device)
        forward = guided_forward(host, server, plans, self.guard, keep_base=best_of > 1)
        processors: list[LogitsProcessor] = []
        self.fluency = None
        if best_of > 1:  # first, so it sees the forward's logits before any change
            base_of = None
            if isinstance(forward, GuidedForward):
                base_of = lambda _logits: forward.last_base  # noqa: E731
            self.fluency = FluencyTracker(len(plans), host.device, base_of)
            processors.append(self.fluency)
        if self.guard is not None:
            processors.append(self.guard)
        self.constraints = [r.constraints for r in requests]
        if any(self.constraints):  # last: no later processor may re-allow a masked token
            rows = [c for c in self.constraints for _ in range(best_of)]
            processors.append(ConstraintProcessor(host, rows, params.max_new_tokens))
        prompts = [r.token_ids for r in requests for _ in range(best_of)]
        self.gen = BatchGeneration(host, prompts, params, forward, processors)

    def checks(self, texts: list[str]) -> list[list[ConstraintResult]]:
        """Each row's final text verified against its request's constraints."""
        return [verify(text, self.constraints[row // self.best_of])
                for row, text in enumerate(texts)]  # fmt: skip

    def guard_report(self, row: int, text: str) -> dict | None:
        """The guard's report for a guided row, else ``None``."""
        request = self.requests[row // self.best_of]
        if self.guard is None or not request.plan.needs_adapter:
            return None
        return self.guard.report(row, text, request.query)


def build_replies(
    decode: Decode,
    rewards: Rewards,
    encode: Encode,
    model: str,
    config: GenerationConfig,
    started: float,
) -> list[Reply]:
    """One reply per request of a finished ``decode``: with best-of, its rows ranked by
    (not degenerate, reward + fluency and relevance terms); every row is featurized in one
    embedding call."""
    requests, best_of, gen = decode.requests, decode.best_of, decode.gen
    score_start = time.perf_counter()
    texts = [row.text.strip() for row in gen.rows]
    queries = [r.query for r in requests for _ in range(best_of)]
    phi = rewards.features(queries, texts)
    checks = decode.checks(texts)
    met = [sum(c.passed for c in row) for row in checks]
    scores = np.concatenate([rewards.score_features(r.user_id, phi[i * best_of : (i + 1) * best_of])
                             for i, r in enumerate(requests)])  # fmt: skip
    candidates: list[list[dict]] = [[] for _ in requests]
    if best_of > 1:
        assert decode.fluency is not None
        fluency = decode.fluency.means()
        related = relevance(encode, queries, texts)  # the featurizer just embedded these
        for i in range(len(requests)):
            rows = range(i * best_of, (i + 1) * best_of)
            candidates[i] = _candidates(texts, queries, scores, fluency, related, rows, config,
                                        met)  # fmt: skip
    reward_ms = (time.perf_counter() - score_start) * 1000
    return [
        _reply(decode, i, candidates[i], texts, scores, checks, model, reward_ms, started)
        for i in range(len(requests))
    ]


def _reply(decode: Decode, i: int, candidates: list[dict], texts: list[str],
           scores: np.ndarray, checks: list, model: str, reward_ms: float,
           started: float) -> Reply:  # fmt: skip
    """Request ``i``'s reply: its best candidate row (the only row without best-of)."""
    request, gen = decode.requests[i], decode.gen
    row = candidates[0]["row"] if candidates else i * decode.best_of
    state = gen.rows[row]
    timings = {
        "retrieve": request.retrieve_ms,
        "ttft": gen.timings.get("ttft", 0.0) * 1000,
        "generate": gen.timings.get("total", 0.0) * 1000,
        "reward": reward_ms,
        "total": (time.perf_counter() - started) * 1000,
    }
    for candidate in candidates:
        candidate.pop("row")
    guard = decode.guard_report(row, texts[row])
    based = bool(guard and guard["restarted"])  # the guard redid the reply on the base
    return Reply(
        text=texts[row],
        user_id=request.user_id,
        used_rules=request.rules,
        strength=0.0 if based else request.plan.strength,
        personalized=bool(request.rules) or (request.has_pairs and not based),
        model=model,
        finish_reason=state.finish_reason or "stop",
        tokens=len(state.tokens),
        reward=float(scores[row]),
        candidates=candidates,
        guard=guard,
        constraints=checks[row],
        timings=timings,
    )


def _candidates(
    texts: list[str],
    queries: list[str],
    rewards: np.ndarray,
    fluency: list[float],
    related: np.ndarray,
    rows: range,
    config: GenerationConfig,
    met: list[int],
) -> list[dict]:
    """One request's candidate rows, best first, each with every term of its score."""
    reasons = [degenerate_reasons(texts[r], queries[r]) for r in rows]
    order, score = rank_candidates(
        rewards[rows], [fluency[r] for r in rows], related[rows], [bool(x) for x in reasons],
        config.rerank_fluency, config.rerank_relevance, [met[r] for r in rows],
    )  # fmt: skip
    out = []
    for j in order:
        r = rows[j]
        out.append({
            "row": r,
            "text": texts[r],
            "reward": float(rewards[r]),
            "fluency": None if np.isnan(fluency[r]) else round(float(fluency[r]), 4),
            "relevance": round(float(related[r]), 4),
            "degenerate": bool(reasons[j]),
            "constraints_met": met[r],
            "reasons": reasons[j],
            "score": float(score[j]),
        })  # fmt: skip
    return out
