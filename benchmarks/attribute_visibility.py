"""How well a featurizer sees each simulator attribute: held-out R² of a ridge regression
from features to the attribute, over the shipped response pool.

A reward that is linear in the features can only follow a user's taste for an attribute as
far as the features predict that attribute, so this is the per-attribute view of
``reward_ceiling.py``'s per-user ceiling. Columns:

* ``featurizer``: the default embedding + style featurizer (the shipped embeddings make it
  free);
* ``hidden L``: the base model's hidden states at layer L, mean- and max-pooled over the
  reply's tokens (``--hidden-layers``; one forward pass of the model per reply, ~20 min on
  2 CPU cores for the 6,302 replies);
* ``featurizer + hidden L``: both concatenated.

Usage: ``python benchmarks/attribute_visibility.py [--hidden-layers 20] [--ridge 10]``.
Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from persona_sdk.decoding.embedder import load_embedder
from persona_sdk.decoding.models import load_model
from persona_sdk.reward.features import EmbeddingStyleFeaturizer
from persona_sdk.simulation.attributes import ATTRIBUTE_NAMES, ATTRIBUTES
from persona_sdk.simulation.world import RewardWorld


def held_out_r2(x: np.ndarray, y: np.ndarray, ridge: float, test: float = 0.2) -> np.ndarray:
    """Per column of ``y``, R² on a random ``test`` share of rows of a ridge fit on the rest
    (features standardised)."""
    x = x.astype(np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    order = np.random.default_rng(0).permutation(len(x))
    n_test = round(test * len(x))
    te, tr = order[:n_test], order[n_test:]
    centre = y[tr].mean(0)
    w = np.linalg.solve(x[tr].T @ x[tr] + ridge * np.eye(x.shape[1]), x[tr].T @ (y[tr] - centre))
    error = np.mean((x[te] @ w + centre - y[te]) ** 2, axis=0)
    return 1 - error / np.maximum(y[te].var(0), 1e-12)


def hidden_states(texts: list[str], layers: list[int], batch: int = 32) -> dict[int, np.ndarray]:
    """Mean- and max-pooled hidden states of the embedded base model per text and layer."""
    host = load_model(progress=False, shared=False)
    pooled = {layer: np.zeros((len(texts), 2 * host.model.config.hidden_size)) for layer in layers}
    order = np.argsort([len(t) for t in texts])  # similar lengths per batch: less padding
    with Progress() as bar, torch.no_grad():
        task = bar.add_task("hidden states", total=len(texts))
        for start in range(0, len(texts), batch):
            rows = order[start : start + batch]
            encoded = host.tokenizer(
                [texts[i] for i in rows], return_tensors="pt", padding=True, truncation=True,
                max_length=192,
            )  # fmt: skip
            states = host.model(**encoded, output_hidden_states=True).hidden_states
            mask = encoded["attention_mask"].unsqueeze(-1).bool()
            for layer in layers:
                h = states[layer]
                mean = (h * mask).sum(1) / mask.sum(1)
                peak = h.masked_fill(~mask, -1e4).max(1).values
                pooled[layer][rows] = torch.cat([mean, peak], -1).float().numpy()
            bar.advance(task, len(rows))
    return pooled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden-layers", default="", help="comma-separated, e.g. 10,20")
    parser.add_argument("--ridge", type=float, default=10.0)
    args = parser.parse_args()
    layers = [int(x) for x in args.hidden_layers.split(",") if x.strip()]
    world = RewardWorld.build(EmbeddingStyleFeaturizer(load_embedder()))
    columns = {"featurizer": held_out_r2(world.features, world.attributes, args.ridge)}
    for layer, states in hidden_states(world.texts, layers).items() if layers else ():
        columns[f"hidden {layer}"] = held_out_r2(states, world.attributes, args.ridge)
        both = np.hstack([world.features, states])
        columns[f"featurizer + hidden {layer}"] = held_out_r2(both, world.attributes, args.ridge)
    table = Table(title=f"held-out R² per attribute, {len(world.texts)} pool replies")
    table.add_column("attribute")
    table.add_column("a style feature")
    for name in columns:
        table.add_column(name, justify="right")
    for j, attribute in enumerate(ATTRIBUTES):
        seen = "yes" if attribute.in_style_features else "no"
        table.add_row(attribute.name, seen, *(f"{r2[j]:.3f}" for r2 in columns.values()))
    Console().print(table)
    print(json.dumps({name: dict(zip(ATTRIBUTE_NAMES, np.round(r2, 3).tolist()))
                      for name, r2 in columns.items()}))  # fmt: skip


if __name__ == "__main__":
    main()
