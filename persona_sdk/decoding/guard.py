"""The guard inside guided decoding: personalization may move a reply only so far per token,
and never keeps steering a reply that has started to break.

Per guided row and step, with base logits ``b`` and ``d = ℓ_user − b``:

- **KL budget.** ``KL(softmax(b + α d) ‖ softmax(b))`` grows monotonically with α ≥ 0 (its
  derivative is ``α Var(d)``), so when a row's planned α overshoots the budget τ, a
  bisection on ``[0, α]`` finds the largest α (to ``α / 2^steps``) that fits. All
  over-budget rows are bisected together; a step with none pays one KL evaluation.
- **Trip-wire.** A :class:`~persona_sdk.quality.DegenerationMonitor` per guided row reads
  the reply so far; once it finds a degenerate sign, the row decodes with α = 0 (the base
  model) to the end. A loop feeds itself, so the base model handed a looping prefix keeps
  looping: unless its text was already streamed, the row restarts from the prompt (the
  decoding loop hides its reply from attention; the cache is kept), which makes the reply
  the base model's own.

Rows planned at α = 0 have no monitor and are never bisected (their KL is 0).
:class:`FluencyTracker` sums the base log-probability of every emitted token, for
reranking candidates of one decode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from persona_sdk.config import GuardConfig
from persona_sdk.decoding.loop import LogitsProcessor, RowState
from persona_sdk.quality import DegenerationMonitor, LogprobTracker, degenerate_reasons


def kl_from_base(base_logp: torch.Tensor, base: torch.Tensor, delta: torch.Tensor,
                 alpha: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """Per row, ``KL(softmax(base + α·delta) ‖ softmax(base))`` in nats; ``base_logp`` is
    ``log_softmax(base)``, ``alpha`` is ``(B, 1)``."""
    logp = torch.log_softmax(base + alpha * delta, dim=-1)
    return (logp.exp() * (logp - base_logp)).sum(dim=-1)


def cap_alpha(
    base: torch.Tensor, delta: torch.Tensor, alpha: torch.Tensor, budget: float, steps: int = 12
) -> tuple[torch.Tensor, torch.Tensor]:
    """The largest α ≤ the planned ``alpha`` ``(B, 1)`` per row whose mix stays within
    ``budget`` nats of the base, and which rows were capped ``(B,)``."""
    base, delta = base.float(), delta.float()
    base_logp = torch.log_softmax(base, dim=-1)
    over = kl_from_base(base_logp, base, delta, alpha) > budget
    if not bool(over.any()):
        return alpha, over
    rows = over.nonzero().squeeze(-1)
    b, d, lp = base[rows], delta[rows], base_logp[rows]
    lo, hi = torch.zeros_like(alpha[rows]), alpha[rows]
    for _ in range(steps):  # invariant: KL(lo) <= budget < KL(hi)
        mid = 0.5 * (lo + hi)
        fits = (kl_from_base(lp, b, d, mid) <= budget).unsqueeze(-1)
        lo, hi = torch.where(fits, mid, lo), torch.where(fits, hi, mid)
    capped = alpha.clone()
    capped[rows] = lo
    return capped, over


class DecodeGuard(LogitsProcessor):
    """Per-row guard state of one guided decode; the guided forward calls :meth:`mix`,
    the decoding loop calls :meth:`observe` (see the module doc)."""

    def __init__(
        self,
        alphas: Sequence[float],
        prompts: Sequence[str | None],
        config: GuardConfig,
        device: torch.device | str | None = None,
    ):
        self.config = config
        self.budget = config.kl_budget or 0.0
        self.alpha = torch.tensor([[float(a)] for a in alphas], device=device)
        self.live = torch.ones_like(self.alpha)  # 0 once a row trips
        self.monitors = {
            i: DegenerationMonitor(prompts[i])
            for i, a in enumerate(alphas)
            if a > 0 and config.trip_wire
        }
        self.trips: dict[int, tuple[int, list[str]]] = {}  # row -> (tokens, reasons)
        rows = len(alphas)
        self.alpha_sum = torch.zeros(rows, device=device)
        self.capped = torch.zeros(rows, device=device)
        self.count = torch.zeros(rows, device=device)
        self._step: tuple[torch.Tensor, torch.Tensor] | None = None
        self._restarts: dict[int, int] = {}  # row -> restarts seen

    def mix(self, base: torch.Tensor, adapted: torch.Tensor) -> torch.Tensor:
        """The guarded logits of one step from every row's base and adapted logits."""
        delta = adapted.float() - base.float()
        alpha = self.alpha * self.live
        capped = torch.zeros(alpha.shape[0], dtype=torch.bool, device=alpha.device)
        if self.budget > 0:
            alpha, capped = cap_alpha(base, delta, alpha, self.budget, self.config.bisection_steps)
        self._step = (alpha.squeeze(-1), capped)
        return base.float() + alpha * delta

    def observe(self, tokens: torch.Tensor, rows: Sequence[RowState], active: list[bool]) -> None:
        for i in self.monitors:
            if rows[i].restarts != self._restarts.get(i, 0):  # its reply was dropped
                self._restarts[i] = rows[i].restarts
                for stat in (self.alpha_sum, self.capped, self.count):
                    stat[i] = 0.0
        if self._step is not None:
            took = torch.tensor(active, dtype=torch.float32, device=self.count.device)
            alpha, capped = self._step
            self.alpha_sum += alpha * took
            self.capped += capped.float() * took
            self.count += took
        for i, monitor in self.monitors.items():
            if i in self.trips:
                continue
            tripped = active[i] and monitor.update(rows[i].text)
            if not tripped and rows[i].finished:
                # a reply cut short (a budget, a stop) can end broken before the trip-wire
                # sees a repeat: the whole-reply check decides
                tripped = monitor.finish(rows[i].text)
            if tripped:
                self.trips[i] = (len(rows[i].tokens), list(monitor.reasons))
                self.live[i] = 0.0
                rows[i].restart_requested = self.config.restart

    def report(self, row: int, text: str, prompt: str | None) -> dict:
        """What the guard did to ``row``, and the final check of its ``text``."""
        count = float(self.count[row])
        at, reasons = self.trips.get(row, (None, []))
        final = degenerate_reasons(text, prompt)
        return {
            "kl_budget": self.config.kl_budget,
            "capped_tokens": int(self.capped[row]),
            "mean_alpha": round(float(self.alpha_sum[row]) / count, 4) if count else 0.0,
            "tripped": at is not None,
            "reasons": reasons,
            "tripped_at_token": at,
            "restarted": self._restarts.get(row, 0) > 0,
            "degenerate": bool(final),
            "final_reasons": final,
        }


class FluencyTracker(LogitsProcessor):
    """The base model's mean log-probability per token of each row's reply, from the
    decode's own logits. ``base_of`` maps the step's logits to its base logits (default:
    they are the base's, as in a plain decode)."""

    def __init__(
        self,
        rows: int,
        device: torch.device | str | None = None,
        base_of: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self.tracker = LogprobTracker(rows, device)
        self._restarts = [0] * rows
        self.base_of = base_of
        self._base: torch.Tensor | None = None

    def process(self, logits: torch.Tensor, rows: Sequence[RowState]) -> torch.Tensor:
        self._base = logits if self.base_of is None else self.base_of(logits)
        return logits

    def observe(self, tokens: torch.Tensor, rows: Sequence[RowState], active: list[bool]) -> None:
        assert self._base is not None
        for i, row in enumerate(rows):
            if row.restarts != self._restarts[i]:  # its reply was dropped: so are its sums
                self._restarts[i] = row.restarts
                self.tracker.total[i] = self.tracker.count[i] = 0.0
        took = torch.tensor(active, device=self._base.device)
        self.tracker.add(self._base, tokens.to(self._base.device), took)

    def means(self) -> list[float]:
        """Mean log-probability per reply token of each row (NaN: no tokens)."""
        return self.tracker.mean()
