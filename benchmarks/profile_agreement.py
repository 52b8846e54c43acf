"""Does the checkable profile (issue 23) tell the truth? Simulated users with known taste.

Each of ``--users`` simulated users (``make_reward_population``, a seed the shipped basis was
not fit on) answers ``--pairs`` Bradley–Terry questions drawn from the shipped pool, exactly
as the reward evaluation draws them (answerable pairs, oracle-calibrated noise). Their
posterior is fit on the shipped basis, and the profile is built by the product's own code
(:func:`persona_sdk.reward.profile.build_profile`: revealed contrasts, shipped probes,
contradictions). Reported, over (user, measure) cases whose contrast has ≥ ``--min-signals``
signals and a majority:

* **revealed vs true**: the revealed direction has the sign of the user's true weight on
  that attribute (style measures are simulator attributes of the same name; long words are
  ``jargon``, prompt overlap is ``echo``);
* **probed vs revealed**: the reward model's probed preference points the same way.

Both are also given for users whose true weight is at least the simulator's "real
preference" threshold (0.1), since a near-zero weight has no sign a person could reveal.

* **ceiling**: how often an oracle that saw clean minimal-pair answers instead of random
  pool pairs would get the true sign. The same user answers ``k`` (the case's number of
  signals) of the measure's shipped probes, each drawn uniformly at random with replacement,
  with the simulator's own Bradley–Terry noise (``sigmoid(β · gap)``, β as calibrated for
  this run's answers); the majority's sign is compared with the true one, ties counting
  half. Computed exactly (binomial), not sampled. Also given with ``--pairs`` answers per
  case, with infinitely many (the sign of the mean choice probability), and with k and
  ``--pairs`` *full-contrast* answers: questions that move the measure's attribute over its
  whole range (0 to 1) and nothing else, the most a single answer can say about its sign.

Usage: ``python benchmarks/profile_agreement.py [--users 200] [--pairs 16] [--plot PNG]``.
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from rich.console import Console
from rich.table import Table

from persona_sdk.decoding.embedder import load_embedder
from persona_sdk.reward.basis import RewardBasis, default_basis_path
from persona_sdk.reward.features import EmbeddingStyleFeaturizer
from persona_sdk.reward.posterior import fit_posterior, sigmoid
from persona_sdk.reward.profile import (
    MEASURES,
    Profile,
    Signal,
    build_profile,
    label,
    load_probes,
    probe_differences,
)
from persona_sdk.simulation.users import (
    ATTRIBUTE_INDEX,
    attribute_vector,
    make_reward_population,
)
from persona_sdk.simulation.world import RewardWorld, simulated_choices

RESULTS = Path(__file__).parent / "results"
ATTRIBUTE_OF = {**{m: m for m in MEASURES}, "long_words": "jargon", "prompt_overlap": "echo"}
REAL_PREFERENCE = 0.1  # SimulatedUser.threshold: the smallest |weight| that is a preference


def user_profiles(
    world, featurizer, basis, users, pairs: int, seed: int
) -> tuple[list[Profile], float]:
    """Each user's profile from their simulated answers, built as the product builds it,
    and the Bradley–Terry β the simulator calibrated for those answers."""
    choices = simulated_choices(world, users, pairs, np.random.default_rng([seed, 23]))
    probes = load_probes()
    probe_g = probe_differences(featurizer, probes) @ basis.directions
    chosen = np.where(choices.a_wins, choices.a, choices.b)
    rejected = np.where(choices.a_wins, choices.b, choices.a)
    g = (world.features[chosen] - world.features[rejected]) @ basis.directions
    profiles = []
    for u, user in enumerate(users):
        mine = np.flatnonzero(choices.owner == u)
        signals = [
            Signal(world.prompts[world.prompt_of[chosen[i]]], world.texts[chosen[i]],
                   world.texts[rejected[i]])
            for i in mine
        ]  # fmt: skip
        posterior = fit_posterior(g[mine], basis.prior_mean, basis.prior_precision)
        profiles.append(build_profile(user.user_id, signals, posterior, probe_g, probes))
    return profiles, choices.beta


def probe_gaps(users) -> tuple[np.ndarray, np.ndarray]:
    """Each shipped probe's measure, and every user's true utility gap (more − less) on it:
    ``(n_probes,)`` and ``(n_probes, n_users)``, all attributes included."""
    probes = load_probes()
    gaps = np.stack([attribute_vector(p.more, p.prompt) - attribute_vector(p.less, p.prompt)
                     for p in probes]) @ np.stack([u.weights for u in users]).T  # fmt: skip
    return np.array([p.measure for p in probes]), gaps


def minimal_pair_truth(users) -> dict[str, np.ndarray]:
    """Per measure, each user's true mean utility gap (more − less) over its shipped probes:
    what the user would choose on the minimal pairs, all attributes included."""
    measures, gaps = probe_gaps(users)
    return {m: gaps[measures == m].mean(0) for m in MEASURES if (measures == m).any()}


def minimal_pair_choice(users, beta: float) -> dict[str, np.ndarray]:
    """Per measure, each user's probability of choosing "more" on one of its shipped probes
    drawn at random: the mean over the probes of the simulator's Bradley–Terry
    ``sigmoid(β · gap)`` (what :func:`~persona_sdk.simulation.world.bt_labels` draws from)."""
    measures, gaps = probe_gaps(users)
    p = sigmoid(beta * gaps)
    return {m: p[measures == m].mean(0) for m in MEASURES if (measures == m).any()}


def majority_agreement(p_right, k) -> np.ndarray:
    """Exact probability that the majority of ``k`` independent answers, each right with
    probability ``p_right``, is right; a tie (even ``k``) counts half, as a coin would.
    ``k=None`` (infinitely many answers): 1, ½ or 0 as ``p_right`` is above, at or below ½."""
    p = np.atleast_1d(np.asarray(p_right, dtype=np.float64))
    if k is None:
        return np.where(p > 0.5, 1.0, np.where(p == 0.5, 0.5, 0.0))
    p, k = np.broadcast_arrays(p, np.asarray(k, dtype=np.int64))
    out = np.empty(p.shape)
    for n in np.unique(k):
        i = np.arange(n + 1)
        pmf = np.array([math.comb(n, j) for j in i]) * p[k == n, None] ** i
        pmf *= (1 - p[k == n, None]) ** (n - i)
        out[k == n] = pmf[:, 2 * i > n].sum(1) + 0.5 * pmf[:, 2 * i == n].sum(1)
    return out


def ceiling(p_more: float, weight: float, k: int, pairs: int, beta: float) -> dict:
    """The oracle's chance of the true sign (:data:`CEILINGS`) from ``k``, ``pairs`` and
    infinitely many answers on the shipped probes (``p_more``: P(more) on one of them), and
    from ``k`` and ``pairs`` full-contrast answers: the attribute from 0 to 1 (its whole range
    in the pool), nothing else changed, so P(right) = ``sigmoid(β·|weight|)``. 0 when the
    weight is 0 (no sign to get right)."""
    if weight == 0:
        return dict.fromkeys(CEILINGS, 0.0)
    probe = p_more if weight > 0 else 1.0 - p_more
    full = float(sigmoid(beta * abs(weight)))
    draws = ((probe, k), (probe, pairs), (probe, None), (full, k), (full, pairs))
    return {key: float(majority_agreement(p, n)[0]) for key, (p, n) in zip(CEILINGS, draws)}


def cases(profiles: list[Profile], users, min_signals: int, beta: float, pairs: int) -> list[dict]:
    """One row per (user, revealed contrast) with ≥ ``min_signals`` signals and a majority,
    with the minimal-pair oracle's ceiling for it (``beta``: the simulator's noise)."""
    rows, minimal = [], minimal_pair_truth(users)
    choice = minimal_pair_choice(users, beta)
    for u, (profile, user) in enumerate(zip(profiles, users)):
        for r in profile.revealed:
            if r.signals < min_signals or r.direction == 0:
                continue
            weight = float(user.weights[ATTRIBUTE_INDEX[ATTRIBUTE_OF[r.measure]]])
            probed = profile.probed_for(r.measure)
            rows.append({
                "measure": r.measure, "direction": r.direction, "signals": r.signals,
                "p_value": r.p_value, "weight": weight, "unanimous": r.unanimous,
                "revealed_vs_true": bool(np.sign(weight) == r.direction),
                "probed_vs_revealed": None if probed is None else probed.direction == r.direction,
                "flagged": r.label in profile.contradictions,
                "probed_vs_minimal_truth": None if probed is None
                else probed.direction == np.sign(minimal[r.measure][u]),
                "revealed_vs_minimal_truth": None if probed is None
                else r.direction == np.sign(minimal[r.measure][u]),
                **ceiling(float(choice[r.measure][u]), weight, r.signals, pairs, beta),
            })  # fmt: skip
    return rows


def flag_check(profiles: list[Profile], users) -> dict:
    """Every flag (a unanimous contrast of ≥ 2 signals the probe goes against): how often the
    revealed side had the true sign, and how often the model was right on the minimal pairs."""
    minimal, revealed_right, model_right = minimal_pair_truth(users), [], []
    for u, (profile, user) in enumerate(zip(profiles, users)):
        for r in profile.revealed:
            if r.label in profile.contradictions:
                weight = user.weights[ATTRIBUTE_INDEX[ATTRIBUTE_OF[r.measure]]]
                revealed_right.append(np.sign(weight) == r.direction)
                probed = profile.probed_for(r.measure)
                model_right.append(probed.direction == np.sign(minimal[r.measure][u]))
    return {
        "flags": len(revealed_right),
        "users_flagged": sum(bool(p.contradictions) for p in profiles),
        "revealed_has_true_sign": round(float(np.mean(revealed_right)), 4),
        "model_right_on_minimal_pairs": round(float(np.mean(model_right)), 4),
    }


def rate(rows: list[dict], key: str) -> tuple[float, int]:
    """Share of ``rows`` where ``key`` is true (rows where it is None left out), and n."""
    values = [r[key] for r in rows if r[key] is not None]
    return (round(float(np.mean(values)), 4) if values else float("nan")), len(values)


# Subsets of the cases reported beside "all": how much the user cares (|true weight|), and
# how strongly their own signals speak (unanimous, sign test), and the flagged ones.
STRATA = {
    "all": lambda r: True,
    "|w| >= 0.02": lambda r: abs(r["weight"]) >= 0.02,
    "|w| >= 0.05": lambda r: abs(r["weight"]) >= 0.05,
    "|w| >= 0.1 (real preference)": lambda r: abs(r["weight"]) >= REAL_PREFERENCE,
    "unanimous": lambda r: r["unanimous"],
    "sign test p <= 0.05": lambda r: r["p_value"] <= 0.05,
    "flagged as contradicted": lambda r: r["flagged"],
}
RATES = (
    "revealed_vs_true",
    "probed_vs_revealed",
    "revealed_vs_minimal_truth",
    "probed_vs_minimal_truth",
)
# The minimal-pair oracle's expected agreement with the true sign from k (the case's signals),
# --pairs, and infinitely many answers on the shipped probes; then from k and --pairs
# full-contrast answers (only the measure's attribute changes, over its whole range).
CEILINGS = (
    "ceiling_k",
    "ceiling_pairs",
    "ceiling_infinite",
    "ceiling_full_k",
    "ceiling_full_pairs",
)
CURVE = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15)


def summary(rows: list[dict], profiles: list[Profile], users) -> dict:
    """Agreement rates overall, per stratum, per measure and against a |weight| floor."""
    out: dict = {"users": len(profiles), "cases": len(rows), "strata": {}}
    for name, keep in STRATA.items():
        subset = [r for r in rows if keep(r)]
        out["strata"][name] = {key: rate(subset, key) for key in RATES + CEILINGS}
    out["flag_check"] = flag_check(profiles, users)
    out["median_abs_weight"] = round(float(np.median([abs(r["weight"]) for r in rows])), 4)
    out["curve"] = {
        str(floor): {
            "revealed_vs_true": rate(mine, "revealed_vs_true")[0],
            "probed_vs_revealed": rate(mine, "probed_vs_revealed")[0],
            "ceiling_k": rate(mine, "ceiling_k")[0],
            "ceiling_full_k": rate(mine, "ceiling_full_k")[0],
            "cases": len(mine),
        }
        for floor in CURVE
        if (mine := [r for r in rows if abs(r["weight"]) >= floor])
    }
    out["per_measure"] = {
        m: {"cases": len(mine), "revealed_vs_true": rate(mine, "revealed_vs_true")[0],
            "probed_vs_revealed": rate(mine, "probed_vs_revealed")[0],
            "ceiling_k": rate(mine, "ceiling_k")[0],
            "ceiling_full_k": rate(mine, "ceiling_full_k")[0],
            "more_revealed": round(float(np.mean([r["direction"] > 0 for r in mine])), 3)}
        for m in MEASURES if (mine := [r for r in rows if r["measure"] == m])
    }  # fmt: skip
    return out


def print_table(result: dict) -> None:
    columns = ("revealed = true sign", "probed = revealed", "revealed = minimal-pair truth",
               "probed = minimal-pair truth", "ceiling: k probes",
               f"ceiling: {result['pairs']} probes", "ceiling: ∞ probes",
               "ceiling: k full", f"ceiling: {result['pairs']} full")  # fmt: skip
    table = Table(title="profile agreement (cases: user × measure with enough signals)")
    for column in ("cases", "n", *columns):
        table.add_column(column, justify="left" if column == "cases" else "right")
    for measure, row in result["per_measure"].items():
        table.add_row(
            f"{label(measure, 1)} / {label(measure, -1)}", str(row["cases"]),
            f"{row['revealed_vs_true']:.1%}", f"{row['probed_vs_revealed']:.1%}", "", "",
            f"{row['ceiling_k']:.1%}", "", "", f"{row['ceiling_full_k']:.1%}", "",
        )  # fmt: skip
    for name, row in result["strata"].items():
        n = row["revealed_vs_true"][1]
        values = (f"{row[key][0]:.1%}" for key in RATES + CEILINGS)
        table.add_row(f"[bold]{name}[/]", str(n), *values)
    Console(width=200).print(table)


def plot(result: dict, path: Path) -> None:
    """Left: both agreements per measure, and the minimal-pair oracle's ceiling. Right: the
    same against a floor on |true weight|."""
    names = list(result["per_measure"])
    x = np.arange(len(names))
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 4.8), width_ratios=(2, 1))
    keys = (
        ("revealed_vs_true", "revealed = true sign"),
        ("probed_vs_revealed", "probed = revealed"),
    )
    for offset, (key, text) in zip((-0.2, 0.2), keys):
        left.bar(x + offset, [result["per_measure"][n][key] for n in names], 0.4, label=text)
    ceilings = (("ceiling_k", "ceiling: k probe answers", "k"),
                ("ceiling_full_k", "ceiling: k full-contrast answers", "0.55"))  # fmt: skip
    for key, text, color in ceilings:
        left.plot(x, [result["per_measure"][n][key] for n in names], "_", color=color,
                  markersize=22, markeredgewidth=2, linestyle="none", label=text)  # fmt: skip
    floors = [float(f) for f in result["curve"]]
    for key, text in keys:
        right.plot(floors, [row[key] for row in result["curve"].values()], "o-", label=text)
    for key, text, color in ceilings:
        values = [row[key] for row in result["curve"].values()]
        right.plot(floors, values, "s:", color=color, label=text)
    for axis in (left, right):
        axis.axhline(0.9, color="C0", linestyle="--", linewidth=1, label="target 90%")
        axis.axhline(0.85, color="C1", linestyle="--", linewidth=1, label="target 85%")
        axis.set_ylim(0, 1.2)
        axis.set_ylabel("agreement")
    left.set_xticks(x, [n.replace("_", " ") for n in names], rotation=40, ha="right")
    overall = result["strata"]["all"]
    left.set_title(
        f"{result['users']} simulated users × {result['pairs']} pairs, "
        f"≥ {result['min_signals']} signals: revealed = true "
        f"{overall['revealed_vs_true'][0]:.1%}, probed = revealed "
        f"{overall['probed_vs_revealed'][0]:.1%}; ceiling {overall['ceiling_k'][0]:.1%}, "
        f"full contrast {overall['ceiling_full_k'][0]:.1%}",
        fontsize=10,
    )  # fmt: skip
    left.legend(fontsize=8, loc="upper center", ncol=3)
    right.set_xlabel("cases whose |true weight| is at least")
    right.set_title("agreement vs how much the user cares", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--min-signals", type=int, default=3)
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--plot", type=Path, default=RESULTS / "profile_agreement.png")
    parser.add_argument("--out", type=Path, default=RESULTS / "profile_agreement.json")
    args = parser.parse_args()
    started = time.perf_counter()
    featurizer = EmbeddingStyleFeaturizer(load_embedder(None, "cpu"))
    world = RewardWorld.build(featurizer)
    basis = RewardBasis.load(default_basis_path(), featurizer)
    users = make_reward_population(args.users, seed=args.seed)
    profiles, beta = user_profiles(world, featurizer, basis, users, args.pairs, args.seed)
    rows = cases(profiles, users, args.min_signals, beta, args.pairs)
    result = summary(rows, profiles, users)
    result.update(pairs=args.pairs, min_signals=args.min_signals, seed=args.seed,
                  beta=round(beta, 4), seconds=round(time.perf_counter() - started, 1))  # fmt: skip
    print_table(result)
    plot(result, args.plot)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("per_measure", "curve")}))


if __name__ == "__main__":
    main()
