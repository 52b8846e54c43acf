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
