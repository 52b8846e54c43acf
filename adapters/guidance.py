"""Decoding-time reward guidance (design §4, after GenARM and PAD).

Per row and step, ``ℓ = ℓ_base + α (ℓ_user − ℓ_base)``: α = 0 is the base model, 1 the
user's adapter, above 1 extrapolates. Equivalently ``π ∝ π_base^(1−α) π_user^α``, GenARM
with the implicit token reward ``log π_user − log π_base`` of a DPO-trained adapter.

It is a forward function for the existing decoding loop rather than a ``LogitsProcessor``:
a processor only sees one set of logits, while guidance needs base and adapted logits of
every row from the same step. Each row is expanded once into the copies it needs (a base
copy unless α = 1, an adapter copy unless α = 0), and all copies go through one batched
forward in which every copy is routed to its own adapter (``adapters/serving.py``). The
KV cache holds every copy, so no step re-encodes the prefix. With a guard
(``decoding/guard.py``) each guided row keeps a base copy and the guard does the mix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from persona_sdk.adapters.serving import AdapterServer, Slot
from persona_sdk.decoding.guard import DecodeGuard
from persona_sdk.decoding.loop import ForwardFn, default_forward
from persona_sdk.decoding.models import ModelHost


@dataclass(frozen=True, eq=False)
class RowPlan:
    """One request row: its adapter (``None``: none) and strength α."""

    adapter: Slot | None
    strength: float

    @property
    def needs_base(self) -> bool:
        return self.adapter is None or self.strength != 1.0

    @property
    def needs_adapter(self) -> bool:
        return self.adapter is not None and self.strength != 0.0


def guided_forward(
    host: ModelHost,
    server: AdapterServer,
    plans: Sequence[RowPlan],
    guard: DecodeGuard | None = None,
    keep_base: bool = False,
) -> ForwardFn:
    """The decoding loop's forward for rows planned by ``plans`` (see the module doc).

    With a ``guard`` (its rows are ``plans``), every guided row also gets a base copy, even
    at α = 1, and the guard mixes each step. ``keep_base`` gives every row a base copy and
    keeps the step's base logits in ``forward.last_base`` (for fluency). Without guided rows
    this is the plain forward: α = 0 rows never pay for guidance.
    """
    if not any(p.needs_adapter for p in plans):
        return default_forward(host)
    return GuidedForward(host, server, plans, guard, keep_base or guard is not None)


class GuidedForward:
    """One routed forward over every row's copies, then the per-row mix."""

    def __init__(
        self,
        host: ModelHost,
        server: AdapterServer,
        plans: Sequence[RowPlan],
        guard: DecodeGuard | None,
        every_base: bool,
    ):
        source, slots, base_at, adapter_at = [], [], [], []
        for row, plan in enumerate(plans):
            needs_base = plan.needs_base or every_base
            base_at.append(len(source) if needs_base else -1)
            if needs_base:
                source.append(row)
                slots.append(None)
            adapter_at.append(len(source) if plan.needs_adapter else -1)
            if plan.needs_adapter:
                source.append(row)
                slots.append(plan.adapter)
        device = host.device
        self.server, self.guard = server, guard
        self.route = server.route_for(slots, device)
        self.identity = source == list(range(len(plans)))  # one copy per row: no gather
        self.source = torch.tensor(source, device=device)
        self.base_t = torch.tensor(
            [b if b >= 0 else a for b, a in zip(base_at, adapter_at)], device=device
        )
        self.adapter_t = torch.tensor(
            [a if a >= 0 else b for b, a in zip(base_at, adapter_at)], device=device
        )
        self.alpha = torch.tensor([[p.strength] for p in plans], device=device)
        self.only_adapter = torch.tensor([[b < 0] for b in base_at], device=device)
        self.only_base = torch.tensor([[a < 0] for a in adapter_at], device=device)
        self.inner = default_forward(host)
        self.expanded_rows = len(source)  # for tests and benchmarks
        self.last_base: torch.Tensor | None = None

    def __call__(self, input_ids, attention_mask, position_ids, cache, logits_to_keep=1):
        if not self.identity:
            input_ids, attention_mask = input_ids[self.source], attention_mask[self.source]
            position_ids = position_ids[self.source]
        with self.server.using(self.route):
            logits, cache = self.inner(input_ids, attention_mask, position_ids, cache,
                                       logits_to_keep)  # fmt: skip
        if self.identity:
            return logits, cache
        base, adapted = logits[self.base_t], logits[self.adapter_t]
        self.last_base = base
        if self.guard is not None:
            return self.guard.mix(base, adapted), cache
        mixed = base + self.alpha * (adapted - base)
        mixed = torch.where(self.only_adapter, adapted, torch.where(self.only_base, base, mixed))
        return mixed, cache
