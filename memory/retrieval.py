"""Rule retrieval for a request (CIPHER-style) over the user's own rules only.

Stated global rules always apply: every one goes into the prompt, up to
:data:`GLOBAL_RULE_BUDGET`; any cut is listed in :attr:`RetrievedRules.cut` with why, as is
a global rule an exception overrides in its context. Contextual and inferred rules
compete for ``top_k`` places, ranked by dense similarity fused with lexical matching
(:mod:`persona_sdk.memory.lexical`) when the request text is given."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from persona_sdk.config import RetrievalConfig
from persona_sdk.memory import lexical
from persona_sdk.memory.edits import normalise_rule_text, opposite
from persona_sdk.memory.index import IndexManager
from persona_sdk.memory.store import Memory, MemoryStore

GLOBAL_RULE_BUDGET = 16  # stated global rules put in one prompt; beyond it they are cut


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


@dataclass
class CutRule:
    """A valid rule that applied but was left out of the prompt, and why."""

    id: int
    reason: str
    text: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


class RetrievedRules(list):
    """The rules chosen for a request (a list of :class:`RetrievedRule`), with the global
    rules that were cut from the prompt in :attr:`cut`."""

    def __init__(self, rules=(), cut: list[CutRule] | None = None):
        super().__init__(rules)
        self.cut: list[CutRule] = list(cut or [])


def _retrieved(memory: Memory, similarity: float) -> RetrievedRule:
    return RetrievedRule(
        memory.id, memory.text or "", similarity, memory.source, memory.context,
        memory.support, memory.confidence,
    )  # fmt: skip


class Retriever:
    """Picks one user's rules for a query: every stated global rule, plus the top-k others."""

    def __init__(self, store: MemoryStore, indexes: IndexManager, config: RetrievalConfig):
        self.store = store
        self.indexes = indexes
        self.config = config
        # user -> (memory_version, ids, vectors, stated) of their global rules: reads far
        # outnumber writes in a chat app, so these are read from SQLite once per version.
        self._globals: dict[str, tuple[int, np.ndarray, np.ndarray, np.ndarray]] = {}
        self.max_cached = 1024

    def _global_rules(self, user_id: str, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, vectors, is-stated) of the user's valid global rules."""
        version = self.store.memory_version(user_id)
        cached = self._globals.get(user_id)
        if cached is None or cached[0] != version:
            rows = self.store.query(
                "SELECT id, embedding, source = 'stated' FROM memories "
                "INDEXED BY idx_memories_global_rules WHERE user_id = ? AND kind = 'rule' "
                "AND valid_to IS NULL AND context IS NULL AND embedding IS NOT NULL",
                (user_id,),
            )
            ids = np.array([r[0] for r in rows], dtype=np.int64)
            vectors = (
                np.stack([np.frombuffer(r[1], np.float32) for r in rows])
                if rows
                else np.zeros((0, dim), dtype=np.float32)
            )
            stated = np.array([bool(r[2]) for r in rows], dtype=bool)
            self._globals.pop(user_id, None)
            cached = self._globals[user_id] = (version, ids, vectors, stated)
            while len(self._globals) > self.max_cached:  # least recently loaded goes first
                self._globals.pop(next(iter(self._globals)))
        return cached[1:]

    def forget(self, user_id: str) -> None:
        self._globals.pop(user_id, None)

    def retrieve(
        self, user_id: str, query: np.ndarray, top_k: int | None = None, text: str | None = None
    ) -> RetrievedRules:
        """Rules for ``query`` (the request's vector; ``text``, its words, adds lexical
        ranking). Stated global rules always qualify (up to the budget); contextual
        ones, and the rules taught by similar past edits, must clear the similarity floor
        and compete for ``top_k`` places. Stated rules get a small bonus over inferred ones."""
        top_k = self.config.top_k if top_k is None else top_k
        if top_k <= 0 or not self.store.user_exists(user_id):
            return RetrievedRules()
        similarity, stated_globals, lexical_rank, n_stated = self._candidates(
            user_id, query, top_k, text
        )
        found = self.store.memories(user_id, include_superseded=False, ids=list(similarity))
        rules = {m.id: m for m in found if m.kind == "rule"}
        self._add_taught_rules(user_id, found, similarity, rules)
        cut: list[CutRule] = []
        globals_ = [rules[i] for i in stated_globals if i in rules]
        budget = GLOBAL_RULE_BUDGET
        cut += [CutRule(m.id, f"over the prompt budget of {budget} global rules "
                        f"({n_stated - budget} cut; the best-matching are listed)", m.text or "")
                for m in globals_[budget:]]  # fmt: skip
        globals_ = globals_[:budget]
        others = self._top_others(rules, similarity, lexical_rank, {m.id for m in globals_}, top_k)
        globals_, overridden = _apply_exceptions(globals_, others)
        cut += overridden
        chosen = sorted(globals_ + others, key=lambda m: -self._score(m, similarity[m.id]))
        return RetrievedRules([_retrieved(m, similarity[m.id]) for m in chosen], cut)

    def _score(self, memory: Memory, similarity: float) -> float:
        return similarity + (self.config.stated_bonus if memory.source == "stated" else 0.0)

    def _candidates(
        self, user_id: str, query: np.ndarray, top_k: int, text: str | None
    ) -> tuple[dict[int, float], list[int], dict[int, int], int]:
        """Dense similarity of every candidate, the best stated global rules first (dense
        fused with lexical; the budget keeps the first), each lexical hit's rank, and how
        many stated global rules the user has."""
        wide = max(4 * top_k, 32)
        hits = self.indexes.get(user_id).search(query, wide)
        similarity = {hit.memory_id: hit.similarity for hit in hits}
        lexical_rank: dict[int, int] = {}
        if text:
            found = lexical.search(self.store, user_id, text, wide)
            lexical_rank = {memory_id: rank for rank, memory_id in enumerate(found)}
            missing = [i for i in lexical_rank if i not in similarity]
            for memory_id, vector in self.store.embeddings(user_id, missing).items():
                similarity[memory_id] = float(vector @ query)
        ids, vectors, stated = self._global_rules(user_id, len(query))
        if not len(ids):
            return similarity, [], lexical_rank, 0
        sims = vectors @ query
        top = np.argsort(-sims)[: 4 * top_k]  # the nearest global rules, stated or not
        similarity.update({int(ids[i]): float(sims[i]) for i in top})
        stated_rows = np.flatnonzero(stated)
        shown = GLOBAL_RULE_BUDGET + top_k  # the budget, and the best-matching cuts to list
        order = stated_rows[np.argsort(-sims[stated_rows])[:shown]]
        similarity.update({int(ids[i]): float(sims[i]) for i in order})
        global_ids = [int(i) for i in ids[order]]
        if lexical_rank and len(stated_rows) > GLOBAL_RULE_BUDGET:
            lexical_order = sorted(lexical_rank, key=lexical_rank.get)
            fused = lexical.fuse([global_ids, lexical_order])
            global_ids.sort(key=lambda i: -fused.get(i, 0.0))
        return similarity, global_ids, lexical_rank, len(stated_rows)

    def _add_taught_rules(
        self, user_id: str, found: list[Memory], similarity: dict[int, float],
        rules: dict[int, Memory],
    ) -> None:  # fmt: skip
        """CIPHER: a similar past edit context brings the rules it taught."""
        similar_edits = {
            m.id: similarity[m.id]
            for m in found
            if m.kind == "edit" and similarity[m.id] >= self.config.min_similarity
        }
        if not similar_edits:
            return
        for rule in self.store.memories(
            user_id, kind="rule", include_superseded=False, origins=list(similar_edits)
        ):
            edit_similarity = similar_edits[rule.origin_id]
            if similarity.get(rule.id, -1.0) < edit_similarity:
                similarity[rule.id] = edit_similarity
                rules[rule.id] = rule

    def _top_others(
        self, rules: dict[int, Memory], similarity: dict[int, float],
        lexical_rank: dict[int, int], taken: set[int], top_k: int,
    ) -> list[Memory]:  # fmt: skip
        """The best ``top_k`` rules other than the stated global ones: contextual and
        inferred rules above the similarity floor, ranked by score (fused with the lexical
        rank when there is one), one per template or text."""
        eligible = [
            m for m in rules.values()
            if m.id not in taken and not (m.context is None and m.source == "stated")
            and (m.context is None or similarity[m.id] >= self.config.min_similarity)
        ]  # fmt: skip
        eligible.sort(key=lambda m: -self._score(m, similarity[m.id]))
        if lexical_rank:
            fused = lexical.fuse(
                [[m.id for m in eligible], [i for i in sorted(lexical_rank, key=lexical_rank.get)
                                            if i in rules]]
            )  # fmt: skip
            eligible.sort(key=lambda m: -fused.get(m.id, 0.0))
        seen = {_key(rules[i]) for i in taken if i in rules}
        # an inferred global rule never joins a stated global rule it contradicts
        against = {opposite(rules[i].template) for i in taken if i in rules and rules[i].template}
        chosen: list[Memory] = []
        for memory in eligible:
            # Inferred rules share canonical texts per template; a lower-ranked rule of the
            # opposite template (an overridden preference) must not join its exception.
            key = _key(memory)
            if key in seen or (memory.template and f"not {memory.template}" in seen):
                continue
            if memory.context is None and memory.template in against:
                continue
            seen.add(key)
            if memory.template:
                seen.add(f"not {opposite(memory.template)}")
            chosen.append(memory)
            if len(chosen) == top_k:
                break
        return chosen


def _key(memory: Memory) -> str:
    key = memory.template if memory.source != "stated" and memory.template else None
    return key or normalise_rule_text(memory.text or "")


def _apply_exceptions(
    globals_: list[Memory], others: list[Memory]
) -> tuple[list[Memory], list[CutRule]]:
    """Drop each global rule an applying contextual exception overrides (stored as its
    ``exception_of``, or the opposite template), listing it as cut."""
    overrides: dict[int, Memory] = {}
    for rule in others:
        if rule.context is None:
            continue
        for memory in globals_:
            opposed = rule.template and memory.template == opposite(rule.template)
            if rule.exception_of == memory.id or opposed:
                overrides.setdefault(memory.id, rule)
    cut = [
        CutRule(m.id, f"overridden here by exception rule {overrides[m.id].id} "
               f"({overrides[m.id].context})", m.text or "")
        for m in globals_ if m.id in overrides
    ]  # fmt: skip
    return [m for m in globals_ if m.id not in overrides], cut
