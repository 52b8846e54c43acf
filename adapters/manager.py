"""Per-user adapters for a :class:`~persona_sdk.Persona`: generated from the user's reward
weights (exact combination of the basis adapters), or their own fine-tune once present."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from persona_sdk.adapters.combine import BasisAdapters, coefficients, truncate
from persona_sdk.adapters.manifest import (
    WEIGHTS,
    file_sha256,
    lora_config,
    model_fingerprint,
    save_peft_folder,
)
from persona_sdk.adapters.serving import AdapterServer, Factors, Slot, server_for, tensor_bytes
from persona_sdk.config import DEFAULT_SYSTEM_PROMPT, package_data
from persona_sdk.decoding.models import ModelHost
from persona_sdk.errors import AdapterError, InvalidInputError
from persona_sdk.memory.store import MemoryStore
from persona_sdk.reward.rewards import Rewards

BASIS_ADAPTERS_DIR = "basis_adapters"  # in the data dir: `persona adapters build-basis` output
USER_ADAPTERS_DIR = "user_adapters"  # in the data dir: per-user fine-tunes
FINETUNE_META = "finetune.json"


def shipped_adapters_dir(model_name: str) -> Path | None:
    """The basis adapters shipped in package data for ``model_name``, if any."""
    path = package_data("adapters", model_name)
    return path if (path / "manifest.json").is_file() else None


@dataclass
class UserAdapter:
    """The adapter a user is served with, and where it came from."""

    user_id: str
    source: str  # "generated" or "finetuned"
    version: str  # changes whenever the weights (or the fine-tune) do
    coefficients: np.ndarray
    config: object  # peft LoraConfig
    state: dict
    note: str = ""

    @property
    def rank(self) -> int:
        return int(self.config.r)

    @property
    def nbytes(self) -> int:
        return tensor_bytes(self.state.values())


class UserAdapters:
    """Builds, caches, exports and fine-tunes user adapters for one Persona."""

    def __init__(
        self,
        host: Callable[[], ModelHost],
        rewards: Rewards,
        store: MemoryStore,
        data_dir: Path,
        folder: str | Path | None = None,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    ):
        self._host, self.rewards, self.store = host, rewards, store
        self._data_dir, self.system_prompt = data_dir, system_prompt
        self._loaded_host: ModelHost | None = None
        self._folder = Path(folder) if folder else None
        self._basis_adapters: BasisAdapters | None = None
        self._fingerprint: str | None = None
        self._lock = threading.RLock()
        self._verified: dict[tuple, bool] = {}  # (path, size, mtime, sha256) -> matches

    # -- basis adapters ------------------------------------------------------------------

    @property
    def host(self) -> ModelHost:
        if self._loaded_host is None:
            self._loaded_host = self._host()
        return self._loaded_host

    @property
    def server(self) -> AdapterServer:
        return server_for(self.host)

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(self.host.model)
        return self._fingerprint

    def folder(self) -> Path:
        """Explicit folder > the data dir's build > the shipped set for the embedded model."""
        if self._folder is not None:
            return self._folder
        built = self._data_dir / BASIS_ADAPTERS_DIR
        if (built / "manifest.json").is_file():
            return built
        shipped = shipped_adapters_dir(self.host.name)
        if shipped is None:
            raise AdapterError(
                f"no basis adapters for model {self.host.name!r}; build them with "
                f"`persona adapters build-basis --model {self.host.name}`"
            )
        return shipped

    @property
    def basis_adapters(self) -> BasisAdapters:
        with self._lock:
            if self._basis_adapters is None:
                host, basis = self.host, self.rewards.basis
                self._basis_adapters = BasisAdapters.load(
                    self.folder(), host.name, self.fingerprint, basis.basis_id, basis.rank,
                    host.device, next(host.model.parameters()).dtype,
                )  # fmt: skip
            return self._basis_adapters

    # -- one user ------------------------------------------------------------------------

    def _finetune_dir(self, user_id: str) -> Path:
        return self._data_dir / USER_ADAPTERS_DIR / user_id

    def _finetuned(self, user_id: str) -> tuple[dict | None, str]:
        """The user's fine-tune metadata if it is usable here, else (None, why not)."""
        folder = self._finetune_dir(user_id)
        if not (folder / FINETUNE_META).is_file():
            return None, ""
        try:
            meta = json.loads((folder / FINETUNE_META).read_text())
        except ValueError:
            return None, "fine-tune metadata is corrupt; serving the generated adapter"
        if meta.get("base_fingerprint") != self.fingerprint:
            return None, "fine-tune was trained on another base model"
        if meta.get("basis_id") != self.rewards.basis.basis_id:
            return None, "fine-tune was trained for another basis"
        if not self._weights_match(folder / WEIGHTS, meta["sha256"]):
            return None, "fine-tune file is corrupt or truncated; serving the generated adapter"
        return meta, ""

    def _weights_match(self, path: Path, sha256: str) -> bool:
        """Whether ``path`` hashes to ``sha256``; hashed again only when its size or mtime
        changed, so serving a fine-tuned user does not re-read their weights per request."""
        try:
            stat = path.stat()
        except OSError:
            return False
        key = (str(path), stat.st_size, stat.st_mtime_ns, sha256)
        if key not in self._verified:
            self._verified[key] = file_sha256(path) == sha256
        return self._verified[key]

    def _identity(self, user_id: str) -> tuple[str, str, np.ndarray, dict | None, str]:
        """(source, version, coefficients, fine-tune meta, note) without building weights."""
        coeffs = coefficients(self.rewards.posterior(user_id).mean)
        meta, note = self._finetuned(user_id)
        if meta is not None:
            return "finetuned", meta["sha256"][:16], coeffs, meta, note
        version = hashlib.blake2b(coeffs.tobytes(), digest_size=8).hexdigest()
        return "generated", version, coeffs, None, note

    def version(self, user_id: str) -> str:
        """The version of the adapter ``user_id`` is served with: a digest of its
        coefficients (or of the fine-tune file), so it changes exactly when the adapter
        does. Builds no weights."""
        return self._identity(user_id)[1]

    def resolve(self, user_id: str, identity: tuple | None = None) -> UserAdapter:
        """The adapter ``user_id`` is served with right now (``identity``: from
        :meth:`_identity`, when the caller has it already)."""
        basis_adapters = self.basis_adapters
        _source, version, coeffs, meta, note = identity or self._identity(user_id)
        if meta is not None:
            from safetensors.torch import load_file

            folder = self._finetune_dir(user_id)
            dtype = next(self.host.model.parameters()).dtype
            state = {k: v.to(self.host.device, dtype)
                     for k, v in load_file(str(folder / WEIGHTS)).items()}  # fmt: skip
            config = lora_config(basis_adapters.spec, meta["rank"], self.host.name)
            return UserAdapter(user_id, "finetuned", version, coeffs, config, state)
        state = basis_adapters.combine(coeffs)
        config = basis_adapters.user_config(self.host.name)
        return UserAdapter(user_id, "generated", version, coeffs, config, state, note)

    def _key(self, user_id: str) -> str:
        return f"{self._data_dir}\0{user_id}"

    def activate(self, user_id: str) -> Slot:
        """The user's adapter, ready to route rows to: found in the cache, else made. A
        generated one is just its coefficients over the shared basis, so either way this
        costs the posterior lookup and a digest; a fine-tune is read once per version."""
        server, basis_adapters = self.server, self.basis_adapters
        identity = self._identity(user_id)
        key = f"{self._key(user_id)}\0{identity[0]}:{identity[1]}"
        if (slot := server.get(key)) is not None:
            return slot
        if identity[3] is None:
            slot = Slot(self._key(user_id), basis_adapters.factors,
                        basis_adapters.scale(identity[2]).to(self.host.device))  # fmt: skip
        else:
            state = self.resolve(user_id, identity).state
            factors = Factors.from_state(state, basis_adapters.spec.scaling)
            ones = torch.ones(factors.width, dtype=next(iter(state.values())).dtype)
            slot = Slot(self._key(user_id), factors, ones.to(self.host.device), owns_factors=True)
        return server.put(key, slot)

    def available(self) -> bool:
        """Whether basis adapters exist for this model (else generation is rules-only)."""
        try:
            self.folder()
        except AdapterError:
            return False
        return True

    def serving_slot(self, user_id: str, strength: float) -> Slot | None:
        """The adapter to guide ``user_id``'s request with, or ``None`` when strength
        is 0 or this model has no basis adapters. A user with no pairs gets the population
        default (their weights are the prior mean)."""
        if strength == 0.0 or not self.available():
            return None
        return self.activate(user_id)

    def info(self, user_id: str) -> dict:
        """What ``persona adapters show`` prints."""
        adapter = self.resolve(user_id)
        names = self.rewards.basis.axis_names
        out = {
            "user_id": user_id,
            "source": adapter.source,
            "version": adapter.version,
            "rank": adapter.rank,
            "target_modules": sorted(adapter.config.target_modules),
            "megabytes": round(adapter.nbytes / 2**20, 2),
            "coefficients": {n: round(float(c), 4) for n, c in zip(names, adapter.coefficients)},
            "basis_adapters": str(self.folder()),
        }
        meta, _ = self._finetuned(user_id)
        if meta is not None:
            out["finetune"] = {k: meta[k] for k in ("pairs", "created", "stats") if k in meta}
        if adapter.note:
            out["note"] = adapter.note
        return out

    def export(
        self, user_id: str, out: str | Path, max_rank: int | None = None, force: bool = False
    ) -> dict:
        """Write the user's adapter as a standard PEFT folder; with ``max_rank``, truncated
        by SVD (reporting the relative error)."""
        out = Path(out)
        if max_rank is not None and max_rank < 1:
            raise InvalidInputError("--max-rank must be at least 1")
        if out.exists() and not out.is_dir():
            raise InvalidInputError(f"{out} exists and is not a directory")
        if out.is_dir() and any(out.iterdir()) and not force:
            raise InvalidInputError(f"{out} is not empty; pass --force to overwrite it")
        adapter = self.resolve(user_id)
        state, config, report = adapter.state, adapter.config, {"max_rank": None}
        if max_rank is not None and max_rank < adapter.rank:
            spec = self.basis_adapters.spec
            state, report = truncate(state, spec.scaling, max_rank)
            config = lora_config(spec, max_rank, self.host.name)
        save_peft_folder(out, config, state)
        return {"user_id": user_id, "path": str(out), "source": adapter.source,
                "rank": int(config.r), **report}  # fmt: skip

    def forget(self, user_id: str) -> None:
        """Drop the user's cached adapters and fine-tune files."""
        server = None if self._loaded_host is None else server_for(self._loaded_host, False)
        if server is not None:
            server.drop_user(self._key(user_id))
        shutil.rmtree(self._finetune_dir(user_id), ignore_errors=True)
        for leftover in self._finetune_dir(user_id).parent.glob(f"{user_id}.finetune.*"):
            leftover.unlink(missing_ok=True)

    def save_finetune(self, user_id: str, state: dict, rank: int, pairs: int, stats: dict) -> Path:
        """Store a fine-tuned adapter; it replaces the generated one from the next request."""
        folder = self._finetune_dir(user_id)
        config = lora_config(self.basis_adapters.spec, rank, self.host.name)
        sha = save_peft_folder(folder, config, state)
        meta = {"sha256": sha, "rank": rank, "pairs": pairs, "stats": stats,
                "base_fingerprint": self.fingerprint,
                "basis_id": self.rewards.basis.basis_id,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
        (folder / FINETUNE_META).write_text(json.dumps(meta, indent=2))
        return folder
