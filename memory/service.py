"""The memory write and read path: SQLite first (one transaction per write), then the
user's derived FAISS index. :class:`~persona_sdk.user.User` calls it; nothing else writes
memories."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from persona_sdk.config import MemoryConfig, RetrievalConfig
from persona_sdk.decoding.embedder import Embedder
from persona_sdk.memory.consolidation import NewRule, Outcome, RuleSet, consolidate
from persona_sdk.memory.edits import analyse_edit, classify_rule
from persona_sdk.memory.index import IndexManager
from persona_sdk.memory.retrieval import RetrievedRules, Retriever
from persona_sdk.memory.store import Memory, MemoryStore, UserWrite, Write
from persona_sdk.validation import validate_int, validate_number

RULE_SET_CACHE_USERS = 64  # users whose valid rules stay in memory between writes
PhraseInference = Callable[[str, str], "str | None"]


@dataclass
class EditResult:
    """What one edit stored: the edit, its pair (edited ≻ original) and the rules it taught."""

    memory: Memory
    pair: Memory
    inferred_rules: list[Memory]
    outcomes: list[Outcome] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "memory": self.memory.to_dict(),
            "pair": self.pair.to_dict(),
            "inferred_rules": [r.to_dict() for r in self.inferred_rules],
            "outcomes": [o.to_dict() for o in self.outcomes],
        }


def check_configs(memory: MemoryConfig, retrieval: RetrievalConfig) -> None:
    """Refuse configs that would silently change behaviour (NaN floors, text top_k)."""
    validate_int(retrieval.top_k, "RetrievalConfig.top_k", low=0)
    validate_number(retrieval.min_similarity, "RetrievalConfig.min_similarity", low=-1, high=1)
    validate_number(retrieval.stated_bonus, "RetrievalConfig.stated_bonus", low=0, high=2)
    validate_number(memory.duplicate_similarity, "MemoryConfig.duplicate_similarity", low=-1,
                    high=1)  # fmt: skip
    validate_number(memory.generalize_below, "MemoryConfig.generalize_below", low=-1, high=1)


class MemoryService:
    """Every user's memories: validated writes, index mirroring, retrieval and forgetting.

    ``embedder`` is called on first use, so opening a data dir loads no model.
    ``infer_phrase(response, edited)`` optionally writes one LLM phrase per edit.
    """

    def __init__(
        self,
        store: MemoryStore,
        embedder: Callable[[], Embedder],
        memory_config: MemoryConfig,
        retrieval_config: RetrievalConfig,
        infer_phrase: PhraseInference | None = None,
    ):
        check_configs(memory_config, retrieval_config)
        self.store = store
        self.memory_config = memory_config
        self.retrieval_config = retrieval_config
        self._embedder = embedder
        self._infer_phrase = infer_phrase
        self._indexes: IndexManager | None = None
        self._retriever: Retriever | None = None
        self._rule_sets: dict[str, RuleSet] = {}
        self._forget_hooks: list[Callable[[str], None]] = []

    @property
    def embedder(self) -> Embedder:
        return self._embedder()

    @property
    def indexes(self) -> IndexManager:
        if self._indexes is None:
            self._indexes = IndexManager(self.store, self.embedder.dim)
        return self._indexes

    def close(self) -> None:
        """Save changed indexes (the store itself is closed by its owner)."""
        if self._indexes is not None:
            self._indexes.flush()

    # -- writes --------------------------------------------------------------------------

    def add_rules(
        self, user_id: str, specs: Sequence[tuple[str, str | None]], source: str
    ) -> list[Memory]:
        """Consolidate validated ``(text, context)`` rules in one transaction; returns the
        rules now in effect, in order (ignored ones left out)."""
        texts = [t for t, _ in specs]
        contexts = [c for _, c in specs if c is not None]
        vectors = self.embedder.encode(texts + contexts)
        context_vectors = iter(vectors[len(texts) :])
        new_rules = [
            NewRule(
                text=text,
                source=source,
                confidence=1.0 if source == "stated" else 0.7,
                template=classify_rule(text),
                context=context,
                text_vector=vectors[i],
                context_vector=next(context_vectors) if context else None,
            )
            for i, (text, context) in enumerate(specs)
        ]
        with self._rule_write(user_id) as (session, rule_set):
            outcomes = [consolidate(session, r, self.memory_config, rule_set) for r in new_rules]
        self._mirror(user_id, session, outcomes)
        ids = [o.rule_id for o in outcomes if o.rule_id is not None]
        found = {m.id: m for m in self.store.memories(user_id, ids=ids)}
        return [found[i] for i in ids]

    def add_pairs(
        self, user_id: str, pairs: Sequence[tuple[str, str, str]], source: str
    ) -> list[Memory]:
        """Store validated ``(prompt, chosen, rejected)`` pairs in one transaction."""
        vectors = self.embedder.encode([p for p, _, _ in pairs])
        rows = [
            {"kind": "pair", "source": source, "prompt": p, "chosen": c, "rejected": r,
             "context": p, "embedding": v}
            for (p, c, r), v in zip(pairs, vectors)
        ]  # fmt: skip
        write = self.store.add_memories(user_id, rows)
        self._apply(user_id, write)  # pairs are not searchable; the version moves
        return self.store.memories(user_id, ids=write.ids)

    def add_edit(
        self, user_id: str, prompt: str, response: str, edited: str, context: str
    ) -> EditResult:
        """Store an edit, its pair and the rules it implies, in one transaction."""
        candidates = analyse_edit(response, edited)
        phrase = self._infer_phrase(response, edited) if self._infer_phrase else None
        texts = [context] + [c.text for c in candidates] + ([phrase] if phrase else [])
        vectors = self.embedder.encode(texts)
        context_vector = vectors[0]
        learned = [(c.text, "inferred", c.confidence, c.template) for c in candidates]
        if phrase:
            learned.append((phrase, "inferred", 0.5, classify_rule(phrase)))
        texts_row = {"prompt": prompt, "chosen": edited, "rejected": response,
                     "context": context, "embedding": context_vector}  # fmt: skip
        with self._rule_write(user_id) as (session, rule_set):
            edit_id = session.insert({"kind": "edit", **texts_row})
            pair_id = session.insert(
                {"kind": "pair", "source": "inferred", "origin_id": edit_id, **texts_row}
            )
            rules = [
                NewRule(text=text, source=source, confidence=confidence, template=template,
                        context=context, text_vector=vectors[i + 1],
                        context_vector=context_vector, origin_id=edit_id)
                for i, (text, source, confidence, template) in enumerate(learned)
            ]  # fmt: skip
            outcomes = [consolidate(session, r, self.memory_config, rule_set) for r in rules]
        self._mirror(user_id, session, outcomes, extra=[(edit_id, context_vector)])
        rule_ids = [o.rule_id for o in outcomes if o.rule_id is not None]
        stored = {m.id: m for m in self.store.memories(user_id, ids=[edit_id, pair_id, *rule_ids])}
        inferred = [stored[i] for i in rule_ids]
        return EditResult(stored[edit_id], stored[pair_id], inferred, outcomes)

    def delete_memory(self, user_id: str, memory_id: int) -> None:
        """Delete one memory (and what depends on it) and update the index."""
        write = self.store.delete_memory(user_id, memory_id)
        restored = self.store.embeddings(user_id, write.restored)
        self._apply(user_id, write, remove=write.ids, add=list(restored.items()))

    @contextlib.contextmanager
    def _rule_write(self, user_id: str) -> Iterator[tuple[UserWrite, RuleSet]]:
        """A user write transaction plus the user's valid rules, reused from this process's
        previous write when nobody else wrote since (no re-read of every rule)."""
        previous = self._rule_sets.pop(user_id, None)  # dropped if this write fails
        with self.store.user_write(user_id) as session:
            rules = RuleSet.resume(session, previous)
            yield session, rules
        rules.version = session.version
        self._rule_sets[user_id] = rules
        while len(self._rule_sets) > RULE_SET_CACHE_USERS:
            self._rule_sets.pop(next(iter(self._rule_sets)))

    def _mirror(
        self, user_id: str, write: UserWrite, outcomes: list[Outcome],
        extra: list[tuple[int, np.ndarray]] | None = None,
    ) -> None:  # fmt: skip
        """Apply a committed consolidation to the user's index. Outcomes of one batch can
        touch the same rule twice (added, then superseded), so every touched id is taken
        out and its final state is read back from SQLite."""
        touched = {i for i, _ in extra or []}
        for outcome in outcomes:
            touched.update(i for i, _ in outcome.index_add)
            touched.update(outcome.index_remove)
        current = self.store.embeddings(user_id, sorted(touched), retrievable_only=True)
        self._apply(user_id, write, remove=sorted(touched), add=sorted(current.items()))

    def _apply(self, user_id: str, write: Write | UserWrite, **changes) -> None:
        """Mirror a committed write into the index. The write is already stored, so a
        failure here (a damaged index file) must not raise: the index is dropped and
        rebuilt from SQLite on its next use."""
        try:
            self.indexes.apply(user_id, write, **changes)
        except (OSError, ValueError, RuntimeError):
            self.indexes.invalidate(user_id)

    # -- reads ---------------------------------------------------------------------------

    def retrieve(self, user_id: str, query: str) -> RetrievedRules:
        """The user's rules for a request whose latest turn is ``query``."""
        check_configs(self.memory_config, self.retrieval_config)  # they may be changed live
        if not self.store.user_exists(user_id):
            return RetrievedRules()
        if self._retriever is None:
            self._retriever = Retriever(self.store, self.indexes, self.retrieval_config)
        text = query if self.retrieval_config.lexical else None  # None: dense only
        return self._retriever.retrieve(user_id, self.embedder.encode_one(query), text=text)

    # -- forgetting ----------------------------------------------------------------------

    def on_forget(self, hook: Callable[[str], None]) -> None:
        """Call ``hook(user_id)`` when a user is forgotten, to drop derived caches."""
        self._forget_hooks.append(hook)

    def forget(self, user_id: str) -> None:
        """Every trace of the user: derived state first, so that whatever happens to the
        database step, no index file or cache keeps the user's vectors."""
        self.store.require_user(user_id)
        self.indexes.drop(user_id)
        self._rule_sets.pop(user_id, None)
        for hook in self._forget_hooks:
            hook(user_id)
        if self._retriever is not None:
            self._retriever.forget(user_id)
        self.store.delete_user(user_id)
        self.indexes.drop(user_id)  # a flush racing with us may have rewritten the file
