"""Lexical rule retrieval: a full-text index over each rule's stemmed words and concepts.

A rule is indexed as its content words, stemmed ("seasick", "boat", "tour") plus the
names of the concepts the rule lexicon finds in it ("emojis" and "smileys" both give
``emoji``), so a request and a rule that name one concept in different words still meet.
On SQLite the index is an FTS5 table where the user is one indexed token (``u`` + hex of
the id); on PostgreSQL it is a ``tsvector`` column (the 'simple' configuration: the terms
are already stemmed) beside a user column. Either way a search only ever sees one user's
rules, and a term matches exactly the rules that have it, so the scores are the same.
:func:`fuse` merges the lexical ranking with the dense one (reciprocal-rank
fusion), which is what :class:`~persona_sdk.memory.retrieval.Retriever` ranks by.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

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


# Each statement in both dialects: (SQLite FTS5, PostgreSQL tsvector).
_SQL = {
    "delete": (
        f"DELETE FROM {TERMS_TABLE} WHERE rowid = ?",
        f"DELETE FROM {TERMS_TABLE} WHERE memory_id = ?",
    ),
    "insert": (
        f"INSERT INTO {TERMS_TABLE} (rowid, user_key, terms) VALUES (?, ?, ?)",
        f"INSERT INTO {TERMS_TABLE} (memory_id, user_id, terms) "
        "VALUES (?, ?, to_tsvector('simple', ?))",
    ),
    "drop_user": (
        f"DELETE FROM {TERMS_TABLE} WHERE {TERMS_TABLE} MATCH ?",
        f"DELETE FROM {TERMS_TABLE} WHERE user_id = ?",
    ),
    "search": (
        f"SELECT rowid FROM {TERMS_TABLE} WHERE {TERMS_TABLE} MATCH ? LIMIT {COMMON + 1}",
        f"SELECT memory_id FROM {TERMS_TABLE} WHERE user_id = ? "
        f"AND terms @@ plainto_tsquery('simple', ?) LIMIT {COMMON + 1}",
    ),
}


def _sql(dialect: Any, name: str) -> str:
    return _SQL[name][dialect.name == "postgres"]


def _user_params(dialect: Any, user_id: str, word: str | None = None) -> tuple:
    """The parameters that pick one user's rows (having ``word``): an FTS5 query on
    SQLite, plain values on PostgreSQL."""
    if dialect.name == "postgres":
        return (user_id,) if word is None else (user_id, word)
    match = f'user_key : "{user_key(user_id)}"'
    return (match if word is None else f'{match} AND terms : "{word}"',)


def index_rule(
    conn: Any, user_id: str, memory_id: int, text: str | None, context: str | None
) -> None:
    """(Re)write one rule's row in the lexical index, inside the caller's transaction
    (``conn``: the store's transaction connection, which names its ``dialect``)."""
    conn.execute(_sql(conn.dialect, "delete"), (memory_id,))
    words = " ".join(terms(text) + terms(context))
    postgres = conn.dialect.name == "postgres"  # the user column: the id, or its FTS5 token
    conn.execute(
        _sql(conn.dialect, "insert"), (memory_id, user_id if postgres else user_key(user_id), words)
    )


def drop_rules(conn: Any, ids: Iterable[int]) -> None:
    """Remove deleted rules from the lexical index."""
    conn.executemany(_sql(conn.dialect, "delete"), [(int(i),) for i in ids])


def drop_user(conn: Any, user_id: str) -> None:
    """Remove every row of a forgotten user, and every copy of their terms."""
    conn.execute(_sql(conn.dialect, "drop_user"), _user_params(conn.dialect, user_id))
    if conn.dialect.name == "sqlite":
        # An FTS5 delete only adds tombstones: the terms stay in the index segments (and
        # survive VACUUM) until a merge. 'optimize' merges them all into one, now.
        conn.execute(f"INSERT INTO {TERMS_TABLE} ({TERMS_TABLE}) VALUES ('optimize')")


def search(source: Any, user_id: str, query: str, limit: int) -> dict[int, float]:
    """The user's rule ids best matching ``query``, best first, with their scores.

    Each query term is looked up on its own (this user's rows having it); a term more than
    :data:`COMMON` of the user's rules share cannot tell them apart and is skipped, which
    also bounds the cost of a search whatever the user's size. A rule scores the sum of
    its matched terms' weights, log(1 + COMMON / rules having the term): rarer terms
    count more (an IDF within the user's own rules). ``source`` is the store, or its
    ``query`` method (which runs a read under the store's lock)."""
    if limit <= 0:
        return {}
    query_rows: Callable[[str, Sequence], list[tuple]] = getattr(source, "query", source)
    dialect = getattr(query_rows, "__self__", source).dialect
    scores: dict[int, float] = {}
    for word in terms(query)[:MAX_QUERY_TERMS]:
        rows = query_rows(_sql(dialect, "search"), _user_params(dialect, user_id, word))
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
