"""Small configuration dataclasses for adapters (after peft's config style)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class LoraSpec:
    """The shape of every basis adapter. A user's adapter has rank ``K * rank`` and the
    same scaling ``alpha / rank``, so its update is exactly ``Σ c_k ΔW_k``."""

    rank: int = 8
    alpha: float = 16.0
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank

    def to_dict(self) -> dict:
        out = asdict(self)
        out["target_modules"] = list(self.target_modules)
        return out


@dataclass
class DPOConfig:
    """Direct preference optimisation against the adapter-disabled base model, plus
    ``sft_weight`` × the chosen replies' per-token negative log-likelihood (as in RPO): pure
    DPO drives a 135M model into repetition within a few dozen steps, because it can raise
    the margin by lowering both replies' likelihood.

    ``batch_pairs`` pairs per step; replies are cut to ``max_reply_tokens``. A checkpoint is
    written every ``checkpoint_every`` steps so a killed run resumes where it stopped.
    """

    beta: float = 0.1
    sft_weight: float = 1.0
    learning_rate: float = 1e-3
    steps: int = 30
    batch_pairs: int = 4
    max_reply_tokens: int = 128
    weight_decay: float = 0.0
    checkpoint_every: int = 10
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BuildConfig:
    """How ``persona adapters build-basis`` turns a reward basis into adapters.

    For each direction k, each train prompt gives ``pairs_per_prompt`` pairs: its i-th
    highest-r_k reply against its i-th lowest.
    """

    lora: LoraSpec = field(default_factory=LoraSpec)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    pairs_per_prompt: int = 2
    directions: tuple[int, ...] | None = None  # None: every direction of the basis
