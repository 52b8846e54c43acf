"""The shipped response pool, read-only: replies in varied styles to the simulated prompts.

Runtime code uses it for onboarding questions and basis-adapter training; it is built by
:mod:`persona_sdk.simulation.pool_builder`. :class:`FeaturizedPool` is the pool with every
reply featurized once (the shipped embeddings make that free for the embedded featurizer).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from persona_sdk.config import package_data
from persona_sdk.reward.features import EmbeddingStyleFeaturizer, Featurizer

POOL_FILE = "response_pool.jsonl.gz"
POOL_EMBEDDINGS_FILE = "pool_embeddings.npz"


@dataclass(frozen=True)
class PoolEntry:
    """One reply to one prompt, and where it came from."""

    prompt: str
    category: str
    text: str
    source: str


def finish_reply(text: str) -> str:
    """Trim a reply cut by the token budget back to its last complete sentence or line;
    '' for a degenerate reply (too short, or one token repeated)."""
    text = text.strip()
    words = text.split()
    if len(words) < 4 or len(set(words)) < 0.4 * len(words) or len(set(text)) < 10:
        return ""
    if not text or text[-1] in ".!?)\n`" or text[-1] > "\u2000":
        return text
    cut = max(text.rfind(". "), text.rfind("! "), text.rfind("? "), text.rfind("\n"))
    return text[: cut + 1].strip() if cut > len(text) // 3 else text


def read_pool(path: Path) -> list[PoolEntry]:
    """Entries of a pool file (plain or gzip JSONL), duplicates of a (prompt, text) dropped."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    seen, entries = set(), []
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            entry = PoolEntry(**json.loads(line))
            if (entry.prompt, entry.text) not in seen:
                seen.add((entry.prompt, entry.text))
                entries.append(entry)
    return entries


def load_pool() -> list[PoolEntry]:
    """The shipped pool (package data)."""
    return read_pool(package_data(POOL_FILE))


def preload_shipped_embeddings(featurizer: Featurizer, name: str = POOL_EMBEDDINGS_FILE) -> None:
    """Give the default featurizer the shipped vectors of every pool text (or of another
    shipped embeddings file ``name``); a no-op for other featurizers: the vectors belong to
    the embedded MiniLM, and the cache checks that."""
    if isinstance(featurizer, EmbeddingStyleFeaturizer):
        featurizer.cache.load(package_data(name))


@dataclass
class FeaturizedPool:
    """Replies (``texts``) grouped by prompt, with their features."""

    prompts: list[str]
    texts: list[str]
    prompt_of: np.ndarray  # (n,) index into prompts
    features: np.ndarray  # (n, d) float32

    @staticmethod
    def featurize(
        featurizer: Featurizer, entries: list[PoolEntry] | None
    ) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
        """Prompts, texts, prompt index and features of ``entries`` (default: the shipped pool)."""
        entries = load_pool() if entries is None else entries
        preload_shipped_embeddings(featurizer)
        prompts = list(dict.fromkeys(e.prompt for e in entries))
        index = {p: i for i, p in enumerate(prompts)}
        texts = [e.text for e in entries]
        features = featurizer.features([e.prompt for e in entries], texts)
        return prompts, texts, np.array([index[e.prompt] for e in entries]), features

    @classmethod
    def build(cls, featurizer: Featurizer, entries: list[PoolEntry] | None = None):
        """Featurize ``entries`` (default: the shipped pool) with ``featurizer``."""
        return cls(*cls.featurize(featurizer, entries))

    def replies_of(self, prompt_ids: np.ndarray) -> list[np.ndarray]:
        """For each prompt id, the indices of its replies."""
        order = np.argsort(self.prompt_of, kind="stable")
        starts = np.searchsorted(self.prompt_of[order], np.arange(len(self.prompts) + 1))
        return [order[starts[p] : starts[p + 1]] for p in prompt_ids]
