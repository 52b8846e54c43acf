"""Few-shot accuracy of the reward basis for unseen simulated users (design §7).

Per seed: a fresh population is split into seen and unseen users, the prompts into train and
held-out. Every basis is fit on seen users' pairs over train prompts only; each unseen user
then answers ``shots`` questions over train prompts, and is scored on pairs of held-out
prompts. Accuracy is the expected agreement with the user's Bradley–Terry label (the mean over
infinitely many label draws), so label noise adds no variance; the oracle that ranks by true
utility shows the ceiling that noise allows.

Methods: the SDK (LoRe basis, population prior, MAP), (a) one shared direction, (b) per-user
logistic regression shrunk toward (a), (c) a PCA basis with the same prior and MAP, and the SDK
with active (most informative) questions instead of random ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from persona_sdk.reward.fit import (
    BasisConfig,
    Pairs,
    ShrunkLogistic,
    feature_scale,
    fit_lore,
    fit_pca,
    fit_shared,
    population_prior,
)
from persona_sdk.reward.posterior import fit_posterior, sigmoid
from persona_sdk.simulation.users import make_reward_population, split_seen_unseen
from persona_sdk.simulation.world import (
    INDIFFERENCE,
    ORACLE_TARGET,
    RewardWorld,
    bt_labels,
    simulated_pairs,
)

METHODS = ("sdk", "sdk_active", "shared_a", "shrunk_b", "pca_c", "oracle")
LABELS = {
    "sdk": "SDK (LoRe basis + prior, random questions)",
    "sdk_active": "SDK, active questions",
    "shared_a": "(a) one shared direction",
    "shrunk_b": "(b) per-user logistic, shrunk to (a)",
    "pca_c": "(c) PCA basis + prior",
    "oracle": "oracle (true utility)",
}


@dataclass
class RewardEvalConfig:
    """Sizes of one evaluation; the defaults are the recorded run."""

    users: int = 50  # unseen users per seed
    seen_users: int = 200
    pairs_per_seen_user: int = 1000
    seeds: int = 5
    shots: tuple[int, ...] = (1, 2, 4, 8, 16)
    eval_pairs: int = 300
    candidates: int = 300  # pairs the active learner may ask about
    held_out_prompts: float = 0.3
    oracle_target: float = ORACLE_TARGET
    indifference: float = INDIFFERENCE
    idiosyncrasy: float = 0.2  # share of each simulated user's taste outside the archetypes
    basis: BasisConfig = field(default_factory=BasisConfig)


@dataclass
class RewardEvalResult:
    """Mean accuracy per method and shot count, with 95% intervals over users × seeds."""

    shots: list[int]
    accuracy: dict[str, list[float]]
    ci95: dict[str, list[float]]
    beta: list[float]
    config: dict

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def expected_accuracy(scores: np.ndarray, p_true: np.ndarray) -> float:
    """Agreement of ``sign(scores)`` with labels drawn at ``p_true`` (ties count half)."""
    return float(np.mean(np.where(scores > 0, p_true, np.where(scores < 0, 1 - p_true, 0.5))))


def run_reward_eval(
    world: RewardWorld,
    config: RewardEvalConfig | None = None,
    progress: Callable[[int], None] | None = None,
) -> RewardEvalResult:
    """Run every seed; ``progress(1)`` is called once per unseen user."""
    config = config or RewardEvalConfig()
    shots = sorted(set(config.shots))
    scores: dict[str, list[list[float]]] = {m: [] for m in METHODS}
    betas = []
    for seed in range(config.seeds):
        run = _run_seed(world, config, shots, seed, progress)
        betas.append(run.pop("beta"))
        for method, rows in run.items():
            scores[method] += rows
    accuracy, ci = {}, {}
    for method, rows in scores.items():
        table = np.array(rows)  # users × shots
        accuracy[method] = table.mean(0).round(4).tolist()
        ci[method] = (1.96 * table.std(0) / np.sqrt(len(table))).round(4).tolist()
    settings = {k: v for k, v in config.__dict__.items() if k != "basis"}
    settings["basis"] = dict(config.basis.__dict__)
    return RewardEvalResult(shots, accuracy, ci, betas, settings)


def _run_seed(world, config, shots, seed, progress) -> dict:
    rng = np.random.default_rng([seed, 4])
    population = make_reward_population(
        config.seen_users + config.users, seed=seed, idiosyncrasy=config.idiosyncrasy
    )
    seen, unseen = split_seen_unseen(population, config.users / len(population), seed=seed)
    order = rng.permutation(len(world.prompts))
    n_held = round(config.held_out_prompts * len(order))
    held_out, train = order[:n_held], order[n_held:]

    # Seen users label pairs over train prompts; β is set so the oracle meets its target.
    raw, beta = simulated_pairs(
        world, seen, config.pairs_per_seen_user, rng, train, config.oracle_target,
        config.indifference,
    )  # fmt: skip
    scale = feature_scale(raw.z)
    pairs = Pairs(raw.z / scale, raw.users, raw.user_ids)

    lore, _ = fit_lore(pairs, config.basis)
    pca = fit_pca(pairs, config.basis.rank)
    priors = {}
    for name, basis in (("sdk", lore), ("pca_c", pca)):
        mean, cov, _ = population_prior(pairs, basis, config.basis.prior_strength)
        priors[name] = (basis, mean, np.linalg.inv(cov))
    shared = fit_shared(pairs)
    shrunk = ShrunkLogistic.tuned(shared, pairs, seed=seed)

    out: dict[str, list] = {m: [] for m in METHODS}
    truth = world.utilities(unseen)
    thresholds = world.indifference(truth, config.indifference, rng)
    for u in range(len(unseen)):
        utility, threshold = truth[:, u], thresholds[u]
        ea, eb = world.answerable_pairs(held_out, config.eval_pairs, utility, threshold, rng)
        gap = truth[ea, u] - truth[eb, u]
        p_true = sigmoid(beta * gap)
        z_eval = world.differences(ea, eb) / scale
        sa, sb = world.answerable_pairs(train, max(shots), utility, threshold, rng)
        wins = bt_labels(truth[sa, u] - truth[sb, u], beta, rng)
        z_shots = world.differences(sa, sb, wins) / scale

        def accuracy(direction: np.ndarray, z_eval=z_eval, p_true=p_true) -> float:
            return expected_accuracy(z_eval @ direction, p_true)

        out["oracle"].append([expected_accuracy(gap, p_true)] * len(shots))
        out["shared_a"].append([accuracy(shared)] * len(shots))
        out["shrunk_b"].append([accuracy(shrunk.fit(z_shots[:n])) for n in shots])
        for name, (basis, mean, precision) in priors.items():
            g = z_shots @ basis
            out[name].append(
                [accuracy(basis @ fit_posterior(g[:n], mean, precision).mean) for n in shots]
            )
        out["sdk_active"].append(
            _active(world, priors["sdk"], utility, threshold, beta, train, scale, shots, rng,
                    accuracy, config.candidates)
        )  # fmt: skip
        if progress:
            progress(1)
    out["beta"] = beta
    return out


def _active(world, prior, utility, threshold, beta, train, scale, shots, rng, accuracy, n_cand):
    """Ask the most informative candidate each round; accuracy after each of ``shots``
    answers. A question the user is indifferent to is skipped: it gets no label and does
    not count, exactly as a skip in ``persona onboard``."""
    basis, mean, precision = prior
    ca, cb = world.sample_pairs(train, n_cand, rng)
    g_candidates = (world.differences(ca, cb) / scale) @ basis
    asked, answers, row = [], [], []
    posterior = fit_posterior(np.zeros((0, len(mean))), mean, precision)
    while len(answers) < max(shots) and len(asked) < n_cand:
        information = posterior.information(g_candidates)
        information[asked] = -np.inf
        pick = int(np.argmax(information))
        asked.append(pick)
        gap = utility[ca[pick]] - utility[cb[pick]]
        if abs(gap) <= threshold:
            continue
        a_wins = bt_labels(np.array([gap]), beta, rng)[0]
        answers.append(g_candidates[pick] if a_wins else -g_candidates[pick])
        posterior = fit_posterior(np.array(answers), mean, precision)
        if len(answers) in shots:
            row.append(accuracy(basis @ posterior.mean))
    return row + [row[-1] if row else 0.5] * (len(shots) - len(row))
