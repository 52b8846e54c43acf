"""Reward-basis speed: new-user fit, featurization, basis fit on 100k pairs, onboarding.

Usage: ``python benchmarks/bench_reward.py [--pairs 100000] [--repeats 300]``.
Prints a table, then one JSON line. Everything runs on the embedded featurizer (MiniLM) and
the shipped response pool; the 100k-pair population is simulated on that pool, so its
embeddings are the shipped cache (the fit is what is timed, as in ``persona basis fit`` on a
second run).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from persona_sdk import Persona
from persona_sdk.decoding.embedder import load_embedder
from persona_sdk.reward.basis import RewardBasis, default_basis_path
from persona_sdk.reward.features import EmbeddingStyleFeaturizer
from persona_sdk.reward.fit import BasisConfig, Pairs, fit_reward_basis
from persona_sdk.reward.posterior import fit_posterior
from persona_sdk.simulation.users import make_reward_population
from persona_sdk.simulation.world import RewardWorld, simulated_pairs


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    a = np.asarray(samples_ms)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99))}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=300)
    return parser.parse_args()


def time_new_user_fit(
    world: RewardWorld, basis: RewardBasis, repeats: int, rng: np.random.Generator
) -> list[float]:
    """New-user fit: 16 pairs already featurized (as stored in SQLite), K-dim Newton +
    Laplace; milliseconds per fit."""
    fit_ms = []
    for _ in range(repeats):
        a, b = world.sample_pairs(np.arange(len(world.prompts)), 16, rng)
        z = world.features[a] - world.features[b]
        t = time.perf_counter()
        fit_posterior(z @ basis.directions, basis.prior_mean, basis.prior_precision)
        fit_ms.append((time.perf_counter() - t) * 1000)
    return fit_ms


def time_featurize_pair(
    world: RewardWorld, featurizer: EmbeddingStyleFeaturizer, repeats: int, rng: np.random.Generator
) -> list[float]:
    """Featurizing one new pair: two replies never seen before, plus their prompt."""
    feat_ms = []
    for i in range(min(repeats, 60)):
        k = int(rng.integers(len(world.texts)))
        prompt = world.prompts[world.prompt_of[k]]
        replies = [f"{world.texts[k]} (variant {i}a)", f"{world.texts[k]} (variant {i}b)"]
        t = time.perf_counter()
        featurizer.features([prompt, prompt], replies)
        feat_ms.append((time.perf_counter() - t) * 1000)
    return feat_ms


def time_basis_fit(
    world: RewardWorld,
    featurizer: EmbeddingStyleFeaturizer,
    n_pairs: int,
    rng: np.random.Generator,
    console: Console,
) -> tuple[Pairs, RewardBasis, float]:
    """Basis fit on ~``n_pairs`` pairs of a simulated population (embeddings cached)."""
    per_user = 334
    users = make_reward_population(max(2, n_pairs // per_user), seed=0)
    pairs, _ = simulated_pairs(world, users, per_user, rng)
    config = BasisConfig()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"basis fit, {len(pairs.z)} pairs", total=config.steps)
        t = time.perf_counter()
        fitted = fit_reward_basis(pairs, featurizer, world.features[:3000], world.texts[:3000],
                                  config, lambda n: progress.advance(task, n))  # fmt: skip
        return pairs, fitted, time.perf_counter() - t


def time_api_path(
    world: RewardWorld, featurizer: EmbeddingStyleFeaturizer, rng: np.random.Generator
) -> tuple[list[float], list[float]]:
    """The API path: add a pair (featurize, store, refit) and pick the next question;
    milliseconds of each."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        Persona.open(tmp, embedder=featurizer.cache.embedder) as p,
    ):
        user = p.user("bench")
        user.next_question()  # featurizes the question pool once
        add_ms, question_ms = [], []
        for i in range(20):
            k = int(rng.integers(len(world.texts)))
            prompt = world.prompts[world.prompt_of[k]]
            t = time.perf_counter()
            user.add_pair(prompt, f"{world.texts[k]} ({i})", f"Short reply {i}.")
            add_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            user.next_question()
            question_ms.append((time.perf_counter() - t) * 1000)
    return add_ms, question_ms


def results_table(result: dict, basis_fit_s: float, world_s: float) -> Table:
    table = Table(title="bench_reward (CPU)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    n_pairs, n_users = result["basis_fit_pairs"], result["basis_fit_users"]
    rows = [
        ("new-user fit, 16 pairs, p50 / p99",
         "{p50:.2f} / {p99:.2f} ms".format(**result["new_user_fit_16_pairs_ms"]), "p50 ≤ 20 ms"),
        ("featurize one new pair, p50 / p99",
         "{p50:.1f} / {p99:.1f} ms".format(**result["featurize_one_pair_ms"]), "(separate)"),
        ("add_pair + refit, p50", f"{result['add_pair_with_refit_ms']['p50']:.1f} ms", ""),
        ("next_question, p50", f"{result['next_question_ms']['p50']:.1f} ms", ""),
        (f"basis fit, {n_pairs:,} pairs, {n_users} users", f"{basis_fit_s:.1f} s", "≤ 120 s"),
        ("featurize the pool (cached)", f"{world_s:.1f} s ({result['pool_replies']} replies)",
         ""),
    ]  # fmt: skip
    for row in rows:
        table.add_row(*row)
    return table


def main() -> None:
    args = parse_args()
    console = Console()
    rng = np.random.default_rng(0)

    featurizer = EmbeddingStyleFeaturizer(load_embedder())
    start = time.perf_counter()
    world = RewardWorld.build(featurizer)
    world_s = time.perf_counter() - start
    basis = RewardBasis.load(default_basis_path(), featurizer)

    fit_ms = time_new_user_fit(world, basis, args.repeats, rng)
    feat_ms = time_featurize_pair(world, featurizer, args.repeats, rng)
    pairs, fitted, basis_fit_s = time_basis_fit(world, featurizer, args.pairs, rng, console)
    add_ms, question_ms = time_api_path(world, featurizer, rng)

    result = {
        "new_user_fit_16_pairs_ms": percentiles(fit_ms),
        "featurize_one_pair_ms": percentiles(feat_ms),
        "add_pair_with_refit_ms": percentiles(add_ms),
        "next_question_ms": percentiles(question_ms),
        "basis_fit_pairs": len(pairs.z),
        "basis_fit_users": pairs.n_users,
        "basis_fit_seconds": round(basis_fit_s, 2),
        "basis_fit_train_accuracy": fitted.stats["train_accuracy"],
        "pool_featurize_seconds": round(world_s, 2),
        "pool_replies": len(world.texts),
        "feature_dim": featurizer.dim,
        "rank": basis.rank,
    }
    console.print(results_table(result, basis_fit_s, world_s))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
