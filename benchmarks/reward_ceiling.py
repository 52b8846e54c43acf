"""How much of a simulated user's taste the featurizer can see at all.

For each of ``--users`` simulated users, a logistic regression is fit on ``--pairs`` of
that user's own answered pairs over train prompts, once on the featurizer's features and
once on the simulator's true attributes, and scored on held-out prompts. The first is the
ceiling of any linear reward on these features (no basis, no prior, lots of data); the
second shows what perfect features would give.

Usage: ``python benchmarks/reward_ceiling.py [--users 12] [--pairs 4000]
[--indifference 0.5]``. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from rich.console import Console
from rich.table import Table

from persona_sdk.embedder import load_embedder
from persona_sdk.features import EmbeddingStyleFeaturizer
from persona_sdk.posterior import fit_posterior, sigmoid
from persona_sdk.reward_pool import RewardWorld, bt_labels
from persona_sdk.simulate import calibrate_beta, make_reward_population


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=12)
    parser.add_argument("--pairs", type=int, default=4000)
    parser.add_argument("--indifference", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args()
    world = RewardWorld.build(EmbeddingStyleFeaturizer(load_embedder()))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(world.prompts))
    held_out, train = order[:90], order[90:]
    users = make_reward_population(args.users, seed=args.seed)
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

        def accuracy(scores, p_true=p_true):
            return float(np.mean(np.where(scores > 0, p_true, 1 - p_true)))

        def ceiling(x, x_test, precision, wins=wins):
            z = np.where(wins[:, None], x, -x)
            return accuracy(x_test @ fit_posterior(z, np.zeros(x.shape[1]), precision).mean)

        z = world.features[a] - world.features[b]
        scale = np.sqrt((z**2).mean(0)) + 1e-6
        d_feat = z.shape[1]
        z_test = (world.features[c] - world.features[d]) / scale
        attrs = world.attributes
        rows.append(
            (
                accuracy(test_gap),
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
    print(json.dumps({"users": args.users, "pairs": args.pairs,
                      "indifference": args.indifference, "oracle": round(oracle, 4),
                      "features_lr": round(features, 4),
                      "attributes_lr": round(attributes, 4)}))  # fmt: skip


if __name__ == "__main__":
    main()
