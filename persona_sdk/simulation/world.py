"""The response pool with its true attributes: the world simulated users live in.

Fitting the default basis, the reward evaluation and the adapter evaluation draw pairs from
it by index, so every reply is featurized once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from persona_sdk.reward.basis import RewardBasis
from persona_sdk.reward.features import Featurizer
from persona_sdk.reward.fit import BasisConfig, Pairs, fit_reward_basis
from persona_sdk.reward.pool import FeaturizedPool, PoolEntry, load_pool
from persona_sdk.reward.posterior import sigmoid
from persona_sdk.simulation.users import (
    Population,
    attribute_vector,
    calibrate_beta,
    make_reward_population,
)

ORACLE_TARGET = 0.925  # label noise: an oracle that knows the true utility is right this often
INDIFFERENCE = 0.5  # share of random pairs a simulated user has no preference on


@dataclass
class RewardWorld(FeaturizedPool):
    """The featurized pool plus each reply's simulator attributes."""

    attributes: np.ndarray  # (n, len(ATTRIBUTES))

    @classmethod
    def build(cls, featurizer: Featurizer, entries: list[PoolEntry] | None = None) -> RewardWorld:
        """Featurize ``entries`` (default: the shipped pool) and measure their attributes."""
        entries = load_pool() if entries is None else entries
        attributes = np.stack([attribute_vector(e.text, e.prompt) for e in entries])
        return cls(*cls.featurize(featurizer, entries), attributes)

    def sample_pairs(
        self, prompt_ids: np.ndarray, n: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` random pairs of distinct replies to the same prompt (prompts uniform)."""
        groups = [g for g in self.replies_of(prompt_ids) if len(g) >= 2]
        which = rng.integers(len(groups), size=n)
        a, b = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        for i, g in enumerate(which):
            a[i], b[i] = rng.choice(groups[g], size=2, replace=False)
        return a, b

    def differences(
        self, a: np.ndarray, b: np.ndarray, a_wins: np.ndarray | None = None
    ) -> np.ndarray:
        """``φ(a) − φ(b)`` per pair; with ``a_wins``, oriented as chosen − rejected."""
        z = self.features[a] - self.features[b]
        return z if a_wins is None else np.where(a_wins[:, None], z, -z)

    def utilities(self, users: Population) -> np.ndarray:
        """True utility of every reply for every user: ``(n_replies, n_users)``."""
        return self.attributes @ np.stack([u.weights for u in users]).T

    def indifference(
        self, utility: np.ndarray, quantile: float, rng: np.random.Generator
    ) -> np.ndarray:
        """Per user (columns of ``utility``), the utility gap below which they have no
        preference: the ``quantile`` of their gaps over random pairs. A person shown two
        replies that differ only in what they do not care about answers "no preference"
        (and the onboarding flow lets them skip), so such pairs get no label."""
        if quantile <= 0:
            return np.zeros(utility.shape[1])
        a, b = self.sample_pairs(np.arange(len(self.prompts)), 4000, rng)
        return np.quantile(np.abs(utility[a] - utility[b]), quantile, axis=0)

    def answerable_pairs(
        self,
        prompt_ids: np.ndarray,
        n: int,
        utility: np.ndarray,
        threshold: float,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` random pairs over ``prompt_ids`` whose utility gap (one user's ``utility``)
        exceeds ``threshold``: the pairs that user would answer."""
        a_out, b_out = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        while len(a_out) < n:
            a, b = self.sample_pairs(prompt_ids, 2 * n + 16, rng)
            keep = np.abs(utility[a] - utility[b]) > threshold
            a_out, b_out = np.concatenate([a_out, a[keep]]), np.concatenate([b_out, b[keep]])
        return a_out[:n], b_out[:n]


def bt_labels(gaps: np.ndarray, beta: float, rng: np.random.Generator) -> np.ndarray:
    """Bradley–Terry labels for pairs with utility gaps ``u_a − u_b``: True where a wins."""
    p = sigmoid(beta * np.asarray(gaps))
    return rng.random(p.shape) < p


def simulated_pairs(
    world: RewardWorld,
    users: Population,
    pairs_per_user: int,
    rng: np.random.Generator,
    prompt_ids: np.ndarray | None = None,
    oracle_target: float = ORACLE_TARGET,
    indifference: float = INDIFFERENCE,
) -> tuple[Pairs, float]:
    """Bradley–Terry pairs of simulated ``users`` over ``prompt_ids`` (default: all). Each
    user skips the ``indifference`` share of pairs they care least about; the label noise is
    set so an oracle is right ``oracle_target`` of the time. Returns raw pairs and that β."""
    drawn = simulated_choices(
        world, users, pairs_per_user, rng, prompt_ids, oracle_target, indifference
    )
    z = world.differences(drawn.a, drawn.b, drawn.a_wins)
    return Pairs(z, drawn.owner, [u.user_id for u in users]), drawn.beta


@dataclass
class Choices:
    """Simulated answers by pool index: reply ``a[i]`` vs ``b[i]``, answered by user
    ``owner[i]`` (``a_wins[i]``: they chose ``a``), at Bradley–Terry inverse noise ``beta``."""

    a: np.ndarray
    b: np.ndarray
    a_wins: np.ndarray
    owner: np.ndarray
    beta: float


def simulated_choices(
    world: RewardWorld,
    users: Population,
    pairs_per_user: int,
    rng: np.random.Generator,
    prompt_ids: np.ndarray | None = None,
    oracle_target: float = ORACLE_TARGET,
    indifference: float = INDIFFERENCE,
) -> Choices:
    """The answers behind :func:`simulated_pairs`, as pool indices (so the texts are at
    hand): ``pairs_per_user`` answerable pairs per user, labelled by Bradley–Terry."""
    prompt_ids = np.arange(len(world.prompts)) if prompt_ids is None else prompt_ids
    utility = world.utilities(users)
    thresholds = world.indifference(utility, indifference, rng)
    drawn = [
        world.answerable_pairs(prompt_ids, pairs_per_user, utility[:, u], thresholds[u], rng)
        for u in range(len(users))
    ]
    a = np.concatenate([d[0] for d in drawn])
    b = np.concatenate([d[1] for d in drawn])
    owner = np.repeat(np.arange(len(users)), pairs_per_user)
    gaps = utility[a, owner] - utility[b, owner]
    beta = calibrate_beta(gaps, oracle_target)
    return Choices(a, b, bt_labels(gaps, beta, rng), owner, beta)


def fit_default_basis(
    world: RewardWorld,
    featurizer: Featurizer,
    users: int = 300,
    pairs_per_user: int = 1000,
    seed: int = 0,
    config: BasisConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> RewardBasis:
    """The shipped basis: LoRe on a simulated population (300k pairs) over the whole
    pool, named from the pool's replies."""
    population = make_reward_population(users, seed=seed)
    pairs, beta = simulated_pairs(world, population, pairs_per_user, np.random.default_rng(seed))
    stats = {"source": f"simulated population: {users} users, seed {seed}", "beta": beta}
    return fit_reward_basis(pairs, featurizer, world.features, world.texts, config, progress, stats)
