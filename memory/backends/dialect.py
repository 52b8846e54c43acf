"""The SQL dialects of the store backends.

Store code writes each statement once, in SQLite's syntax with ``?`` placeholders and
portable upserts (``ON CONFLICT``); :meth:`Dialect.translate` adapts it for the server:
placeholders become psycopg's ``%s`` (a literal ``%`` is doubled) and SQLite's planner
hints (``INDEXED BY``, a unary ``+`` that keeps a column off an index), which PostgreSQL
has no syntax for, are dropped. Only the lexical index differs in substance (FTS5 vs
``tsvector``); :mod:`persona_sdk.memory.lexical` keeps both forms side by side.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_LITERAL = re.compile(r"('(?:[^']|'')*')")  # single-quoted SQL strings, kept verbatim
_INDEXED_BY = re.compile(r"\s+INDEXED BY \w+")
_UNARY_PLUS = re.compile(r"(?<=[\s(])\+(?=[A-Za-z_])")


@functools.lru_cache(maxsize=512)
def _to_psycopg(sql: str) -> str:
    parts = _LITERAL.split(sql)
    for i in range(0, len(parts), 2):  # even parts are outside literals
        code = _UNARY_PLUS.sub("", _INDEXED_BY.sub("", parts[i]))
        parts[i] = code.replace("%", "%%").replace("?", "%s")
    return "".join(parts)


@dataclass(frozen=True)
class Dialect:
    """One backend's SQL flavour: its name and how a statement is adapted to it."""

    name: str
    title: str  # for people: "SQLite", "PostgreSQL"

    def translate(self, sql: str) -> str:
        """``sql`` written for SQLite, as this backend runs it."""
        return sql if self.name == "sqlite" else _to_psycopg(sql)


SQLITE = Dialect("sqlite", "SQLite")
POSTGRES = Dialect("postgres", "PostgreSQL")
