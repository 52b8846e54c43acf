"""The running batch of the serving engine: the KV cache of every row copy now decoding.

Guidance expands a request row into copies (base and/or adapter, see
``adapters/guidance.py``), so the batch works in copy space: one cache row, mask row,
position and adapter slot per copy, each group's copies contiguous and in its own order.
Copies leave by ``index_select``; a joining group's prefilled cache is merged by
left-padding both caches to one length and concatenating along the batch dimension.
Padded columns are masked out, so every copy attends to exactly its own tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache

from persona_sdk.adapters.serving import AdapterServer, Route, Slot
from persona_sdk.decoding.loop import default_forward
from persona_sdk.decoding.models import ModelHost

KV = list[tuple[torch.Tensor, torch.Tensor]]


def kv_of(cache: DynamicCache) -> KV:
    """Each layer's (keys, values)."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def _pad_left(t: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([t.new_zeros(shape), t], dim=dim)


class Batch:
    """Every decoding copy: adapter slot, cache, mask and the next token's position."""

    def __init__(self, host: ModelHost, server: AdapterServer):
        self.host, self.server = host, server
        self.forward = default_forward(host)
        self.slots: list[Slot | None] = []
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # (copies, cached length)
        self.positions: torch.Tensor | None = None  # (copies, 1)
        self._route: Route | None = None

    def __len__(self) -> int:
        return len(self.slots)

    @property
    def width(self) -> int:
        """Cached columns, padding included."""
        return 0 if self.mask is None else int(self.mask.shape[1])

    def keep(self, copies: Sequence[int]) -> None:
        """Keep only ``copies`` (in order); drop padding columns no kept copy needs."""
        if len(copies) == len(self.slots):
            return
        if not copies:
            self.__init__(self.host, self.server)
            return
        index = torch.tensor(list(copies), device=self.mask.device)
        mask = self.mask.index_select(0, index)
        first = int(mask.any(dim=0).long().argmax())  # leading all-padding columns go
        kv = [(k.index_select(0, index)[:, :, first:], v.index_select(0, index)[:, :, first:])
              for k, v in kv_of(self.cache)]  # fmt: skip
        self.cache = DynamicCache(ddp_cache_data=kv)
        self.mask, self.positions = mask[:, first:], self.positions.index_select(0, index)
        self.slots = [self.slots[c] for c in copies]
        self._route = None

    def add(self, slots: Sequence[Slot | None], cache: DynamicCache, mask: torch.Tensor,
            next_positions: torch.Tensor) -> None:  # fmt: skip
        """Append a prefilled group's copies after the current ones."""
        kv = kv_of(cache)
        if self.slots:
            width = max(self.width, int(mask.shape[1]))
            kv = [(torch.cat([_pad_left(k, width, 2), _pad_left(pk, width, 2)]),
                   torch.cat([_pad_left(v, width, 2), _pad_left(pv, width, 2)]))
                  for (k, v), (pk, pv) in zip(kv_of(self.cache), kv)]  # fmt: skip
            mask = torch.cat([_pad_left(self.mask, width, 1), _pad_left(mask, width, 1)])
            next_positions = torch.cat([self.positions, next_positions])
        self.cache = DynamicCache(ddp_cache_data=kv)
        self.mask, self.positions = mask, next_positions
        self.slots = [*self.slots, *slots]
        self._route = None

    def step(self, tokens: Sequence[int]) -> torch.Tensor:
        """Feed each copy its last token; every copy's next-token logits (before mixing)."""
        if self._route is None:  # membership changed: route the new set of copies
            self._route = self.server.route_for(self.slots, self.mask.device)
        ids = torch.tensor(list(tokens), device=self.mask.device).unsqueeze(-1)
        self.mask = torch.cat([self.mask, self.mask.new_ones((len(self.slots), 1))], dim=-1)
        with self.server.using(self._route):
            logits, self.cache = self.forward(ids, self.mask, self.positions, self.cache)
        self.positions = self.positions + 1
        return logits
