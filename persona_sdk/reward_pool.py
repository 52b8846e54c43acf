"""The response pool with its features and true attributes: the world simulated users live in.

Fitting the default basis, the reward evaluation and the onboarding questions all draw pairs
from it by index, so every reply is featurized once (the shipped embeddings make even that
free for the embedded featurizer).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

from persona_sdk.features import EmbeddingStyleFeaturizer, Featurizer
from persona_sdk.posterior import sigmoid
from persona_sdk.simulate import Population, attribute_vector
from persona_sdk.simulate_pool import PoolEntry, load_pool

POOL_EMBEDDINGS_FILE = "pool_embeddings.npz"


def shipped_embeddings_path():
    return resources.files("persona_sdk") / "data" / POOL_EMBEDDINGS_FILE


def preload_shipped_embeddings(featurizer: Featurizer) -> None:
    """Give the default featurizer the shipped vectors of every pool text (a no-op for other
    featurizers: the vectors belong to the embedded MiniLM, and the cache checks that)."""
    if isinstance(featurizer, EmbeddingStyleFeaturizer):
        with resources.as_file(shipped_embeddings_path()) as path:
            featurizer.cache.load(path)


@dataclass
class RewardWorld:
    """Replies (``texts``) grouped by prompt, with features and simulator attributes."""

    prompts: list[str]
    texts: list[str]
    prompt_of: np.ndarray  # (n,) index into prompts
    features: np.ndarray  # (n, d) float32
    attributes: np.ndarray  # (n, len(ATTRIBUTES))

    @classmethod
    def build(cls, featurizer: Featurizer, entries: list[PoolEntry] | None = None) -> RewardWorld:
        """Featurize ``entries`` (default: the shipped pool) with ``featurizer``."""
        entries = load_pool() if entries is None else entries
        preload_shipped_embeddings(featurizer)
        prompts = list(dict.fromkeys(e.prompt for e in entries))
        index = {p: i for i, p in enumerate(prompts)}
        texts = [e.text for e in entries]
        return cls(
            prompts,
            texts,
            np.array([index[e.prompt] for e in entries]),
            featurizer.features([e.prompt for e in entries], texts),
            np.stack([attribute_vector(e.text, e.prompt) for e in entries]),
        )

    def replies_of(self, prompt_ids: np.ndarray) -> list[np.ndarray]:
        """For each prompt id, the indices of its replies."""
        order = np.argsort(self.prompt_of, kind="stable")
        starts = np.searchsorted(self.prompt_of[order], np.arange(len(self.prompts) + 1))
        return [order[starts[p] : starts[p + 1]] for p in prompt_ids]

    def sample_pairs(
        self, prompt_ids: np.ndarray, n: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` random pairs of distinct replies to the same prompt (prompts uniform)."""
        groups = [g for g in self.replies_of(prompt_ids) if len(g) >= 2]
        which = rng.integers(len(groups), size=n)
        a, b = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
        for i, g in enumerate(which):
            a[i], b[i] = rng.choice(groups[g], size=2, replace=False)
        return a, b

    def differences(
        self, a: np.ndarray, b: np.ndarray, a_wins: np.ndarray | None = None
    ) -> np.ndarray:
        """``φ(a) − φ(b)`` per pair; with ``a_wins``, oriented as chosen − rejected."""
        z = self.features[a] - self.features[b]
        return z if a_wins is None else np.where(a_wins[:, None], z, -z)

    def utilities(self, users: Population) -> np.ndarray:
        """True utility of every reply for every user: ``(n_replies, n_users)``."""
        return self.attributes @ np.stack([u.weights for u in users]).T

    def indifference(
        self, utility: np.ndarray, quantile: float, rng: np.random.Generator
    ) -> np.ndarray:
        """Per user (columns of ``utility``), the utility gap below which they have no
        preference: the ``quantile`` of their gaps over random pairs. A person shown two
        replies that differ only in what they do not care about answers "no preference"
        (and the onboarding flow lets them skip), so such pairs get no label."""
        if quantile <= 0:
            return np.zeros(utility.shape[1])
        a, b = self.sample_pairs(np.arange(len(self.prompts)), 4000, rng)
        return np.quantile(np.abs(utility[a] - utility[b]), quantile, axis=0)

    def answerable_pairs(
        self,
        prompt_ids: np.ndarray,
        n: int,
        utility: np.ndarray,
        threshold: float,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` random pairs over ``prompt_ids`` whose utility gap (one user's ``utility``)
        exceeds ``threshold``: the pairs that user would answer."""
        a_out, b_out = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        while len(a_out) < n:
            a, b = self.sample_pairs(prompt_ids, 2 * n + 16, rng)
            keep = np.abs(utility[a] - utility[b]) > threshold
            a_out, b_out = np.concatenate([a_out, a[keep]]), np.concatenate([b_out, b[keep]])
        return a_out[:n], b_out[:n]


def bt_labels(gaps: np.ndarray, beta: float, rng: np.random.Generator) -> np.ndarray:
    """Bradley–Terry labels for pairs with utility gaps ``u_a − u_b``: True where a wins."""
    p = sigmoid(beta * np.asarray(gaps))
    return rng.random(p.shape) < p
