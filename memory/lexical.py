"""Lexical rule retrieval: SQLite FTS5 over each rule's stemmed words and lexicon concepts.

A rule is indexed as its content words, stemmed ("seasick", "boat", "tour") plus the
names of the concepts the rule lexicon finds in it ("emojis" and "smileys" both give
``emoji``), so a request and a rule that name one concept in different words still meet.
The user is one indexed token (``u`` + hex of the id), so a search only ever sees that
user's rules. :func:`fuse` merges the lexical ranking with the dense one (reciprocal-rank
fusion), which is what :class:`~persona_sdk.memory.retrieval.Retriever` ranks by.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence

from persona_sdk.memory.rule_lexicon import CONCEPTS, FILLER, lower_aligned, normalise, stem
from persona_sdk.memory.schema import TERMS_TABLE

RRF_K = 60  # reciprocal-rank fusion constant (Cormack et al. 2009)
MAX_QUERY_TERMS = 16
COMMON = 64  # a term in more of the user's rules than this tells none of them apart
_TOKENS = re.compile(r"[a-z0-9]+")


def user_key(user_id: str) -> str:
    """The user's token in the FTS table (matches the migration's ``'u' || hex(user_id)``)."""
    return "u" + user_id.encode("utf-8").hex().upper()


def terms(text: str | None) -> list[str]:
    """Stemmed content words and concept names of ``text``, in order, without repeats."""
    low = lower_aligned(normalise(text or ""))
    found: list[str] = []
    for pattern, concept, _ in CONCEPTS:
        for match in pattern.finditer(low):
            name = concept or stem(match.group(1))
            found.append(name.replace("_", ""))
    for token in _TOKENS.findall(low):
        word = stem(token)
        if len(word) >= 2 and word not in FILLER:
            found.append(word)
    return list(dict.fromkeys(found))


def index_rule(
    conn: sqlite3.Connection, user_id: str, memory_id: int, text: str | None, context: str | None
) -> None:
    """(Re)write one rule's row in the lexical index, inside the caller's transaction."""
    conn.execute(f"DELETE FROM {TERMS_TABLE} WHERE rowid = ?", (memory_id,))
    words = " ".join(terms(text) + terms(context))
    conn.execute(
        f"INSERT INTO {TERMS_TABLE} (rowid, user_key, terms) VALUES (?, ?, ?)",
        (memory_id, user_key(user_id), words),
    )


def drop_rules(conn: sqlite3.Connection, ids: Iterable[int]) -> None:
    """Remove deleted rules from the lexical index."""
    conn.executemany(f"DELETE FROM {TERMS_TABLE} WHERE rowid = ?", [(int(i),) for i in ids])


def drop_user(conn: sqlite3.Connection, user_id: str) -> None:
    """Remove every row of a forgotten user."""
    conn.execute(
        f"DELETE FROM {TERMS_TABLE} WHERE {TERMS_TABLE} MATCH ?", (_column("user_key", user_id),)
    )


def _column(column: str, user_id: str) -> str:
    return f'{column} : "{user_key(user_id)}"'


def search(
    query_rows: Callable[[str, Sequence], list[tuple]], user_id: str, query: str, limit: int
) -> dict[int, float]:
    """The user's rule ids best matching ``query``, best first, with their scores.

    Each query term is looked up on its own (this user's rows having it); a term more than
    :data:`COMMON` of the user's rules share cannot tell them apart and is skipped, which
    also bounds the cost of a search whatever the user's size. A rule scores the sum of
    its matched terms' weights, log(1 + COMMON / rules having the term): rarer terms
    count more (an IDF within the user's own rules). ``query_rows(sql, params)`` runs a
    read (the store's locked query)."""
    if limit <= 0:
        return {}
    scores: dict[int, float] = {}
    for word in terms(query)[:MAX_QUERY_TERMS]:
        rows = query_rows(
            f"SELECT rowid FROM {TERMS_TABLE} WHERE {TERMS_TABLE} MATCH ? LIMIT {COMMON + 1}",
            (f'{_column("user_key", user_id)} AND terms : "{word}"',),
        )
        if not rows or len(rows) > COMMON:
            continue
        weight = math.log(1 + COMMON / len(rows))
        for (memory_id,) in rows:
            scores[memory_id] = scores.get(memory_id, 0.0) + weight
    best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return dict(best)


def fuse(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> dict[int, float]:
    """Reciprocal-rank fusion: each id scores Σ 1 / (k + rank) over the rankings."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, memory_id in enumerate(ranking):
            scores[memory_id] = scores.get(memory_id, 0.0) + 1.0 / (k + rank + 1)
    return scores
