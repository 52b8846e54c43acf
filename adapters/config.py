"""Small configuration dataclasses for adapters (after peft's config style)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from persona_sdk.errors import InvalidInputError

PAIRINGS = ("extremes", "nearest")  # how build-basis picks each pair's rejected reply


def check_pairing(pairing: str) -> None:
    """Raise on a pairing ``build-basis`` does not know."""
    if pairing not in PAIRINGS:
        raise InvalidInputError(f"pairing must be one of {', '.join(PAIRINGS)}, not {pairing!r}")


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
    highest-r_k reply against its i-th lowest (``pairing="extremes"``) or against the reply of
    its lower half that shares the most words with it (``"nearest"``). The replies ranked are
    the pool's, or with ``samples_per_prompt`` > 0 the base model's own samples (on
    ``sample_prompts`` train prompts; None: all of them).
    """

    lora: LoraSpec = field(default_factory=LoraSpec)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    pairs_per_prompt: int = 2
    contrast_pairs: bool = False  # also: this prompt's best reply over another prompt's best
    pairing: str = "extremes"
    directions: tuple[int, ...] | None = None  # None: every direction of the basis
    samples_per_prompt: int = 0
    sample_prompts: int | None = None
    sample_temperature: float = 0.8
    sample_top_p: float = 0.95
    sample_max_new_tokens: int = 96

    def __post_init__(self) -> None:
        check_pairing(self.pairing)
        if self.samples_per_prompt == 1 or self.samples_per_prompt < 0:
            raise InvalidInputError(
                "samples_per_prompt must be 0 (rank the pool) or at least 2 (to make a pair)"
            )

    def replies_source(self) -> dict:
        """What a direction's pairs were ranked from, for its manifest stats."""
        if not self.samples_per_prompt:
            return {"replies": "pool"}
        return {"replies": "base samples", "samples_per_prompt": self.samples_per_prompt,
                "sample_prompts": self.sample_prompts,
                "sample_temperature": self.sample_temperature,
                "sample_top_p": self.sample_top_p,
                "sample_max_new_tokens": self.sample_max_new_tokens}  # fmt: skip
