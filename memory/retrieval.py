"""Rule retrieval for a request (CIPHER-style): nearest valid rules in the user's own index."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from persona_sdk.config import RetrievalConfig
from persona_sdk.memory.index import IndexManager
from persona_sdk.memory.store import MemoryStore


@dataclass
class RetrievedRule:
    """A rule chosen for a request, with why: its similarity and whether it is global."""

    id: int
    text: str
    similarity: float
    source: str
    context: str | None
    support: int
    confidence: float

    @property
    def is_global(self) -> bool:
        """Stated without a context: applies to every request."""
        return self.context is None

    def to_dict(self) -> dict:
        return {**asdict(self), "similarity": round(self.similarity, 4)}


def _normalise(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".!")


class Retriever:
    """Picks the top-k valid rules of one user for a query vector."""

    def __init__(self, store: MemoryStore, indexes: IndexManager, config: RetrievalConfig):
        self.store = store
        self.indexes = indexes
        self.config = config

    def _global_rules(self, user_id: str, query: np.ndarray) -> dict[int, float]:
        rows = self.store.db.execute(
            "SELECT id, embedding FROM memories WHERE user_id = ? AND kind = 'rule' "
            "AND valid_to IS NULL AND context IS NULL AND embedding IS NOT NULL "
            "ORDER BY support DESC, id DESC LIMIT 256",
            (user_id,),
        ).fetchall()
        return {r[0]: float(np.frombuffer(r[1], np.float32) @ query) for r in rows}

    def retrieve(
        self, user_id: str, query: np.ndarray, top_k: int | None = None
    ) -> list[RetrievedRule]:
        """Rules for ``query``: global rules always qualify, contextual ones above the floor."""
        top_k = self.config.top_k if top_k is None else top_k
        if top_k <= 0 or not self.store.user_exists(user_id):
            return []
        hits = self.indexes.get(user_id).search(query, max(4 * top_k, 32))
        similarity = {hit.memory_id: hit.similarity for hit in hits}
        similarity.update(self._global_rules(user_id, query))
        candidates = [
            m
            for m in self.store.memories(
                user_id, kind="rule", include_superseded=False, ids=list(similarity)
            )
            if m.context is None or similarity[m.id] >= self.config.min_similarity
        ]
        candidates.sort(key=lambda m: similarity[m.id], reverse=True)
        chosen: list[RetrievedRule] = []
        seen: set[str] = set()
        for memory in candidates:
            key = _normalise(memory.text or "")
            if key in seen:
                continue
            seen.add(key)
            chosen.append(
                RetrievedRule(
                    memory.id,
                    memory.text or "",
                    similarity[memory.id],
                    memory.source,
                    memory.context,
                    memory.support,
                    memory.confidence,
                )
            )
            if len(chosen) == top_k:
                break
        return chosen
