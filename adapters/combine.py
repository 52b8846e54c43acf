"""Exact per-user combination of basis adapters, SVD rank truncation, and PEFT export.

Stacking the factors gives the exact sum: with ``A = [A_1; …; A_K]`` and
``B = [c_1 B_1, …, c_K B_K]`` at the common scaling s, ``s B A = Σ_k c_k s B_k A_k``.
peft's ``"linear"`` merge averages A and B separately, which adds cross terms; this is the
``"cat"`` combination, built directly so negative weights need no square roots.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from persona_sdk.adapters.config import LoraSpec
from persona_sdk.adapters.manifest import AdapterManifest, lora_config
from persona_sdk.adapters.serving import Factors, module_name
from persona_sdk.errors import AdapterError, InvalidInputError


def _module_of(key: str) -> tuple[str, str]:
    """``…q_proj.lora_A.weight`` -> (``…q_proj``, ``A``)."""
    stem, factor, _ = key.rsplit(".", 2)
    return stem, factor[-1]


@dataclass
class BasisAdapters:
    """All K basis adapters' factors, stacked per target module."""

    manifest: AdapterManifest
    spec: LoraSpec
    a: dict[str, torch.Tensor]  # module -> (K·r, in)
    b: dict[str, torch.Tensor]  # module -> (out, K·r)

    @property
    def rank(self) -> int:
        return len(self.manifest.directions)

    @classmethod
    def load(
        cls,
        folder: Path,
        base_model: str,
        fingerprint: str,
        basis_id: str,
        n_directions: int,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> BasisAdapters:
        """Read and verify a build folder; raise :class:`AdapterError` on any mismatch."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        manifest = AdapterManifest.load(folder)
        manifest.check(base_model, fingerprint, basis_id, n_directions)
        spec = LoraSpec(
            rank=manifest.lora["rank"],
            alpha=manifest.lora["alpha"],
            target_modules=tuple(manifest.lora["target_modules"]),
        )
        per_module: dict[str, dict[str, list]] = {}
        for k in range(n_directions):
            path = manifest.verified_weights(folder, k)
            try:
                tensors = load_file(str(path), device="cpu")
            except (SafetensorError, OSError, ValueError) as exc:
                raise AdapterError(f"adapter file {path} is unreadable: {exc}") from exc
            for key, value in tensors.items():
                module, factor = _module_of(key)
                per_module.setdefault(module, {"A": [], "B": []})[factor].append(value)
        a, b = {}, {}
        for module, factors in per_module.items():
            if len(factors["A"]) != n_directions or len(factors["B"]) != n_directions:
                raise AdapterError(f"module {module} is missing from some basis adapters")
            a[module] = torch.cat(factors["A"], 0).to(device, dtype)
            b[module] = torch.cat(factors["B"], 1).to(device, dtype)
        return cls(manifest, spec, a, b)

    @cached_property
    def factors(self) -> Factors:
        """The stacked factors as served: every generated adapter shares them."""
        a = {module_name(m): v for m, v in self.a.items()}
        b = {module_name(m): v for m, v in self.b.items()}
        return Factors(a, b, self.spec.scaling)

    def scale(self, coefficients: np.ndarray) -> torch.Tensor:
        """The column scale ``c_k`` repeated ``r`` times, checked."""
        c = torch.as_tensor(np.asarray(coefficients, dtype=np.float64))
        if c.shape != (self.rank,) or not torch.isfinite(c).all():
            raise InvalidInputError(f"need {self.rank} finite adapter coefficients")
        dtype = next(iter(self.a.values())).dtype
        return c.repeat_interleave(self.spec.rank).to(dtype)

    def direction_delta(self, module: str, k: int) -> torch.Tensor:
        """``ΔW_k`` of one module: ``s B_k A_k``."""
        r = self.spec.rank
        rows = slice(k * r, (k + 1) * r)
        return self.spec.scaling * self.b[module][:, rows] @ self.a[module][rows]

    def combine(self, coefficients: np.ndarray) -> dict[str, torch.Tensor]:
        """The user adapter's peft state dict, rank ``K·r``: ``ΔW = Σ_k c_k ΔW_k``."""
        column_scale = self.scale(coefficients)
        state = {}
        for module, a in self.a.items():
            column_scale = column_scale.to(a.device)
            state[f"{module}.lora_A.weight"] = a
            state[f"{module}.lora_B.weight"] = self.b[module] * column_scale
        return state

    def user_config(self, base_model: str | None = None):
        """The ``LoraConfig`` of a combined (rank ``K·r``) user adapter."""
        return lora_config(self.spec, self.rank * self.spec.rank, base_model)


def coefficients(weights: np.ndarray) -> np.ndarray:
    """Adapter coefficients from a user's reward weights: ``w / ‖w‖₁``, so a user who is all
    one axis gets exactly that axis's adapter and every user gets one adapter's total push
    (``strength`` scales it at decode time). Zero weights give the zero adapter."""
    w = np.asarray(weights, dtype=np.float64)
    total = np.abs(w).sum()
    return w / total if total > 0 else np.zeros_like(w)


def truncate(
    state: dict[str, torch.Tensor], scaling: float, max_rank: int
) -> tuple[dict[str, torch.Tensor], dict]:
    """Best rank-``max_rank`` approximation of every module's ``ΔW = s B A`` (by SVD of the
    small core, never of the full matrix). Returns the new state at the same scaling and
    the relative Frobenius error, overall and for the worst module."""
    if max_rank < 1:
        raise InvalidInputError("--max-rank must be at least 1")
    out, lost, total, worst = {}, 0.0, 0.0, 0.0
    for key in [k for k in state if k.endswith("lora_A.weight")]:
        module = key[: -len(".lora_A.weight")]
        a = state[key].double()
        b = state[f"{module}.lora_B.weight"].double()
        q_b, r_b = torch.linalg.qr(b)
        q_a, r_a = torch.linalg.qr(a.T)
        u, s, vh = torch.linalg.svd(scaling * r_b @ r_a.T)
        keep = min(max_rank, len(s))
        root = s[:keep].sqrt()
        out[f"{module}.lora_B.weight"] = ((q_b @ u[:, :keep]) * root / scaling**0.5).float()
        out[f"{module}.lora_A.weight"] = (
            (root[:, None] * vh[:keep]) @ q_a.T / scaling**0.5
        ).float()
        dropped, kept = float((s[keep:] ** 2).sum()), float((s**2).sum())
        lost, total = lost + dropped, total + kept
        worst = max(worst, (dropped / kept) ** 0.5 if kept > 0 else 0.0)
    error = (lost / total) ** 0.5 if total > 0 else 0.0
    return out, {"max_rank": max_rank, "relative_error": error, "worst_module_error": worst}
