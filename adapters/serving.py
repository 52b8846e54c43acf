"""User adapters on the one shared base model, routed per row.

Every generated user adapter shares the stacked basis factors ``A = [A_1; …; A_K]`` and
``B = [B_1, …, B_K]``; only the column scale ``c`` differs (see ``combine.py``). So each
target linear layer is wrapped once, and a forward computes, per row,
``y = W x + s B (c_row ⊙ A x)``: exactly ``Σ_k c_k ΔW_k``, with users mixed freely inside
one batch. A generated adapter is its ``K·r`` coefficients (no weights are built or moved),
so creating or switching one costs microseconds. A fine-tuned adapter has its own factors
and is applied to its rows alone. Outside :meth:`AdapterServer.using` the wrappers add
nothing, so plain generation is exactly the base model.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from persona_sdk.decoding.models import ModelHost

DEFAULT_CACHE_BYTES = 1 << 30
PEFT_PREFIX = "base_model.model."


def module_name(stem: str) -> str:
    """A peft module path (``base_model.model.…q_proj``) as named in the plain model."""
    return stem[len(PEFT_PREFIX) :] if stem.startswith(PEFT_PREFIX) else stem


def module_key(state_key: str) -> str:
    """``base_model.model.…q_proj.lora_A.weight`` -> ``…q_proj``."""
    return module_name(state_key.rsplit(".", 2)[0])


def tensor_bytes(tensors) -> int:
    """Memory held by ``tensors``."""
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass(eq=False)
class Factors:
    """LoRA factors per module name, at one scaling: ``ΔW = s B diag(c) A``."""

    a: dict[str, torch.Tensor]
    b: dict[str, torch.Tensor]
    scaling: float

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], scaling: float) -> Factors:
        """From a peft state dict (``…lora_A.weight`` / ``…lora_B.weight`` keys)."""
        a = {module_key(k): v for k, v in state.items() if k.endswith("lora_A.weight")}
        b = {module_key(k): v for k, v in state.items() if k.endswith("lora_B.weight")}
        if not a or set(a) != set(b):
            raise ValueError("an adapter state needs lora_A and lora_B for every module")
        return cls(a, b, scaling)

    @property
    def width(self) -> int:
        return next(iter(self.a.values())).shape[0]

    @property
    def nbytes(self) -> int:
        return tensor_bytes([*self.a.values(), *self.b.values()])


@dataclass(eq=False)
class Slot:
    """One cached user adapter: a column scale over (possibly shared) factors. A generated
    adapter scales the shared basis factors; a fine-tune has its own, scaled by ones."""

    user_id: str
    factors: Factors
    coefficients: torch.Tensor  # (width,)
    owns_factors: bool = False

    @property
    def nbytes(self) -> int:
        own = self.factors.nbytes if self.owns_factors else 0
        return own + tensor_bytes([self.coefficients])


class Route:
    """Which adapter each row of one forward uses (``None``: the base model). Rows that
    share factors are computed together; a row outside a group gets a zero scale."""

    def __init__(self, slots: Sequence[Slot | None], device):
        groups: dict[int, tuple[Factors, list]] = {}
        for row, slot in enumerate(slots):
            if slot is not None:
                groups.setdefault(id(slot.factors), (slot.factors, [None] * len(slots)))
                groups[id(slot.factors)][1][row] = slot.coefficients
        self.groups = []
        for factors, per_row in groups.values():
            if len(slots) == 1 or all(c is per_row[0] for c in per_row):
                scale = per_row[0][None, None, :]  # one adapter for every row: broadcast
            else:
                zero = torch.zeros_like(next(c for c in per_row if c is not None))
                scale = torch.stack([zero if c is None else c for c in per_row])[:, None, :]
            # s folded into the per-row scale here, once, not per module and step
            dtype = next(iter(factors.a.values())).dtype
            self.groups.append((factors, (scale * factors.scaling).to(device, dtype)))

    def delta(self, name: str, x: torch.Tensor) -> torch.Tensor | None:
        """The adapters' contribution to the output of module ``name`` for input ``x``."""
        out = None
        for factors, scale in self.groups:
            update = nn.functional.linear(nn.functional.linear(x, factors.a[name]) * scale,
                                          factors.b[name])  # fmt: skip
            out = update if out is None else out + update
        return out

    def add_delta(self, name: str, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``out`` plus the adapters' contribution, in place when no gradient is kept:
        three kernels per group (A, the row scale, and B fused with the add), which is
        what a decode step on a GPU pays for, launch by launch."""
        if torch.is_grad_enabled() or not out.is_contiguous():
            delta = self.delta(name, x)
            return out if delta is None else out + delta
        flat = out.view(-1, out.shape[-1])
        for factors, scale in self.groups:
            hidden = nn.functional.linear(x, factors.a[name]).mul_(scale)
            flat.addmm_(hidden.view(-1, hidden.shape[-1]), factors.b[name].t())
        return out


class RoutedLinear(nn.Module):
    """A target linear layer plus whatever the current route adds to it."""

    def __init__(self, base_layer: nn.Linear, name: str, server: AdapterServer):
        super().__init__()
        self.base_layer = base_layer
        self.name = name
        self._server = [server]  # a list, so torch does not register it as a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        route = self._server[0].route
        return out if route is None else route.add_delta(self.name, x, out)


class AdapterServer:
    """Wraps the target layers of one model host, holds an LRU of user adapters bounded by
    memory, and routes each forward's rows to their adapters (per thread)."""

    def __init__(self, host: ModelHost, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.host = host
        self.max_bytes = max_bytes
        self._wrapped: dict[str, nn.Module] = {}  # module name -> the original layer
        self._cache: OrderedDict[str, Slot] = OrderedDict()
        self._local = threading.local()
        self.lock = threading.RLock()

    @property
    def nbytes(self) -> int:
        return sum(slot.nbytes for slot in self._cache.values())

    def __contains__(self, key: str) -> bool:
        return key in self._cache

    def __len__(self) -> int:
        return len(self._cache)

    # -- wrapping the model --------------------------------------------------------------

    def attach(self, names) -> None:
        """Wrap the linear modules ``names`` of the model (those not wrapped yet)."""
        with self.lock:
            for name in sorted(set(names) - set(self._wrapped)):
                try:
                    module = self.host.model.get_submodule(name)
                except AttributeError:
                    module = None
                if not isinstance(module, nn.Linear):
                    raise ValueError(f"the model has no linear module named {name!r}")
                self._set(name, RoutedLinear(module, name, self))
                self._wrapped[name] = module

    def _set(self, name: str, module: nn.Module) -> None:
        parent, _, child = name.rpartition(".")
        setattr(self.host.model.get_submodule(parent), child, module)

    @contextlib.contextmanager
    def detached(self) -> Iterator[None]:
        """The plain model inside the block (to train it with peft); wrapped again after."""
        with self.lock:
            wrapped = dict(self._wrapped)
            for name, module in wrapped.items():
                self._set(name, module)
            self._wrapped.clear()
            try:
                yield
            finally:
                self.attach(wrapped)

    # -- the cache -----------------------------------------------------------------------

    def get(self, key: str) -> Slot | None:
        """The cached adapter for ``key`` (and mark it recently used)."""
        with self.lock:
            slot = self._cache.get(key)
            if slot is not None:
                self._cache.move_to_end(key)
            return slot

    def put(self, key: str, slot: Slot) -> Slot:
        """Cache ``slot``, wrapping its modules if needed; evict the least recently used
        beyond the memory bound (never the one just added). Generations already running
        keep the slots they were routed to."""
        with self.lock:
            self.attach(slot.factors.a)
            self._cache[key] = slot
            self._cache.move_to_end(key)
            while self.nbytes > self.max_bytes and len(self._cache) > 1:
                self._cache.popitem(last=False)
            return slot

    def drop_user(self, user_id: str) -> int:
        """Evict every cached adapter of ``user_id`` (``forget``); returns how many."""
        with self.lock:
            keys = [k for k, slot in self._cache.items() if slot.user_id == user_id]
            for key in keys:
                del self._cache[key]
            return len(keys)

    # -- routing -------------------------------------------------------------------------

    @property
    def route(self) -> Route | None:
        """The calling thread's route (each thread routes its own forwards)."""
        return getattr(self._local, "route", None)

    @staticmethod
    def route_for(slots: Sequence[Slot | None], device) -> Route | None:
        """Row ``i`` uses ``slots[i]``; a single slot applies to every row. ``None`` when
        no row has an adapter."""
        return None if all(s is None for s in slots) else Route(slots, device)

    @contextlib.contextmanager
    def using(self, route: Route | None) -> Iterator[None]:
        """Run the block's forwards (in this thread) on ``route``."""
        previous, self._local.route = self.route, route
        try:
            yield
        finally:
            self._local.route = previous

    def active(self, slot: Slot | None) -> contextlib.AbstractContextManager:
        """Run the block with ``slot`` applied to every row (``None``: the base model)."""
        return self.using(self.route_for([slot], self.host.device))


_SERVERS: dict[int, tuple[weakref.ref, AdapterServer]] = {}
_SERVERS_LOCK = threading.Lock()


def server_for(host: ModelHost, create: bool = True) -> AdapterServer | None:
    """The one adapter server of a (possibly shared) model host: a model's layers are
    wrapped once, however many Personas serve from it. ``None`` if none exists yet and
    ``create`` is false."""
    with _SERVERS_LOCK:
        entry = _SERVERS.get(id(host))
        if entry is not None and entry[0]() is host:
            return entry[1]
        if not create:
            return None
        server = AdapterServer(host)
        _SERVERS[id(host)] = (weakref.ref(host, lambda _: _SERVERS.pop(id(host), None)), server)
        return server
