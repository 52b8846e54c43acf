"""Basis-adapter folders: a manifest naming the base model and basis they were built for,
per-direction PEFT folders, and checks that refuse anything else."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from persona_sdk.config import file_sha256
from persona_sdk.errors import AdapterError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
WEIGHTS = "adapter_model.safetensors"


def model_fingerprint(model: torch.nn.Module) -> str:
    """A digest of a model's weights that survives dtype and device changes.

    Every parameter contributes its name, shape and first 64 values rounded to bfloat16, so
    the same checkpoint loaded in fp32 on CPU or bf16 on CUDA gives the same digest.
    """
    digest = hashlib.sha256()
    for name, param in model.named_parameters():
        name = name.replace("base_model.model.", "").replace(".base_layer", "")
        if "lora_" in name:
            continue
        head = param.detach().reshape(-1)[:64].to("cpu", torch.bfloat16).view(torch.int16)
        digest.update(f"{name}:{tuple(param.shape)}".encode())
        digest.update(head.numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class AdapterManifest:
    """What a folder of basis adapters was built for, and how."""

    base_model: str
    base_fingerprint: str
    basis_id: str
    featurizer: str
    lora: dict
    loss: str = "dpo"
    dpo: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    directions: dict[str, dict] = field(default_factory=dict)  # "k" -> folder, sha256, stats
    format: int = FORMAT_VERSION

    @property
    def complete_directions(self) -> list[int]:
        return sorted(int(k) for k in self.directions)

    def save(self, folder: Path) -> None:
        tmp = folder / f".{MANIFEST}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(asdict(self), indent=2, sort_keys=True))
        os.replace(tmp, folder / MANIFEST)

    @classmethod
    def load(cls, folder: Path) -> AdapterManifest:
        path = Path(folder) / MANIFEST
        if not path.is_file():
            raise AdapterError(f"no adapter manifest at {path}; build one with "
                               "`persona adapters build-basis`")  # fmt: skip
        try:
            data = json.loads(path.read_text())
            manifest = cls(**data)
        except (ValueError, TypeError) as exc:
            raise AdapterError(f"adapter manifest {path} is corrupt: {exc}") from exc
        if manifest.format > FORMAT_VERSION:
            raise AdapterError(f"adapter manifest {path} is from a newer persona-sdk")
        return manifest

    def check(self, base_model: str, fingerprint: str, basis_id: str, rank: int) -> None:
        """Raise :class:`AdapterError` unless these adapters fit this model and basis."""
        if fingerprint != self.base_fingerprint:
            raise AdapterError(
                f"these adapters were built for base model {self.base_model!r} "
                f"(fingerprint {self.base_fingerprint}), not {base_model!r} ({fingerprint}); "
                "rebuild them with `persona adapters build-basis`"
            )
        if basis_id != self.basis_id:
            raise AdapterError(
                f"these adapters were built for basis {self.basis_id}, not {basis_id}; "
                "rebuild them with `persona adapters build-basis`"
            )
        missing = sorted(set(range(rank)) - set(self.complete_directions))
        if missing:
            raise AdapterError(f"adapters for directions {missing} are missing; resume "
                               "`persona adapters build-basis` to finish them")  # fmt: skip

    def verified_weights(self, folder: Path, k: int) -> Path:
        """The weights file of direction ``k``, after checking its checksum."""
        entry = self.directions.get(str(k))
        path = Path(folder) / (entry or {}).get("folder", f"direction_{k}") / WEIGHTS
        if entry is None or not path.is_file():
            raise AdapterError(f"adapter file {path} is missing")
        if file_sha256(path) != entry["sha256"]:
            raise AdapterError(f"adapter file {path} is corrupt or truncated (checksum mismatch)")
        return path


def lora_config(spec, rank: int | None = None, base_model: str | None = None):
    """A peft ``LoraConfig`` for ``spec`` at ``rank`` (default ``spec.rank``), keeping the
    scaling ``alpha / rank`` of the basis adapters."""
    from peft import LoraConfig

    rank = rank or spec.rank
    return LoraConfig(
        r=rank,
        lora_alpha=spec.scaling * rank,
        target_modules=list(spec.target_modules),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
        base_model_name_or_path=base_model,
    )


def save_peft_folder(folder: Path, config, state: dict[str, torch.Tensor], dtype=None) -> str:
    """Write a standard PEFT folder (``adapter_config.json`` + safetensors), atomically;
    returns the weights' sha256."""
    from safetensors.torch import save_file

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    config.save_pretrained(str(tmp))
    tensors = {k: v.detach().to("cpu", dtype or v.dtype).contiguous() for k, v in state.items()}
    save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt"})
    sha = file_sha256(tmp / WEIGHTS)
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return sha
