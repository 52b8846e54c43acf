"""Shared pieces of ``bench_memory``: synthetic rows from real embeddings, timing, progress
bars and the results table."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

NOISE = 0.03  # per-dimension sigma: a perturbed vector keeps cosine ~0.85 with its base
QUERY_NOISE = 0.02
GLOBAL_FRACTION = 0.10

err = Console(stderr=True)


def label(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def pcts(samples_s: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    p50, p99 = np.percentile(np.asarray(samples_s) * 1000, [50, 99])
    return float(p50), float(p99)


def perturb(base: np.ndarray, picks: np.ndarray, rng: np.random.Generator, noise: float):
    vectors = base[picks] + rng.normal(0.0, noise, (len(picks), base.shape[1])).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


class Pools:
    """Real MiniLM embeddings of rule texts, contexts and queries: bases for synthetic rows."""

    def __init__(self, embedder, texts: list[str], ctxs: list[str], query_texts: list[str]):
        self.texts, self.text_vecs = texts, embedder.encode(texts)
        self.ctxs, self.ctx_vecs = ctxs, embedder.encode(ctxs)
        self.query_vecs = embedder.encode(query_texts)

    def rows(self, count: int, rng: np.random.Generator) -> list[dict]:
        """Synthetic rules: 10% global (found by their text), 90% with a context."""
        is_global = rng.random(count) < GLOBAL_FRACTION
        t = rng.integers(len(self.texts), size=count)
        c = rng.integers(len(self.ctxs), size=count)
        text_vecs = perturb(self.text_vecs, t, rng, NOISE)
        ctx_vecs = perturb(self.ctx_vecs, c, rng, NOISE)
        return [
            {
                "kind": "rule",
                "text": self.texts[t[i]],
                "context": None if is_global[i] else self.ctxs[c[i]],
                "embedding": text_vecs[i] if is_global[i] else ctx_vecs[i],
                "text_embedding": text_vecs[i],
            }
            for i in range(count)
        ]

    def query_batch(self, count: int, rng: np.random.Generator) -> np.ndarray:
        picks = rng.integers(len(self.query_vecs), size=count)
        return perturb(self.query_vecs, picks, rng, QUERY_NOISE)


def progress() -> Progress:
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    return Progress(*columns, TimeElapsedColumn(), console=err, transient=True)


def make_cached_embedder(inner, table: dict[str, np.ndarray]):
    """An Embedder that looks vectors up instead of running MiniLM: isolates write cost."""
    from persona_sdk.decoding.embedder import Embedder

    class CachedEmbedder(Embedder):
        def __init__(self):  # the real one's state (same identity), no model call
            self.__dict__.update(inner.__dict__)
            self._lock = threading.Lock()

        def encode(self, texts, batch_size: int = 64):
            return np.stack([table[t] for t in texts]).astype(np.float32)

    return CachedEmbedder()


def close_persona(persona) -> None:
    """Close without writing every dirty index to disk (the data is deleted anyway)."""
    persona.store.close()
    persona.close()


def time_calls(fn: Callable, args_list: Iterable[Sequence]) -> list[float]:
    out = []
    for args in args_list:
        t = time.perf_counter()
        fn(*args)
        out.append(time.perf_counter() - t)
    return out


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def show(table: Table, part: int, results: dict, keys: Iterable[str]) -> None:
    table.add_section()
    for key in keys:
        table.add_row(f"{part}. {key}", fmt(results[key]))


def probe_size(scale: int) -> int:
    """Rules added through add_rules to a user of this size (fewer when each is slow)."""
    return max(8, min(64, 640_000 // scale))
