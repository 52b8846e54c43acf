"""The vLLM adapter contract: exact user adapters under versioned LoRA names, and the
``vllm serve`` flags that load them.

A user's adapter is ``ΔW = Σ_k c_k ΔW_k`` over K rank-r basis adapters. That sum needs
rank K·r: it is exported exactly, as the stacked ``A = [A_1; …; A_K]`` and
``B = [c_1 B_1, …, c_K B_K]`` of :meth:`BasisAdapters.combine` (the weights are folded
into B), with ``r = K·r`` and ``lora_alpha = s·K·r`` so peft's and vLLM's scaling
``alpha / r`` stays the basis scaling s. Nothing is truncated.

Names are ``persona-<user>-v<version>``. The version is the one the adapter cache keys on
(:meth:`UserAdapters.version`): a digest of the user's adapter coefficients, or of their
fine-tune file. It changes exactly when the adapter does (a new pair moves the weights; a
new rule does not), so an engine never serves a stale adapter under a current name.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from persona_sdk.adapters.manager import UserAdapters
from persona_sdk.adapters.manifest import save_peft_folder
from persona_sdk.decoding.models import EMBEDDED_MODEL
from persona_sdk.errors import AdapterError, InvalidInputError

# --max-lora-rank values vLLM accepts (vllm.config.LoRAConfig)
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
NAME_PREFIX = "persona-"
SIDECAR = "persona_adapter.json"  # what persona-sdk knows about an exported folder
# the Hugging Face checkpoint vLLM loads for the embedded model (its GGUF is a Q4 copy)
HF_IDS = {EMBEDDED_MODEL: "HuggingFaceTB/SmolLM2-135M-Instruct"}
_NAME = re.compile(r"persona-(?P<user>[A-Za-z0-9_.@-]+)-v(?P<version>[0-9a-f]+)")


def adapter_name(user_id: str, version: str) -> str:
    """The LoRA name an engine serves ``user_id``'s adapter ``version`` under."""
    return f"{NAME_PREFIX}{user_id}-v{version}"


def parse_adapter_name(name: str) -> tuple[str, str] | None:
    """``persona-<user>-v<version>`` -> (user, version); anything else -> ``None``. A user
    id may hold ``-v`` itself: the version is what follows the last one."""
    match = _NAME.fullmatch(name)
    return (match["user"], match["version"]) if match else None


def base_model_id(name: str) -> str:
    """The base model as vLLM loads it: the embedded model's Hugging Face id, else as is."""
    return HF_IDS.get(name, name)


def vllm_rank(rank: int) -> int:
    """The smallest ``--max-lora-rank`` vLLM accepts that holds ``rank``."""
    for allowed in VLLM_LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise AdapterError(f"rank {rank} exceeds vLLM's largest --max-lora-rank "
                       f"({VLLM_LORA_RANKS[-1]}); export with fewer basis directions")  # fmt: skip


def export_vllm(adapters: UserAdapters, user_id: str, root: str | Path,
                force: bool = False) -> dict:  # fmt: skip
    """Write ``user_id``'s exact adapter (strength 1) to ``root/persona-<user>-v<version>``
    as a standard PEFT folder, plus a ``persona_adapter.json`` sidecar. An existing
    folder of the same name holds the same adapter: it is rewritten only with ``force``."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise InvalidInputError(f"{root} exists and is not a directory")
    adapter = adapters.resolve(user_id)
    name = adapter_name(user_id, adapter.version)
    folder = root / name
    written = force or not (folder / SIDECAR).is_file()
    if written:
        root.mkdir(parents=True, exist_ok=True)
        config = adapter.config
        config.base_model_name_or_path = base_model_id(adapters.host.name)
        sha = save_peft_folder(folder, config, adapter.state)
        sidecar = {"user_id": user_id, "name": name, "version": adapter.version,
                   "source": adapter.source, "rank": adapter.rank,
                   "base_model": config.base_model_name_or_path,
                   "coefficients": [float(c) for c in adapter.coefficients],
                   "strength": 1.0, "sha256": sha}  # fmt: skip
        (folder / SIDECAR).write_text(json.dumps(sidecar, indent=2))
    meta = json.loads((folder / SIDECAR).read_text())
    return {**meta, "path": str(folder), "written": written,
            "max_lora_rank": vllm_rank(meta["rank"])}  # fmt: skip


def exported(root: str | Path) -> list[dict]:
    """Every exported folder under ``root`` (its sidecar plus ``path``), by name."""
    out = []
    for sidecar in sorted(Path(root).glob(f"{NAME_PREFIX}*/{SIDECAR}")):
        try:
            meta = json.loads(sidecar.read_text())
        except ValueError:
            continue  # a damaged folder is not served
        out.append({**meta, "path": str(sidecar.parent.resolve())})
    return out


def prune(root: str | Path, user_id: str, keep: str) -> list[str]:
    """Remove ``user_id``'s exported folders other than version ``keep``; their names."""
    gone = []
    for meta in exported(root):
        if meta["user_id"] == user_id and meta["version"] != keep:
            shutil.rmtree(meta["path"], ignore_errors=True)
            gone.append(meta["name"])
    return gone


def vllm_args(modules: list[dict], max_loras: int | None = None) -> dict:
    """The ``vllm serve`` command that serves exported ``modules`` (sidecars with path):
    the base model, ``--enable-lora``, ``--max-lora-rank`` (the largest rank rounded up to
    a value vLLM accepts), ``--max-loras`` (adapters in one batch; default: all of them)
    and ``--lora-modules name=path …``."""
    if not modules:
        raise InvalidInputError("no exported adapters: run `persona adapters export USER "
                                "--for vllm --out DIR` first")  # fmt: skip
    bases = sorted({m["base_model"] for m in modules})
    if len(bases) > 1:
        raise InvalidInputError(f"adapters for several base models: {', '.join(bases)}")
    rank = max(int(m["rank"]) for m in modules)
    max_rank = vllm_rank(rank)
    loras = max_loras or len(modules)
    if loras < 1:
        raise InvalidInputError("--max-loras must be at least 1")
    lora_modules = {m["name"]: m["path"] for m in modules}
    args = ["--enable-lora", "--max-lora-rank", str(max_rank), "--max-loras", str(loras),
            "--lora-modules", *(f"{n}={p}" for n, p in lora_modules.items())]  # fmt: skip
    command = " ".join(["vllm", "serve", bases[0], *args])
    return {"base_model": bases[0], "rank": rank, "max_lora_rank": max_rank,
            "rank_rounded_up": max_rank != rank, "max_loras": loras,
            "lora_modules": lora_modules, "args": args, "command": command}  # fmt: skip


def current_modules(adapters: UserAdapters, root: str | Path, users: list[str]) -> list[dict]:
    """The exported folders of ``users`` (all exported users when empty) that hold each
    user's current adapter; a user whose export is missing or stale is an error."""
    found = exported(root)
    users = users or sorted({m["user_id"] for m in found})
    out = []
    for user_id in users:
        version = adapters.version(user_id)
        match = [m for m in found if m["user_id"] == user_id and m["version"] == version]
        if not match:
            raise InvalidInputError(
                f"{adapter_name(user_id, version)} is not exported under {root}; run "
                f"`persona adapters export {user_id} --for vllm --out {root}`"
            )
        out.append(match[0])
    return out
