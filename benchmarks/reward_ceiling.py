"""How much of a simulated user's taste the featurizer can see at all.

For each of ``--users`` simulated users, a logistic regression is fit on ``--pairs`` of
that user's own answered pairs over train prompts, once on the featurizer's features and
once on the simulator's true attributes, and scored on held-out prompts. The first is the
ceiling of any linear reward on these features (no basis, no prior, lots of data); the
second shows what perfect features would give.

A second table bounds few-shot accuracy itself: ``--basis-users`` unseen users are fit from
1–16 labelled pairs with everything the SDK has to learn handed over for free (the true
attributes as features, the simulator's own archetypes as the basis, and a prior fit on
200 seen users' true weights, Gaussian MAP as in the SDK). A learner that must discover
the features, basis and prior does not get these for free; only a prior that knows the
mixtures are sparse (not Gaussian) could add a little. The 0-shot column is the prior mean
alone: one direction for everyone, in the true attributes.

``--alpha`` and ``--idiosyncrasy`` change the simulated population (how sparse each user's
archetype mixture is, and how much taste of their own they have); ``--few-shot-only`` skips
the first table, for sweeping them.

Usage: ``python benchmarks/reward_ceiling.py [--users 12] [--pairs 4000]
[--basis-users 50] [--indifference 0.5] [--alpha 0.3] [--idiosyncrasy 0.2]
[--few-shot-only]``. Prints the tables, then one JSON line.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from rich.console import Console
from rich.table import Table

from persona_sdk.decoding.embedder import load_embedder
from persona_sdk.evals.reward import expected_accuracy
from persona_sdk.reward.features import EmbeddingStyleFeaturizer
from persona_sdk.reward.posterior import fit_posterior, sigmoid
from persona_sdk.simulation.users import archetype_matrix, calibrate_beta, make_reward_population
from persona_sdk.simulation.world import RewardWorld, bt_labels

SHOTS = (0, 1, 2, 4, 8, 16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=12)
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--indifference", type=float, default=0.5)
    parser.add_argument("--basis-users", type=int, default=50)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--alpha", type=float, default=0.3)
    parser.add_argument("--idiosyncrasy", type=float, default=0.2)
    parser.add_argument("--few-shot-only", action="store_true")
    args = parser.parse_args()
    world = RewardWorld.build(EmbeddingStyleFeaturizer(load_embedder()))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(world.prompts))
    held_out, train = order[:90], order[90:]
    summary = {"alpha": args.alpha, "idiosyncrasy": args.idiosyncrasy,
               "indifference": args.indifference}  # fmt: skip
    if not args.few_shot_only:
        summary |= per_user_ceiling(world, held_out, train, args, rng)
    few_shot = oracle_basis_accuracy(world, held_out, train, args, rng)
    table = Table(
        title=f"few-shot with the true features, basis and prior, {args.basis_users} users"
    )
    for shots in SHOTS:
        table.add_column(f"{shots} shots", justify="right")
    table.add_column("oracle", justify="right")
    table.add_row(*(f"{few_shot[s]:.1%}" for s in (*SHOTS, "oracle")))
    Console().print(table)
    summary["oracle_basis"] = {s: round(a, 4) for s, a in few_shot.items()}
    print(json.dumps(summary))


def population(n: int, args, seed: int):
    """``n`` reward-eval users drawn with the population options of ``args``."""
    return make_reward_population(n, seed=seed, alpha=args.alpha, idiosyncrasy=args.idiosyncrasy)


def per_user_ceiling(world, held_out, train, args, rng) -> dict:
    """The first table: per-user logistic regressions on many pairs, features vs attributes."""
    users = population(args.users, args, args.seed)
    utility = world.utilities(users)
    thresholds = world.indifference(utility, args.indifference, rng)
    rows = []
    for u in range(args.users):
        a, b = world.answerable_pairs(train, args.pairs, utility[:, u], thresholds[u], rng)
        c, d = world.answerable_pairs(held_out, 2000, utility[:, u], thresholds[u], rng)
        gap, test_gap = utility[a, u] - utility[b, u], utility[c, u] - utility[d, u]
        beta = calibrate_beta(gap)
        wins = bt_labels(gap, beta, rng)
        p_true = sigmoid(beta * test_gap)

        def ceiling(x, x_test, precision, wins=wins, p_true=p_true):
            z = np.where(wins[:, None], x, -x)
            scores = x_test @ fit_posterior(z, np.zeros(x.shape[1]), precision).mean
            return expected_accuracy(scores, p_true)

        z = world.features[a] - world.features[b]
        scale = np.sqrt((z**2).mean(0)) + 1e-6
        d_feat = z.shape[1]
        z_test = (world.features[c] - world.features[d]) / scale
        attrs = world.attributes
        rows.append(
            (
                expected_accuracy(test_gap, p_true),
                ceiling(z / scale, z_test, 300 * np.eye(d_feat)),
                ceiling(attrs[a] - attrs[b], attrs[c] - attrs[d], np.eye(attrs.shape[1])),
            )
        )
    oracle, features, attributes = np.mean(rows, axis=0)
    table = Table(title=f"per-user ceiling, {args.users} users × {args.pairs} pairs")
    for column in ("oracle", "LR on features", "LR on true attributes"):
        table.add_column(column, justify="right")
    table.add_row(f"{oracle:.1%}", f"{features:.1%}", f"{attributes:.1%}")
    Console().print(table)
    return {"users": args.users, "pairs": args.pairs, "oracle": round(oracle, 4),
            "features_lr": round(features, 4), "attributes_lr": round(attributes, 4)}  # fmt: skip


def oracle_basis_accuracy(world, held_out, train, args, rng, n_seen: int = 200) -> dict:
    """Mean held-out accuracy per shot count (and the oracle's) for a MAP fit in the
    simulator's archetype coordinates, with a Gaussian prior from the seen users' true
    (β-scaled) coordinates."""
    archetypes = archetype_matrix()
    users = population(n_seen + args.basis_users, args, args.seed + 1)
    utility = world.utilities(users)
    thresholds = world.indifference(utility, args.indifference, rng)
    weights = np.stack([u.weights for u in users])
    coords = np.linalg.lstsq(archetypes.T, weights.T, rcond=None)[0].T
    g_all = world.attributes @ archetypes.T

    def draw(u, prompts, n):
        a, b = world.answerable_pairs(prompts, n, utility[:, u], thresholds[u], rng)
        return a, b, utility[a, u] - utility[b, u]

    betas = np.array([calibrate_beta(draw(u, train, 500)[2]) for u in range(n_seen)])
    scaled = betas[:, None] * coords[:n_seen]
    precision = np.linalg.inv(np.cov(scaled.T) + 1e-3 * np.eye(len(archetypes)))
    accuracy: dict = {s: [] for s in (*SHOTS, "oracle")}
    for u in range(n_seen, len(users)):
        a, b, gap = draw(u, train, 500)
        beta = calibrate_beta(gap)
        wins = bt_labels(gap, beta, rng)
        c, d, test_gap = draw(u, held_out, 2000)
        p_true = sigmoid(beta * test_gap)
        accuracy["oracle"].append(expected_accuracy(test_gap, p_true))
        for s in SHOTS:
            z = np.where(wins[:s, None], g_all[a[:s]] - g_all[b[:s]], g_all[b[:s]] - g_all[a[:s]])
            w = fit_posterior(z, scaled.mean(0), precision).mean
            accuracy[s].append(expected_accuracy((g_all[c] - g_all[d]) @ w, p_true))
    return {s: float(np.mean(v)) for s, v in accuracy.items()}


if __name__ == "__main__":
    main()
