"""Fitting reward bases on a population of users' pairs (design §2), and the baselines.

* :func:`fit_lore`: the shared basis ``V`` (d × K) and every user's weights, jointly, by
  Adam on ``Σ softplus(−zᵀ V w_u) + λ‖V‖² + λ_w Σ‖w_u‖²``, started from the SVD of the users'
  mean pair differences. The result is rotated so the axes are orthonormal and ordered by how
  much users disagree along them, and signed so the average user likes the positive end.
* :func:`fit_pca`: baseline (c), the top principal directions of the pair differences (DRM).
* :func:`fit_shared`: baseline (a), one Bradley–Terry direction for everyone (K = 1).
* :func:`population_prior`: refits each population user on a frozen basis, the same way a new
  user is fit, and takes the mean and covariance of their weights as the new-user prior.

User weights are signed reals rather than LoRe's simplex: a user may dislike a direction, and
a Gaussian prior makes the new-user fit a convex problem with a Laplace posterior.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from persona_sdk.errors import PopulationDataError
from persona_sdk.reward.basis import RewardBasis, name_axes
from persona_sdk.reward.features import Featurizer, featurizer_hash
from persona_sdk.reward.posterior import fit_posterior

Progress = Callable[[int], None]


@dataclass
class BasisConfig:
    """Settings of :func:`fit_lore` (and of the baselines that share them)."""

    rank: int = 8
    steps: int = 300
    learning_rate: float = 0.03
    l2_basis: float = 1e-4
    l2_weights: float = 1e-4
    prior_strength: float = 1e-2  # precision of the weak prior when refitting population users
    seed: int = 0


@dataclass
class Pairs:
    """Oriented pair differences ``z = φ(chosen) − φ(rejected)`` and who labelled each."""

    z: np.ndarray  # (n, d) float32
    users: np.ndarray  # (n,) int: index into user_ids
    user_ids: list[str]

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def of_user(self, index: int) -> np.ndarray:
        return self.z[self.users == index]


def feature_scale(z: np.ndarray) -> np.ndarray:
    """Per-feature standard deviation of the pair differences (floored), for standardising."""
    scale = np.sqrt(np.mean(np.square(z, dtype=np.float64), axis=0))
    return np.maximum(scale, 1e-6 * max(float(scale.max()), 1e-12)).astype(np.float32)


def fit_lore(
    pairs: Pairs, config: BasisConfig | None = None, progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Joint fit; returns ``(V, W)``: V (d × K) over standardised features, W (users × K)."""
    config = config or BasisConfig()
    torch.manual_seed(config.seed)
    x = torch.from_numpy(np.ascontiguousarray(pairs.z, dtype=np.float32))
    users = torch.from_numpy(pairs.users.astype(np.int64))
    counts = torch.bincount(users, minlength=pairs.n_users).clamp(min=1).float()
    means = torch.zeros(pairs.n_users, x.shape[1]).index_add_(0, users, x) / counts[:, None]
    _, s, vt = torch.linalg.svd(means, full_matrices=False)
    k = min(config.rank, len(s))
    scale = s[:k].sqrt()
    basis = torch.nn.Parameter(vt[:k].T * scale / scale.max())
    weights = torch.nn.Parameter((means @ vt[:k].T) / (scale * scale.max()) * 4)
    optimiser = torch.optim.Adam([basis, weights], lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, config.steps)
    for _ in range(config.steps):
        optimiser.zero_grad()
        margin = ((x @ basis) * weights[users]).sum(-1)
        loss = torch.nn.functional.softplus(-margin).mean()
        loss = loss + config.l2_basis * basis.square().sum()
        loss = loss + config.l2_weights * weights.square().sum(-1).mean()
        loss.backward()
        optimiser.step()
        schedule.step()
        if progress:
            progress(1)
    return _canonical(basis.detach().numpy(), weights.detach().numpy())


def _canonical(v: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same rewards in canonical axes: orthonormal columns, users' weight covariance
    diagonal and decreasing, mean weight non-negative."""
    q, r = np.linalg.qr(v.astype(np.float64))
    w = w.astype(np.float64) @ r.T
    variances, rotation = np.linalg.eigh(np.cov(w, rowvar=False) if len(w) > 1 else np.eye(len(r)))
    rotation = rotation[:, np.argsort(-variances)]
    q, w = q @ rotation, w @ rotation
    signs = np.where(w.mean(0) < 0, -1.0, 1.0)
    return (q * signs).astype(np.float32), w * signs


def fit_pca(pairs: Pairs, rank: int) -> np.ndarray:
    """Baseline (c): the top ``rank`` principal directions of the pair differences."""
    _, _, vt = np.linalg.svd(pairs.z.astype(np.float64), full_matrices=False)
    return vt[:rank].T.astype(np.float32)


def fit_shared(pairs: Pairs, l2: float = 1.0) -> np.ndarray:
    """Baseline (a): one logistic-regression direction on all users' pairs (d,)."""
    d = pairs.z.shape[1]
    return fit_posterior(pairs.z, np.zeros(d), l2 * np.eye(d)).mean


def population_prior(
    pairs: Pairs, basis: np.ndarray, strength: float = 1e-2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit every population user on the frozen ``basis`` under a weak prior; returns the
    weights' mean, covariance (ridged so it stays invertible) and the per-user weights."""
    g = pairs.z @ basis
    k = basis.shape[1]
    weights = np.stack(
        [
            fit_posterior(g[pairs.users == u], np.zeros(k), strength * np.eye(k)).mean
            for u in range(pairs.n_users)
        ]
    )
    mean = weights.mean(0)
    cov = np.cov(weights, rowvar=False).reshape(k, k) if len(weights) > 1 else np.eye(k)
    ridge = 1e-3 * max(float(np.trace(cov)) / k, 1e-6)
    return mean, cov + ridge * np.eye(k), weights


@dataclass
class ShrunkLogistic:
    """Baseline (b): per-user logistic regression in the full feature space, shrunk toward
    the shared direction with prior variance ``variance`` per feature."""

    shared: np.ndarray
    variance: float

    def fit(self, z: np.ndarray) -> np.ndarray:
        # The MAP lies in shared + span(z): solve in that n-dimensional span, not in all d.
        if len(z) == 0:
            return self.shared
        q, _ = np.linalg.qr(z.T.astype(np.float64))
        h = z @ q
        a = fit_posterior(h, np.zeros(q.shape[1]), np.eye(q.shape[1]) / self.variance,
                          offset=z @ self.shared).mean  # fmt: skip
        return self.shared + q @ a

    @classmethod
    def tuned(
        cls,
        shared: np.ndarray,
        pairs: Pairs,
        shots: int = 8,
        grid: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1),
        users: int = 20,
        seed: int = 0,
    ) -> ShrunkLogistic:
        """Pick the prior variance that predicts population users' held-back pairs best
        from ``shots`` of their own, so baseline (b) gets a fair setting."""
        rng = np.random.default_rng(seed)
        chosen = rng.permutation(pairs.n_users)[:users]
        splits = []
        for u in chosen:
            z = pairs.of_user(int(u))[rng.permutation(int((pairs.users == u).sum()))]
            if len(z) > shots:
                splits.append((z[:shots], z[shots:]))
        scores = [
            np.mean([np.mean(test @ cls(shared, v).fit(train) > 0) for train, test in splits])
            for v in grid
        ]
        return cls(shared, grid[int(np.argmax(scores))])


def fit_reward_basis(
    pairs: Pairs,
    featurizer: Featurizer,
    sample_features: np.ndarray,
    sample_texts: list[str],
    config: BasisConfig | None = None,
    progress: Progress | None = None,
    stats: dict | None = None,
) -> RewardBasis:
    """The whole population fit: standardise, fit the LoRe basis, take the prior from the
    population users refit on it, and name the axes from ``sample_texts`` (replies whose
    features are ``sample_features``). ``pairs.z`` holds raw feature differences."""
    config = config or BasisConfig()
    if pairs.n_users < 2:
        raise PopulationDataError("a basis needs the pairs of at least 2 users")
    scale = feature_scale(pairs.z)
    scaled = Pairs(pairs.z / scale, pairs.users, pairs.user_ids)
    basis, _ = fit_lore(scaled, config, progress)
    mean, cov, weights = population_prior(scaled, basis, config.prior_strength)
    directions = basis / scale[:, None]
    margins = np.einsum("ij,ij->i", scaled.z @ basis, weights[scaled.users])
    return RewardBasis(
        directions,
        mean,
        cov,
        name_axes(sample_features @ directions, sample_texts),
        featurizer.identity,
        featurizer_hash(featurizer),
        "lore",
        {
            "users": pairs.n_users,
            "pairs": len(pairs.z),
            "rank": int(basis.shape[1]),
            "train_accuracy": round(float(np.mean(margins > 0)), 4),
            "config": dict(config.__dict__),
            **(stats or {}),
        },
    )
