"""PNG plots for evaluations (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed; must precede pyplot
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from persona_sdk.errors import InvalidInputError

LABELS = {
    "no_learning": "no learning",
    "rules_only": "rules only (learned from edits)",
    "oracle": "oracle (true preferences as rules)",
}


def png_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InvalidInputError(f"plot file must end in .png, got {path.name!r}")
    return path


def _save(figure, path: Path) -> Path:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_reward_accuracy(result, path: str | Path) -> Path:
    """Held-out accuracy vs shots, one line per method, 95% intervals shaded."""
    from persona_sdk.evals.reward import LABELS as METHOD_LABELS

    path = png_path(path)
    figure, axis = plt.subplots(figsize=(7.5, 4.8))
    for method, label in METHOD_LABELS.items():
        mean = [100 * a for a in result.accuracy[method]]
        ci = [100 * c for c in result.ci95[method]]
        style = {"linestyle": "--", "color": "black"} if method == "oracle" else {"marker": "o"}
        axis.plot(result.shots, mean, label=label, **style)
        axis.fill_between(result.shots, [m - c for m, c in zip(mean, ci)],
                          [m + c for m, c in zip(mean, ci)], alpha=0.15)  # fmt: skip
    axis.set_xscale("log", base=2)
    axis.set_xticks(result.shots, [str(s) for s in result.shots])
    axis.set(xlabel="pairs answered by the new user (shots)", ylabel="held-out accuracy (%)",
             title="Few-shot reward accuracy, unseen users on held-out prompts")  # fmt: skip
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return _save(figure, path)


def plot_edit_costs(result, path: str | Path) -> Path:
    """Cumulative edit cost per round, one line per condition."""
    path = png_path(path)
    figure, (cumulative, per_round) = plt.subplots(1, 2, figsize=(11, 4.2))
    rounds = range(1, result.rounds + 1)
    for condition, label in LABELS.items():
        cumulative.plot(rounds, result.cumulative(condition), marker="o", markersize=3, label=label)
        per_round.plot(rounds, result.per_round(condition), marker="o", markersize=3, label=label)
    cumulative.set(
        title="Cumulative edit cost",
        xlabel="round",
        ylabel="word-level Levenshtein distance (sum over users)",
    )
    per_round.set(title="Edit cost per round", xlabel="round", ylabel="cost (sum over users)")
    cumulative.legend()
    for axis in (cumulative, per_round):
        axis.grid(alpha=0.3)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.suptitle(f"persona eval edits: {result.users} simulated users on {result.model}")
    return _save(figure, path)


def plot_adapter_eval(result, path: str | Path) -> Path:
    """Left: each basis adapter's effect on its own reward (base SDs). Right: each
    simulated user's true-utility gain with their generated adapter, ±95% CI."""
    path = png_path(path)
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.6))
    effects = [d["effect_sd"] for d in result.directions]
    left.bar(range(len(effects)), effects, yerr=[d["ci95_sd"] for d in result.directions],
             color="tab:blue", alpha=0.8)  # fmt: skip
    left.axhline(0.5, color="black", linestyle="--", label="target 0.5 SD")
    left.set_xticks(range(len(effects)), [d["axis"] for d in result.directions], rotation=35,
                    ha="right", fontsize=7)  # fmt: skip
    left.set(ylabel="reward change (base SDs)", title="basis adapter vs base, own direction")
    left.legend(fontsize=8)
    users = sorted(result.users, key=lambda u: u["gain"])
    gains = [u["gain"] for u in users]
    right.errorbar(range(len(gains)), gains, yerr=[u["ci95"] for u in users], fmt="o",
                   color="tab:green")  # fmt: skip
    right.axhline(0.0, color="black", linewidth=0.8)
    title = f"generated user adapters: {result.share_improved:.0%} of users gain"
    right.set(xlabel="simulated unseen user (sorted)", ylabel="true utility gain over base",
              title=title)  # fmt: skip
    right.xaxis.set_major_locator(MaxNLocator(integer=True))
    for axis in (left, right):
        axis.grid(alpha=0.3)
    return _save(figure, path)


def plot_generation_eval(result, path: str | Path) -> Path:
    """Mean true utility per generation method, as is and quality-adjusted (±95% CI over
    users), and each method's degenerate rate."""
    path = png_path(path)
    figure, axes = plt.subplots(1, 3, figsize=(18, 4.8))
    names = [m["method"] for m in result.methods]
    colors = ["tab:gray", "tab:orange"] + ["tab:blue"] * 3 + ["tab:green"] * 2
    adjusted = [m["quality_adjusted"] for m in result.methods]
    views = (("utility", result.methods), ("quality-adjusted utility", adjusted))
    for axis, (label, stats) in zip(axes, views):
        means = [s["mean"] for s in stats]
        axis.bar(range(len(names)), means, yerr=[s["ci95"] for s in stats], color=colors,
                 alpha=0.85, capsize=4)  # fmt: skip
        axis.set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=8)
        low = min(s["mean"] - s["ci95"] for s in stats)
        high = max(s["mean"] + s["ci95"] for s in stats)
        axis.set_ylim(low - 0.1 * (high - low), high + 0.1 * (high - low))
        axis.set(ylabel=f"mean true {label}")
        axis.grid(alpha=0.3, axis="y")
    rates = [m["quality"]["degenerate_rate"] for m in result.methods]
    axes[2].bar(range(len(names)), rates, color=colors, alpha=0.85)
    axes[2].set_xticks(range(len(names)), names, rotation=25, ha="right", fontsize=8)
    axes[2].set(ylabel="degenerate replies (share)")
    axes[2].grid(alpha=0.3, axis="y")
    users, prompts = result.config["users"], result.config["prompts"]
    figure.suptitle(f"generation methods ({users} users × {prompts} held-out prompts, "
                    "±95% CI over users)")  # fmt: skip
    return _save(figure, path)
