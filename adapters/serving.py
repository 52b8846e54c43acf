"""User adapters on the one shared base model: peft layers injected once, then an LRU of
named adapters bounded by memory. Switching users is ``set_adapter``: no weights move."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from persona_sdk.models import ModelHost

DEFAULT_CACHE_BYTES = 1 << 30


@dataclass
class CachedAdapter:
    name: str  # the peft adapter name
    user_id: str
    nbytes: int


def adapter_name(key: str) -> str:
    """A peft-safe adapter name (no dots) for a cache key."""
    return "u" + hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


class AdapterServer:
    """Holds user adapters inside ``host.model``. Outside :meth:`active`, every adapter
    layer is disabled, so plain generation is exactly the base model."""

    def __init__(self, host: ModelHost, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.host = host
        self.max_bytes = max_bytes
        self.peft_model = None
        self._cache: OrderedDict[str, CachedAdapter] = OrderedDict()
        self._current: str | None = None  # the adapter peft has active
        self.lock = threading.RLock()

    @property
    def nbytes(self) -> int:
        return sum(entry.nbytes for entry in self._cache.values())

    def __contains__(self, key: str) -> bool:
        return key in self._cache

    def __len__(self) -> int:
        return len(self._cache)

    def get(self, key: str) -> str | None:
        """The adapter name for ``key`` if cached (and mark it recently used)."""
        with self.lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            self._cache.move_to_end(key)
            return entry.name

    def put(self, key: str, user_id: str, config, state: dict[str, torch.Tensor]) -> str:
        """Load ``state`` (a peft state dict) as a named adapter; evict the least recently
        used ones beyond the memory bound (never the one just loaded)."""
        from peft import get_peft_model, set_peft_model_state_dict

        with self.lock:
            if (name := self.get(key)) is not None:
                return name
            name = adapter_name(key)
            if self.peft_model is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", FutureWarning)
                    self.peft_model = get_peft_model(self.host.model, config, adapter_name=name)
                self.peft_model.eval()
            else:
                self.peft_model.add_adapter(name, config, low_cpu_mem_usage=True)
            set_peft_model_state_dict(
                self.peft_model, state, adapter_name=name, low_cpu_mem_usage=True
            )
            self.peft_model.base_model.disable_adapter_layers()
            self._current = None  # whatever peft made active, switch explicitly next time
            nbytes = sum(t.numel() * t.element_size() for t in state.values())
            self._cache[key] = CachedAdapter(name, user_id, nbytes)
            while self.nbytes > self.max_bytes and len(self._cache) > 1:
                self._evict(next(iter(self._cache)))
            return name

    def _evict(self, key: str) -> None:
        entry = self._cache.pop(key)
        self._current = None  # peft picks another active adapter when one is deleted
        with warnings.catch_warnings():  # peft warns when the active adapter goes; none is active
            warnings.simplefilter("ignore", UserWarning)
            self.peft_model.delete_adapter(entry.name)

    def drop_user(self, user_id: str) -> int:
        """Evict every cached adapter of ``user_id`` (``forget``); returns how many."""
        with self.lock:
            keys = [k for k, e in self._cache.items() if e.user_id == user_id]
            for key in keys:
                self._evict(key)
            return len(keys)

    @contextlib.contextmanager
    def active(self, name: str | None) -> Iterator[None]:
        """Run the block with adapter ``name`` applied (``None``: the plain base model)."""
        if name is None or self.peft_model is None:
            yield
            return
        with self.lock:
            if self._current != name:  # peft walks every module to switch; skip when unchanged
                self.peft_model.base_model.set_adapter(name)
                self._current = name
            self.peft_model.base_model.enable_adapter_layers()
            try:
                yield
            finally:
                self.peft_model.base_model.disable_adapter_layers()

    @contextlib.contextmanager
    def mixed(self) -> Iterator[None]:
        """Run the block with adapter layers on, for forwards that name each row's adapter."""
        with self.lock:
            self.peft_model.base_model.enable_adapter_layers()
            try:
                yield
            finally:
                self.peft_model.base_model.disable_adapter_layers()
