"""Rule retrieval for a request (CIPHER-style): nearest valid rules in the user's own index."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from persona_sdk.config import RetrievalConfig
from persona_sdk.memory.edits import normalise_rule_text, opposite
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


class Retriever:
    """Picks the top-k valid rules of one user for a query vector."""

    def __init__(self, store: MemoryStore, indexes: IndexManager, config: RetrievalConfig):
        self.store = store
        self.indexes = indexes
        self.config = config
        # user -> (memory_version, ids, vectors) of their global rules: reads far outnumber
        # writes in a chat app, so these are read from SQLite once per version, not per query.
        self._globals: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}
        self.max_cached = 1024

    def _global_rules(self, user_id: str, query: np.ndarray, limit: int) -> dict[int, float]:
        """The ``limit`` global rules most similar to ``query``."""
        version = self.store.memory_version(user_id)
        cached = self._globals.get(user_id)
        if cached is None or cached[0] != version:
            rows = self.store.query(
                "SELECT id, embedding FROM memories INDEXED BY idx_memories_global_rules "
                "WHERE user_id = ? AND kind = 'rule' "
                "AND valid_to IS NULL AND context IS NULL AND embedding IS NOT NULL",
                (user_id,),
            )
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            vectors = (
                np.stack([np.frombuffer(r[1], np.float32) for r in rows])
                if rows
                else np.zeros((0, len(query)), dtype=np.float32)
            )
            self._globals.pop(user_id, None)
            cached = self._globals[user_id] = (version, ids, vectors)
            while len(self._globals) > self.max_cached:  # least recently loaded goes first
                self._globals.pop(next(iter(self._globals)))
        _, ids, vectors = cached
        if not len(ids):
            return {}
        sims = vectors @ query
        top = np.argsort(-sims)[:limit]
        return {int(ids[i]): float(sims[i]) for i in top}

    def forget(self, user_id: str) -> None:
        self._globals.pop(user_id, None)

    def retrieve(
        self, user_id: str, query: np.ndarray, top_k: int | None = None
    ) -> list[RetrievedRule]:
        """Rules for ``query``: global rules always qualify; contextual ones, and the rules
        taught by similar past edits, must clear the similarity floor. Stated rules get a
        small bonus over inferred ones."""
        config = self.config
        top_k = config.top_k if top_k is None else top_k
        if top_k <= 0 or not self.store.user_exists(user_id):
            return []
        hits = self.indexes.get(user_id).search(query, max(4 * top_k, 32))
        similarity = {hit.memory_id: hit.similarity for hit in hits}
        similarity.update(self._global_rules(user_id, query, 4 * top_k))
        found = self.store.memories(user_id, include_superseded=False, ids=list(similarity))
        rules = [m for m in found if m.kind == "rule"]
        similar_edits = {
            m.id: similarity[m.id]
            for m in found
            if m.kind == "edit" and similarity[m.id] >= config.min_similarity
        }
        if similar_edits:  # CIPHER: a similar past context brings the rules it taught
            for rule in self.store.memories(
                user_id, kind="rule", include_superseded=False, origins=list(similar_edits)
            ):
                edit_similarity = similar_edits[rule.origin_id]
                if similarity.get(rule.id, -1.0) < edit_similarity:
                    similarity[rule.id] = edit_similarity
                    rules.append(rule)
        eligible = {
            m.id: m for m in rules if m.context is None or similarity[m.id] >= config.min_similarity
        }

        def score(memory) -> float:
            return similarity[memory.id] + (config.stated_bonus if memory.source == "stated" else 0)

        chosen: list[RetrievedRule] = []
        seen: set[str] = set()
        for memory in sorted(eligible.values(), key=score, reverse=True):
            # Inferred rules share canonical texts per template; stated ones are the user's
            # words. A lower-ranked rule of the opposite template (an overridden global
            # preference, say) must not reach the prompt beside its exception.
            key = memory.template if memory.source != "stated" and memory.template else None
            key = key or normalise_rule_text(memory.text or "")
            if key in seen or (memory.template and f"not {memory.template}" in seen):
                continue
            seen.add(key)
            if memory.template:
                seen.add(f"not {opposite(memory.template)}")
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
