"""``persona eval adapters``: do the basis adapters move their own reward, and do generated
user adapters raise simulated users' true utility over the base model, on held-out prompts?"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from persona_sdk.adapters.build import is_held_out
from persona_sdk.adapters.combine import coefficients
from persona_sdk.adapters.dpo import prompt_ids
from persona_sdk.adapters.serving import Slot
from persona_sdk.decoding.loop import BatchGeneration, SamplingParams
from persona_sdk.errors import InvalidInputError
from persona_sdk.quality import relevance
from persona_sdk.reward.basis import RewardBasis
from persona_sdk.reward.posterior import fit_posterior
from persona_sdk.simulation.users import (
    SimulatedUser,
    attribute_vector,
    calibrate_beta,
    make_reward_population,
)
from persona_sdk.simulation.world import RewardWorld, bt_labels

EVAL_KEY = "\0eval-adapters"

Encode = Callable[[list[str]], np.ndarray]  # texts to unit vectors


@dataclass
class AdapterEvalConfig:
    """``users`` unseen simulated users, each onboarded from ``shots`` answered pairs on
    train prompts, then served ``prompts`` held-out prompts (greedy). ``directions``
    limits the basis-adapter measure to those directions (``None``: all)."""

    users: int = 20
    prompts: int = 12
    direction_prompts: int = 24
    shots: int = 16
    max_new_tokens: int = 96
    batch_size: int = 12
    seed: int = 0
    directions: tuple[int, ...] | None = None


@dataclass
class AdapterEvalResult:
    model: str
    config: dict
    directions: list[dict] = field(default_factory=list)
    users: list[dict] = field(default_factory=list)

    @property
    def share_improved(self) -> float:
        return float(np.mean([u["gain"] > 0 for u in self.users])) if self.users else 0.0

    def to_dict(self) -> dict:
        out = asdict(self)
        out["share_improved"] = self.share_improved
        out["directions_passing"] = sum(d["effect_sd"] >= 0.5 for d in self.directions)
        return out


def ci95(values: np.ndarray) -> float:
    """Half-width of the normal 95% confidence interval of the mean."""
    return float(1.96 * values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def repeated_trigram_share(text: str) -> float:
    """Share of a reply's word trigrams that already occurred in it: 0 for fresh text, near 1
    for a loop. Reward hacking by a degenerate adapter shows up here first."""
    words = text.lower().split()
    grams = list(zip(words, words[1:], words[2:]))
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def reply_quality(encode, prompts: list[str], replies: list[str]) -> dict[str, np.ndarray]:
    """Per reply: cosine similarity to its prompt under ``encode`` (unit vectors; 0 for an
    empty reply), :func:`repeated_trigram_share` and its length in words. An adapter that
    raises its reward by drifting off the request, looping or falling silent shows here."""
    words = np.array([len(r.split()) for r in replies])
    return {"on_topic": relevance(encode, prompts, replies),
            "repeated": np.array([repeated_trigram_share(r) for r in replies]),
            "words": words.astype(float)}  # fmt: skip


def quality_fields(base: dict[str, np.ndarray], adapter: dict[str, np.ndarray]) -> dict:
    """Means of :func:`reply_quality` for the base and the adapter, as flat JSON fields."""
    sides = (("base", base), ("adapter", adapter))
    return {f"{name}_{side}": float(v[name].mean()) for side, v in sides for name in v}


def generate_replies(persona, prompts: list[str], config: AdapterEvalConfig, name=None):
    """Greedy replies to ``prompts`` with adapter ``name`` (``None``: the base model)."""
    host = persona.host
    ids = [prompt_ids(host, p, persona.generation_config.system_prompt) for p in prompts]
    params = SamplingParams(max_new_tokens=config.max_new_tokens)
    replies = []
    with persona.adapters.server.active(name):
        for start in range(0, len(ids), config.batch_size):
            rows = BatchGeneration(host, ids[start : start + config.batch_size], params).run()
            replies.extend(row.text.strip() for row in rows)
    return replies


def _coefficient_adapter(persona, key: str, coeffs: np.ndarray) -> Slot:
    """An adapter with these coefficients over the basis, outside any stored user."""
    manager = persona.adapters
    basis_adapters = manager.basis_adapters
    scale = basis_adapters.scale(coeffs).to(persona.host.device)
    return manager.server.put(f"{EVAL_KEY}\0{key}", Slot(EVAL_KEY, basis_adapters.factors, scale))


def check_directions(persona, config: AdapterEvalConfig) -> Sequence[int]:
    """The basis directions to measure; raises on one the basis does not have."""
    rank = persona.rewards.basis.rank
    directions = range(rank) if config.directions is None else config.directions
    if any(not 0 <= k < rank for k in directions):
        raise InvalidInputError(f"directions must be between 0 and {rank - 1}")
    return directions


@dataclass
class _Baseline:
    """The base model's replies to the eval prompts, with their rewards and quality."""

    prompts: list[str]
    replies: list[str]
    rewards: np.ndarray  # (n_prompts, K)
    quality: dict[str, np.ndarray]

    def quality_of_first(self, n: int) -> dict[str, np.ndarray]:
        return {name: values[:n] for name, values in self.quality.items()}


def _eval_prompts(
    world: RewardWorld, config: AdapterEvalConfig, rng: np.random.Generator
) -> list[str]:
    """Enough held-out prompts for both measures, in a seeded random order."""
    held_out = [p for p in world.prompts if is_held_out(p)]
    n_prompts = max(config.prompts, config.direction_prompts)
    return [held_out[i] for i in rng.permutation(len(held_out))[:n_prompts]]


def _progress_step(progress, total: int) -> Callable[[], None]:
    """A callback advancing one ``progress`` task by a step (a no-op without ``progress``)."""
    task = progress.add_task("eval adapters", total=total) if progress else None

    def step() -> None:
        if task is not None:
            progress.advance(task)

    return step


def _reply_encoder(persona) -> Encode:
    """The featurizer's embeddings when it has them, else the persona's embedder."""
    cache = getattr(persona.rewards.featurizer, "cache", None)
    return cache.encode if cache is not None else persona.embedder.encode


def _direction_effect(
    persona, config: AdapterEvalConfig, baseline: _Baseline, encode: Encode, k: int
) -> dict:
    """How far direction ``k``'s basis adapter moves its own reward ``r_k`` over the base
    model's replies, in base standard deviations."""
    basis = persona.rewards.basis
    prompts = baseline.prompts[: config.direction_prompts]
    adapter = _coefficient_adapter(persona, f"d{k}", np.eye(basis.rank)[k])
    replies = generate_replies(persona, prompts, config, adapter)
    r = basis.project(persona.rewards.featurizer.features(prompts, replies))[:, k]
    b = baseline.rewards[: len(prompts), k]
    sd = float(b.std(ddof=1)) or 1.0
    quality = reply_quality(encode, prompts, replies)
    return {
        "direction": k, "axis": basis.axes[k].name, "base_mean": float(b.mean()),
        "adapter_mean": float(r.mean()), "base_sd": sd,
        "effect_sd": float((r.mean() - b.mean()) / sd), "ci95_sd": ci95(r - b) / sd,
        **quality_fields(baseline.quality_of_first(len(prompts)), quality),
    }  # fmt: skip


def _onboarded_weights(
    world: RewardWorld,
    basis: RewardBasis,
    train_ids: np.ndarray,
    shots: int,
    utility: np.ndarray,
    threshold: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """A simulated user's posterior mean weights after answering ``shots`` pairs on train
    prompts (Bradley-Terry answers under their ``utility``)."""
    a, b = world.answerable_pairs(train_ids, shots, utility, threshold, rng)
    gap = utility[a] - utility[b]
    wins = bt_labels(gap, calibrate_beta(gap), rng)
    g = basis.project(world.differences(a, b, wins))
    return fit_posterior(g, basis.prior_mean, basis.prior_precision).mean


def _user_gain(
    u: int,
    user: SimulatedUser,
    prompts: list[str],
    replies: list[str],
    base_attrs: np.ndarray,
    baseline: _Baseline,
    encode: Encode,
) -> dict:
    """A simulated user's true utility of their adapter's replies against the base model's."""
    attrs = np.stack([attribute_vector(t, p) for t, p in zip(replies, prompts)])
    diff = attrs @ user.weights - base_attrs @ user.weights
    quality = reply_quality(encode, prompts, replies)
    return {
        "user": u, "top": [n for n, _ in user.top_attributes(2)],
        "base_utility": float((base_attrs @ user.weights).mean()),
        "adapter_utility": float((attrs @ user.weights).mean()),
        "gain": float(diff.mean()), "ci95": ci95(diff),
        **quality_fields(baseline.quality_of_first(len(prompts)), quality),
    }  # fmt: skip


def _user_gains(
    persona,
    config: AdapterEvalConfig,
    world: RewardWorld,
    baseline: _Baseline,
    encode: Encode,
    rng: np.random.Generator,
    step: Callable[[], None],
) -> list[dict]:
    """Per unseen simulated user, onboarded on train prompts: their adapter's gain in true
    utility over the base model on held-out prompts."""
    basis = persona.rewards.basis
    train_ids = np.array([i for i, p in enumerate(world.prompts) if not is_held_out(p)])
    prompts = baseline.prompts[: config.prompts]
    base_attrs = np.stack(
        [attribute_vector(t, p) for t, p in zip(baseline.replies, baseline.prompts)]
    )[: config.prompts]
    users = make_reward_population(config.users, seed=1000 + config.seed)
    utility = world.utilities(users)
    thresholds = world.indifference(utility, 0.5, rng)
    gains = []
    for u, user in enumerate(users):
        weights = _onboarded_weights(
            world, basis, train_ids, config.shots, utility[:, u], thresholds[u], rng
        )
        name = _coefficient_adapter(persona, f"u{u}", coefficients(weights))
        replies = generate_replies(persona, prompts, config, name)
        gains.append(_user_gain(u, user, prompts, replies, base_attrs, baseline, encode))
        step()
        persona.adapters.server.drop_user(EVAL_KEY)
    return gains


def run_adapter_eval(persona, config: AdapterEvalConfig, progress=None) -> AdapterEvalResult:
    """Both measures of ``persona eval adapters``; ``progress`` is a rich Progress or None."""
    basis = persona.rewards.basis
    featurizer = persona.rewards.featurizer
    world = RewardWorld.build(featurizer)
    rng = np.random.default_rng(config.seed)
    prompts = _eval_prompts(world, config, rng)
    directions = check_directions(persona, config)
    step = _progress_step(progress, 1 + len(directions) + config.users)
    result = AdapterEvalResult(persona.host.name, asdict(config))
    base = generate_replies(persona, prompts, config)
    step()
    encode = _reply_encoder(persona)
    base_rewards = basis.project(featurizer.features(prompts, base))
    baseline = _Baseline(prompts, base, base_rewards, reply_quality(encode, prompts, base))
    for k in directions:
        result.directions.append(_direction_effect(persona, config, baseline, encode, k))
        step()
    if not config.users:
        return result
    result.users = _user_gains(persona, config, world, baseline, encode, rng, step)
    persona.adapters.server.drop_user(EVAL_KEY)
    return result
