"""Fluency: the base model's mean log-probability per token of a reply.

A reply the base model finds likely is fluent text on the request; a guided or adapted
reply that drifts into loops or broken lists costs the base model many nats per token.
The decode already computes the base logits of every step, so :class:`LogprobTracker`
sums them as it goes; :func:`score_replies` recomputes them with one forward per batch
for evaluations that only have the text.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from persona_sdk.errors import InvalidInputError


def token_logprobs(logits: torch.Tensor, token_ids: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """Log-probability of each token under the logits it was drawn from.

    ``logits`` is ``(..., T, V)`` and ``token_ids`` ``(..., T)``: ``logits[..., t, :]`` is
    the distribution ``token_ids[..., t]`` was drawn from (already shifted, as a decode
    step's logits are). Computed in float32 whatever the model's dtype.
    """
    ids = torch.as_tensor(token_ids, dtype=torch.long, device=logits.device)
    if logits.shape[:-1] != ids.shape:
        raise InvalidInputError(
            f"logits {tuple(logits.shape)} do not match token ids {tuple(ids.shape)}"
        )
    logits = logits.float()
    picked = logits.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def mean_logprob(logits: torch.Tensor, token_ids: torch.Tensor | Sequence[int]) -> float:
    """Mean log-probability per token of a reply (``(T, V)`` logits, ``T`` ids); NaN for
    an empty reply, which has no fluency to measure."""
    ids = torch.as_tensor(token_ids, dtype=torch.long)
    if ids.numel() == 0:
        return math.nan
    return float(token_logprobs(logits, ids).mean())


class LogprobTracker:
    """Per-row running base log-probability of the tokens a batched decode emits.

    Sums stay on the device, so a step costs no host sync; read :meth:`mean` once at
    the end. Pass ``active`` to leave out finished rows (and a row's stop token, if the
    reply's own tokens are what is scored).
    """

    def __init__(self, rows: int, device: torch.device | str | None = None):
        self.total = torch.zeros(rows, dtype=torch.float32, device=device)
        self.count = torch.zeros(rows, dtype=torch.float32, device=device)

    def add(
        self, logits: torch.Tensor, tokens: torch.Tensor, active: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Add one step: base ``logits`` ``(B, V)`` and the ``tokens`` ``(B,)`` emitted.
        Returns each row's log-probability of its token (also for inactive rows)."""
        step = token_logprobs(logits, tokens)
        if active is None:
            self.total += step
            self.count += 1
        else:
            weight = active.to(device=step.device, dtype=step.dtype)
            self.total += step * weight
            self.count += weight
        return step

    def mean(self) -> list[float]:
        """Mean log-probability per token of each row; NaN for a row with no tokens."""
        totals, counts = self.total.tolist(), self.count.tolist()
        return [t / c if c else math.nan for t, c in zip(totals, counts)]


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def score_replies(
    model: torch.nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    reply_ids: Sequence[Sequence[int]],
    batch_size: int = 8,
    pad_id: int = 0,
) -> list[float]:
    """Mean log-probability per token of each reply after its prompt, under ``model``.

    ``model`` is a Hugging Face causal LM (with adapters disabled, for the base model's
    view); ``prompt_ids[i]`` is the full templated prompt (at least one token) and
    ``reply_ids[i]`` the reply's tokens (include the end-of-turn token only if it is
    meant to count). Rows are right-padded, so positions and causal attention are those
    of each sequence alone; only the logits from the earliest reply token on are kept.
    NaN for an empty reply.
    """
    if len(prompt_ids) != len(reply_ids):
        raise InvalidInputError("give one prompt per reply")
    if batch_size < 1:
        raise InvalidInputError("batch_size must be at least 1")
    if any(len(p) == 0 for p in prompt_ids):
        raise InvalidInputError("each prompt needs at least one token")
    device = _model_device(model)
    out = [math.nan] * len(reply_ids)
    todo = sorted(
        (i for i, reply in enumerate(reply_ids) if len(reply)),
        key=lambda i: len(prompt_ids[i]) + len(reply_ids[i]),
    )  # similar lengths share a batch: less padding
    for start in range(0, len(todo), batch_size):
        rows = todo[start : start + batch_size]
        seqs = [list(prompt_ids[i]) + list(reply_ids[i]) for i in rows]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for j, seq in enumerate(seqs):
            ids[j, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[j, : len(seq)] = 1
        first = min(len(prompt_ids[i]) for i in rows)  # earliest reply token
        keep = width - first + 1  # logits at positions first-1 .. width-1
        logits = model(
            input_ids=ids.to(device), attention_mask=mask.to(device), logits_to_keep=keep
        ).logits
        for j, i in enumerate(rows):
            offset = len(prompt_ids[i]) - first  # logits[j, offset] predicts the first reply token
            span = logits[j, offset : offset + len(reply_ids[i])]
            out[i] = mean_logprob(span, reply_ids[i])
    return out
