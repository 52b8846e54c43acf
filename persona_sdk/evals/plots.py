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


def plot_edit_costs(result, path: str | Path) -> Path:
    """Cumulative edit cost per round, one line per condition."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise InvalidInputError(f"plot file must end in .png, got {path.name!r}")
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
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
