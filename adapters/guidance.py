"""Decoding-time reward guidance (design §4, after GenARM and PAD).

Per row and step, ``ℓ = ℓ_base + α (ℓ_user − ℓ_base)``: α = 0 is the base model, 1 the
user's adapter, above 1 extrapolates. Equivalently ``π ∝ π_base^(1−α) π_user^α``, GenARM
with the implicit token reward ``log π_user − log π_base`` of a DPO-trained adapter.

It is a forward function for the existing decoding loop rather than a ``LogitsProcessor``:
a processor only sees one set of logits, while guidance needs base and adapted logits of
every row from the same step. Each row is expanded once into the copies it needs (a base
copy unless α = 1, an adapter copy unless α = 0), and all copies go through one batched
forward in which every copy is routed to its own adapter (``adapters/serving.py``). The
KV cache holds every copy, so no step re-encodes the prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from persona_sdk.adapters.serving import AdapterServer, Slot
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


def guided_forward(host: ModelHost, server: AdapterServer, plans: Sequence[RowPlan]) -> ForwardFn:
    """The decoding loop's forward for rows planned by ``plans`` (see the module doc)."""
    if not any(p.needs_adapter for p in plans):
        return default_forward(host)
    source, slots, base_at, adapter_at = [], [], [], []
    for row, plan in enumerate(plans):
        base_at.append(len(source) if plan.needs_base else -1)
        if plan.needs_base:
            source.append(row)
            slots.append(None)
        adapter_at.append(len(source) if plan.needs_adapter else -1)
        if plan.needs_adapter:
            source.append(row)
            slots.append(plan.adapter)
    device = host.device
    route = server.route_for(slots, host.device)
    identity = source == list(range(len(plans)))  # every row is one copy: no gather needed
    source_t = torch.tensor(source, device=device)
    base_t = torch.tensor([b if b >= 0 else a for b, a in zip(base_at, adapter_at)], device=device)
    adapter_t = torch.tensor(
        [a if a >= 0 else b for b, a in zip(base_at, adapter_at)], device=device
    )
    alpha = torch.tensor([[p.strength] for p in plans], device=device)
    only_adapter = torch.tensor([[b < 0] for b in base_at], device=device)
    only_base = torch.tensor([[a < 0] for a in adapter_at], device=device)
    inner = default_forward(host)

    def forward(input_ids, attention_mask, position_ids, cache, logits_to_keep=1):
        if not identity:
            input_ids, attention_mask = input_ids[source_t], attention_mask[source_t]
            position_ids = position_ids[source_t]
        with server.using(route):
            logits, cache = inner(input_ids, attention_mask, position_ids, cache, logits_to_keep)
        if identity:
            return logits, cache
        base, adapted = logits[base_t], logits[adapter_t]
        mixed = base + alpha * (adapted - base)
        mixed = torch.where(only_adapter, adapted, torch.where(only_base, base, mixed))
        return mixed, cache

    forward.expanded_rows = len(source)  # for tests and benchmarks
    return forward
