"""LoRA adapters per reward direction and their exact per-user combination (design §3).

* :mod:`.build`: ``persona adapters build-basis``, one DPO-trained LoRA per basis direction.
* :mod:`.combine`: a user's adapter ``ΔW = Σ_k c_k ΔW_k`` (exact), SVD truncation.
* :mod:`.serving`: user adapters inside the shared model, an LRU bounded by memory.
* :mod:`.manager`: per-user resolution (generated or fine-tuned), export, ``forget``.
* :mod:`.finetune`: DPO on one user's own pairs, from their generated adapter.
"""

from persona_sdk.adapters.combine import BasisAdapters, coefficients, truncate
from persona_sdk.adapters.config import BuildConfig, DPOConfig, LoraSpec
from persona_sdk.adapters.manager import UserAdapter, UserAdapters

__all__ = [
    "BasisAdapters",
    "BuildConfig",
    "DPOConfig",
    "LoraSpec",
    "UserAdapter",
    "UserAdapters",
    "coefficients",
    "truncate",
]
